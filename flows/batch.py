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
from ingestion.settings import Settings

if TYPE_CHECKING:
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


def wait_for_job(job_id: str, settings: Settings, timeout_s: float, sleep=time.sleep) -> str:
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


def ingest_source(source: str, start: date, end: date, settings: Settings, timeout_s: float) -> LoadResult:
    # Beam and the Google clients load only where a batch load runs, not with every flow
    from ingestion.batch import dataflow
    from ingestion.batch.launch import launch

    templates = gcp.templates_client(settings) if settings.target != "local" else None
    result = launch(source, start, end, settings, run_id=str(flow_run.get_id() or "adhoc"), templates=templates)
    if result.job_id is None:  # ran to the end in this process
        get_run_logger().info("%s: %d rows loaded, %d rejected (%s)", source, result.rows_loaded,
                              result.rows_rejected, result.runner)
        return result
    url = dataflow.console_url(settings.gcp_project or "", settings.gcp_region, result.job_id)
    create_link_artifact(link=url, link_text=f"Dataflow job {result.job_id}", key=f"dataflow-{source.replace('_', '-')}",
                         description=f"Batch ingestion of {source}, {start} to {end}")
    wait_for_job(result.job_id, settings, timeout_s)
    return result


def cancel_dataflow_jobs(flow: object, flow_run: object, state: object) -> None:
    """Flow hook (cancelled or crashed run): cancel the Dataflow jobs this run launched, found by
    their run_id label, since their watching tasks may not have had the chance to."""
    from ingestion.batch import dataflow

    parameters = getattr(flow_run, "parameters", None) or {}
    if parameters.get("target", "local") == "local":
        return
    settings = Settings(target=parameters["target"])
    cancelled = dataflow.cancel_run_jobs(str(getattr(flow_run, "id")), settings, gcp.jobs_client(settings))
    if cancelled:
        print(f"cancelled Dataflow jobs {cancelled} of flow run {getattr(flow_run, 'id')}")
