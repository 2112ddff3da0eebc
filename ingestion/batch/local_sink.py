"""The local sink: a load's bronze files and their rejected rows staged as Parquet, one file per
bronze file (ingestion/batch/staging.py moves them into the landing area once the whole pipeline
has succeeded)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa

from ingestion.batch.pipeline import REJECTED, VALID, Loaded
from ingestion.batch.rejected import REJECTED_SCHEMA, REJECTED_TABLE
from ingestion.batch.sources import BatchSource
from ingestion.streaming.landing import write_table


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


def stage_local(pipeline: beam.Pipeline, source: BatchSource, loaded: Loaded, staging_dir: Path) -> None:
    """Stage ``<staging_dir>/<source>/<bronze file>`` and ``<staging_dir>/batch_rejected/<source>__<bronze
    file>`` for every bronze file of the load, even if empty."""
    expected = pipeline | "ExpectedFiles" >> beam.Create([(name, None) for name in loaded.bronze_files])
    _ = (
        {"expected": expected, VALID: loaded.valid, REJECTED: loaded.rejected}
        | "ByBronzeFile" >> beam.CoGroupByKey()
        | "Stage" >> beam.ParDo(_StageFiles(source, str(staging_dir)))
    )
