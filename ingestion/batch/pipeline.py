"""The batch ingestion pipeline, one Beam graph for every source: a reader, then a sink.

Readers (each yields valid rows as Arrow record batches and rejected rows with their reason, both
keyed by the bronze file they belong to):

    export files -> CSV rows -> type and validate -> reject duplicated keys -> record batches
    database table -> plan key ranges in one exported snapshot -> Reshuffle
                   -> read each range with COPY into Arrow -> type, validate, reject duplicates
                      (vectorised, a batch at a time)

Sinks (chosen by options):

    local:    stage one Parquet file per bronze file, and one of its rejected rows; the launcher
              moves them into the landing area once the whole pipeline has succeeded, so a failed
              run leaves bronze untouched
    bigquery: batch file loads, one per table and run, replacing the snapshot table or the
              export dates read (ingestion/batch/bigquery.py), so a rerun replaces what the first
              run wrote

Every row read ends up either in bronze or in the rejected output with its reason; none is dropped.
The readers count, as Beam metrics in namespace ``ga_batch``, the rows read, the rows loaded (valid),
the rows rejected and, for each rejection kind, ``rejected.<kind>``: the runner reports them when
the job ends (the in-process runner's result, Dataflow's job metrics).
"""
from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput

from ingestion.batch.parsing import FieldError
from ingestion.batch.batches import parse_field, type_batch
from ingestion.batch.postgres import (
    RangeRead,
    begin_snapshot,
    connect,
    copy_columns,
    import_snapshot,
    lineage,
    plan_ranges,
    read_range,
)
from ingestion.batch.sources import (
    DUPLICATE_KEY,
    NO_LINE,
    WRONG_FIELD_COUNT,
    TIMESTAMP,
    BatchSource,
    DatabaseTable,
    SourceFile,
    duplicate_reason,
    key_of,
)
from ingestion.streaming.landing import write_table

REJECTED_TABLE = "batch_rejected"
REJECTED_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),  # the row as read, a JSON object of header: text
        pa.field("_source", pa.string(), nullable=False),
        pa.field("_line", pa.int64(), nullable=False),  # line of the row's last physical line
        pa.field("_loaded_at", TIMESTAMP, nullable=False),
    ]
)
VALID = "valid"
REJECTED = "rejected"
MAX_BATCH_ROWS = 10_000

# the load's counters (Beam metrics); rejected rows are also counted per kind, as REJECTED_PREFIX + kind
METRICS_NAMESPACE = "ga_batch"
ROWS_READ = "rows_read"
ROWS_LOADED = "rows_loaded"
ROWS_REJECTED = "rows_rejected"
REJECTED_PREFIX = "rejected."


@functools.cache
def counter(name: str) -> Any:
    # a counter object resolves the running step's metrics container on each inc
    return Metrics.counter(METRICS_NAMESPACE, name)


def count(name: str, rows: int = 1) -> None:
    if rows:
        counter(name).inc(rows)


def count_rejected(kind: str, rows: int = 1) -> None:
    count(ROWS_REJECTED, rows)
    count(REJECTED_PREFIX + kind, rows)


class RawRow(NamedTuple):
    """One CSV record as read: its text values by header column, before any typing."""

    file: SourceFile
    line: int
    values: dict[str, Any]
    problem: str | None = None  # a shape problem found while reading (wrong number of fields)


