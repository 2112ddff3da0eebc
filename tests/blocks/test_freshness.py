"""The marts' freshness promise on the local stack (real Prefect server, real HTTP notification): a
pipeline run whose newest event arrival is older than the promise reports its marts stale, and
the freshness automation alerts through the notification block; marts reported fresh in time do not."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client

from blocks.automations import apply, notification_block_id
from blocks.freshness import STALE, stale_marts
from deployments.local.services import flush_prefect_telemetry
from deployments.local.stack import AlertPrinter as Receiver
from flows.assets import MART_FRESH, MART_STALE, report_mart_freshness
from tests.conftest import land_simulation

MAX_AGE = timedelta(seconds=15)


@pytest.fixture
def alerts(prefect_api: str):
    receiver = Receiver()
    CustomWebhookNotificationBlock(name="fresh-alerts", url=receiver.url,
                                   json_data={"subject": "{{subject}}", "body": "{{body}}"}).save("fresh-alerts", overwrite=True)
    automation = stale_marts(notification_block_id("custom-webhook/fresh-alerts"), MAX_AGE)
    apply([automation])
    yield receiver
    with get_client(sync_client=True) as client:
        for a in client.read_automations_by_name(STALE):
            client.delete_automation(a.id)
    receiver.close()


def wait_for(receiver: Receiver, timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not receiver.alerts:
        time.sleep(0.5)
    return receiver.alerts


def test_a_stale_mart_is_reported_by_the_freshness_automation(data_dir: Path, tiny_sim, alerts: Receiver,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.pipeline import game_analytics_pipeline

    land_simulation(tiny_sim, data_dir)
    # the promise: arrivals built into gold within 1 second; the run's data landed before it started
    monkeypatch.setenv("GA_MART_MAX_AGE_HOURS", str(1 / 3600))
    state = game_analytics_pipeline.with_options(retries=0)(freshness=False, return_state=True)
    assert state.is_completed(), state.message
    flush_prefect_telemetry()
    received = wait_for(alerts, MAX_AGE.total_seconds() + 45)
    assert received, "no freshness alert"
    assert received[0]["subject"] == "[automation] gold marts stale: gold KPI marts (local)"
    body = received[0]["body"]
    assert MART_STALE in body
    # the report carries the newest arrival the run built into gold: the events landed this year
    assert f"newest event arrival {datetime.now(timezone.utc).year}-" in body, body


def test_marts_reported_fresh_in_time_raise_no_alert_and_silence_does(alerts: Receiver) -> None:
    deadline = time.monotonic() + MAX_AGE.total_seconds() + 10
    while time.monotonic() < deadline:  # fresh builds every few seconds: the promise is kept
        assert report_mart_freshness(datetime.now(timezone.utc), "fresh-test", 1) == MART_FRESH
        flush_prefect_telemetry()
        time.sleep(3)
    assert not alerts.alerts, alerts.alerts
    # then the builds stop: the promise is broken once MAX_AGE passes without a fresh report
    received = wait_for(alerts, MAX_AGE.total_seconds() + 45)
    assert received and "fresh-test" in received[0]["subject"]
