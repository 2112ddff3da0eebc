"""Compaction of the local landing area, and the snapshot a reader reads while it runs.

* **Readers read a snapshot, files go late.** Compaction makes its merged file visible first and
  removes the files it merged only ``grace_s`` seconds later (a later compaction run does it). A
  reader reads a snapshot (``snapshot``; the bronze views of dbt are made from the same list at the
  start of each run): the listed files less those a listed merged file replaces. A file a snapshot
  names stays in place ``grace_s``, so a query never meets a missing file, and a directory listing
  that misses a merged file appearing meanwhile still holds its sources: never fewer rows, no row
  twice. A bare glob over the folder stays correct but for the grace period (a merged row twice,
  as after a redelivery) and the instant its files are removed.

Compaction is incremental and size-tiered: the files the function writes (one per message) are
merged into level-0 files; ``fanout`` files of one level are merged into one of the next level.
Nothing is merged twice at the same level, so each row is rewritten about log_fanout(rows) times
over its life, and merging streams row groups instead of holding a day in memory.

Which files a compaction merged is recorded in a journal (``_journal/<table>/<merged file>.json``)
written before the merged file becomes visible: the files it names are never merged again, and
after ``grace_s`` they are removed. A journal whose merged file never became visible (a crash
mid-compaction) is dropped, and its sources are merged again by the next run.
"""
from __future__ import annotations

import contextlib
import fcntl
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from .landing import EMPTY_FILE, fsync_dir, make_dirs, publish, quarantine, recover, tmp_path, write_bytes

COMPACTED_PREFIX = "compacted-"
JOURNAL_DIR = "_journal"
_COMPACTED = re.compile(rf"^{COMPACTED_PREFIX}(\d+)-[0-9a-f]{{32}}\.parquet$")
# rows written per row group of a merged file, and so the most rows a merge holds at once
ROW_GROUP_ROWS = 128 * 1024


@dataclass(frozen=True)
class Compaction:
    merged: int  # source files merged (their rows now also in a compacted file)
    written: int  # compacted files written
    removed: int  # source files removed after their grace period
    quarantined: int


def level(path: Path) -> int | None:
    """A compacted file's level; None for a file the function wrote."""
    m = _COMPACTED.match(path.name)
    return int(m.group(1)) if m else None


def _journal_dir(table_dir: Path) -> Path:
    return table_dir.parent / JOURNAL_DIR / table_dir.name


