"""Start and stop the local services on loopback: a Prefect server (SQLite) and the streaming
function served by functions-framework. Each is a context manager that waits until the service
answers and always stops it, so nothing outlives the job or the test session that started it."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from common.settings import REPO_ROOT, PlatformSettings

FUNCTION_MAIN = REPO_ROOT / "ingestion" / "streaming" / "main.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode} before answering; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s; see {log}")


@contextmanager
def background(cmd: list[str], *, env: Mapping[str, str], log: Path, ready_url: str, timeout_s: float,
               cwd: Path = REPO_ROOT) -> Iterator[None]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                start_new_session=True)
    try:
        wait_http(ready_url, proc, timeout_s, log)
        yield
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, grace_s: float = 10) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def prefect_server(home: Path, port: int | None = None, timeout_s: float = 120) -> Iterator[str]:
    """A real Prefect server on loopback with its own SQLite database under ``home``; yields the API URL."""
    port = port or free_port()
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_ENABLED="true", PREFECT_API_URL="")
    env.pop("PREFECT_API_URL")
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    api = f"http://127.0.0.1:{port}/api"
    with background(cmd, env=env, log=home / "server.log", ready_url=f"{api}/health", timeout_s=timeout_s):
        yield api


@contextmanager
def function_server(data_dir: Path, port: int | None = None, timeout_s: float = 60,
                    extra_env: Mapping[str, str] | None = None) -> Iterator[str]:
    """The streaming Cloud Function served by functions-framework from its folder, as deployed,
    writing to the local sink of the platform's data folder; yields its URL."""
    port = port or free_port()
    env = dict(os.environ, GA_SINK="local", GA_LANDING_DIR=str(PlatformSettings(data_dir=data_dir).landing_dir),
               **(extra_env or {}))
    cmd = [str(Path(sys.executable).with_name("functions-framework")), "--source", str(FUNCTION_MAIN),
           "--target", "handle_pubsub", "--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with background(cmd, env=env, log=data_dir / "logs" / "function.log", ready_url=url, timeout_s=timeout_s):
        yield url


def flush_prefect_telemetry() -> None:
    """Send the logs and events still queued in this process to the Prefect API, before a local
    server that received them is stopped."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    EventsWorker.drain_all(timeout=5)
