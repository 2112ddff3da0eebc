"""The automations fire on a real Prefect server (blocks/automations.py, with their windows shortened):
a scheduled run that does not start is reported late, and a running run whose heartbeats stop is
set to Crashed, which the failure automation reports. Notifications arrive over HTTP through a
real webhook block."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.states import Running, Scheduled

from blocks.automations import apply, failed_or_crashed, late_run, notification_block_id, zombie_runs
from deployments.local.services import flush_prefect_telemetry
from deployments.local.stack import AlertPrinter as Receiver
from flows.pipeline import game_analytics_pipeline


@pytest.fixture
def alerts(prefect_api: str) -> Iterator[Receiver]:
    receiver = Receiver()
    CustomWebhookNotificationBlock(name="automation-alerts", url=receiver.url,
                                   json_data={"subject": "{{subject}}", "body": "{{body}}"}).save("automation-alerts", overwrite=True)
    block_id = notification_block_id("custom-webhook/automation-alerts")
    wanted = [failed_or_crashed(block_id), late_run(block_id, after=timedelta(seconds=10)),
              zombie_runs(silence=timedelta(seconds=10))]
    apply(wanted)
    yield receiver
    with get_client(sync_client=True) as client:
        for automation in wanted:
            for found in client.read_automations_by_name(automation.name):
                client.delete_automation(found.id)
    receiver.close()


def wait_for(condition, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(1)


def test_a_late_run_and_a_silent_running_run_are_reported(alerts: Receiver) -> None:
    with get_client(sync_client=True) as client:
        late = client.create_flow_run(game_analytics_pipeline, name="never-picked-up",
                                      state=Scheduled(scheduled_time=datetime.now(timezone.utc) - timedelta(minutes=1)))
        silent = client.create_flow_run(game_analytics_pipeline, name="went-silent", state=Running())
        flow = client.read_flow(silent.flow_id)
    # the heartbeat a running flow run sends (then its process dies: no more events)
    emit_event(event="prefect.flow-run.heartbeat",
               resource={"prefect.resource.id": f"prefect.flow-run.{silent.id}", "prefect.resource.name": silent.name},
               related=[{"prefect.resource.id": f"prefect.flow.{flow.id}", "prefect.resource.role": "flow",
                         "prefect.resource.name": flow.name}])
    flush_prefect_telemetry()

    def subjects() -> list[str]:
        return [a["subject"] for a in alerts.alerts]

    wait_for(lambda: any("never-picked-up: not started, late" in s for s in subjects()))
    with get_client(sync_client=True) as client:
        wait_for(lambda: client.read_flow_run(silent.id).state.name == "Crashed")
        assert "no heartbeat for 10 s" in client.read_flow_run(silent.id).state.message
    wait_for(lambda: any("went-silent: Crashed" in s for s in subjects()))
