"""The Pub/Sub emulator as a local process: whether it can run on this machine, and starting and
stopping it on loopback.

When ``gcloud``, its ``pubsub-emulator`` component or Java is missing, ``emulator_unavailable_reason``
says which; callers then POST push bodies straight to the function server instead.
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from deployments.local.services import free_port, wait_http

EMULATOR_START_TIMEOUT_S: Final = 90.0
STOP_GRACE_S: Final = 15.0


class EmulatorUnavailable(RuntimeError):
    """The Pub/Sub emulator cannot run on this machine; the message says what is missing."""


def _sdk_root(gcloud: str) -> Path:
    """The Cloud SDK folder of a ``gcloud`` executable (``<root>/bin/gcloud``)."""
    return Path(os.path.realpath(gcloud)).parent.parent


@functools.cache
def emulator_unavailable_reason() -> str | None:
    """None when the Pub/Sub emulator can start here, otherwise what is missing and how to get it."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return "gcloud is not installed: install the Google Cloud CLI and its pubsub-emulator component"
    root = _sdk_root(gcloud)
    if (root / "platform").is_dir() and not (root / "platform" / "pubsub-emulator").is_dir():
        return (
            f"the Pub/Sub emulator is not installed in {root}: run `gcloud components install pubsub-emulator` "
            "(or install the google-cloud-cli-pubsub-emulator package)"
        )
    java = shutil.which("java")
    if java is None:
        return "Java is not installed: the Pub/Sub emulator needs a Java runtime (17 or later) on PATH"
    try:
        subprocess.run([java, "-version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"java -version failed ({exc}): the Pub/Sub emulator needs a working Java runtime"
    return None


def emulator_available() -> bool:
    return emulator_unavailable_reason() is None


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, pgrp, ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """Stop a process started in its own session and everything it started (gcloud starts the
    emulator's Java process as a child): SIGTERM to the group, SIGKILL whatever is left after
    ``grace_s``, and wait until no member is alive."""
    pgid = proc.pid
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        proc.poll()
        if proc.returncode is not None and not _group_members(pgid):
            return
        time.sleep(0.1)
    _signal_group(pgid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + grace_s
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)


def emulator_command(host_port: str, data_dir: Path) -> list[str]:
    return ["gcloud", "beta", "emulators", "pubsub", "start", f"--host-port={host_port}", f"--data-dir={data_dir}"]


@contextmanager
def pubsub_emulator(
    data_dir: Path, port: int | None = None, timeout_s: float = EMULATOR_START_TIMEOUT_S
) -> Iterator[str]:
    """The Pub/Sub emulator on loopback with its own data folder under ``data_dir``; yields its
    ``host:port``. Waits until it answers; always stops it, its Java process included."""
    reason = emulator_unavailable_reason()
    if reason is not None:
        raise EmulatorUnavailable(reason)
    host = f"127.0.0.1:{port or free_port()}"
    state_dir = data_dir / "pubsub-emulator"
    state_dir.mkdir(parents=True, exist_ok=True)  # the emulator writes env.yaml there and fails without it
    log = data_dir / "logs" / "pubsub-emulator.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PUBSUB_EMULATOR_HOST"}
    env["CLOUDSDK_CORE_DISABLE_PROMPTS"] = "1"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            emulator_command(host, state_dir), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_http(f"http://{host}/", proc, timeout_s, log)
        yield host
    finally:
        stop_group(proc)
