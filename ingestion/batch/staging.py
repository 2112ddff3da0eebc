"""Staging and promotion of a load's files into the landing area.

A load writes every file it produces under a private staging folder inside the landing area (same
filesystem, outside every table's glob); only when the whole pipeline has succeeded is each staged
file renamed over its bronze counterpart. A failed load deletes its staging folder and leaves bronze
as it was.
"""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.streaming.landing import ensure_table

STAGING_FOLDER = ".staging"


@contextmanager
def staging_area(landing_dir: Path, name: str) -> Iterator[Path]:
    """A fresh, empty staging folder for one load, removed afterwards whatever happens."""
    folder = landing_dir / STAGING_FOLDER / f"{name}-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        try:
            folder.parent.rmdir()  # only when no other load is staging
        except OSError:
            pass


def staged_files(staging_dir: Path) -> list[Path]:
    """``<table>/<file>.parquet`` files staged by a load, in a stable order."""
    return sorted(staging_dir.glob("*/*.parquet"))


def staged_rows(staging_dir: Path, table: str) -> int:
    """Rows staged for ``table`` (from the Parquet footers)."""
    paths = sorted((staging_dir / table).glob("*.parquet"))
    return sum(pq.ParquetFile(path).metadata.num_rows for path in paths)


def promote(staging_dir: Path, landing_dir: Path, schemas: Mapping[str, pa.Schema]) -> list[Path]:
    """Move every staged file over its bronze counterpart (``os.replace``: each reader sees the old
    file or the new one). Each table folder gets its zero-row schema file first."""
    files = staged_files(staging_dir)
    unknown = sorted({path.parent.name for path in files} - set(schemas))
    if unknown:
        raise ValueError(f"staged table(s) {', '.join(unknown)} have no bronze schema")
    for table, schema in schemas.items():
        ensure_table(landing_dir / table, schema)
    promoted: list[Path] = []
    for path in files:
        final = landing_dir / path.parent.name / path.name
        os.replace(path, final)
        promoted.append(final)
    return promoted
