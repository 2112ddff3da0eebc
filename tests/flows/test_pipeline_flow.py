"""The pipeline flow against a real Prefect server: failures that stop the run early, notifications
delivered for real over HTTP through a notification block, and a flow retry that resumes dbt."""
from __future__ import annotations

import json
import threading
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock

from deployments.local.stack import AlertPrinter as Receiver
from flows.dbt_runs import resumable
from flows.parameters import PipelineParameters
from flows.pipeline import game_analytics_pipeline
from ingestion.streaming.landing import write_table
from common.settings import OrchestrationSettings
from ingestion.streaming.rows import GAME_EVENTS_SCHEMA
from tests.conftest import land_simulation


@pytest.fixture
def receiver(prefect_api: str) -> Iterator[tuple[Receiver, str]]:
    """A local HTTP endpoint behind a real custom-webhook notification block."""
    r = Receiver()
    block = CustomWebhookNotificationBlock(name="test-alerts", url=r.url,
                                           json_data={"subject": "{{subject}}", "body": "{{body}}"})
    block.save("test-alerts", overwrite=True)
    yield r, "custom-webhook/test-alerts"
    r.close()


def bad_bronze_event(landing: Path) -> Path:
    """A row in bronze.game_events that breaks the source's accepted_values test on event_name."""
    row = {f.name: None for f in GAME_EVENTS_SCHEMA}
    row.update(event_id="00000000-0000-4000-8000-000000000001", event_name="teleport", game_id="tiny_game",
               player_id="p", session_id="s", platform="pc", schema_version=1, payload="{}", message_id="bad")
    now = datetime.now(timezone.utc)
    row.update(event_timestamp=now, publish_time=now, ingested_at=now)
    return write_table(pa.Table.from_pylist([row], schema=GAME_EVENTS_SCHEMA), landing / "game_events", "bad.parquet")


def test_bad_parameters_fail_fast_naming_the_parameter(prefect_api: str) -> None:
    with pytest.raises(ValueError, match="start"):
        PipelineParameters(start=date(2026, 2, 1), end=date(2026, 1, 1))
    with pytest.raises(ValueError, match="sources"):
        PipelineParameters(sources=["players", "players"])
    state = game_analytics_pipeline.with_options(retries=0)(target="prod", return_state=True)
    assert state.is_failed() and "target" in state.message


def test_a_failing_dbt_test_fails_the_flow_skips_downstream_and_notifies_with_its_name(
        data_dir: Path, tiny_sim, receiver) -> None:
    r, block = receiver
    land_simulation(tiny_sim, data_dir)
    bad_bronze_event(OrchestrationSettings().landing_dir)
    state = game_analytics_pipeline.with_options(retries=0)(notify_block=block, freshness=False, return_state=True)
    assert state.is_failed()
    results = json.loads(next((data_dir / "dbt-runs").glob("*/build/run_results.json")).read_text())["results"]
    status = {r["unique_id"]: r["status"] for r in results}
    failing = [uid for uid, s in status.items() if s in ("fail", "error")]
    assert failing and all("event_name" in uid for uid in failing)
    assert status["model.game_analytics.mart_daily_kpis"] == "skipped"
    assert len(r.alerts) == 1
    body = r.alerts[0]["body"]
    assert failing[0] in body and "dbt-build" in body and "/runs/flow-run/" in body


def assert_dbt_node_events_arrived(run_id: str) -> None:
    """Each dbt node's outcome is an event on the server (`dbt.node.<status>`), related to its flow run."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    from deployments.local.services import flush_prefect_telemetry

    flush_prefect_telemetry()
    wanted = {("dbt.node.success", "dbt.model.game_analytics.mart_daily_kpis"),
              ("dbt.node.pass", "dbt.test.game_analytics.assert_every_bronze_event_in_silver")}
    deadline, seen = time.monotonic() + 60, set()
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline and not wanted <= seen:
            page = client.read_events(EventFilter(event=EventNameFilter(prefix=["dbt.node."]),
                                                  related=EventRelatedFilter(id=[f"prefect.flow-run.{run_id}"])), limit=50)
            seen = {(e.event, e.resource.id) for e in page.events}
            while page.next_page and not wanted <= seen:
                page = client.read_events_page(page.next_page)
                seen |= {(e.event, e.resource.id) for e in page.events}
            time.sleep(1)
    assert wanted <= seen, sorted(seen)[:20]


def test_a_transient_failure_is_retried_inside_the_run_and_a_failing_data_test_is_not(
        data_dir: Path, tiny_sim, prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The warehouse locked by another process fails the first attempt's build (a transient error):
    the run retries it, without leaving Running (so it keeps the warehouse), and completes. A failing
    data test fails the run at once, however many retries are allowed."""
    import subprocess
    import sys

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows import pipeline

    monkeypatch.setenv("GA_FLOW_RETRIES", "1")
    monkeypatch.setenv("GA_FLOW_RETRY_DELAY_S", "1")
    land_simulation(tiny_sim, data_dir)
    warehouse = OrchestrationSettings().warehouse_path
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(warehouse)!r}); "
                               "print('locked', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    released_at: list[datetime] = []

    def release_then_wait(delay_s: float) -> None:  # the cause goes away while the run waits for its retry
        holder.stdin.close()
        holder.wait()
        released_at.append(datetime.now(timezone.utc))
        time.sleep(delay_s)

    retrying = pipeline.with_retries
    monkeypatch.setattr(pipeline, "with_retries", lambda attempt, retries, delay_s: retrying(
        attempt, retries, delay_s, sleep=release_then_wait))
    try:
        state = game_analytics_pipeline.with_options(retries=0)(freshness=False, return_state=True)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert released_at, "the first attempt did not fail as arranged"
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        run_id = state.state_details.flow_run_id
        assert [s.name for s in client.read_flow_run_states(run_id)] == ["Pending", "Running", "Completed"]
        builds = [r for r in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
                  if r.name.startswith("dbt-build")]
        assert sorted(r.state.name for r in builds) == ["Completed", "Failed"]
    assert_dbt_node_events_arrived(str(run_id))

    bad_bronze_event(OrchestrationSettings().landing_dir)
    state = game_analytics_pipeline.with_options(retries=0)(freshness=False, return_state=True)
    assert state.is_failed() and "event_name" in state.message
    with get_client(sync_client=True) as client:
        run_id = state.state_details.flow_run_id
        builds = [r for r in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
                  if r.name.startswith("dbt-build")]
        assert [r.state.name for r in builds] == ["Failed"]  # tried once
