"""dbt's tables as Prefect assets, against a real Prefect server: after one pipeline run, the
server holds a materialization of every table the build made, with its upstream assets, keyed as
prefect-dbt keys them, and the lineage of the KPI mart leads back to the bronze sources."""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from prefect_dbt.core._manifest import ManifestParser
from prefect_dbt.utilities import format_resource_id

from deployments.local.services import flush_prefect_telemetry
from flows.pipeline import game_analytics_pipeline
from tests.conftest import land_simulation

# the bronze tables the KPI mart is computed from (events, the players export for test accounts, FX rates)
BRONZE = {f"duckdb://warehouse/bronze/{t}" for t in ("game_events", "players", "fx_rates")}


def asset_events(api: str, flow_run_id: str, expected: int, timeout_s: float = 30) -> list[dict]:
    """The asset materialization events of one flow run, as the server's events API returns them."""
    body = {"filter": {"event": {"prefix": ["prefect.asset.materialization."]},
                       "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
                       "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50}
    deadline = time.monotonic() + timeout_s
    while True:
        events, page = [], httpx.post(f"{api}/events/filter", json=body).raise_for_status().json()
        while True:
            events += page["events"]
            if not page.get("next_page"):
                break
            page = httpx.get(page["next_page"]).raise_for_status().json()
        if len(events) >= expected or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def test_one_run_materializes_every_built_table_with_its_lineage(data_dir: Path, tiny_sim, prefect_api: str) -> None:
    land_simulation(tiny_sim, data_dir)
    state = game_analytics_pipeline.with_options(retries=0)(freshness=False, return_state=True)
    assert state.is_completed(), state.message
    flush_prefect_telemetry()
    build = next((data_dir / "dbt-runs").glob("*/build"))
    results = json.loads((build / "run_results.json").read_text())["results"]
    manifest = ManifestParser(build / "manifest.json")
    built = {r["unique_id"] for r in results if r["unique_id"].split(".")[0] in ("model", "seed", "snapshot")
             and manifest.all_nodes[r["unique_id"]].materialization != "ephemeral"}
    assert len(built) >= 19
    events = asset_events(prefect_api, str(state.state_details.flow_run_id), len(built))

    lineage: dict[str, set[str]] = {}
    for e in events:
        assert e["event"] == "prefect.asset.materialization.succeeded"
        lineage[e["resource"]["prefect.resource.id"]] = {
            r["prefect.resource.id"] for r in e["related"] if r["prefect.resource.role"] == "asset"}
        assert {"prefect.resource.id": "dbt", "prefect.resource.role": "asset-materialized-by"} in e["related"]
    # every table the build made, keyed as prefect-dbt keys it, and nothing else
    assert set(lineage) == {format_resource_id("duckdb", manifest.all_nodes[uid].relation_name) for uid in built}
    mart = "duckdb://warehouse/gold/mart_daily_kpis"
    assert lineage[mart] and all(key.startswith("duckdb://warehouse/gold/") for key in lineage[mart])

    def ancestors(key: str) -> set[str]:
        seen: set[str] = set()
        todo = [key]
        while todo:
            for up in lineage.get(todo.pop(), set()) - seen:
                seen.add(up)
                todo.append(up)
        return seen

    reached = ancestors(mart)
    assert BRONZE <= reached, BRONZE - reached
    assert any(k.startswith("duckdb://warehouse/silver/stg_") for k in reached)
    # sources are upstream assets only: dbt reads them, the ingestion writes them
    assert not BRONZE & set(lineage)


def test_a_failed_node_is_not_materialized(tmp_path: Path) -> None:
    """Only what dbt reports as built becomes a materialization (a failed or skipped model does not)."""
    from flows.assets import dbt_asset_events

    manifest = {"metadata": {"adapter_type": "bigquery"}, "sources": {
        "source.p.bronze.game_events": {"resource_type": "source", "name": "game_events",
                                        "relation_name": "`proj`.`ga_bronze`.`game_events`"}},
        "nodes": {
            "model.p.stg": {"resource_type": "model", "name": "stg", "config": {"materialized": "incremental"},
                            "relation_name": "`proj`.`ga_silver`.`stg`",
                            "depends_on": {"nodes": ["source.p.bronze.game_events"]}},
            "model.p.mart": {"resource_type": "model", "name": "mart", "config": {"materialized": "table"},
                             "relation_name": "`proj`.`ga_gold`.`mart`", "depends_on": {"nodes": ["model.p.stg"]}}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "run_results.json").write_text(json.dumps({"results": [
        {"unique_id": "model.p.stg", "status": "success", "timing": [{"name": "execute", "completed_at": "2026-01-01T10:00:00Z"}]},
        {"unique_id": "model.p.mart", "status": "error", "timing": []}]}))
    events = dbt_asset_events(tmp_path)
    assert [e["resource"]["prefect.resource.id"] for e in events] == ["bigquery://proj/ga_silver/stg"]
    assert [a.key for a in events[0]["upstream"]] == ["bigquery://proj/ga_bronze/game_events"]
    assert events[0]["occurred"].isoformat() == "2026-01-01T10:00:00+00:00"


@pytest.mark.parametrize("relation", ['"warehouse"."gold"."mart_daily_kpis"'])
def test_local_keys_are_prefect_dbts(relation: str) -> None:
    assert format_resource_id("duckdb", relation) == "duckdb://warehouse/gold/mart_daily_kpis"
