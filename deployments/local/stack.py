"""The local operator stack: the production set-up of the platform, on one machine.

    .venv/bin/python -m deployments.local.stack up

starts a Prefect server (loopback, SQLite, http://127.0.0.1:4200, history in $GA_DATA_DIR/prefect),
registers the notification block and the automations, creates the `local` process work pool
with its `warehouse` queue (one build at a time), deploys the local twins from prefect.yaml
(hourly-local, daily-local, backfill-local) and starts a worker; then it stays up until Ctrl-C and
stops everything. In another terminal:

    PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/prefect deployment run 'game-analytics-pipeline/hourly-local'

Alerts go to Slack or a webhook when GA_SLACK_WEBHOOK_URL or GA_ALERT_WEBHOOK_URL is set (see
blocks/register.py); otherwise to a small receiver started here, which prints each alert and
appends it to $GA_DATA_DIR/alerts.log.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Mapping

from deployments.local.services import prefect_server, stop
from common.settings import REPO_ROOT, PlatformSettings

PORT = 4200
POOL = "local"
QUEUE = "warehouse"
LOCAL_DEPLOYMENTS = ("hourly-local", "daily-local", "backfill-local")
WORKER_NAME = "local-worker"


# --------------------------------------------------------------------------- work pool, deploy, worker

async def _ensure_pool(pool: str, queue: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkQueueUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    async with get_client() as client:
        try:
            await client.read_work_pool(pool)
        except ObjectNotFound:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="process",
                                                         description="Local twins of the game-analytics deployments"))
        try:
            await client.create_work_queue(name=queue, work_pool_name=pool, concurrency_limit=1,
                                           description="Warehouse builds: one at a time")
        except ObjectAlreadyExists:
            existing = await client.read_work_queue_by_name(queue, work_pool_name=pool)
            await client.update_work_queue(existing.id, concurrency_limit=1)


def ensure_work_pool(pool: str = POOL, queue: str = QUEUE) -> None:
    """The process work pool of the local twins and its one-at-a-time queue, created when missing
    (against the configured PREFECT_API_URL)."""
    asyncio.run(_ensure_pool(pool, queue))


def deploy_local(api_url: str, names: tuple[str, ...] = LOCAL_DEPLOYMENTS, log: Path | None = None) -> None:
    """`prefect deploy` of the local twins from prefect.yaml, run in the repository root (their pull
    step points the runs at this checkout). Their build and push steps are empty: no Docker."""
    cmd = [sys.executable, "-m", "prefect", "--no-prompt", "deploy"]
    for name in names:
        cmd += ["--name", name]
    env = dict(os.environ, PREFECT_API_URL=api_url, PWD=str(REPO_ROOT))
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(done.stdout + done.stderr)
    if done.returncode != 0 or "successfully created" not in done.stdout:
        raise RuntimeError(f"prefect deploy failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def worker_env(api_url: str, settings: PlatformSettings, notify_block: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The worker's environment, inherited by every flow run it starts: the API, the data folder,
    the notification block of the failure hooks, and the repository on the import path."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PREFECT_API_URL=api_url, GA_DATA_DIR=str(settings.data_dir), GA_NOTIFY_BLOCK=notify_block,
                PYTHONPATH=path, **(extra or {}))


@contextmanager
def worker(env: Mapping[str, str], log: Path, pool: str = POOL, name: str = WORKER_NAME,
           timeout_s: float = 90) -> Iterator[subprocess.Popen]:
    """A `prefect worker start` process for the pool, ready once the API lists it online; always stopped."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process", "--name", name]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                start_new_session=True)
    try:
        wait_worker_online(env["PREFECT_API_URL"], pool, name, proc, timeout_s, log)
        yield proc
    finally:
        stop(proc, grace_s=30)


