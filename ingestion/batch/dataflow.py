"""Dataflow through Google's client (``google-cloud-dataflow-client``): launching the batch load's
Flex Template, reading a job's state, cancelling it. Pure request building around a thin layer of
calls; the clients are injected, so orchestration code and tests choose them."""
from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Protocol

from google.cloud.dataflow_v1beta3 import (
    ListJobsRequest,
    FlexTemplateRuntimeEnvironment,
    GetJobRequest,
    Job,
    JobState,
    JobView,
    LaunchFlexTemplateParameter,
    LaunchFlexTemplateRequest,
    UpdateJobRequest,
)

from ingestion.settings import Settings

JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
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


def outcome(state: JobState | int) -> Outcome:
    """The outcome of any job state; a state this client does not know yet counts as running."""
    try:
        return OUTCOMES.get(JobState(state), Outcome.RUNNING)
    except ValueError:
        return Outcome.RUNNING


def console_url(project: str, region: str, job_id: str) -> str:
    return f"https://console.cloud.google.com/dataflow/jobs/{region}/{job_id}?project={project}"


def job_name(source: str, now: datetime, suffix: str | None = None) -> str:
    """``ga-<source>-<UTC yyyymmdd-hhmmss>-<8 hex>``: unique, and valid for Dataflow."""
    tag = suffix or uuid.uuid4().hex[:8]
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = f"ga-{re.sub(r'[^a-z0-9]+', '-', source.lower())}-{stamp}-{tag}"
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
    sdk_container_image: str | None = None


def launch_request(launch: FlexLaunch) -> LaunchFlexTemplateRequest:
    environment = FlexTemplateRuntimeEnvironment(
        temp_location=launch.temp_location or "",
        service_account_email=launch.service_account or "",
        max_workers=launch.max_workers or 0,
        additional_user_labels=dict(launch.labels),
        sdk_container_image=launch.sdk_container_image or "",
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


def launch_flex_template(client: TemplatesClient, launch: FlexLaunch) -> str:
    """Launch the template; returns the new job's id without waiting for the job."""
    response = client.launch_flex_template(request=launch_request(launch))
    job_id = response.job.id
    if not job_id:
        raise RuntimeError(f"Dataflow accepted job {launch.job_name!r} in {launch.project}/{launch.region} "
                           "but returned no job id")
    return str(job_id)


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


def cancel_run_jobs(run_id: str, settings: Settings, client: Any | None = None) -> list[str]:
    """Cancel every active job launched for ``run_id`` (found by its label); return their ids.
    Used when the whole orchestration run is cancelled or crashes, so no job outlives it."""
    jobs = jobs_for(settings, client)
    request = ListJobsRequest(project_id=jobs.project, location=jobs.region, filter=ListJobsRequest.Filter.ACTIVE)
    mine = [job.id for job in jobs.client.list_jobs(request=request)
            if job.labels.get("run_id") == label_value(run_id)]
    for job_id in mine:
        jobs.cancel_job(job_id)
    return mine


def cancel_job(job_id: str, settings: Settings, client: JobsClient | None = None) -> None:
    """Request cancellation (``update_job`` with requested_state JOB_STATE_CANCELLED); returns at once."""
    jobs_for(settings, client).cancel_job(job_id)


def default_templates_client() -> TemplatesClient:
    from google.cloud.dataflow_v1beta3 import FlexTemplatesServiceClient

    return FlexTemplatesServiceClient()


