"""Launching a batch load: the API the orchestration calls.

``run_local`` runs the pipeline in this process on Beam's Python direct runner and writes the
local landing area. A Dataflow launch (a Flex Template job per source, returning its job id) will
sit next to it as ``run_dataflow`` with the same signature and the same ``LoadResult``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineRunner

from ingestion.batch.pipeline import REJECTED_SCHEMA, REJECTED_TABLE, build_pipeline
from ingestion.batch.sources import check_window, get_source
from ingestion.batch.staging import promote, staged_rows, staging_area
from ingestion.settings import Settings

SOURCES: tuple[str, ...] = ("players", "store_items", "fx_rates")

LOCAL_RUNNER = "DirectRunner"


@dataclass(frozen=True)
class LoadResult:
    source: str
    rows_loaded: int
    rows_rejected: int
    runner: str
    job_id: str | None


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


def run_local(source: str, start: date, end: date, settings: Settings) -> LoadResult:
    """Load ``source`` from ``settings.exports_dir`` into ``settings.landing_dir`` and return when
    done. Snapshots ignore the window; daily sources load the files dated within ``[start, end]``.

    Raises SourceFileMissing (naming the path) before anything is written when an export is
    missing; any failure leaves bronze as it was."""
    batch_source = get_source(source)
    check_window(start, end)
    files = batch_source.layout.files(settings.exports_dir, start, end)
    if not files:
        return LoadResult(source, 0, 0, LOCAL_RUNNER, None)
    loaded_at = datetime.now(timezone.utc)
    landing = settings.landing_dir
    with staging_area(landing, f"batch-{source}") as staging:
        with beam.Pipeline(runner=local_runner(), options=local_options()) as pipeline:
            build_pipeline(pipeline, batch_source, files, loaded_at, staging)
        rows_loaded = staged_rows(staging, source)
        rows_rejected = staged_rows(staging, REJECTED_TABLE)
        promote(staging, landing, {source: batch_source.schema, REJECTED_TABLE: REJECTED_SCHEMA})
    return LoadResult(source, rows_loaded, rows_rejected, LOCAL_RUNNER, None)


# run_dataflow(source, start, end, settings) -> LoadResult: launches the source's Flex Template on
# Dataflow (settings.gcp_project, settings.gcp_region), waits for it, returns its job id. To come.
