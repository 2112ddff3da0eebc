"""The `game-analytics-pipeline` flow, step by step: batch ingestion (one task per source,
concurrently), then `dbt build`, then the `dbt test` quality gate, then the run summary and the KPI
report. Orchestration only: rows move in `ingestion/`, SQL lives in `dbt/`."""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger, task
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from flows import assets, publish
from flows.batch import cancel_dataflow_jobs, ingest_source
from flows.dbt import NOT_IN_PRODUCTION, QUALITY_GATE, NodeResult, dbt_args, dbt_session, prepare, run_dbt
from flows.dbt_runs import (cancel_bigquery_jobs, cancel_dbt_jobs, dbt_run_dir, parse_cache, prune_dbt_runs, resumable,
                            save_parse_state, seed_parse_state)
from flows.events import report_dbt_line
from flows.notify import notify_failure
from flows.parameters import PipelineParameters, declared_by
from flows.retries import retry_if_transient
from flows.warehouse import warehouse_lease, with_retries
from common.settings import OrchestrationSettings

if TYPE_CHECKING:  # the batch pipelines (Beam) are imported only by the tasks that run them
    from ingestion.batch.launch import LoadResult


# no Prefect flow retries: a run in AwaitingRetry would give up the warehouse; with_retries retries
# inside the run, holding it
@flow(name="game-analytics-pipeline", log_prints=True,
      on_failure=[notify_failure], on_crashed=[notify_failure, cancel_dataflow_jobs, cancel_dbt_jobs],
      on_cancellation=[cancel_dataflow_jobs, cancel_dbt_jobs])
@declared_by(PipelineParameters)
def game_analytics_pipeline(**parameters: Any) -> list[dict]:
    """Load the batch sources, build the warehouse with dbt, gate it with the data-quality tests,
    publish the run's summary and KPI report. Its parameters: flows.parameters.PipelineParameters."""
    params = PipelineParameters(**parameters)
    settings = OrchestrationSettings(target=params.target)
    with warehouse_lease():
        return with_retries(lambda: build(params, settings), settings.flow_retries, settings.flow_retry_delay_s)


def build(params: PipelineParameters, settings: OrchestrationSettings) -> list[dict]:
    """One attempt of the run, its warehouse slot held."""
    if params.target == "bigquery" and (orphans := cancel_bigquery_jobs(settings)):
        # jobs of an earlier run that stopped without cancelling them: nothing else writes now
        get_run_logger().warning("cancelled BigQuery jobs %s left running by an earlier flow run", orphans)
    window_start, window_end = params.window(date.today())
    run = run_id()
    run_dir = dbt_run_dir(settings, run)
    # one dbt process for the build, the gate and the summary, starting (and parsing for the
    # build) while the batch loads run
    with dbt_session(settings, run):
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


@task(name="prepare-landing")
def prepare_landing() -> None:
    """The local bronze: every table present, and the streamed tables' small files (one per
    message) compacted, so that dbt reads a few large files."""
    from ingestion.bronze import compact_local_bronze, ensure_local_bronze

    landing_dir = OrchestrationSettings().landing_dir
    ensure_local_bronze(landing_dir)
    merged = compact_local_bronze(landing_dir)
    get_run_logger().info("landing area compacted: %s files merged", merged)


@task(name="ingest-batch", task_run_name="ingest-{source}", retries=3, retry_delay_seconds=exponential_backoff(10),
      retry_jitter_factor=0.5, retry_condition_fn=retry_if_transient, persist_result=True)
def ingest_batch(source: str, start: date, end: date, params: PipelineParameters) -> LoadResult:
    return ingest_source(source, start, end, OrchestrationSettings(target=params.target), params.dataflow_timeout_s,
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
    return publish.publish_run_summary(loads, built, tested, OrchestrationSettings(target=target), run_dir, run_id(), docs)


def run_id() -> str:
    return str(flow_run.get_id() or "adhoc")


def prepare_build(params: PipelineParameters, target_path: Path) -> None:
    """The flow run's dbt process parses the project for the build while the batch loads run, so
    that the build starts at once."""
    seed_parse_state(target_path, OrchestrationSettings(target=params.target))
    prepare(dbt_args("parse", target=params.target, target_path=target_path, start=params.start,
                     end=params.end, dbt_vars=params.vars.for_dbt()))


def run_step(command: str, params: PipelineParameters, target_path: Path, **selection: Any) -> list[NodeResult]:
    settings = OrchestrationSettings(target=params.target)
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
            cancel_bigquery_jobs(settings, run_id())
        raise
    finally:
        save_parse_state(target_path, cache)