class RowRejected(ValueError):
    """A row cannot go to bronze; the message is the reason stored with it, ``kind`` the short code
    it is counted under (the first problem's when there are several)."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind


# ---------------------------------------------------------------------------------------------
# reading


def check_header(source: BatchSource, path: str, header: list[str] | None) -> None:
    """A file whose header lacks a column cannot be read at all: fail the load, naming the file."""
    if header is None:
        raise ValueError(f"{path}: file is empty, expected a header row {','.join(source.column_names)}")
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise ValueError(f"{path}: header repeats column(s) {', '.join(duplicated)}")
    missing = [name for name in source.column_names if name not in header]
    if missing:
        raise ValueError(
            f"{path}: header lacks column(s) {', '.join(missing)} (found: {','.join(header)})"
        )


def raw_row(file: SourceFile, line: int, header: list[str], fields: list[str]) -> RawRow:
    values: dict[str, Any] = dict(zip(header, fields))
    if len(fields) == len(header):
        return RawRow(file, line, values)
    if len(fields) > len(header):
        values["_extra_fields"] = fields[len(header):]
    return RawRow(file, line, values, f"row has {len(fields)} fields, header has {len(header)}")


def read_export(file: SourceFile, source: BatchSource) -> Iterator[RawRow]:
    """The records of one CSV export (header row first; blank lines are not records)."""
    with FileSystems.open(file.path) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        reader = csv.reader(text)
        header = next(reader, None)
        check_header(source, file.path, header)
        assert header is not None
        for fields in reader:
            if fields:
                yield raw_row(file, reader.line_num, header, fields)


# ---------------------------------------------------------------------------------------------
# typing and validation (pure)


def type_row(source: BatchSource, raw: RawRow, loaded_at: datetime) -> dict[str, Any]:
    """The typed bronze row for ``raw``, with its lineage columns; raises RowRejected with every
    field problem found."""
    if raw.problem:
        raise RowRejected(raw.problem, WRONG_FIELD_COUNT)
    row: dict[str, Any] = {}
    problems: list[FieldError] = []
    for column in source.columns:
        value, problem = parse_field(source, column, raw.values.get(column.name))
        if problem is not None:
            problems.append(problem)
        row[column.name] = value
    if not problems:
        for check in source.row_checks:
            try:
                check(row, raw.file.export_date)
            except FieldError as error:
                problems.append(error)
    if problems:
        raise RowRejected("; ".join(map(str, problems)), problems[0].kind)
    row["_source"] = raw.file.path
    row["_loaded_at"] = loaded_at
    return row


def rejection(source: BatchSource, raw: RawRow, reason: str, loaded_at: datetime) -> dict[str, Any]:
    return {
        "source": source.name,
        "reason": reason,
        "raw": json.dumps(raw.values, ensure_ascii=False),
        "_source": raw.file.path,
        "_line": raw.line,
        "_loaded_at": loaded_at,
    }


class _TypeRows(beam.DoFn):
    def __init__(self, source: BatchSource, loaded_at: datetime) -> None:
        super().__init__()
        self.source = source
        self.loaded_at = loaded_at

    def process(self, raw: RawRow) -> Iterator[Any]:
        count(ROWS_READ)
        try:
            row = type_row(self.source, raw, self.loaded_at)
        except RowRejected as rejected:
            count_rejected(rejected.kind)
            yield TaggedOutput(
                REJECTED, (raw.file.bronze_file, rejection(self.source, raw, str(rejected), self.loaded_at))
            )
            return
        yield (raw.file.bronze_file, key_of(self.source, row)), (row, raw)


class _SplitDuplicates(beam.DoFn):
    def __init__(self, source: BatchSource, loaded_at: datetime) -> None:
        super().__init__()
        self.source = source
        self.loaded_at = loaded_at

    def process(self, element: tuple[tuple[str, tuple[str, ...]], Iterable[Any]]) -> Iterator[Any]:
        (bronze_file, key), grouped = element
        copies = list(grouped)
        if len(copies) == 1:
            count(ROWS_LOADED)
            yield bronze_file, copies[0][0]
            return
        count_rejected(DUPLICATE_KEY, len(copies))
        reason = duplicate_reason(self.source, key, len(copies))
        for _, raw in copies:
            yield TaggedOutput(REJECTED, (bronze_file, rejection(self.source, raw, reason, self.loaded_at)))


class ValidateRows(beam.PTransform):
    """RawRow → ``{"valid": (bronze file, typed row), "rejected": (bronze file, rejected row)}``.

    A key repeated within one export file rejects every copy (the reason names the key)."""

    def __init__(self, source: BatchSource, loaded_at: datetime) -> None:
        super().__init__()
        self.source = source
        self.loaded_at = loaded_at

    def expand(self, raw_rows: PCollection) -> dict[str, PCollection]:
        typed = raw_rows | "Type" >> beam.ParDo(_TypeRows(self.source, self.loaded_at)).with_outputs(
            REJECTED, main=VALID
        )
        unique = (
            typed[VALID]
            | "GroupByKey" >> beam.GroupByKey()
            | "SplitDuplicates"
            >> beam.ParDo(_SplitDuplicates(self.source, self.loaded_at)).with_outputs(REJECTED, main=VALID)
        )
        rejected = (typed[REJECTED], unique[REJECTED]) | "AllRejected" >> beam.Flatten()
        return {VALID: unique[VALID], REJECTED: rejected}


# ---------------------------------------------------------------------------------------------
# Arrow and staging


def record_batches(
    elements: Iterable[tuple[str, Mapping[str, Any]]], schema: pa.Schema
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """One record batch per bronze file among ``elements``."""
    rows_by_file: dict[str, list[Mapping[str, Any]]] = {}
    for bronze_file, row in elements:
        rows_by_file.setdefault(bronze_file, []).append(row)
    for bronze_file, rows in rows_by_file.items():
        yield bronze_file, pa.RecordBatch.from_pylist(rows, schema=schema)


class ToRecordBatches(beam.PTransform):
    """(bronze file, row) → (bronze file, pa.RecordBatch) of up to MAX_BATCH_ROWS rows."""

    def __init__(self, schema: pa.Schema) -> None:
        super().__init__()
        self.schema = schema

    def expand(self, rows: PCollection) -> PCollection:
        return (
            rows
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=MAX_BATCH_ROWS)
            | "ToArrow" >> beam.FlatMap(record_batches, self.schema)
        )


def bronze_table(source: BatchSource, batches: Iterable[pa.RecordBatch]) -> pa.Table:
    """All of one bronze file's rows, in key order so that a rerun writes the same file."""
    table = pa.Table.from_batches(list(batches), schema=source.schema)
    return table.sort_by([(name, "ascending") for name in source.key])


