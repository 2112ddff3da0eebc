"""One batch load, whatever runs it: check the inputs, build the graph (a reader and a sink) from a
:class:`LoadSpec`, and, for the local sink, stage and promote the bronze files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineRunner

from ingestion.batch.bigquery import write_bronze_to_bigquery
from ingestion.batch.options import LoadSpec
from ingestion.batch.pipeline import (
    REJECTED_SCHEMA,
    REJECTED_TABLE,
    Loaded,
    read_database,
    read_exports,
    stage_local,
)
from ingestion.batch.postgres import check_table
from ingestion.batch.sources import SourceFile
from ingestion.batch.staging import promote, staged_rows, staging_area


@dataclass(frozen=True)
class LoadResult:
    """A finished local load (row counts known), or a launched Dataflow job (counts None, job id)."""

    source: str
    rows_loaded: int | None
    rows_rejected: int | None
    runner: str
    job_id: str | None


def export_files(spec: LoadSpec) -> list[SourceFile]:
    """The export files of the load's window; raises SourceFileMissing naming the path."""
    if spec.exports_location is None:
        raise ValueError(f"source {spec.source.name} needs an exports location")
    return spec.source.layout.files(spec.exports_location, spec.start, spec.end)


def check_inputs(spec: LoadSpec) -> list[SourceFile]:
    """Fail before any pipeline runs: unreachable database (names host and database), missing
    table column, missing export file or folder (names the path). Returns the files to read (none
    for a database read)."""
    if spec.reads_database:
        assert spec.database is not None and spec.source.database is not None
        check_table(spec.database.dsn, spec.database.schema, spec.source.database, spec.source.column_names)
        return []
    return export_files(spec)


def build_load(pipeline: beam.Pipeline, spec: LoadSpec, files: list[SourceFile], staging_dir: Path | None) -> None:
    """Add the load to ``pipeline``: the database or export reader, then the spec's sink."""
    if spec.reads_database:
        assert spec.database is not None
        loaded: Loaded = read_database(pipeline, spec.source, spec.database, spec.loaded_at)
    else:
        loaded = read_exports(pipeline, spec.source, files, spec.loaded_at)
    if spec.sink == "local":
        if staging_dir is None:
            raise ValueError("the local sink needs a staging folder")
        stage_local(pipeline, spec.source, loaded, staging_dir)
        return
    if not spec.bigquery_project or not spec.bigquery_dataset:
        raise ValueError("the bigquery sink needs a project and a dataset")
    write_bronze_to_bigquery(
        spec.source, loaded.valid, loaded.rejected, files,
        spec.bigquery_project, spec.bigquery_dataset, spec.temp_location,
    )


def run_to_landing(spec: LoadSpec, runner: PipelineRunner, options: PipelineOptions, runner_name: str) -> LoadResult:
    """Run the load with the local sink until done, then promote its files into the landing area.
    Nothing reaches bronze unless the whole pipeline succeeded."""
    if spec.landing_dir is None:
        raise ValueError("the local sink needs a landing folder")
    files = check_inputs(spec)
    name = spec.source.name
    if not spec.reads_database and not files:
        return LoadResult(name, 0, 0, runner_name, None)
    landing = Path(spec.landing_dir)
    with staging_area(landing, f"batch-{name}") as staging:
        with beam.Pipeline(runner=runner, options=options) as pipeline:
            build_load(pipeline, spec, files, staging)
        rows_loaded = staged_rows(staging, name)
        rows_rejected = staged_rows(staging, REJECTED_TABLE)
        promote(staging, landing, {name: spec.source.schema, REJECTED_TABLE: REJECTED_SCHEMA})
    return LoadResult(name, rows_loaded, rows_rejected, runner_name, None)
