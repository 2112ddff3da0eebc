from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

from flows.backfill import game_analytics_backfill
from deployments.local.report import read_mart
from common.settings import OrchestrationSettings
from tests.conftest import land_simulation


def test_a_backfill_runs_each_window_and_shows_its_progress(data_dir: Path, tiny_sim, prefect_api: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterParentFlowRunId

    land_simulation(tiny_sim, data_dir)
    start = tiny_sim.config.start_date
    end = date.fromordinal(start.toordinal() + tiny_sim.config.days - 1)
    state = game_analytics_backfill(start=start, end=end, window_days=2, return_state=True)
    assert state.is_completed(), state.message
    assert len(state.result()) == 2

    async def read():
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id])))
            artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["backfill-progress"])))
            return runs, artifacts

    runs, artifacts = asyncio.run(read())
    assert sorted(r.name for r in runs) == [f"backfill-{s}-{e}" for s, e in state.result()]
    assert all(r.state.is_completed() for r in runs)
    assert any(a.data == 100.0 for a in artifacts)
    dau = {(str(r["activity_date"]), r["game_id"]): r["dau"] for r in read_mart(OrchestrationSettings(), "mart_daily_kpis")}
    truth = {(str(r["activity_date"]), r["game_id"]): r["dau"] for r in tiny_sim.truth.daily_kpis}
    assert dau == truth
