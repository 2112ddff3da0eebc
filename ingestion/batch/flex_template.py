"""Launching the batch load's Flex Template on Dataflow: the template's parameters from the
settings, the job's name and labels, and the launch request, sent once per run, source and window.
Pure request building around one call; the client is injected."""
from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Protocol

from google.api_core.exceptions import Conflict
from google.cloud.dataflow_v1beta3 import (
    FlexTemplateRuntimeEnvironment,
    Job,
    LaunchFlexTemplateParameter,
    LaunchFlexTemplateRequest,
)

from ingestion.batch.dataflow import GOING_AWAY, JOB_PREFIX, DataflowJobs, name_part, run_prefix
from ingestion.batch.postgres_connection import CloudSql
from ingestion.batch.sources import get_source
from common.settings import BatchSettings

# Job.name in google.cloud.dataflow_v1beta3: "must match [a-z]([-a-z0-9]{0,1022}[a-z0-9])?"
JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,1022}[a-z0-9])?$")
LABEL_VALUE_MAX = 63
APP_LABEL = "game-analytics"


def flex_parameters(source: str, start: date, end: date, settings: BatchSettings) -> dict[str, str]:
    """The Flex Template parameters of a load (ingestion/batch/parameters.py; a test reads them back
    with the pipeline's options parser)."""
    batch_source = get_source(source)
    parameters = {
        "source": source,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "sink": "bigquery",
        "bigquery_dataset": settings.bronze_dataset(),
        "read_ranges": str(settings.read_ranges),
    }
    if settings.gcp_project:
        parameters["bigquery_project"] = settings.gcp_project
    if batch_source.database is not None and settings.cloudsql_instance:
        # the workers authenticate as themselves (IAM): only names travel, never a credential
        parameters.update(cloud_sql_parameters(settings))
        parameters["postgres_schema"] = settings.postgres_schema
    elif batch_source.database is not None and settings.postgres_dsn:
        raise ValueError(f"a Dataflow load of {source} reads the database through Cloud SQL with IAM "
                         "authentication: set GA_CLOUDSQL_INSTANCE and GA_CLOUDSQL_DATABASE (GA_POSTGRES_DSN "
                         "serves in-process loads only and is never sent to Dataflow)")
    elif settings.exports_url:
        parameters["exports_location"] = settings.exports_url
    else:
        needs = "GA_EXPORTS_URL" if batch_source.database is None else "GA_CLOUDSQL_INSTANCE or GA_EXPORTS_URL"
        raise ValueError(f"a Dataflow load of {source} needs {needs}")
    return parameters


def cloud_sql_parameters(settings: BatchSettings) -> dict[str, str]:
    """The Cloud SQL database the workers read, checked: the IAM user defaults to the workers'
    service account, the identity the connector authenticates with on a worker."""
    user = settings.cloudsql_user or settings.dataflow_service_account
    if not user:
        raise ValueError("GA_CLOUDSQL_INSTANCE needs GA_CLOUDSQL_USER or GA_DATAFLOW_SERVICE_ACCOUNT "
                         "(the IAM database user is the workers' service account)")
    database = CloudSql(settings.cloudsql_instance or "", settings.cloudsql_database or "", user,
                        settings.cloudsql_ip_type)
    return {"cloudsql_instance": database.instance, "cloudsql_database": database.database,
            "cloudsql_user": database.user, "cloudsql_ip_type": database.ip_type}


def job_name(source: str, start: date, end: date, run_id: str | None = None) -> str:
    """``ga-<run id>-<source>-<start yyyymmdd>-<end yyyymmdd>``: the same name for every launch of
    one run's load of one window, so a retried launch finds the job an earlier attempt started.
    Without a run id (an ad-hoc launch) the run part is random: such launches are not deduplicated."""
    prefix = run_prefix(run_id) if run_id else f"{JOB_PREFIX}adhoc-{uuid.uuid4().hex[:12]}-"
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


def default_templates_client() -> TemplatesClient:
    from google.cloud.dataflow_v1beta3 import FlexTemplatesServiceClient

    return FlexTemplatesServiceClient()
