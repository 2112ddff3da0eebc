"""Dataflow through Google's client (``google-cloud-dataflow-client``): launching the batch load's
Flex Template (once per run, source and window), reading a job's state and row counts, cancelling
it. Pure request building around a thin layer of calls; the clients are injected, so orchestration
code and tests choose them."""
from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from enum import Enum
from typing import Any, Protocol

from google.api_core.exceptions import Conflict
from google.cloud.dataflow_v1beta3 import (
    FlexTemplateRuntimeEnvironment,
    GetJobMetricsRequest,
    GetJobRequest,
    Job,
    JobMetrics,
    JobState,
    JobView,
    LaunchFlexTemplateParameter,
    LaunchFlexTemplateRequest,
    ListJobsRequest,
    UpdateJobRequest,
)

from ingestion.batch.metrics import NAMESPACE, RowCounts, row_counts
from ingestion.settings import Settings

# Job.name in google.cloud.dataflow_v1beta3: "must match [a-z]([-a-z0-9]{0,1022}[a-z0-9])?"
JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,1022}[a-z0-9])?$")
LABEL_VALUE_MAX = 63
APP_LABEL = "game-analytics"


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
    return f"ga-{part}-"


def job_name(source: str, start: date, end: date, run_id: str | None = None) -> str:
    """``ga-<run id>-<source>-<start yyyymmdd>-<end yyyymmdd>``: the same name for every launch of
    one run's load of one window, so a retried launch finds the job an earlier attempt started.
    Without a run id (an ad-hoc launch) the run part is random: such launches are not deduplicated."""
    prefix = run_prefix(run_id) if run_id else f"ga-adhoc-{uuid.uuid4().hex[:12]}-"
    name = f"{prefix}{name_part(source)}-{start:%Y%m%d}-{end:%Y%m%d}"
    if not JOB_NAME.match(name):
        raise ValueError(f"job name {name!r} is not a valid Dataflow job name")
    return name


def label_value(text: str) -> str:
    """A GCP label value: lowercase letters, digits, '-' and '_', at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:LABEL_VALUE_MAX]


def job_labels(source: str, run_id: str | None) -> dict[str, str]:
    labels = {"app": APP_LABEL, "source": label_value(source)}
    if run_id:
        labels["run_id"] = label_value(run_id)
    return labels


@dataclass(frozen=True)
class FlexLaunch:
    """What one launch of the batch load's Flex Template needs."""

    project: str
    region: str
    template_path: str  # gs://.../batch-load.json, written by `gcloud dataflow flex-template build`
    job_name: str
    parameters: Mapping[str, str]
    labels: Mapping[str, str] = field(default_factory=dict)
    temp_location: str | None = None
    service_account: str | None = None
    max_workers: int | None = None
    sdk_container_image: str = ""


def launch_request(launch: FlexLaunch) -> LaunchFlexTemplateRequest:
    # Without the project's image the workers would run Beam's stock SDK image, which lacks the
    # ``ingestion`` package and its libraries: every bundle would fail on the workers.
    if not launch.sdk_container_image:
        raise ValueError(f"Dataflow job {launch.job_name!r} needs the batch load's SDK container image "
                         "(GA_DATAFLOW_SDK_IMAGE, the image the Flex Template was built from)")
    # staging next to the temp files: unset, Dataflow would create a default bucket of its own,
    # outside the buckets the set-up creates and grants
    staging = f"{launch.temp_location.rstrip('/').rsplit('/', 1)[0]}/staging" if launch.temp_location else ""
    environment = FlexTemplateRuntimeEnvironment(
        temp_location=launch.temp_location or "",
        staging_location=staging,
        service_account_email=launch.service_account or "",
        max_workers=launch.max_workers or 0,
        additional_user_labels=dict(launch.labels),
        sdk_container_image=launch.sdk_container_image,
    )
    return LaunchFlexTemplateRequest(
        project_id=launch.project,
        location=launch.region,
        launch_parameter=LaunchFlexTemplateParameter(
            job_name=launch.job_name,
            container_spec_gcs_path=launch.template_path,
            parameters=dict(launch.parameters),
            environment=environment,
        ),
    )


class TemplatesClient(Protocol):
    def launch_flex_template(self, request: LaunchFlexTemplateRequest) -> Any: ...


