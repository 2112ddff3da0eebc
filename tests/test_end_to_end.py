"""The whole path once, on real components: simulator -> Cloud Function (functions-framework
server) -> local bronze -> Prefect flow on a real Prefect server (Beam DirectRunner batch loads,
dbt build and dbt test on DuckDB) -> gold, checked against the simulator's ground truth."""
from __future__ import annotations

import asyncio
import json
from collections import Counter

import duckdb
import pytest

from deployments.local.report import MARTS, mart_mismatches, read_mart
from deployments.local.services import function_server
from flows.pipeline import game_analytics_pipeline
from common.settings import OrchestrationSettings
from simulator import Simulation
from simulator.deliver import post_to_function
from simulator.operational_db import load_operational_tables


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory, prefect_api: str, postgres_dsn: str, small_sim: Simulation):
    data_dir = tmp_path_factory.mktemp("platform")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GA_DATA_DIR", str(data_dir))
        # players and store items come from the operational PostgreSQL database, FX rates from the export bucket
        load_operational_tables(postgres_dsn, small_sim, schema="end_to_end")
        env.setenv("GA_POSTGRES_DSN", postgres_dsn)
        env.setenv("GA_POSTGRES_SCHEMA", "end_to_end")
        settings = OrchestrationSettings()
        small_sim.write_exports(settings.exports_dir)
        (settings.exports_dir / "players.csv").unlink()  # so nothing can silently come from the extract
        with function_server(data_dir) as url:
            post_to_function(small_sim.messages, url)
        state = game_analytics_pipeline(return_state=True)
        yield settings, state


def test_the_data_carries_every_kind_of_trouble(small_sim: Simulation) -> None:
    ids = Counter(e["event_id"] for e in small_sim.valid_events)
    transactions = Counter(e["params"]["transaction_id"] for e in small_sim.valid_events if e["event_name"] == "purchase")
    test_players = {p["player_id"] for p in small_sim.players if p["is_test_account"]}
    assert any(n > 1 for n in ids.values()), "no duplicated event_id"
    assert any(n > 1 for n in transactions.values()), "no duplicated transaction"
    assert {i.error_type for i in small_sim.invalid_events} >= {"schema_violation", "timestamp_out_of_range", "malformed_json", "not_utf8"}
    assert any(e["player_id"] in test_players for e in small_sim.valid_events), "no test-account events"
    late = [m for m in small_sim.messages if (m.publish_time - min_event_time(m)).days >= 1]
    assert late, "no late events"


def min_event_time(message):
    from datetime import datetime

    try:
        body = json.loads(message.data)
    except ValueError:
        return message.publish_time
    events = body["events"] if isinstance(body, dict) and "events" in body else [body]
    times = [datetime.fromisoformat(e["event_timestamp"]) for e in events
             if isinstance(e, dict) and isinstance(e.get("event_timestamp"), str) and "T" in e["event_timestamp"]]
    return min((t for t in times if t.tzinfo is not None), default=message.publish_time)


def test_dau_in_gold_equals_the_ground_truth_date_by_date(pipeline_run, small_sim: Simulation) -> None:
    settings, state = pipeline_run
    assert state.is_completed(), state.message
    mart = read_mart(settings, "mart_daily_kpis")
    truth = small_sim.truth.daily_kpis
    dau = {(str(r["activity_date"]), r["game_id"]): r["dau"] for r in mart}
    assert dau == {(str(r["activity_date"]), r["game_id"]): r["dau"] for r in truth}


def test_every_cell_of_the_three_marts_equals_the_ground_truth(pipeline_run, small_sim: Simulation) -> None:
    settings, _ = pipeline_run
    small_sim.write_truth(settings.truth_dir)
    for mart in MARTS:
        rows, cells, diffs = mart_mismatches(settings, mart)
        assert rows and cells and diffs == [], (mart, diffs[:10])


def test_every_bad_input_is_rejected_with_its_reason_and_nothing_valid_is_lost(pipeline_run, small_sim: Simulation) -> None:
    settings, _ = pipeline_run
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        rejected = Counter(con.sql("select message_id, error_type from bronze.game_events_rejected").fetchall())
        landed = set(r[0] for r in con.sql("select event_id from silver.stg_telemetry__game_events").fetchall())
        bronze_rows = con.sql("select count(*) from bronze.game_events").fetchall()[0][0]
    assert rejected == Counter((i.message_id, i.error_type) for i in small_sim.invalid_events)
    assert landed == {e["event_id"] for e in small_sim.valid_events}
    assert bronze_rows == len(small_sim.valid_events)  # every delivery landed; silver deduplicates


def test_the_flow_run_is_recorded_on_the_prefect_server(pipeline_run) -> None:
    from prefect.client.orchestration import get_client

    _, state = pipeline_run

    async def read():
        async with get_client() as client:
            run = await client.read_flow_run(state.state_details.flow_run_id)
            tasks = await client.read_task_runs()
            return run, [t for t in tasks if t.flow_run_id == run.id]

    run, tasks = asyncio.run(read())
    assert run.state.is_completed()
    names = {t.name for t in tasks}
    assert {"ingest-players", "ingest-store_items", "ingest-fx_rates"} <= names
    for step in ("prepare-landing", "dbt-build", "dbt-test", "publish-summary"):
        assert any(name.startswith(f"{step}-") for name in names), f"no task run for {step}: {names}"
    assert all(t.state.is_completed() for t in tasks)


def test_the_scheduled_build_runs_models_and_data_tests_and_leaves_unit_tests_to_ci(pipeline_run) -> None:
    from flows.dbt import read_run_results

    settings, state = pipeline_run
    build = settings.data_dir / "dbt-runs" / str(state.state_details.flow_run_id) / "build"
    kinds = {node.resource_type for node in read_run_results(build)}
    assert {"model", "test"} <= kinds and "unit_test" not in kinds
