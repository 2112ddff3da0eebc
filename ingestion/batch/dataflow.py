"""A batch load's jobs on Dataflow, through Google's client (``google-cloud-dataflow-client``):
their state and what it means to orchestration, the jobs of one orchestration run (found by name),
cancelling, and a finished job's row counts. Launching: ingestion/batch/flex_template.py. The
clients are injected, so orchestration code and tests choose them."""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from google.cloud.dataflow_v1beta3 import (
    GetJobMetricsRequest,
    GetJobRequest,
    Job,
    JobMetrics,
    JobState,
    JobView,
    ListJobsRequest,
    UpdateJobRequest,
)

from ingestion.batch.metrics import NAMESPACE, RowCounts, row_counts
from common.settings import BatchSettings

JOB_PREFIX = "ga-"  # every job the platform launches is named ga-...


class Outcome(str, Enum):
    """What orchestration needs to know of a job."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


RUNNING, SUCCEEDED, FAILED, CANCELLED = Outcome.RUNNING, Outcome.SUCCEEDED, Outcome.FAILED, Outcome.CANCELLED

# Every JobState, decided on purpose. Not terminal → running, so a caller keeps polling.
OUTCOMES: Mapping[JobState, Outcome] = {
    JobState.JOB_STATE_UNKNOWN: Outcome.RUNNING,  # not known yet: ask again
    JobState.JOB_STATE_STOPPED: Outcome.RUNNING,  # created, not started yet
    JobState.JOB_STATE_PENDING: Outcome.RUNNING,
    JobState.JOB_STATE_QUEUED: Outcome.RUNNING,  # FlexRS: waiting for resources
    JobState.JOB_STATE_RUNNING: Outcome.RUNNING,
    JobState.JOB_STATE_RESOURCE_CLEANING_UP: Outcome.RUNNING,  # not final until the resources are gone
    JobState.JOB_STATE_CANCELLING: Outcome.RUNNING,  # becomes CANCELLED
    JobState.JOB_STATE_DRAINING: Outcome.RUNNING,  # becomes DRAINED
    JobState.JOB_STATE_PAUSING: Outcome.RUNNING,
    JobState.JOB_STATE_PAUSED: Outcome.RUNNING,  # can resume; not an end
    JobState.JOB_STATE_DONE: Outcome.SUCCEEDED,  # a batch job finished all its work
    JobState.JOB_STATE_FAILED: Outcome.FAILED,
    JobState.JOB_STATE_CANCELLED: Outcome.CANCELLED,
    # stopped before reading all its input: a batch load that did not complete, whatever it wrote
    JobState.JOB_STATE_DRAINED: Outcome.CANCELLED,
    # replaced by another job (streaming updates): this job did not complete its load
    JobState.JOB_STATE_UPDATED: Outcome.CANCELLED,
}


# active, but already told to stop: never adopted, never cancelled again
GOING_AWAY: frozenset[JobState] = frozenset({JobState.JOB_STATE_CANCELLING, JobState.JOB_STATE_DRAINING})


def outcome(state: JobState | int) -> Outcome:
    """The outcome of any job state; a state this client does not know yet counts as running."""
    try:
        return OUTCOMES.get(JobState(state), Outcome.RUNNING)
    except ValueError:
        return Outcome.RUNNING


def console_url(project: str, region: str, job_id: str) -> str:
    return f"https://console.cloud.google.com/dataflow/jobs/{region}/{job_id}?project={project}"


def name_part(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def run_prefix(run_id: str) -> str:
    """The start of the name of every job launched for the orchestration run ``run_id``. Job
    summaries (all that ``list_jobs`` returns) carry names but no labels, so the run's jobs are
    found by this prefix."""
    part = name_part(run_id)
    if not part:
        raise ValueError(f"run id {run_id!r} has no letter or digit to name a job with")
    return f"{JOB_PREFIX}{part}-"


class JobsClient(Protocol):
    def get_job(self, request: GetJobRequest) -> Job: ...

    def update_job(self, request: UpdateJobRequest) -> Job: ...

    def list_jobs(self, request: ListJobsRequest) -> Iterable[Job]: ...


class MetricsClient(Protocol):
    def get_job_metrics(self, request: GetJobMetricsRequest) -> JobMetrics: ...


@dataclass(frozen=True)
class DataflowJobs:
    """A project's Dataflow jobs in one region, through an injected JobsV1Beta3Client."""

    client: JobsClient
    project: str
    region: str

    def get_job_state(self, job_id: str) -> JobState:
        job = self.client.get_job(
            request=GetJobRequest(project_id=self.project, location=self.region, job_id=job_id,
                                  view=JobView.JOB_VIEW_SUMMARY)
        )
        return JobState(job.current_state)

    def get_outcome(self, job_id: str) -> Outcome:
        return outcome(self.get_job_state(job_id))

    def active_jobs(self) -> list[Job]:
        """Summaries of the active jobs. A summary carries the job's id, name and state, never its
        labels (``ListJobsRequest.view`` is deprecated: "ListJobs always returns summaries")."""
        request = ListJobsRequest(project_id=self.project, location=self.region,
                                  filter=ListJobsRequest.Filter.ACTIVE)
        return list(self.client.list_jobs(request=request))

    def cancel_job(self, job_id: str) -> None:
        self.client.update_job(
            request=UpdateJobRequest(
                project_id=self.project,
                location=self.region,
                job_id=job_id,
                job=Job(requested_state=JobState.JOB_STATE_CANCELLED),
            )
        )

    def console_url(self, job_id: str) -> str:
        return console_url(self.project, self.region, job_id)


