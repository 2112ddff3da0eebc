"""Batch ingestion of one source, as the flow runs it: locally the pipeline runs in-process and
returns when done; on Google Cloud the Flex Template job is launched, its link published, and the
job watched until it ends. A job is cancelled whenever its watcher stops early (task timeout,
flow cancellation, crash), so no Dataflow job outlives its task."""
from __future__ import annotations

import time
from datetime import date
from typing import TYPE_CHECKING

from prefect import get_run_logger
from prefect.artifacts import create_link_artifact
from prefect.runtime import flow_run

from flows import gcp
from common.settings import OrchestrationSettings

if TYPE_CHECKING:
    from ingestion.batch.dataflow import JobsClient
    from ingestion.batch.launch import LoadResult


class DataflowJobFailed(RuntimeError):
    """The Dataflow job ended without succeeding (failed, cancelled or drained)."""


FIRST_POLL_S = 5.0


def poll_delays(first_s: float | None = None, factor: float = 1.5, max_s: float = 60):
    """Seconds to wait between two polls: growing from first_s by factor, capped at max_s."""
    delay = FIRST_POLL_S if first_s is None else first_s
    while True:
        yield delay
        delay = min(delay * factor, max_s)


def wait_for_job(job_id: str, settings: OrchestrationSettings, timeout_s: float, sleep=time.sleep) -> str:
    """Poll the job until it ends; return its final state name, raise DataflowJobFailed when it did
    not succeed. The job is cancelled when the wait stops for any other reason (timeout included)."""
    from ingestion.batch import dataflow

    logger = get_run_logger()
    deadline = time.monotonic() + timeout_s
    finished = False
    try:
        for delay in poll_delays():
            state = dataflow.get_job_state(job_id, settings, gcp.jobs_client(settings))
            outcome = dataflow.outcome(state)
            logger.info("Dataflow job %s: %s", job_id, state.name)
            if outcome != dataflow.RUNNING:
                finished = True
                if outcome != dataflow.SUCCEEDED:
                    raise DataflowJobFailed(f"Dataflow job {job_id} ended {state.name}")
                return state.name
            if time.monotonic() + delay > deadline:
                raise TimeoutError(f"Dataflow job {job_id} still running after {timeout_s:.0f} s")
            sleep(delay)
    except BaseException:
        if not finished:
            logger.warning("cancelling Dataflow job %s", job_id)
            dataflow.cancel_job(job_id, settings, gcp.jobs_client(settings))
        raise
    raise AssertionError("unreachable")


DEFAULT_MAX_REJECTED_SHARE = 0.05


def report_load(result: LoadResult, max_rejected_share: float) -> LoadResult:
    """Log the load's counts and fail (LoadRejected, with the main rejection kinds) when it
    rejected more than ``max_rejected_share`` of its rows or loaded none from a non-empty source."""
    from ingestion.batch.load import check_load

    logger = get_run_logger()
    if result.rows_read is None:
        logger.warning("%s: the %s load reported no row counts", result.source, result.runner)
    else:
        reasons = ", ".join(f"{kind} {rows}" for kind, rows in sorted(result.rejection_reasons.items()))
        logger.info("%s: %d rows read, %s loaded, %s rejected%s (%s)", result.source, result.rows_read,
                    result.rows_loaded, result.rows_rejected, f" ({reasons})" if reasons else "", result.runner)
    check_load(result, max_rejected_share)
    return result


def ingest_source(source: str, start: date, end: date, settings: OrchestrationSettings, timeout_s: float,
                  max_rejected_share: float = DEFAULT_MAX_REJECTED_SHARE, only_changed: bool = False) -> LoadResult:
    # Beam and the Google clients load only where a batch load runs, not with every flow
    from ingestion.batch import dataflow
    from ingestion.batch.launch import DataflowLaunch, dataflow_result, launch

    run_id = str(flow_run.get_id() or "adhoc")
    templates, jobs = (gcp.templates_client(settings), gcp.jobs_client(settings)) if settings.target != "local" else (None, None)
    if jobs is not None:
        cancel_jobs_of_ended_runs(settings, run_id, jobs)
    result = launch(source, start, end, settings, run_id=run_id, templates=templates, jobs=jobs, only_changed=only_changed)
    if not isinstance(result, DataflowLaunch):  # ran to the end in this process
        return report_load(result, max_rejected_share)
    url = dataflow.console_url(settings.gcp_project or "", settings.gcp_region, result.job_id)
    create_link_artifact(link=url, link_text=f"Dataflow job {result.job_id}", key=f"dataflow-{source.replace('_', '-')}",
                         description=f"Batch ingestion of {source}, {start} to {end}")
    wait_for_job(result.job_id, settings, timeout_s)
    counts = dataflow.job_counts(result.job_id, settings, gcp.metrics_client(settings))
    return report_load(dataflow_result(result, counts), max_rejected_share)


def cancel_jobs_of_ended_runs(settings: OrchestrationSettings, current_run_id: str, client: JobsClient | None = None) -> list[str]:
    """Cancel the active Dataflow jobs of flow runs that have ended (Crashed, Cancelled, Failed,
    Completed) on this Prefect server; return their ids.

    The hooks below cancel a run's jobs when its process can run them, or its supervisor can (the
    process worker and runner run the crash hook after a kill). On Kubernetes nothing runs a hook
    for a pod that is OOM-killed or evicted: the observer only marks the run Crashed. Every run on
    Dataflow therefore first sweeps such jobs, before launching its own. Jobs of runs this server
    does not know (another environment in the same project) are left alone."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from ingestion.batch import dataflow

    jobs = dataflow.jobs_for(settings, client)
    cancelled: list[str] = []
    with get_client(sync_client=True) as prefect:
        for run_id, job_ids in dataflow.active_jobs_by_run(settings, jobs.client).items():
            if run_id == current_run_id.lower():
                continue
            try:
                state = prefect.read_flow_run(UUID(run_id)).state
            except ObjectNotFound:
                continue
            if state is None or not state.is_final():
                continue
            get_run_logger().warning("cancelling Dataflow jobs %s of flow run %s, which ended %s",
                                     job_ids, run_id, state.name)
            for job_id in job_ids:
                jobs.cancel_job(job_id)
            cancelled += job_ids
    return cancelled


def cancel_dataflow_jobs(flow: object, flow_run: object, state: object) -> None:
    """Flow hook (cancelled or crashed run): cancel the Dataflow jobs this run launched, found by
    their names, since their watching tasks may not have had the chance to."""
    from ingestion.batch import dataflow

    parameters = getattr(flow_run, "parameters", None) or {}
    if parameters.get("target", "local") == "local":
        return
    settings = OrchestrationSettings(target=parameters["target"])
    cancelled = dataflow.cancel_run_jobs(str(getattr(flow_run, "id")), settings, gcp.jobs_client(settings))
    if cancelled:
        print(f"cancelled Dataflow jobs {cancelled} of flow run {getattr(flow_run, 'id')}")
