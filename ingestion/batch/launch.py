"""Launching a batch load: the API the orchestration calls.

``launch(source, start, end, settings)`` runs the load where ``settings.target`` says:

- ``local``: in this process on Beam's in-process runner, into the local landing area; returns
  when done, with the row counts;
- ``bigquery``: on Dataflow, by launching the batch load's Flex Template; returns as soon as the
  job is accepted, with its job id (follow it with :class:`ingestion.batch.dataflow.DataflowJobs`).
  A launch for a run, source and window that already has an active job returns that job.

``players`` and ``store_items`` are read from the operational database (locally ``GA_POSTGRES_DSN``;
on Dataflow the Cloud SQL instance ``GA_CLOUDSQL_INSTANCE``, with IAM authentication) when set,
from their CSV extracts otherwise; ``fx_rates`` from its daily export files.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineRunner

from ingestion.batch.database_reader import DatabaseRead
from ingestion.batch.dataflow import JobsClient, jobs_for
from ingestion.batch.flex_template import (
    FlexLaunch,
    TemplatesClient,
    default_templates_client,
    flex_parameters,
    job_labels,
    job_name,
    launch_once,
)
from ingestion.batch.load import LoadResult, run_to_landing
from ingestion.batch.metrics import RowCounts
from ingestion.batch.options import LoadSpec
from ingestion.batch.sources import BATCH_SOURCES, check_window, get_source
from common.settings import BatchSettings

SOURCES: tuple[str, ...] = tuple(BATCH_SOURCES)  # players, store_items, fx_rates

LOCAL_RUNNER = "DirectRunner"
DATAFLOW_RUNNER = "DataflowRunner"

__all__ = ["SOURCES", "LoadResult", "DataflowLaunch", "launch", "run_local", "launch_dataflow", "local_runner",
           "local_options"]


@dataclass(frozen=True)
class DataflowLaunch:
    """A load handed to Dataflow: the job that runs it (follow it until it ends)."""

    source: str
    job_id: str
    runner: str = DATAFLOW_RUNNER


def local_runner() -> PipelineRunner:
    """Beam's Python direct runner for batch, named explicitly.

    ``DirectRunner`` is an alias of ``SwitchingDirectRunner``, which first tries the Prism runner
    (a Go binary that it downloads when missing) and only then falls back to the in-process
    FnApiRunner. Using the FnApiRunner directly keeps the local load in this process and off the
    network."""
    return FnApiRunner()


def local_options() -> PipelineOptions:
    # flags=[] so that the options never parse the host process's command line
    return PipelineOptions(flags=[], direct_num_workers=1, direct_running_mode="in_memory")


def local_spec(source: str, start: date, end: date, settings: BatchSettings) -> LoadSpec:
    batch_source = get_source(source)
    check_window(start, end)
    database = None
    if settings.postgres_dsn and batch_source.database is not None:
        database = DatabaseRead(settings.postgres_dsn, settings.postgres_schema, settings.read_ranges)
    return LoadSpec(
        source=batch_source,
        start=start,
        end=end,
        sink="local",
        loaded_at=datetime.now(timezone.utc),
        exports_location=str(settings.exports_dir),
        database=database,
        landing_dir=str(settings.landing_dir),
    )


def run_local(source: str, start: date, end: date, settings: BatchSettings, only_changed: bool = False) -> LoadResult:
    """Load ``source`` into ``settings.landing_dir`` in this process and return when done.
    Snapshots ignore the window; daily sources load the files dated within ``[start, end]``; with
    ``only_changed``, only those not loaded before in their current version.

    Raises, before anything is written: SourceFileMissing naming the path of a missing export,
    DatabaseUnreachable naming the host and database. Any failure leaves bronze as it was."""
    spec = local_spec(source, start, end, settings)
    return run_to_landing(spec, local_runner(), local_options(), LOCAL_RUNNER, only_changed=only_changed)


def check_export_files(source: str, start: date, end: date, exports_url: str | None) -> None:
    """Before launching: the export folder or file the job will read exists (raises
    SourceFileMissing naming the path). The database is checked by the job itself: the workers
    reach it through the VPC, the orchestrator may not."""
    if exports_url:
        get_source(source).layout.files(exports_url, start, end)


def launch_dataflow(source: str, start: date, end: date, settings: BatchSettings, run_id: str | None,
                    templates: TemplatesClient | None, jobs: JobsClient | None) -> DataflowLaunch:
    """Launch the load's Flex Template job and return at once with its job id. The job is named
    after the run, the source and the window: a retry of the launch returns the job that an
    earlier attempt of the same run started, if still active, instead of starting another."""
    check_window(start, end)
    if not settings.gcp_project:
        raise ValueError("a Dataflow load needs GA_GCP_PROJECT")
    if not settings.dataflow_template_path:
        raise ValueError("a Dataflow load needs GA_DATAFLOW_TEMPLATE_PATH (gs://.../batch-load.json)")
    if not settings.dataflow_sdk_image:
        raise ValueError("a Dataflow load needs GA_DATAFLOW_SDK_IMAGE (the batch load's image, which the "
                         "workers run; without it they run Beam's stock image, which lacks the pipeline)")
    parameters = flex_parameters(source, start, end, settings)
    check_export_files(source, start, end, parameters.get("exports_location"))
    request = FlexLaunch(
        project=settings.gcp_project,
        region=settings.gcp_region,
        template_path=settings.dataflow_template_path,
        job_name=job_name(source, start, end, run_id),
        parameters=parameters,
        labels=job_labels(source, run_id),
        temp_location=settings.dataflow_temp_location,
        service_account=settings.dataflow_service_account,
        max_workers=settings.dataflow_max_workers,
        sdk_container_image=settings.dataflow_sdk_image,
    )
    job_id = launch_once(templates or default_templates_client(), jobs_for(settings, jobs), request)
    return DataflowLaunch(source, job_id, DATAFLOW_RUNNER)


def dataflow_result(launched: DataflowLaunch, counts: RowCounts) -> LoadResult:
    """The result of a Dataflow load that ended DONE, with the counts its job reported."""
    return LoadResult(source=launched.source, runner=launched.runner, job_id=launched.job_id,
                      rows_read=counts.rows_read, rows_loaded=counts.rows_loaded, rows_rejected=counts.rows_rejected,
                      rejection_reasons=dict(counts.rejection_reasons))


def launch(
    source: str,
    start: date,
    end: date,
    settings: BatchSettings,
    *,
    run_id: str | None = None,
    templates: TemplatesClient | None = None,
    jobs: JobsClient | None = None,
    only_changed: bool = False,
) -> LoadResult | DataflowLaunch:
    """Run the load locally (``settings.target == "local"``; returns its result when done) or
    launch it on Dataflow (``"bigquery"``; returns the job, named and labelled after ``run_id``).
    ``only_changed`` (local only): load only the export files not loaded before in their current
    version."""
    if settings.target == "local":
        return run_local(source, start, end, settings, only_changed=only_changed)
    if only_changed:
        raise ValueError("only_changed: the versions of loaded export files are kept in the local bronze only; "
                         "on bigquery, load a window of days")
    return launch_dataflow(source, start, end, settings, run_id, templates, jobs)
