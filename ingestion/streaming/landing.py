"""The local landing area: the embedded twin of the bronze dataset, as the function writes it.

Each bronze table is a folder of Parquet files (``<table>/<date>/*.parquet``) that DuckDB reads with
a glob, so any reader (a ``dbt build``, an analyst's query) sees new rows without a lock or a
catalog. Two rules keep such a reader correct while the function writes:

* **Whole files only.** A file is written under a temporary name that no glob matches, flushed to
  disk (``fsync`` of the file, then of its folder) and renamed into place; only then is the write
  acknowledged. After an OS crash an acknowledged file is there, whole.
* **A damaged file never breaks reads.** A zero-length or torn file (a disk that lost data, a copy
  cut short) is moved to ``_quarantine/<table>/`` with its reason, and logged.

Merging the function's many small files, and what a reader reads meanwhile: ``compaction``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

EMPTY_FILE = "_empty.parquet"
QUARANTINE_DIR = "_quarantine"
_MAGIC = b"PAR1"
# a temporary file older than this belongs to no running writer (a writer's lives for milliseconds)
STALE_TMP_S = 3600.0


# --------------------------------------------------------------------------------------------
# Durable writes
# --------------------------------------------------------------------------------------------


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path) -> None:
    """``mkdir -p`` whose new folders survive an OS crash (each parent is fsynced after its child
    appears)."""
    if directory.is_dir():
        return
    make_dirs(directory.parent)
    with contextlib.suppress(FileExistsError):
        directory.mkdir()
        fsync_dir(directory.parent)


def tmp_path(directory: Path, name: str) -> Path:
    return directory / f".{name}.{uuid.uuid4().hex}.tmp"


def publish(tmp: Path, final: Path) -> None:
    """Flush ``tmp`` to disk, rename it to ``final`` and flush the folder: once this returns, the
    file is visible whole and survives an OS crash."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def write_table(table: pa.Table, directory: Path, name: str) -> Path:
    """Write ``table`` as ``directory/name`` atomically and durably."""
    make_dirs(directory)
    final = directory / name
    tmp = tmp_path(directory, name)
    try:
        pq.write_table(table, tmp, compression="zstd")
        publish(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def write_bytes(data: bytes, directory: Path, name: str) -> Path:
    make_dirs(directory)
    tmp = tmp_path(directory, name)
    try:
        tmp.write_bytes(data)
        publish(tmp, directory / name)
    finally:
        tmp.unlink(missing_ok=True)
    return directory / name


def ensure_table(directory: Path, schema: pa.Schema) -> None:
    """Make sure a bronze folder exists and holds a zero-row file with its schema, so that a glob
    over it always matches and always yields every column, even before the first row lands."""
    if not (directory / EMPTY_FILE).exists():
        write_table(schema.empty_table(), directory, EMPTY_FILE)


# --------------------------------------------------------------------------------------------
# Damaged files
# --------------------------------------------------------------------------------------------


def damage(path: Path) -> str | None:
    """Why ``path`` cannot be a whole Parquet file, judged from its size and its two magic
    numbers (cheap: two small reads); None when it looks whole."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "zero-length file"
        if size < 12:
            return f"{size} bytes: shorter than a Parquet header and footer"
        with path.open("rb") as f:
            head = f.read(4)
            f.seek(-4, os.SEEK_END)
            tail = f.read(4)
    except FileNotFoundError:
        return None  # merged away meanwhile: nothing to judge
    if head != _MAGIC:
        return f"{size} bytes: does not start with the Parquet magic number"
    if tail != _MAGIC:
        return f"{size} bytes: no Parquet footer (torn or truncated)"
    return None


def quarantine(path: Path, table_dir: Path, reason: str) -> Path:
    """Move a damaged file out of its table (readers no longer see it), next to a note of why."""
    target_dir = table_dir.parent / QUARANTINE_DIR / table_dir.name / path.parent.relative_to(table_dir)
    make_dirs(target_dir)
    target = target_dir / path.name
    os.replace(path, target)
    fsync_dir(path.parent)
    write_bytes(f"{reason}\n".encode(), target_dir, f"{path.name}.reason.txt")
    log.warning("landing: quarantined %s (%s) to %s", path, reason, target)
    return target


def recover(table_dir: Path) -> list[Path]:
    """After a crash: quarantine every visible file that is not whole, and remove temporary files
    no writer still owns. Returns the quarantined files. Safe while writers run."""
    moved = []
    if not table_dir.is_dir():
        return moved
    now = time.time()
    for path in table_dir.rglob("*"):
        if path.name.endswith(".parquet"):
            if (reason := damage(path)) is not None:
                moved.append(quarantine(path, table_dir, reason))
        elif path.name.endswith(".tmp"):
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > STALE_TMP_S:
                    path.unlink()
    return moved

