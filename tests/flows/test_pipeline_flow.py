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
from flows.pipeline import PipelineParameters, game_analytics_pipeline, resumable
from ingestion.landing import write_table
from ingestion.settings import Settings
from ingestion.sinks import GAME_EVENTS_SCHEMA
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
    bad_bronze_event(Settings().landing_dir)
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


def test_a_flow_retry_resumes_dbt_from_the_failure(data_dir: Path, tiny_sim, prefect_api: str) -> None:
    land_simulation(tiny_sim, data_dir)
    bad = bad_bronze_event(Settings().landing_dir)
    repaired_at: list[datetime] = []

    def repair_after_first_failure() -> None:  # the cause goes away between the two attempts
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            builds = list((data_dir / "dbt-runs").glob("*/build"))
            try:
                failed = bool(builds) and resumable(builds[0])
            except ValueError:  # dbt is still writing run_results.json: read it again
                failed = False
            if failed:
                bad.unlink()
                repaired_at.append(datetime.now(timezone.utc))
                return
            time.sleep(0.2)

    fixer = threading.Thread(target=repair_after_first_failure, daemon=True)
    fixer.start()
    state = game_analytics_pipeline.with_options(retries=1, retry_delay_seconds=1)(freshness=False, return_state=True)
    fixer.join(timeout=5)
    assert state.is_completed(), state.message
    assert repaired_at, "the first attempt did not fail as arranged"
    build = next((data_dir / "dbt-runs").glob("*/build"))
    results = {r["unique_id"]: r for r in json.loads((build / "run_results.json").read_text())["results"]}
    assert all(r["status"] in ("success", "pass") for r in results.values())

    def finished(uid: str) -> datetime:
        return datetime.fromisoformat(results[uid]["timing"][-1]["completed_at"].replace("Z", "+00:00"))

    # `dbt retry` ran only what had failed or been skipped, after the repair; the models that had
    # succeeded in the first attempt were not built again
    assert "model.game_analytics.stg_bronze__players" not in results
    assert finished("model.game_analytics.mart_daily_kpis") > repaired_at[0]