def rejected_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    table = pa.Table.from_pylist(list(rows), schema=REJECTED_SCHEMA)
    order = ("_source", "_line", "reason", "raw")
    return table.sort_by([(name, "ascending") for name in order])


def rejected_file(source: BatchSource, bronze_file: str) -> str:
    """The rejected rows of one export file get their own file, replaced with it on a reload."""
    return f"{source.name}__{bronze_file}"


class _StageFiles(beam.DoFn):
    def __init__(self, source: BatchSource, staging_dir: str) -> None:
        super().__init__()
        self.source = source
        self.staging_dir = staging_dir

    def process(self, element: tuple[str, Mapping[str, Iterable[Any]]]) -> Iterator[str]:
        bronze_file, groups = element
        if not list(groups["expected"]):
            raise RuntimeError(f"{self.source.name}: rows for bronze file {bronze_file!r}, not expected")
        staging = Path(self.staging_dir)
        write_table(bronze_table(self.source, groups[VALID]), staging / self.source.name, bronze_file)
        write_table(
            rejected_table(groups[REJECTED]),
            staging / REJECTED_TABLE,
            rejected_file(self.source, bronze_file),
        )
        yield bronze_file


# ---------------------------------------------------------------------------------------------
# reading a database table


@dataclass(frozen=True)
class DatabaseRead:
    """Where and how to read a source's table: the DSN (never logged: it may hold a password),
    the schema, and how many key ranges to read in parallel."""

    dsn: str
    schema: str = "public"
    ranges: int = 8


def with_lineage(table: pa.Table, schema: pa.Schema, source_label: str, loaded_at: datetime) -> pa.RecordBatch:
    rows = table.num_rows
    table = table.append_column("_source", pa.array([source_label] * rows, pa.string()))
    table = table.append_column("_loaded_at", pa.array([loaded_at] * rows, TIMESTAMP))
    return table.cast(schema).combine_chunks().to_batches(max_chunksize=max(rows, 1))[0]


def database_rejection(
    source: BatchSource, texts: pa.Table, row: int, reason: str, source_label: str, loaded_at: datetime
) -> dict[str, Any]:
    values = {name: texts.column(name)[row].as_py() for name in source.column_names}
    return {
        "source": source.name,
        "reason": reason,
        "raw": json.dumps(values, ensure_ascii=False),
        "_source": source_label,
        "_line": NO_LINE,
        "_loaded_at": loaded_at,
    }


class PlanRanges(beam.DoFn):
    """Export one snapshot of the database and split the table's keys into ranges within it.

    The exporting transaction must stay open until every reader has imported the snapshot, so its
    connection is kept by this DoFn instance and closed at teardown (after the pipeline's reads on
    a local runner; on Dataflow, when the worker retires the instance). A reader that comes too late
    fails with SnapshotLost rather than read another state."""

    def __init__(self, table: DatabaseTable, read: DatabaseRead) -> None:
        super().__init__()
        self.table = table
        self.read = read
        self._connections: list[Any] = []

    def setup(self) -> None:
        self._connections = []

    def process(self, _: Any) -> Iterator[RangeRead]:
        connection = connect(self.read.dsn)
        self._connections.append(connection)
        snapshot_id = begin_snapshot(connection)
        for index, key_range in enumerate(plan_ranges(connection, self.read.schema, self.table, self.read.ranges)):
            yield RangeRead(snapshot_id, key_range, index)

    def teardown(self) -> None:
        for connection in self._connections:
            connection.close()
        self._connections = []