@contextlib.contextmanager
def _exclusive(table_dir: Path) -> Iterator[None]:
    """One compaction of a table at a time (another process's run waits)."""
    journal = _journal_dir(table_dir)
    make_dirs(journal)
    with open(journal / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _journals(table_dir: Path) -> list[tuple[Path, dict]]:
    """The compactions whose sources are not removed yet, oldest first."""
    out = []
    for path in _journal_dir(table_dir).glob("*.json"):
        try:
            out.append((path, orjson.loads(path.read_bytes())))
        except FileNotFoundError:
            continue  # removed meanwhile, after its sources: nothing of it is left to list
    return sorted(out, key=lambda j: j[1]["committed_at"])


def _sweep(table_dir: Path, grace_s: float) -> tuple[set[Path], int]:
    """Remove the sources of compactions older than ``grace_s``, drop journals of compactions that
    never completed; returns the sources of compactions still in their grace period (never merged
    again) and how many files were removed. Journals are handled oldest first, so a merged file
    merged again later goes after its own sources."""
    pending: set[Path] = set()
    removed = 0
    now = time.time()
    for path, entry in _journals(table_dir):
        output = table_dir / entry["output"]
        sources = [table_dir / s for s in entry["sources"]]
        if not output.exists():
            path.unlink()  # the crash came before the merged file was visible: merge them again
            continue
        if now - entry["committed_at"] < grace_s:
            pending.update(sources)
            continue
        folders = set()
        for source in sources:
            if source.exists():
                source.unlink()
                removed += 1
                folders.add(source.parent)
        for folder in folders:
            fsync_dir(folder)
        path.unlink()
    return pending, removed


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """A batch with exactly ``schema``'s columns (a column an older file lacks is null)."""
    columns = [
        batch.column(f.name).cast(f.type) if f.name in batch.schema.names else pa.nulls(len(batch), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _merge(sources: list[Path], table_dir: Path, out_level: int, schema: pa.Schema) -> tuple[Path | None, int, int]:
    """Stream ``sources`` into one new compacted file of ``out_level``: journal first, then the
    file made visible. Returns (the merged file, sources merged, sources quarantined)."""
    folder = sources[0].parent
    name = f"{COMPACTED_PREFIX}{out_level}-{uuid.uuid4().hex}.parquet"
    tmp = tmp_path(folder, name)
    merged, bad = [], []
    buffered: list[pa.Table] = []
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for source in sources:
                try:
                    parquet = pq.ParquetFile(source)
                    tables = [_conform(b, schema) for b in parquet.iter_batches(batch_size=ROW_GROUP_ROWS)]
                except (OSError, pa.ArrowException) as exc:
                    bad.append(quarantine(source, table_dir, f"unreadable: {exc}"))
                    continue
                merged.append(source)
                for t in tables:
                    buffered.append(t)
                    rows += t.num_rows
                if rows >= ROW_GROUP_ROWS:
                    writer.write_table(pa.concat_tables(buffered), row_group_size=ROW_GROUP_ROWS)
                    buffered, rows = [], 0
            if buffered:
                writer.write_table(pa.concat_tables(buffered), row_group_size=ROW_GROUP_ROWS)
        if merged:
            entry = {"output": str(folder.relative_to(table_dir) / name),
                     "sources": [str(s.relative_to(table_dir)) for s in merged],
                     "committed_at": time.time()}
            write_bytes(orjson.dumps(entry), _journal_dir(table_dir), f"{name}.json")
            publish(tmp, folder / name)
    finally:
        tmp.unlink(missing_ok=True)
    return (folder / name if merged else None), len(merged), len(bad)


def snapshot(table_dir: Path) -> list[Path]:
    """The files a reader reads: every Parquet file of the table, less the sources of a compaction
    whose merged file it lists. The journals are read before and after the folder is listed: a
    journal is written before its merged file appears (so a merged file that appears during the
    listing has its journal read after it) and removed after its sources (so sources removed during
    the listing have their journal read before it). A merged file the listing missed leaves its
    sources in. Every file returned stays in place for ``grace_s`` after the snapshot.
    ``dbt/macros/register_bronze.sql`` makes the same list in SQL."""
    before = [entry for _, entry in _journals(table_dir)]
    listed = set(table_dir.rglob("*.parquet"))
    journals = before + [entry for _, entry in _journals(table_dir)]
    superseded = {table_dir / s for e in journals if table_dir / e["output"] in listed for s in e["sources"]}
    return sorted(listed - superseded)


def scan_sql(table_dir: Path) -> str:
    """``read_parquet(...)`` over the table's snapshot: what a reader outside dbt queries."""
    files = ", ".join(f"'{f}'" for f in snapshot(table_dir))
    return f"read_parquet([{files}], union_by_name = true)"


def compact(
    directory: Path,
    schema: pa.Schema,
    min_files: int = 64,
    max_files_per_output: int = 5000,
    fanout: int = 8,
    grace_s: float = 86400.0,
) -> Compaction:
    """Compact each date folder of the table at ``directory``: merge the function's files (at least
    ``min_files`` of them, at most ``max_files_per_output`` per merged file) into level-0 files, and
    ``fanout`` files of one level into one of the next; remove merged files ``grace_s`` seconds after
    their merge (a day by default: longer than the bronze views of the last dbt run are used). Safe
    while the function writes and readers read; no reader lock is taken."""
    merged = written = removed = bad = 0
    if not directory.is_dir():
        return Compaction(0, 0, 0, 0)
    with _exclusive(directory):
        bad += len(recover(directory))
        pending, removed = _sweep(directory, grace_s)
        for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
            files = sorted(p for p in folder.glob("*.parquet") if p.name != EMPTY_FILE and p not in pending)
            by_level: dict[int, list[Path]] = {}
            landed = []
            for f in files:
                if (lvl := level(f)) is None:
                    landed.append(f)
                else:
                    by_level.setdefault(lvl, []).append(f)
            for start in range(0, len(landed) if len(landed) >= min_files else 0, max_files_per_output):
                output, done, quarantined = _merge(landed[start:start + max_files_per_output], directory, 0, schema)
                merged, bad = merged + done, bad + quarantined
                if output:
                    written += 1
                    by_level.setdefault(0, []).append(output)
            lvl = 0
            while lvl <= max(by_level, default=-1):  # a merge may fill the next level: cascade
                same = by_level.get(lvl, [])
                while len(same) >= fanout:
                    group, same = same[:fanout], same[fanout:]
                    output, done, quarantined = _merge(group, directory, lvl + 1, schema)
                    merged, bad = merged + done, bad + quarantined
                    if output:
                        written += 1
                        by_level.setdefault(lvl + 1, []).append(output)
                lvl += 1
        if grace_s <= 0:
            _, more = _sweep(directory, grace_s)
            removed += more
    return Compaction(merged, written, removed, bad)