def wait_worker_online(api_url: str, pool: str, name: str, proc: subprocess.Popen, timeout_s: float, log: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def online() -> bool:
        async with get_client() as client:
            return any(w.name == name and str(w.status).upper().endswith("ONLINE")
                       for w in await client.read_workers_for_work_pool(pool))

    deadline = time.monotonic() + timeout_s
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {proc.returncode}; see {log}")
            if asyncio.run(online()):
                return
            time.sleep(1)
    raise TimeoutError(f"the worker did not come online within {timeout_s:.0f} s; see {log}")


# --------------------------------------------------------------------------- alerts

class AlertPrinter:
    """The local stand-in for Slack: an HTTP endpoint on loopback that receives each alert the
    custom webhook block posts ({subject, body, source}), keeps it in ``alerts``, and prints it and
    appends it to a log file when one is given."""

    def __init__(self, log: Path | None = None) -> None:
        if log:
            log.parent.mkdir(parents=True, exist_ok=True)
        lock = threading.Lock()
        self.alerts: list[dict] = []
        alerts = self.alerts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    alert = json.loads(raw)
                except ValueError:
                    alert = {"subject": "(unreadable alert)", "body": raw.decode("utf-8", "replace")}
                stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
                text = f"[{stamp}] ALERT {alert.get('subject', '')}\n{alert.get('body', '')}\n"
                with lock:
                    alerts.append(alert)
                    if log:
                        print(text, flush=True)
                        with open(log, "a") as f:
                            f.write(text + "\n")
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def register_alerts(env: Mapping[str, str], fallback_url: str | None) -> str:
    """Register the notification block(s) from the environment, or a custom webhook to
    ``fallback_url`` when none is configured; return the block reference alerts go through."""
    from blocks.register import register

    configured = {k: v for k, v in env.items() if k in ("GA_SLACK_WEBHOOK_URL", "GA_ALERT_WEBHOOK_URL") and v}
    if not configured:
        if fallback_url is None:
            raise ValueError("no notification block configured and no local receiver to fall back to")
        configured = {"GA_ALERT_WEBHOOK_URL": fallback_url}
    saved = register(configured)
    wanted = env.get("GA_NOTIFY_BLOCK")
    if wanted:
        return wanted
    return next((ref for ref in saved if ref.startswith("slack-webhook/")), saved[0])


def apply_automations(notify_block: str) -> list[tuple[str, str]]:
    from blocks.automations import apply, automations, notification_block_id

    return apply(automations(notification_block_id(notify_block)))


# --------------------------------------------------------------------------- the command

def up(port: int = PORT) -> int:
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    settings = PlatformSettings()
    home = settings.data_dir / "prefect"
    logs = settings.data_dir / "logs"
    ui = f"http://127.0.0.1:{port}"
    # the server renders run links in the automations' messages from this; the hooks too
    os.environ["PREFECT_UI_URL"] = ui
    configured = any(os.environ.get(k) for k in ("GA_SLACK_WEBHOOK_URL", "GA_ALERT_WEBHOOK_URL"))
    printer = None if configured else AlertPrinter(settings.data_dir / "alerts.log")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        print(f"Starting the Prefect server on {ui} (history in {home}) ...", flush=True)
        with prefect_server(home, port=port) as api_url:
            with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_UI_URL: ui}):
                block = register_alerts(os.environ, printer.url if printer else None)
                print(f"Notification block: {block}" + ("" if configured else
                      f" (no Slack/webhook configured: alerts are printed here and kept in {settings.data_dir / 'alerts.log'})"))
                for name, outcome in apply_automations(block):
                    print(f"Automation {outcome}: {name}")
                ensure_work_pool()
                print(f"Work pool {POOL!r} (process) with queue {QUEUE!r} (one run at a time)")
                deploy_local(api_url, log=logs / "deploy.log")
                print("Deployed: " + ", ".join(LOCAL_DEPLOYMENTS))
                env = worker_env(api_url, settings, block, extra={"PREFECT_UI_URL": ui})
                with worker(env, logs / "worker.log"):
                    print(f"Worker {WORKER_NAME!r} polling pool {POOL!r} (log: {logs / 'worker.log'})")
                    print()
                    print(f"Prefect UI: {ui}")
                    print("Run the pipeline from the UI, or in another terminal:")
                    print(f"  PREFECT_API_URL={api_url} .venv/bin/prefect deployment run "
                          "'game-analytics-pipeline/hourly-local' --watch")
                    print(f"  PREFECT_API_URL={api_url} .venv/bin/prefect deployment run "
                          "'game-analytics-backfill/backfill-local' -p start=2026-01-01 -p end=2026-01-14")
                    print(f"Landing area and warehouse: {settings.data_dir}  (GA_DATA_DIR)")
                    print("Ctrl-C stops everything.", flush=True)
                    try:
                        while not stopping.wait(1):
                            pass
                    except KeyboardInterrupt:
                        pass
                    print("\nStopping the worker and the server ...", flush=True)
    finally:
        if printer is not None:
            printer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.local.stack", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start the local stack and keep it up until Ctrl-C")
    start.add_argument("--port", type=int, default=PORT, help=f"Prefect server port (default {PORT})")
    args = parser.parse_args(argv)
    return up(args.port)


if __name__ == "__main__":
    raise SystemExit(main())
