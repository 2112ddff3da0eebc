"""The `game-analytics-pipeline` flow: batch ingestion (one task per source, concurrently), then
`dbt build`, then the `dbt test` quality gate, then a run summary. Orchestration only: rows move
in `ingestion/`, SQL lives in `dbt/`."""
from __future__ import annotations

import shutil
import time
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flows import assets, report
from flows.batch import cancel_dataflow_jobs, ingest_source
from flows.dbt import (
    DBT_DIR,
    NOT_IN_PRODUCTION,
    QUALITY_GATE,
    LogLine,
    NodeResult,
    dbt_args,
    dbt_session,
    prepare,
    read_run_results,
    run_dbt,
    save_parse_state,
    seed_partial_parse,
    show,
)
from flows.notify import notify_failure
from flows.retries import retry_if_transient
from ingestion.settings import Settings

if TYPE_CHECKING:  # the batch pipelines (Beam) are imported only by the tasks that run them
    from ingestion.batch.launch import LoadResult

Source = Literal["players", "store_items", "fx_rates"]
SOURCES: tuple[str, ...] = get_args(Source)  # the batch sources (ingestion.batch.launch.SOURCES)
Target = Literal["local", "bigquery"]
# the window loaded when none is given: every export the bucket holds
EARLIEST = date(2015, 1, 1)


