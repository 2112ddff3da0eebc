"""The local twins end to end, the way an operator runs them: a real Prefect server on loopback, the
notification block and the automations registered by their own commands' code, the `local` process
pool, `prefect deploy` of the twins from prefect.yaml, a real `prefect worker start`, and runs
started with `prefect deployment run ... --watch`. A good run builds marts equal to the ground
truth; a failing run is reported by the automation (not only by the flow's own hook)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from blocks.automations import FAILED, LATE, ZOMBIE
from blocks.freshness import STALE
from deployments.local.report import MARTS, mart_mismatches
from deployments.local.services import free_port, prefect_server
from deployments.local.stack import apply_automations, deploy_local, ensure_work_pool, register_alerts, worker, worker_env
from common.settings import REPO_ROOT, OrchestrationSettings
from tests.conftest import land_simulation
from deployments.local.stack import AlertPrinter as Receiver
from tests.flows.test_pipeline_flow import bad_bronze_event


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Server, alerts to a local receiver, automations, pool, the deployed twins and a worker."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    root = tmp_path_factory.mktemp("local-stack")
    data = root / "data"
    receiver = Receiver()
    port = free_port()
    ui = f"http://127.0.0.1:{port}"
    # the server renders the run links of the automations' messages from PREFECT_UI_URL
    saved_ui = os.environ.get("PREFECT_UI_URL")
    os.environ["PREFECT_UI_URL"] = ui
    try:
        with prefect_server(root / "prefect", port=port) as api_url:
            with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_UI_URL: ui}):
                block = register_alerts({}, fallback_url=receiver.url)
                assert block == "custom-webhook/game-analytics-alerts"
                first = apply_automations(block)
                again = apply_automations(block)  # idempotent: updated in place, never duplicated
                ensure_work_pool()
                ensure_work_pool()
                # deploy while the worker starts
                deployed: list[BaseException | None] = []

                def deploy() -> None:
                    try:
                        deploy_local(api_url, log=root / "deploy.log")
                        deployed.append(None)
                    except BaseException as exc:  # noqa: BLE001 - re-raised below
                        deployed.append(exc)

                deploying = threading.Thread(target=deploy)
                deploying.start()
                env = worker_env(api_url, OrchestrationSettings(data_dir=data), block,
                                 extra={"PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_UI_URL": ui,
                                        # the failing run retries once (resuming dbt) without the production pause
                                        "GA_FLOW_RETRY_DELAY_S": "1"})
                with worker(env, root / "worker.log"):
                    deploying.join()
                    if deployed[0] is not None:
                        raise deployed[0]
                    yield {"api_url": api_url, "data": data, "receiver": receiver, "first": first,
                           "again": again, "root": root, "ui": ui}
    finally:
        if saved_ui is None:
            os.environ.pop("PREFECT_UI_URL", None)
        else:
            os.environ["PREFECT_UI_URL"] = saved_ui
        receiver.close()


def run_deployment(api_url: str, name: str, timeout_s: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PREFECT_API_URL=api_url)
    return subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", name, "--watch",
                           "--watch-interval", "2", "--watch-timeout", str(timeout_s)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s + 60)


def test_automations_are_applied_once_by_name(local_stack: dict) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    assert [outcome for _, outcome in local_stack["first"]] == ["created"] * 4
    assert [outcome for _, outcome in local_stack["again"]] == ["updated"] * 4
    with temporary_settings(updates={PREFECT_API_URL: local_stack["api_url"]}):
        with get_client(sync_client=True) as client:
            names = sorted(a.name for a in client.read_automations())
    assert names == sorted([FAILED, LATE, ZOMBIE, STALE])


def test_hourly_local_builds_the_truth_and_a_failure_is_reported_by_the_automation(local_stack: dict, tiny_sim) -> None:
    data: Path = local_stack["data"]
    receiver: Receiver = local_stack["receiver"]
    land_simulation(tiny_sim, data)

    done = run_deployment(local_stack["api_url"], "game-analytics-pipeline/hourly-local")
    assert done.returncode == 0 and "Completed" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    tiny_sim.write_truth(OrchestrationSettings(data_dir=data).truth_dir)
    for mart in MARTS:
        rows, _, diffs = mart_mismatches(OrchestrationSettings(data_dir=data), mart)
        assert rows and diffs == [], (mart, diffs[:10])
    assert not [b for b in receiver.alerts if "[automation]" in b.get("subject", "")]

    bad_bronze_event(OrchestrationSettings(data_dir=data).landing_dir)
    failed = run_deployment(local_stack["api_url"], "game-analytics-pipeline/hourly-local")
    assert "Failed" in failed.stdout, failed.stdout[-3000:] + failed.stderr[-3000:]
    ended = time.monotonic()
    alert = None
    while time.monotonic() - ended < 60 and alert is None:
        alert = next((b for b in receiver.alerts if b.get("subject", "").startswith("[automation]")), None)
        time.sleep(0.5)
    assert alert is not None, f"no automation alert within 60 s; received: {receiver.alerts}"
    # the automation's own message (the flow hook's has no [automation] subject and no "Automation alert")
    assert "game-analytics-pipeline" in alert["subject"] and "Failed" in alert["subject"]
    assert alert["body"].startswith("Automation alert:")
    assert "Deployment: hourly-local" in alert["body"]
    assert f"Run: {local_stack['ui']}/runs/flow-run/" in alert["body"]
    assert "State message:" in alert["body"] and "event_name" in alert["body"]
    assert alert["source"] == "game-analytics-alerts"
