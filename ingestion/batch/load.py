"""One batch load, whatever runs it: check the inputs, build the graph (a reader and a sink) from a
:class:`LoadSpec`, and, for the local sink, stage and promote the bronze files.

Each local load records, in bronze table ``batch_loaded_files``, the version (size and last
modification) of every export file it loaded, promoted together with the rows it read: a load that
fails records nothing. A load with ``only_changed`` (the hourly runs) reads only the files of its
window whose version differs from the recorded one, so an unchanged export is never loaded twice and
a re-exported one is. A file changed while it was being loaded keeps its earlier version on record
and is loaded again by the next run."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult, PipelineRunner

from ingestion.batch.bigquery import write_bronze_to_bigquery
from ingestion.batch.options import LoadSpec
from ingestion.batch.database_reader import read_database
from ingestion.batch.export_reader import read_exports
from ingestion.batch.local_sink import stage_local
from ingestion.batch.metrics import NAMESPACE, row_counts
from ingestion.batch.pipeline import Loaded
from ingestion.batch.rejected import REJECTED_SCHEMA, REJECTED_TABLE
from ingestion.batch.postgres_connection import check_table
from ingestion.batch.sources import TIMESTAMP, SourceFile
from ingestion.batch.staging import promote, staged_rows, staging_area
from ingestion.streaming.landing import write_table

LOADED_FILES_TABLE = "batch_loaded_files"
LOADED_FILES_SCHEMA = pa.schema([
    pa.field("source", pa.string(), nullable=False),
    pa.field("bronze_file", pa.string(), nullable=False),
    pa.field("path", pa.string(), nullable=False),
    pa.field("size_bytes", pa.int64(), nullable=False),
    pa.field("modified_epoch_s", pa.float64(), nullable=False),  # as the filesystem reports it
    pa.field("_loaded_at", TIMESTAMP, nullable=False),
])
FileVersion = tuple[int, float]  # (size in bytes, last modification in epoch seconds)


@dataclass(frozen=True)
class LoadResult:
    """A finished load's row counts (from the pipeline's counters), or a launched Dataflow job
    (counts None until the job's metrics are read). ``rejection_reasons``: rejection kind -> rows."""

    source: str
    runner: str
    job_id: str | None
    rows_read: int | None
    rows_loaded: int | None
    rows_rejected: int | None
    rejection_reasons: dict[str, int] = field(default_factory=dict)


class LoadRejected(RuntimeError):
    """A load rejected too large a share of its rows, or loaded none from a non-empty source."""


def check_load(result: LoadResult, max_rejected_share: float) -> None:
    """Raise LoadRejected, naming the source, the rejected share and the main rejection kinds, when
    more than ``max_rejected_share`` of the rows read were rejected, or when rows were read and none
    loaded. A load whose counts are not known yet (a running Dataflow job) passes."""
    if not 0 <= max_rejected_share <= 1:
        raise ValueError(f"max_rejected_share must be between 0 and 1, not {max_rejected_share}")
    read, loaded, rejected = result.rows_read, result.rows_loaded, result.rows_rejected
    if read is None or loaded is None or rejected is None or read == 0:
        return
    share = rejected / read
    if share <= max_rejected_share and loaded > 0:
        return
    top = sorted(result.rejection_reasons.items(), key=lambda item: (-item[1], item[0]))[:3]
    reasons = ", ".join(f"{kind} {rows}" for kind, rows in top) or "none recorded"
    what = "loaded no row" if loaded == 0 else f"rejected more than {max_rejected_share:.1%}"
    raise LoadRejected(
        f"batch load of {result.source} {what}: {rejected} of {read} rows read rejected ({share:.1%}); "
        f"top reasons: {reasons} (rows in bronze batch_rejected)"
    )


def pipeline_counters(result: PipelineResult) -> dict[str, int]:
    """The load's counters from a finished pipeline's metrics, by name."""
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    counters: dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + int(value or 0)
    return counters


def file_versions(files: list[SourceFile]) -> dict[str, FileVersion]:
    """Each export file's current version, by path (a GCS object's changes with each generation)."""
    if not files:
        return {}
    versions: dict[str, FileVersion] = {}
    for matched in FileSystems.match([file.path for file in files]):
        for metadata in matched.metadata_list:
            versions[metadata.path] = (int(metadata.size_in_bytes), float(metadata.last_updated_in_seconds))
    return versions


def loaded_versions(landing_dir: Path, source: str) -> dict[str, FileVersion]:
    """The version of each export file of ``source`` as last loaded into this landing area."""
    folder = landing_dir / LOADED_FILES_TABLE
    if not folder.is_dir():
        return {}
    table = pq.read_table(folder, schema=LOADED_FILES_SCHEMA, filters=[("source", "=", source)])
    return {row["path"]: (row["size_bytes"], row["modified_epoch_s"]) for row in table.to_pylist()}


def changed_files(files: list[SourceFile], versions: dict[str, FileVersion], loaded: dict[str, FileVersion]) -> list[SourceFile]:
    """The files whose current version is not the one last loaded (new files included)."""
    return [file for file in files if loaded.get(file.path) != versions.get(file.path)]


def stage_loaded_files(staging: Path, spec: LoadSpec, files: list[SourceFile], versions: dict[str, FileVersion]) -> None:
    """One record per bronze file of the load: the export file it now holds and that file's version."""
    for file in files:
        size, modified = versions[file.path]
        row = {"source": spec.source.name, "bronze_file": file.bronze_file, "path": file.path, "size_bytes": size,
               "modified_epoch_s": modified, "_loaded_at": spec.loaded_at}
        write_table(pa.Table.from_pylist([row], schema=LOADED_FILES_SCHEMA), staging / LOADED_FILES_TABLE,
                    f"{spec.source.name}__{file.bronze_file}")


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


def run_to_landing(spec: LoadSpec, runner: PipelineRunner, options: PipelineOptions, runner_name: str,
                   only_changed: bool = False) -> LoadResult:
    """Run the load with the local sink until done, then promote its files into the landing area.
    Nothing reaches bronze unless the whole pipeline succeeded. With ``only_changed``, only the
    export files not loaded before in their current version are read (a database is always read)."""
    if spec.landing_dir is None:
        raise ValueError("the local sink needs a landing folder")
    files = check_inputs(spec)
    versions = file_versions(files)
    if only_changed:
        files = changed_files(files, versions, loaded_versions(Path(spec.landing_dir), spec.source.name))
    name = spec.source.name
    if not spec.reads_database and not files:
        return LoadResult(name, runner_name, None, rows_read=0, rows_loaded=0, rows_rejected=0)
    landing = Path(spec.landing_dir)
    with staging_area(landing, f"batch-{name}") as staging:
        with beam.Pipeline(runner=runner, options=options) as pipeline:
            build_load(pipeline, spec, files, staging)
        counts = row_counts(pipeline_counters(pipeline.result))
        read, loaded, rejected = counts.rows_read, counts.rows_loaded, counts.rows_rejected
        staged = (staged_rows(staging, name), staged_rows(staging, REJECTED_TABLE))
        if staged != (loaded, rejected) or read != loaded + rejected:  # no row lost on the way
            raise RuntimeError(f"batch load of {name}: counted {read} rows read, {loaded} loaded and {rejected} "
                               f"rejected, staged {staged[0]} and {staged[1]}")
        stage_loaded_files(staging, spec, files, versions)
        promote(staging, landing, {name: spec.source.schema, REJECTED_TABLE: REJECTED_SCHEMA,
                                   LOADED_FILES_TABLE: LOADED_FILES_SCHEMA})
    return LoadResult(name, runner_name, None, rows_read=read, rows_loaded=loaded, rows_rejected=rejected,
                      rejection_reasons=counts.rejection_reasons)
