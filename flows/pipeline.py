"""The `game-analytics-pipeline` flow: batch ingestion (one task per source, concurrently), then
`dbt build`, then the `dbt test` quality gate, then a run summary. Orchestration only: rows move
in `ingestion/`, SQL lives in `dbt/`."""
from __future__ import annotations

import itertools
import shutil
import time
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterator, Literal, get_args

from prefect import flow, get_run_logger, task
from prefect.concurrency.sync import concurrency
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, WithJsonSchema, field_validator, model_validator

from flows import assets, report
from flows.batch import DEFAULT_MAX_REJECTED_SHARE, cancel_dataflow_jobs, ingest_source
from flows.dbt import (
    DBT_DIR,
    NOT_IN_PRODUCTION,
    QUALITY_GATE,
    SELECTOR_MAX_LENGTH,
    SELECTOR_PATTERN,
    LogLine,
    NodeResult,
    cancel_bigquery_jobs,
    dbt_args,
    dbt_session,
    prepare,
    read_run_results,
    run_dbt,
    check_selector,
    save_parse_state,
    seed_partial_parse,
    show,
)
from flows.notify import notify_failure
from flows.retries import is_transient, retry_if_transient
from common.settings import OrchestrationSettings as Settings

if TYPE_CHECKING:  # the batch pipelines (Beam) are imported only by the tasks that run them
    from ingestion.batch.launch import LoadResult

Source = Literal["players", "store_items", "fx_rates"]
SOURCES: tuple[str, ...] = get_args(Source)  # the batch sources (ingestion.batch.launch.SOURCES)
Target = Literal["local", "bigquery"]
# the window loaded when none is given: every export the bucket holds
EARLIEST = date(2015, 1, 1)

# one dbt selector (flows.dbt.check_selector); the deployment's parameter schema carries the same
# pattern, so the API refuses a bad one when the run is created
Selector = Annotated[str, AfterValidator(check_selector),
                     WithJsonSchema({"type": "string", "pattern": SELECTOR_PATTERN, "maxLength": SELECTOR_MAX_LENGTH})]


class DbtVars(BaseModel):
    """The dbt vars a run may set (declared in dbt_project.yml or read by the models), typed and
    bounded. start_date and end_date come from the run's start and end; bronze_tables is the
    project's, not a run's. The macros check each value again before it becomes a SQL literal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # hours of arrivals an incremental model reads again before its newest row
    arrival_lookback_hours: StrictInt | None = Field(default=None, ge=0, le=168)
    # the quality gate's reconciliations cover this many hours of arrivals (unset: all history)
    reconcile_hours: StrictInt | None = Field(default=None, ge=1, le=24 * 366)
    # source freshness warns when the newest event is older than this
    freshness_warn_hours: StrictInt | None = Field(default=None, ge=1, le=24 * 31)
    # a local build keeps only the last N days of events
    dev_days: StrictInt | None = Field(default=None, ge=1, le=3660)
    # the date dimension's span
    calendar_start: date | None = None
    calendar_end: date | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_reserved(cls, data: Any) -> Any:
        reserved = {"start_date", "end_date"} & set(data) if isinstance(data, dict) else set()
        if reserved:
            raise ValueError(f"vars: {sorted(reserved)} are set from start/end, not from vars")
        return data

    @model_validator(mode="after")
    def _calendar(self) -> "DbtVars":
        if self.calendar_start and self.calendar_end and self.calendar_start > self.calendar_end:
            raise ValueError(f"vars: calendar_start ({self.calendar_start}) is after calendar_end ({self.calendar_end})")
        return self

    def for_dbt(self) -> dict[str, Any]:
        """The vars that are set, as dbt's --vars takes them (dates as YYYY-MM-DD)."""
        return self.model_dump(mode="json", exclude_none=True)


class PipelineParameters(BaseModel):
    """The run's parameters, checked together before anything runs; an error names the parameter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Target = "local"
    sources: list[Source] = Field(default_factory=lambda: list(SOURCES))
    select: list[Selector] = Field(default_factory=list)
    exclude: list[Selector] = Field(default_factory=list)
    full_refresh: bool = False
    start: date | None = None
    end: date | None = None
    vars: DbtVars = Field(default_factory=DbtVars)
    freshness: bool = True
    dbt_timeout_s: int = Field(default=3600, gt=0)
    dataflow_timeout_s: int = Field(default=7200, gt=0)
    max_rejected_share: float = Field(default=DEFAULT_MAX_REJECTED_SHARE, ge=0, le=1)
    # without start: daily exports of the last batch_days days (a daily run) instead of every one
    batch_days: int | None = Field(default=None, gt=0)
    # only the exports new or changed since they were last loaded (an hourly run; local bronze)
    changed_only: bool = False
    # also publish the dbt docs next to the KPI report (the daily runs)
    docs: bool = False

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
        if self.changed_only and self.target != "local":
            raise ValueError("changed_only: the loaded exports' versions are kept in the local bronze; "
                             f"on target {self.target}, set batch_days instead")
        return self

    def window(self, today: date) -> tuple[date, date]:
        earliest = today - timedelta(days=self.batch_days) if self.batch_days else EARLIEST
        return self.start or earliest, self.end or today + timedelta(days=1)


# the Prefect global concurrency limit (1 slot) every run that writes the warehouse holds from its
# first write to its end, its own retries included
WAREHOUSE_LIMIT = "warehouse"
# a held slot is a lease the holder renews; a holder that died gives it up when the lease expires
WAREHOUSE_LEASE_S = 120.0


def ensure_warehouse_limit() -> None:
    """Create the warehouse limit with its one slot if the Prefect API has none yet."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(WAREHOUSE_LIMIT)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=WAREHOUSE_LIMIT, limit=1))
            except ObjectAlreadyExists:  # another run created it meanwhile
                pass