class ReadRange(beam.DoFn):
    """One key range, read in the planned snapshot, typed and validated a record batch at a time:
    valid rows as (bronze file, pa.RecordBatch), rejected rows as (bronze file, row) on REJECTED."""

    def __init__(self, source: BatchSource, table: DatabaseTable, read: DatabaseRead, loaded_at: datetime) -> None:
        super().__init__()
        self.source = source
        self.table = table
        self.read = read
        self.loaded_at = loaded_at

    def process(self, work: RangeRead) -> Iterator[Any]:
        label = lineage(self.read.dsn, self.read.schema, self.table.table)
        bronze_file = self.table.bronze_file
        with connect(self.read.dsn) as connection:
            import_snapshot(connection, work.snapshot_id)
            for texts in read_range(connection, self.source, self.read.schema, self.table, work.key_range):
                typed = type_batch(self.source, texts)
                count(ROWS_READ, texts.num_rows)
                count(ROWS_LOADED, typed.valid.num_rows)
                if typed.valid.num_rows:
                    yield bronze_file, with_lineage(typed.valid, self.source.schema, label, self.loaded_at)
                for row, reason, kind in typed.rejected:
                    count_rejected(kind)
                    rejected = database_rejection(self.source, texts, row, reason, label, self.loaded_at)
                    yield TaggedOutput(REJECTED, (bronze_file, rejected))


# ---------------------------------------------------------------------------------------------
# the graph


class Loaded(NamedTuple):
    """What a reader hands to a sink."""

    valid: PCollection  # (bronze file, pa.RecordBatch)
    rejected: PCollection  # (bronze file, rejected row dict)
    bronze_files: tuple[str, ...]  # every bronze file the load replaces, even if it gets no row


def read_exports(pipeline: beam.Pipeline, source: BatchSource, files: list[SourceFile], loaded_at: datetime) -> Loaded:
    raw_rows = (
        pipeline
        | "ListFiles" >> beam.Create(files)
        | "Read" >> beam.FlatMap(read_export, source)
    )
    validated = raw_rows | "Validate" >> ValidateRows(source, loaded_at)
    batches = validated[VALID] | "RecordBatches" >> ToRecordBatches(source.schema)
    return Loaded(batches, validated[REJECTED], tuple(file.bronze_file for file in files))


def read_database(pipeline: beam.Pipeline, source: BatchSource, read: DatabaseRead, loaded_at: datetime) -> Loaded:
    table = source.database
    if table is None:
        raise ValueError(f"source {source.name} is not read from a database")
    copy_columns(source, table)  # the split key must be the source's key
    outputs = (
        pipeline
        | "Snapshot" >> beam.Create([table.table])
        | "PlanRanges" >> beam.ParDo(PlanRanges(table, read))
        | "SpreadRanges" >> beam.Reshuffle()
        | "ReadRanges" >> beam.ParDo(ReadRange(source, table, read, loaded_at)).with_outputs(REJECTED, main=VALID)
    )
    return Loaded(outputs[VALID], outputs[REJECTED], (table.bronze_file,))


def stage_local(pipeline: beam.Pipeline, source: BatchSource, loaded: Loaded, staging_dir: Path) -> None:
    """Stage ``<staging_dir>/<source>/<bronze file>`` and ``<staging_dir>/batch_rejected/<source>__<bronze
    file>`` for every bronze file of the load, even if empty."""
    expected = pipeline | "ExpectedFiles" >> beam.Create([(name, None) for name in loaded.bronze_files])
    _ = (
        {"expected": expected, VALID: loaded.valid, REJECTED: loaded.rejected}
        | "ByBronzeFile" >> beam.CoGroupByKey()
        | "Stage" >> beam.ParDo(_StageFiles(source, str(staging_dir)))
    )


def build_pipeline(
    pipeline: beam.Pipeline,
    source: BatchSource,
    files: list[SourceFile],
    loaded_at: datetime,
    staging_dir: Path,
) -> None:
    """Add the load of export ``files`` into a local staging folder to ``pipeline``."""
    stage_local(pipeline, source, read_exports(pipeline, source, files, loaded_at), staging_dir)
