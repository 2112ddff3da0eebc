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