class PipelineParameters(BaseModel):
    """The run's parameters, checked together before anything runs; an error names the parameter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Target = "local"
    sources: list[Source] = Field(default_factory=lambda: list(SOURCES))
    select: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    full_refresh: bool = False
    start: date | None = None
    end: date | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    freshness: bool = True
    dbt_timeout_s: int = Field(default=3600, gt=0)
    dataflow_timeout_s: int = Field(default=7200, gt=0)

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"sources: each source at most once, got {value}")
        return value

    @model_validator(mode="after")
    def _window(self) -> "PipelineParameters":
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start ({self.start}) is after end ({self.end})")
        reserved = {"start_date", "end_date"} & set(self.vars)
        if reserved:
            raise ValueError(f"vars: {sorted(reserved)} are set from start/end, not from vars")
        return self

    def window(self, today: date) -> tuple[date, date]:
        return self.start or EARLIEST, self.end or today + timedelta(days=1)


def dbt_run_dir(settings: Settings, run_id: str) -> Path:
    """dbt's target folder for one flow run: a flow retry finds the failed run's results there and
    resumes with `dbt retry`."""
    return settings.data_dir / "dbt-runs" / run_id


def prune_dbt_runs(settings: Settings, now: float | None = None) -> list[Path]:
    """Remove the dbt target folders of flow runs older than settings.dbt_runs_keep_days (a retry
    only ever resumes from its own run's recent folder); the shared parse state stays."""
    cutoff = (now if now is not None else time.time()) - settings.dbt_runs_keep_days * 86400
    runs = settings.data_dir / "dbt-runs"
    old = [p for p in runs.iterdir() if p.is_dir() and p.name != "parse-cache" and p.stat().st_mtime < cutoff] if runs.is_dir() else []
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


def resumable(target_path: Path) -> bool:
    """True when an earlier attempt of this flow run left dbt results with failures to resume from
    (`dbt retry` resumes builds and tests; source freshness is simply checked again)."""
    if not (target_path / "run_results.json").exists():
        return False
    return any(n.status in ("error", "fail", "skipped", "runtime error") for n in read_run_results(target_path))


def report_dbt_line(line: LogLine) -> None:
    """dbt's log goes to the task's log; each node's outcome also becomes a Prefect event
    (`dbt.node.<status>`, related to this flow and task run), so every model, seed and test is
    visible in the run's event feed and usable by automations."""
    logger = get_run_logger()
    logger.log({"warn": 30, "error": 40}.get(line.level, 20), line.message)
    if line.node and line.node.get("unique_id"):
        emit_event(
            event=f"dbt.node.{line.node.get('node_status', 'unknown')}",
            resource={"prefect.resource.id": f"dbt.{line.node['unique_id']}",
                      "prefect.resource.name": line.node.get("node_name", line.node["unique_id"]),
                      "dbt.resource_type": str(line.node.get("resource_type", ""))},
            payload={"relation": (line.node.get("node_relation") or {}).get("relation_name"),
                     "started_at": line.node.get("node_started_at"),
                     "finished_at": line.node.get("node_finished_at")},
        )


def parse_cache(settings: Settings) -> Path:
    """Where the latest dbt parse state is kept between flow runs (each run has its own target folder)."""
    return settings.data_dir / "dbt-runs" / "parse-cache" / settings.target


def seed_parse_state(target_path: Path, settings: Settings) -> None:
    seed_partial_parse(target_path, [target_path.parent / "build", parse_cache(settings), DBT_DIR / "target"])


def prepare_build(params: PipelineParameters, target_path: Path) -> None:
    """The flow run's dbt process parses the project for the build while the batch loads run, so
    that the build starts at once."""
    seed_parse_state(target_path, Settings(target=params.target))
    prepare(dbt_args("parse", target=params.target, target_path=target_path, start=params.start,
                     end=params.end, dbt_vars=params.vars))


def run_step(command: str, params: PipelineParameters, target_path: Path, **selection: Any) -> list[NodeResult]:
    settings = Settings(target=params.target)
    cache = parse_cache(settings)
    seed_parse_state(target_path, settings)
    if resumable(target_path):
        get_run_logger().info("resuming the failed %s of this flow run with `dbt retry`", command)
        args = ["retry", *dbt_args("retry", target=params.target, target_path=target_path)[1:]]
    else:
        args = dbt_args(command, target=params.target, target_path=target_path, start=params.start,
                        end=params.end, dbt_vars=params.vars, **selection)
    try:
        return run_dbt(args, settings, on_log=report_dbt_line, timeout_s=params.dbt_timeout_s)
    finally:
        save_parse_state(target_path, cache)


@task(name="prepare-landing")
def prepare_landing() -> None:
    """The local bronze: every table present, and the streamed tables' small files (one per
    message) compacted, so that dbt reads a few large files."""
    from ingestion.bronze import compact_local_bronze, ensure_local_bronze

    landing_dir = Settings().landing_dir
    ensure_local_bronze(landing_dir)
    merged = compact_local_bronze(landing_dir)
    get_run_logger().info("landing area compacted: %s files merged", merged)


@task(name="ingest-batch", task_run_name="ingest-{source}", retries=3, retry_delay_seconds=exponential_backoff(10),
      retry_jitter_factor=0.5, retry_condition_fn=retry_if_transient, persist_result=True)
def ingest_batch(source: str, start: date, end: date, params: PipelineParameters) -> LoadResult:
    return ingest_source(source, start, end, Settings(target=params.target), params.dataflow_timeout_s)


@task(name="dbt-build", persist_result=True)
def dbt_build(params: PipelineParameters, target_path: Path) -> list[NodeResult]:
    assets.preload()
    try:
        return run_step("build", params, target_path, select=params.select, exclude=[*params.exclude, QUALITY_GATE],
                        exclude_resource_types=NOT_IN_PRODUCTION, full_refresh=params.full_refresh)
    finally:  # what was built is an asset materialization even when other nodes failed
        assets.materialize_dbt_assets(target_path)


@task(name="dbt-test", persist_result=True)
def dbt_test(params: PipelineParameters, target_path: Path) -> list[NodeResult]:
    """The quality gate after the build: the reconciliation tests (tag quality_gate), which `dbt build`
    leaves out so that no test runs twice, and source freshness. Warnings are reported, not failures."""
    results = run_step("test", params, target_path / "test", select=[QUALITY_GATE])
    if params.freshness:
        results += run_step("source freshness", params, target_path / "freshness")
    return results


@task(name="publish-summary")
def publish_summary(loads: list[LoadResult], built: list[NodeResult], tested: list[NodeResult], target: str,
                    run_dir: Path | None = None, docs: bool = False) -> list[dict]:
    kpis = show("latest_daily_kpis", Settings(target=target), target=target, limit=200)
    published = report.publish_run_report(Settings(target=target), target, run_dir, str(flow_run.get_id() or "adhoc"), docs)
    latest = [row for row in kpis if kpis and row["activity_date"] == kpis[0]["activity_date"]]
    create_table_artifact(key="daily-kpis", table=[{k: "" if v is None else str(v) for k, v in r.items()} for r in latest],
                          description="KPIs of the latest day, per game")
    create_markdown_artifact(key="pipeline-run-summary", markdown=summary_markdown(loads, built, tested, kpis) + "\n\n" + published)
    return kpis


def summary_markdown(loads: list[LoadResult], built: list[NodeResult], tested: list[NodeResult], kpis: list[dict]) -> str:
    models = [n for n in built if n.resource_type in ("model", "seed", "snapshot")]
    tests = [n for n in built + tested if n.resource_type in ("test", "unit_test", "source")]
    lines = ["# Pipeline run", "", "## Batch ingestion", "", "| source | rows loaded | rows rejected | runner | job |", "|---|---|---|---|---|"]
    lines += [f"| {r.source} | {r.rows_loaded} | {r.rows_rejected} | {r.runner} | {job_link(r)} |" for r in loads]
    lines += ["", f"## dbt: {len(models)} models, {len(tests)} tests and checks", "", "| node | status | rows |", "|---|---|---|"]
    lines += [f"| {n.unique_id} | {n.status} | {'' if n.rows_affected is None else n.rows_affected} |" for n in models]
    by_status: dict[str, list[str]] = {}
    for n in tests:
        by_status.setdefault(n.status, []).append(n.unique_id)
    lines += [""] + [f"- {status}: {len(names)}" for status, names in sorted(by_status.items())]
    for status in ("warn", "fail", "error", "runtime error"):
        lines += [f"  - {status}: `{name}`" for name in by_status.get(status, [])]
    if kpis:
        latest = kpis[0]["activity_date"]
        lines += ["", f"## Headline KPIs, {latest}", "", "| game | " + " | ".join(k for k in kpis[0] if k not in ("activity_date", "game_id")) + " |"]
        lines += ["|---" * (len(kpis[0]) - 1) + "|"]
        lines += ["| " + " | ".join(str(v) for k, v in row.items() if k != "activity_date") + " |"
                  for row in kpis if row["activity_date"] == latest]
    return "\n".join(lines)


def job_link(load: LoadResult) -> str:
    return f"[{load.job_id}]({load.job_url})" if getattr(load, "job_url", None) else (load.job_id or "")


@flow(name="game-analytics-pipeline", log_prints=True, retries=Settings().flow_retries,
      retry_delay_seconds=Settings().flow_retry_delay_s,
      on_failure=[notify_failure], on_crashed=[notify_failure, cancel_dataflow_jobs],
      on_cancellation=[cancel_dataflow_jobs])
def game_analytics_pipeline(
    target: Target = "local",
    sources: list[Source] = list(SOURCES),
    select: list[str] = [],
    exclude: list[str] = [],
    full_refresh: bool = False,
    start: date | None = None,
    end: date | None = None,
    vars: dict[str, Any] = {},
    freshness: bool = True,
    notify_block: str | None = None,
    dbt_timeout_s: int = 3600,
    dataflow_timeout_s: int = 7200,
    docs: bool = False,
) -> list[dict]:
    """Load the batch sources, build the warehouse with dbt, gate it with the data-quality tests.

    `notify_block` names the notification block ("<type-slug>/<name>") failures are sent to;
    by default the one in the GA_NOTIFY_BLOCK setting. `docs` also publishes the dbt docs."""
    params = PipelineParameters(target=target, sources=sources, select=select, exclude=exclude,
                                full_refresh=full_refresh, start=start, end=end, vars=vars, freshness=freshness,
                                dbt_timeout_s=dbt_timeout_s, dataflow_timeout_s=dataflow_timeout_s)
    settings = Settings(target=params.target)
    window_start, window_end = params.window(date.today())
    run_dir = dbt_run_dir(settings, str(flow_run.get_id() or "adhoc"))
    # one dbt process for the build, the gate and the summary, starting (and parsing for the
    # build) while the batch loads run
    with dbt_session(settings):
        if pruned := prune_dbt_runs(settings):
            get_run_logger().info("removed %d dbt target folders older than %d days", len(pruned), settings.dbt_runs_keep_days)
        prepare_build(params, run_dir / "build")
        if params.target == "local":
            prepare_landing()
        futures = [ingest_batch.submit(source, window_start, window_end, params) for source in params.sources]
        wait(futures)
        loads = [f.result() for f in futures]
        built = dbt_build(params, run_dir / "build")
        tested = dbt_test(params, run_dir)
        return publish_summary(loads, built, tested, params.target, run_dir, docs)