@contextmanager
def warehouse_lease(wait_s: float | None = None) -> Iterator[None]:
    """Hold the warehouse's one slot: another run waits here until this block ends. Unlike a
    deployment's or a work queue's limit, the slot stays held while the run waits for its retry,
    and it is not freed by the run's state (a zombie run marked Crashed keeps it until its process
    is gone and the lease expires). If the lease cannot be renewed, the holder stops."""
    ensure_warehouse_limit()
    with concurrency(WAREHOUSE_LIMIT, occupy=1, timeout_seconds=wait_s, strict=True,
                     lease_duration=WAREHOUSE_LEASE_S, raise_on_lease_renewal_failure=True):
        yield


def with_retries(attempt: Any, retries: int, delay_s: float, sleep: Any = time.sleep) -> Any:
    """Run attempt(), again after delay_s when it failed on a transient error (flows.retries), at most
    `retries` more times; any other failure (a failing data test, a FAILED Dataflow job) at once."""
    for number in itertools.count(1):
        try:
            return attempt()
        except Exception as error:
            if number > retries or not is_transient(error):
                raise
            get_run_logger().warning("attempt %d failed on a transient error, retrying in %s s: %s", number, delay_s, error)
            sleep(delay_s)


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
                     end=params.end, dbt_vars=params.vars.for_dbt()))


def run_step(command: str, params: PipelineParameters, target_path: Path, **selection: Any) -> list[NodeResult]:
    settings = Settings(target=params.target)
    cache = parse_cache(settings)
    seed_parse_state(target_path, settings)
    if resumable(target_path):
        get_run_logger().info("resuming the failed %s of this flow run with `dbt retry`", command)
        args = ["retry", *dbt_args("retry", target=params.target, target_path=target_path)[1:]]
    else:
        args = dbt_args(command, target=params.target, target_path=target_path, start=params.start,
                        end=params.end, dbt_vars=params.vars.for_dbt(), **selection)
    try:
        return run_dbt(args, settings, on_log=report_dbt_line, timeout_s=params.dbt_timeout_s)
    except TimeoutError:
        if params.target == "bigquery":  # what dbt could not cancel as it stopped
            cancel_bigquery_jobs(settings, str(flow_run.get_id() or "adhoc"))
        raise
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
    return ingest_source(source, start, end, Settings(target=params.target), params.dataflow_timeout_s,
                         params.max_rejected_share, params.changed_only)


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


def cancel_dbt_jobs(flow: object, flow_run: object, state: object) -> None:
    """Flow hook (cancelled or crashed run): cancel the BigQuery jobs its dbt started (their
    flow_run label), in case dbt could not."""
    parameters = getattr(flow_run, "parameters", None) or {}
    if parameters.get("target", "local") == "bigquery":
        cancelled = cancel_bigquery_jobs(Settings(target="bigquery"), str(getattr(flow_run, "id")))
        if cancelled:
            print(f"cancelled BigQuery jobs {cancelled} of flow run {getattr(flow_run, 'id')}")


# no Prefect flow retries: a run in AwaitingRetry would give up the warehouse; with_retries retries
# inside the run, holding it
@flow(name="game-analytics-pipeline", log_prints=True,
      on_failure=[notify_failure], on_crashed=[notify_failure, cancel_dataflow_jobs, cancel_dbt_jobs],
      on_cancellation=[cancel_dataflow_jobs, cancel_dbt_jobs])
def game_analytics_pipeline(
    target: Target = "local",
    sources: list[Source] = list(SOURCES),
    select: list[Selector] = [],
    exclude: list[Selector] = [],
    full_refresh: bool = False,
    start: date | None = None,
    end: date | None = None,
    vars: DbtVars = DbtVars(),
    freshness: bool = True,
    notify_block: str | None = None,
    dbt_timeout_s: int = 3600,
    dataflow_timeout_s: int = 7200,
    max_rejected_share: float = DEFAULT_MAX_REJECTED_SHARE,
    batch_days: int | None = None,
    changed_only: bool = False,
    docs: bool = False,
) -> list[dict]:
    """Load the batch sources, build the warehouse with dbt, gate it with the data-quality tests.

    `notify_block` names the notification block ("<type-slug>/<name>") failures are sent to;
    by default the one in the GA_NOTIFY_BLOCK setting. `docs` also publishes the dbt docs."""
    params = PipelineParameters(target=target, sources=sources, select=select, exclude=exclude,
                                full_refresh=full_refresh, start=start, end=end, vars=vars, freshness=freshness,
                                dbt_timeout_s=dbt_timeout_s, dataflow_timeout_s=dataflow_timeout_s,
                                max_rejected_share=max_rejected_share, batch_days=batch_days,
                                changed_only=changed_only, docs=docs)
    settings = Settings(target=params.target)
    with warehouse_lease():
        return with_retries(lambda: build(params, settings), settings.flow_retries, settings.flow_retry_delay_s)


def build(params: PipelineParameters, settings: Settings) -> list[dict]:
    """One attempt of the run, its warehouse slot held."""
    run_id = str(flow_run.get_id() or "adhoc")
    if params.target == "bigquery" and (orphans := cancel_bigquery_jobs(settings)):
        # jobs of an earlier run that stopped without cancelling them: nothing else writes now
        get_run_logger().warning("cancelled BigQuery jobs %s left running by an earlier flow run", orphans)
    window_start, window_end = params.window(date.today())
    run_dir = dbt_run_dir(settings, run_id)
    # one dbt process for the build, the gate and the summary, starting (and parsing for the
    # build) while the batch loads run
    with dbt_session(settings, run_id):
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
        return publish_summary(loads, built, tested, params.target, run_dir, params.docs)
