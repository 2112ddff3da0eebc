"""The batch ingestion pipeline, one Beam graph for every source.

    export files -> CSV rows -> type and validate -> reject duplicated keys -> Arrow record batches
                                     |                      |                         |
                                     +--> rejected rows <---+                         |
                                              |                                       v
                                              +-----> stage one bronze file per export file,
                                                      and one file of its rejected rows

Every row read ends up either in bronze or in the rejected output with its reason; none is dropped.
The pipeline writes only into a staging folder; the launcher moves the staged files into the
landing area once the whole pipeline has succeeded, so a failed run leaves bronze untouched.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import PCollection, TaggedOutput

from ingestion.batch.parsing import FieldError
from ingestion.batch.sources import TIMESTAMP, BatchSource, SourceFile
from ingestion.landing import write_table

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


class RawRow(NamedTuple):
    """One CSV record as read: its text values by header column, before any typing."""

    file: SourceFile
    line: int
    values: dict[str, Any]
    problem: str | None = None  # a shape problem found while reading (wrong number of fields)


class RowRejected(ValueError):
    """A row cannot go to bronze; the message is the reason stored with it."""


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
        raise RowRejected(raw.problem)
    row: dict[str, Any] = {}
    problems: list[str] = []
    for column in source.columns:
        text = raw.values.get(column.name)
        try:
            value = column.parse(column.name, text)
        except FieldError as error:
            problems.append(str(error))
            continue
        if value is None and column.required:
            problems.append(str(FieldError(column.name, text, "is required but null or empty")))
        row[column.name] = value
    if not problems:
        for check in source.row_checks:
            try:
                check(row, raw.file.export_date)
            except FieldError as error:
                problems.append(str(error))
    if problems:
        raise RowRejected("; ".join(problems))
    row["_source"] = raw.file.path
    row["_loaded_at"] = loaded_at
    return row


def key_of(source: BatchSource, row: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(row[name]) for name in source.key)


def duplicate_reason(source: BatchSource, key: tuple[str, ...], copies: int) -> str:
    named = ", ".join(f"{name}={value!r}" for name, value in zip(source.key, key))
    return (
        f"duplicate key {named}: {copies} rows share it in one snapshot; "
        "all copies rejected, none can be told to be the right one"
    )


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
        try:
            row = type_row(self.source, raw, self.loaded_at)
        except RowRejected as rejected:
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
            yield bronze_file, copies[0][0]
            return
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
    return table.sort_by([("_source", "ascending"), ("_line", "ascending"), ("reason", "ascending")])


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


def build_pipeline(
    pipeline: beam.Pipeline,
    source: BatchSource,
    files: list[SourceFile],
    loaded_at: datetime,
    staging_dir: Path,
) -> None:
    """Add the load of ``files`` to ``pipeline``: it stages ``<staging_dir>/<source>/<bronze file>``
    and ``<staging_dir>/batch_rejected/<source>__<bronze file>`` for every file, even if empty."""
    raw_rows = (
        pipeline
        | "ListFiles" >> beam.Create(files)
        | "Read" >> beam.FlatMap(read_export, source)
    )
    validated = raw_rows | "Validate" >> ValidateRows(source, loaded_at)
    batches = validated[VALID] | "RecordBatches" >> ToRecordBatches(source.schema)
    expected = pipeline | "ExpectedFiles" >> beam.Create([(file.bronze_file, None) for file in files])
    _ = (
        {"expected": expected, VALID: batches, REJECTED: validated[REJECTED]}
        | "ByBronzeFile" >> beam.CoGroupByKey()
        | "Stage" >> beam.ParDo(_StageFiles(source, str(staging_dir)))
    )