class JobsClient(Protocol):
    def get_job(self, request: GetJobRequest) -> Job: ...

    def update_job(self, request: UpdateJobRequest) -> Job: ...

    def list_jobs(self, request: ListJobsRequest) -> Iterable[Job]: ...


class MetricsClient(Protocol):
    def get_job_metrics(self, request: GetJobMetricsRequest) -> JobMetrics: ...


def launch_flex_template(client: TemplatesClient, launch: FlexLaunch) -> str:
    """Launch the template; returns the new job's id without waiting for the job."""
    response = client.launch_flex_template(request=launch_request(launch))
    job_id = response.job.id
    if not job_id:
        raise RuntimeError(f"Dataflow accepted job {launch.job_name!r} in {launch.project}/{launch.region} "
                           "but returned no job id")
    return str(job_id)


def launch_once(templates: TemplatesClient, jobs: DataflowJobs, launch: FlexLaunch) -> str:
    """The id of the job running this load (``launch.job_name``: one name per run, source and
    window), launching it only when no such job is active.

    A launch whose response was lost (a timeout, a 503 after the job was created) is retried with
    the same name: the lookup finds the job the first attempt started. Dataflow refuses a second
    active job of one name with ALREADY_EXISTS (409, :class:`Conflict`) when the lookup missed it
    (a job listed a moment late): that job is adopted as well. A job being cancelled or drained
    (its watcher gave up on it) is not adopted, and it still holds its name: the new job is named
    ``<name>-2`` (``-3``, ...)."""
    def same_load() -> list[Job]:
        return [job for job in jobs.active_jobs()
                if job.name == launch.job_name or job.name.startswith(f"{launch.job_name}-")]

    def running(found: list[Job]) -> str | None:
        return next((str(job.id) for job in found if job.current_state not in GOING_AWAY), None)

    found = same_load()
    if (job_id := running(found)) is not None:
        return job_id
    taken = {job.name for job in found}
    names = [launch.job_name, *(f"{launch.job_name}-{n}" for n in range(2, len(taken) + 2))]
    name = next(name for name in names if name not in taken)
    try:
        return launch_flex_template(templates, replace(launch, job_name=name))
    except Conflict:
        if (job_id := running(same_load())) is None:
            raise
        return job_id


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


def jobs_for(settings: Settings, client: JobsClient | None = None) -> DataflowJobs:
    """The jobs of ``settings.gcp_project`` in ``settings.gcp_region`` (Google's client unless given)."""
    if not settings.gcp_project:
        raise ValueError("Dataflow jobs need GA_GCP_PROJECT")
    if client is None:
        from google.cloud.dataflow_v1beta3 import JobsV1Beta3Client

        client = JobsV1Beta3Client()
    return DataflowJobs(client, settings.gcp_project, settings.gcp_region)


def get_job_state(job_id: str, settings: Settings, client: JobsClient | None = None) -> JobState:
    return jobs_for(settings, client).get_job_state(job_id)


RUN_JOB = re.compile(r"^ga-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-")


def active_jobs_by_run(settings: Settings, client: JobsClient | None = None) -> dict[str, list[str]]:
    """The active jobs launched for orchestration runs (named after a run id), by run id; jobs
    already being cancelled are left out."""
    by_run: dict[str, list[str]] = {}
    for job in jobs_for(settings, client).active_jobs():
        match = RUN_JOB.match(job.name)
        if match and job.current_state not in GOING_AWAY:
            by_run.setdefault(match.group(1), []).append(str(job.id))
    return by_run


def cancel_run_jobs(run_id: str, settings: Settings, client: JobsClient | None = None) -> list[str]:
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


def job_counts(job_id: str, settings: Settings, client: MetricsClient | None = None) -> RowCounts:
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


def cancel_job(job_id: str, settings: Settings, client: JobsClient | None = None) -> None:
    """Request cancellation (``update_job`` with requested_state JOB_STATE_CANCELLED); returns at once."""
    jobs_for(settings, client).cancel_job(job_id)


def default_templates_client() -> TemplatesClient:
    from google.cloud.dataflow_v1beta3 import FlexTemplatesServiceClient

    return FlexTemplatesServiceClient()


