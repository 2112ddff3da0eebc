"""The local landing area: the embedded twin of the bronze dataset.

Each bronze table is a folder of Parquet files that DuckDB reads with a glob. Files are written
to a temporary name in the same folder and renamed into place, so a reader (a ``dbt build``
running at the same time) sees either the whole file or nothing, and no lock is ever held.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

EMPTY_FILE = "_empty.parquet"


def write_table(table: pa.Table, directory: Path, name: str) -> Path:
    """Write ``table`` as ``directory/name`` atomically (same-folder temp file, then rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    tmp = directory / f".{name}.{uuid.uuid4().hex}.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def ensure_table(directory: Path, schema: pa.Schema) -> None:
    """Make sure a bronze folder exists and holds a zero-row file with its schema, so that a glob
    over it always matches and always yields every column, even before the first row lands."""
    if not (directory / EMPTY_FILE).exists():
        write_table(schema.empty_table(), directory, EMPTY_FILE)


COMPACTED_PREFIX = "compacted-"


def compact(directory: Path, schema: pa.Schema, min_files: int = 64, max_files_per_output: int = 5000) -> int:
    """Merge the many small files of each folder under ``directory`` (the streaming function
    writes one file per message) into a few large ones, as BigQuery moves streamed rows into
    storage; returns how many files were merged away.

    Safe while the function keeps writing and dbt keeps reading: only files listed at the start are
    merged; the merged file is renamed into place before its sources are removed, so a reader sees
    every row at least once (a row seen twice in that instant is one more redelivery, which silver
    deduplicates by event_id) and no lock is ever held."""
    merged = 0
    folders = {p.parent for p in directory.rglob("*.parquet")}
    for folder in sorted(folders):
        files = sorted(p for p in folder.glob("*.parquet") if p.name != EMPTY_FILE)
        if len(files) < min_files:
            continue
        for start in range(0, len(files), max_files_per_output):
            chunk = files[start:start + max_files_per_output]
            table = pa.concat_tables([pq.read_table(f, schema=schema) for f in chunk])
            write_table(table, folder, f"{COMPACTED_PREFIX}{uuid.uuid4().hex}.parquet")
            for f in chunk:
                f.unlink(missing_ok=True)
            merged += len(chunk)
    return merged
