"""Reading CSV export files: each record typed and validated on its own, a key repeated within one
file rejected in every copy, the valid rows gathered into Arrow record batches."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import PCollection, TaggedOutput

from ingestion.batch.batches import parse_field
from ingestion.batch.metrics import ROWS_LOADED, ROWS_READ, count, count_rejected
from ingestion.batch.parsing import FieldError
from ingestion.batch.pipeline import REJECTED, VALID, Loaded
from ingestion.batch.rejected import rejected_row
from ingestion.batch.sources import (
    DUPLICATE_KEY,
    WRONG_FIELD_COUNT,
    BatchSource,
    SourceFile,
    duplicate_reason,
    key_of,
)

MAX_BATCH_ROWS = 10_000


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
    return rejected_row(source.name, raw.values, reason, raw.file.path, raw.line, loaded_at)


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
# Arrow record batches and the reader


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


def read_exports(pipeline: beam.Pipeline, source: BatchSource, files: list[SourceFile], loaded_at: datetime) -> Loaded:
    raw_rows = (
        pipeline
        | "ListFiles" >> beam.Create(files)
        | "Read" >> beam.FlatMap(read_export, source)
    )
    validated = raw_rows | "Validate" >> ValidateRows(source, loaded_at)
    batches = validated[VALID] | "RecordBatches" >> ToRecordBatches(source.schema)
    return Loaded(batches, validated[REJECTED], tuple(file.bronze_file for file in files))