def jobs_for(settings: BatchSettings, client: JobsClient | None = None) -> DataflowJobs:
    """The jobs of ``settings.gcp_project`` in ``settings.gcp_region`` (Google's client unless given)."""
    if not settings.gcp_project:
        raise ValueError("Dataflow jobs need GA_GCP_PROJECT")
    if client is None:
        from google.cloud.dataflow_v1beta3 import JobsV1Beta3Client

        client = JobsV1Beta3Client()
    return DataflowJobs(client, settings.gcp_project, settings.gcp_region)


def get_job_state(job_id: str, settings: BatchSettings, client: JobsClient | None = None) -> JobState:
    return jobs_for(settings, client).get_job_state(job_id)


RUN_JOB = re.compile("^" + JOB_PREFIX + r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-")


def active_jobs_by_run(settings: BatchSettings, client: JobsClient | None = None) -> dict[str, list[str]]:
    """The active jobs launched for orchestration runs (named after a run id), by run id; jobs
    already being cancelled are left out."""
    by_run: dict[str, list[str]] = {}
    for job in jobs_for(settings, client).active_jobs():
        match = RUN_JOB.match(job.name)
        if match and job.current_state not in GOING_AWAY:
            by_run.setdefault(match.group(1), []).append(str(job.id))
    return by_run


def cancel_run_jobs(run_id: str, settings: BatchSettings, client: JobsClient | None = None) -> list[str]:
    """Cancel every active job launched for ``run_id`` (found by its name prefix); return their ids.
    Used when the whole orchestration run is cancelled or crashes, so no job outlives it."""
    jobs = jobs_for(settings, client)
    prefix = run_prefix(run_id)
    mine = [str(job.id) for job in jobs.active_jobs()
            if job.name.startswith(prefix) and job.current_state not in GOING_AWAY]
    for job_id in mine:
        jobs.cancel_job(job_id)
    return mine


def counts_from_metrics(job_id: str, metrics: JobMetrics) -> RowCounts:
    """The job's committed ``ga_batch`` counters, summed over the steps that report them.

    Dataflow reports a Beam counter as MetricUpdates of origin ``user`` with the context
    ``{namespace, step}``, once committed and once more with ``tentative: "true"`` (including the
    attempts of retried bundles); only committed values count rows exactly once. A counter never
    incremented is not reported: it is zero (an empty source reads no row). A job that reports no
    metric at all has not reported yet, which is an error rather than zero rows."""
    if not metrics.metrics:
        raise RuntimeError(f"Dataflow job {job_id} reported no metrics; its row counts are unknown")
    totals: dict[str, int] = {}
    for update in metrics.metrics:
        name = update.name
        if (name.origin != "user" or name.context.get("namespace") != NAMESPACE
                or name.context.get("tentative") == "true"):
            continue
        totals[name.name] = totals.get(name.name, 0) + int(update.scalar or 0)
    return row_counts(totals)


def job_counts(job_id: str, settings: BatchSettings, client: MetricsClient | None = None) -> RowCounts:
    """The row counts of a finished job, read with ``MetricsV1Beta3Client.get_job_metrics``."""
    if not settings.gcp_project:
        raise ValueError("Dataflow jobs need GA_GCP_PROJECT")
    if client is None:
        from google.cloud.dataflow_v1beta3 import MetricsV1Beta3Client

        client = MetricsV1Beta3Client()
    metrics = client.get_job_metrics(
        request=GetJobMetricsRequest(project_id=settings.gcp_project, location=settings.gcp_region, job_id=job_id)
    )
    return counts_from_metrics(job_id, metrics)


def cancel_job(job_id: str, settings: BatchSettings, client: JobsClient | None = None) -> None:
    """Request cancellation (``update_job`` with requested_state JOB_STATE_CANCELLED); returns at once."""
    jobs_for(settings, client).cancel_job(job_id)
