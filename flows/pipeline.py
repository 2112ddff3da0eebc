"""The `game-analytics-pipeline` flow: batch ingestion, then dbt build, then the dbt quality gate,
then a run summary. Orchestration only: rows move in `ingestion/`, SQL lives in `dbt/`."""
from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import wait
from pydantic import BaseModel, Field, model_validator

from flows.dbt import QUALITY_GATE, NodeResult, dbt_args, run_dbt, show
from ingestion.batch.launch import SOURCES, LoadResult, run_local
from ingestion.bronze import ensure_local_bronze
from ingestion.settings import Settings

Source = Literal["players", "store_items", "fx_rates"]
# the window loaded when none is given: every export the local bucket holds
EARLIEST = date(2015, 1, 1)


class PipelineParameters(BaseModel):
    """Validated before anything runs; a bad value fails the run naming the parameter."""

    target: Literal["local", "bigquery"] = "local"
    sources: list[Source] = Field(default_factory=lambda: list(SOURCES))
    start: date | None = None
    end: date | None = None
    full_refresh: bool = False

    @model_validator(mode="after")
    def _window(self) -> "PipelineParameters":
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start ({self.start}) is after end ({self.end})")
        return self


@task(name="prepare-landing")
def prepare_landing() -> None:
    ensure_local_bronze(Settings().landing_dir)


@task(name="ingest-batch", task_run_name="ingest-{source}")
def ingest_batch(source: str, start: date, end: date, target: str) -> LoadResult:
    if target != "local":
        raise NotImplementedError(f"batch ingestion on Dataflow (target={target!r}) is not available yet")
    result = run_local(source, start, end, Settings())
    get_run_logger().info(
        "%s: %d rows loaded, %d rejected (%s)", source, result.rows_loaded, result.rows_rejected, result.runner
    )
    return result


@task(name="dbt-build")
def dbt_build(params: PipelineParameters) -> list[NodeResult]:
    args = dbt_args(
        "build",
        target=params.target,
        exclude=[QUALITY_GATE],
        full_refresh=params.full_refresh,
        start=params.start,
        end=params.end,
    )
    return run_dbt(args, Settings(), on_line=get_run_logger().info)


@task(name="dbt-test")
def dbt_test(params: PipelineParameters) -> list[NodeResult]:
    args = dbt_args("test", target=params.target, select=[QUALITY_GATE], start=params.start, end=params.end)
    return run_dbt(args, Settings(), on_line=get_run_logger().info)


@task(name="publish-summary")
def publish_summary(loads: list[LoadResult], built: list[NodeResult], tested: list[NodeResult], target: str) -> list[dict]:
    kpis = show("latest_daily_kpis", Settings(), target=target, limit=200)
    create_table_artifact(key="daily-kpis", table=[{k: str(v) for k, v in row.items()} for row in kpis],
                          description="Daily KPIs per game, last seven days")
    create_markdown_artifact(key="pipeline-run-summary", markdown=summary_markdown(loads, built, tested, kpis))
    return kpis


def summary_markdown(loads: list[LoadResult], built: list[NodeResult], tested: list[NodeResult], kpis: list[dict]) -> str:
    models = [n for n in built if n.resource_type == "model"]
    tests = [n for n in built + tested if n.resource_type in ("test", "unit_test")]
    lines = ["# Pipeline run", "", "## Batch ingestion", "", "| source | rows loaded | rows rejected | runner |", "|---|---|---|---|"]
    lines += [f"| {r.source} | {r.rows_loaded} | {r.rows_rejected} | {r.runner} |" for r in loads]
    lines += ["", f"## dbt: {len(models)} models, {len(tests)} tests", "", "| model | status | rows |", "|---|---|---|"]
    lines += [f"| {n.unique_id} | {n.status} | {n.rows_affected if n.rows_affected is not None else ''} |" for n in models]
    by_status: dict[str, list[str]] = {}
    for n in tests:
        by_status.setdefault(n.status, []).append(n.unique_id)
    lines += [""] + [f"- tests {status}: {len(names)}" for status, names in sorted(by_status.items())]
    for status in ("warn", "fail", "error"):
        lines += [f"  - {status}: `{name}`" for name in by_status.get(status, [])]
    if kpis:
        latest = kpis[0]["activity_date"]
        lines += ["", f"## Headline KPIs, {latest}", ""]
        lines += [f"- {row['game_id']}: DAU {row['dau']}" for row in kpis if row["activity_date"] == latest]
    return "\n".join(lines)


@flow(name="game-analytics-pipeline", log_prints=True)
def game_analytics_pipeline(params: PipelineParameters = PipelineParameters()) -> list[dict]:
    """Load the batch sources, build the warehouse with dbt, gate it with the data-quality tests."""
    start = params.start or EARLIEST
    end = params.end or date.today() + timedelta(days=1)
    if params.target == "local":
        prepare_landing()
    futures = [ingest_batch.submit(source, start, end, params.target) for source in params.sources]
    wait(futures)
    loads = [f.result() for f in futures]
    built = dbt_build(params)
    tested = dbt_test(params)
    return publish_summary(loads, built, tested, params.target)
