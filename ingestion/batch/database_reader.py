"""Reading a table of the operational database in Beam: one snapshot exported and split into key
ranges, the ranges spread over the workers, each read, typed and validated a record batch at a time
(ingestion/batch/postgres.py holds the SQL and the snapshot's rules)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.pvalue import TaggedOutput

from ingestion.batch.batches import type_batch
from ingestion.batch.metrics import ROWS_LOADED, ROWS_READ, count, count_rejected
from ingestion.batch.pipeline import REJECTED, VALID, Loaded
from ingestion.batch.postgres import (
    RangeRead,
    begin_snapshot,
    copy_columns,
    import_snapshot,
    plan_ranges,
    read_range,
)
from ingestion.batch.postgres_connection import connect, lineage
from ingestion.batch.rejected import NO_LINE, rejected_row
from ingestion.batch.sources import TIMESTAMP, BatchSource, DatabaseTable


@dataclass(frozen=True)
class DatabaseRead:
    """Where and how to read a source's table: the DSN (never logged: it may hold a password),
    the schema, and how many key ranges to read in parallel."""

    dsn: str
    schema: str
    ranges: int


def with_lineage(table: pa.Table, schema: pa.Schema, source_label: str, loaded_at: datetime) -> pa.RecordBatch:
    rows = table.num_rows
    table = table.append_column("_source", pa.array([source_label] * rows, pa.string()))
    table = table.append_column("_loaded_at", pa.array([loaded_at] * rows, TIMESTAMP))
    return table.cast(schema).combine_chunks().to_batches(max_chunksize=max(rows, 1))[0]


def database_rejection(
    source: BatchSource, texts: pa.Table, row: int, reason: str, source_label: str, loaded_at: datetime
) -> dict[str, Any]:
    values = {name: texts.column(name)[row].as_py() for name in source.column_names}
    return rejected_row(source.name, values, reason, source_label, NO_LINE, loaded_at)


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
