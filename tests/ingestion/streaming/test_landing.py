"""The local landing area: compaction keeps every row in fewer files, readers never see fewer rows
or an error while the function writes and compaction runs, and acknowledged rows survive crashes."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from ingestion.streaming import compaction, landing
from ingestion.bronze import compact_local_bronze
from ingestion.streaming.compaction import Compaction, compact
from common.settings import REPO_ROOT, OrchestrationSettings
from ingestion.streaming.rows import GAME_EVENTS_SCHEMA
from tests.conftest import land_simulation

DAY = "2026-03-01"
T = datetime(2026, 3, 1, tzinfo=UTC)


def rows(folder: Path) -> list[tuple]:
    return duckdb.sql(f"select * exclude (ingested_at) from read_parquet('{folder}/**/*.parquet', union_by_name = true) "
                      "order by all").fetchall()


def event_rows(prefix: str, n: int) -> pa.Table:
    """``n`` game_events rows whose event ids start with ``prefix``."""
    ids = [f"{prefix}-{i}" for i in range(n)]
    values = {f.name: [T] * n if pa.types.is_timestamp(f.type) else [1] * n if f.type == pa.int64() else ids
              for f in GAME_EVENTS_SCHEMA}
    return pa.table(values, schema=GAME_EVENTS_SCHEMA)


def land(events: Path, prefix: str, n: int = 3) -> None:
    landing.write_table(event_rows(prefix, n), events / DAY, f"{prefix}.parquet")


def ids(events: Path, con: duckdb.DuckDBPyConnection | None = None) -> tuple[int, int]:
    """(rows, distinct event ids) a reader of the table's snapshot sees."""
    sql = f"select count(*), count(distinct event_id) from {compaction.scan_sql(events)}"
    return (con or duckdb).sql(sql).fetchall()[0]


def glob_ids(events: Path) -> tuple[int, int]:
    """(rows, distinct event ids) a bare glob over the folder sees."""
    sql = f"select count(*), count(distinct event_id) from read_parquet('{events}/**/*.parquet', union_by_name = true)"
    return duckdb.sql(sql).fetchall()[0]


def test_compaction_keeps_every_row_and_merges_the_files(tmp_path: Path, tiny_sim) -> None:
    land_simulation(tiny_sim, tmp_path)
    events = OrchestrationSettings(data_dir=tmp_path).landing_dir / "game_events"
    before, files_before = rows(events), len(list(events.rglob("*.parquet")))
    result = compact(events, GAME_EVENTS_SCHEMA, min_files=2, grace_s=0)
    after = list(events.rglob("*.parquet"))
    assert result.merged > 0 and result.removed == result.merged and len(after) < files_before // 4
    assert rows(events) == before
    assert compact(events, GAME_EVENTS_SCHEMA, min_files=2, grace_s=0).merged == 0  # nothing left to merge
    assert compact_local_bronze(events.parent)["game_events"] == 0


def test_compaction_is_size_tiered_and_never_merges_a_file_twice_at_one_level(tmp_path: Path) -> None:
    events = tmp_path / "game_events"
    written: list[set[str]] = []
    for run in range(5):
        for m in range(4):
            land(events, f"r{run}m{m}")
        result = compact(events, GAME_EVENTS_SCHEMA, min_files=4, fanout=2, grace_s=0)
        assert result.merged == 4 + (2 if run % 2 else 0) + (2 if run == 3 else 0)
        written.append({p.name for p in (events / DAY).glob("compacted-*")})
        assert len(rows(events)) == 12 * (run + 1)  # every row once, none twice
    # run 1 merged the two level-0 files into a level-1 file; run 3 two level-1 files into level 2
    levels = [sorted(compaction.level(Path(n)) for n in names) for names in written]
    assert levels == [[0], [1], [0, 1], [2], [0, 2]]
    assert written[2] >= written[1] - {n for n in written[1] if n.startswith("compacted-0")}  # level 1 kept as it was


def test_merged_files_go_only_after_their_grace_period_and_are_never_merged_again(tmp_path: Path) -> None:
    events = tmp_path / "game_events"
    for m in range(4):
        land(events, f"m{m}")
    first = compact(events, GAME_EVENTS_SCHEMA, min_files=2, grace_s=3600)
    assert (first.merged, first.written, first.removed) == (4, 1, 0)
    assert ids(events) == (12, 12)  # a snapshot reads the merged file, not its sources
    assert glob_ids(events) == (24, 12)  # a bare glob sees each merged row twice, as after a redelivery
    assert compact(events, GAME_EVENTS_SCHEMA, min_files=2, grace_s=3600).merged == 0  # not merged again
    assert compact(events, GAME_EVENTS_SCHEMA, min_files=2, grace_s=0).removed == 4
    assert ids(events) == glob_ids(events) == (12, 12)


def test_a_compaction_that_crashed_before_its_file_was_visible_is_redone(tmp_path: Path) -> None:
    events = tmp_path / "game_events"
    for m in range(4):
        land(events, f"m{m}")
    journal = tmp_path / compaction.JOURNAL_DIR / "game_events"
    landing.write_bytes(b'{"output": "2026-03-01/compacted-0-' + b"0" * 32 + b'.parquet", "sources": '
                        b'["2026-03-01/m0.parquet", "2026-03-01/m1.parquet"], "committed_at": 0}', journal, "x.json")
    result = compact(events, GAME_EVENTS_SCHEMA, min_files=2, grace_s=0)
    assert (result.merged, result.removed) == (4, 4) and ids(events) == (12, 12)
    assert not list(journal.glob("*.json"))


def test_readers_never_see_fewer_rows_nor_an_error_while_the_function_writes_and_compaction_runs(tmp_path: Path) -> None:
    """Two readers query the table in a loop while a writer lands a file every few milliseconds and
    compaction runs back to back (merging, then removing merged files after a grace period of 10 s,
    longer than any read here takes even on a loaded machine).
    Every read must succeed, see every row acknowledged before it began, and no row twice."""
    events = tmp_path / "game_events"
    landing.ensure_table(events, GAME_EVENTS_SCHEMA)
    for m in range(40):
        land(events, f"seed{m}")
    acked = [120]  # rows whose write returned
    started = [120]  # rows whose write began
    reads: list[tuple[int, int, int]] = []
    errors: list[BaseException] = []
    compactions: list[Compaction] = []
    stop = threading.Event()

    def guarded(body):
        def run() -> None:
            try:
                body()
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
                stop.set()
        return threading.Thread(target=run)

    def write() -> None:
        n = 0
        while not stop.is_set():
            started[0] += 3
            land(events, f"w{n}")
            acked[0] += 3
            n += 1
            time.sleep(0.002)

    def read() -> None:
        con = duckdb.connect()
        while not stop.is_set():
            low = acked[0]
            count, distinct = ids(events, con)
            reads.append((low, distinct if count == distinct else -count, started[0]))

    def compaction() -> None:
        while not stop.is_set():
            compactions.append(compact(events, GAME_EVENTS_SCHEMA, min_files=4, max_files_per_output=10,
                                       fanout=3, grace_s=10.0))

    threads = [guarded(write), guarded(read), guarded(read), guarded(compaction)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 180
    while not stop.is_set() and time.monotonic() < deadline:
        if len(reads) >= 400 and sum(c.removed for c in compactions) >= 100:
            break
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(reads) >= 400 and sum(c.removed for c in compactions) >= 100, (len(reads), compactions[-3:])
    wrong = [r for r in reads if not r[0] <= r[1] <= r[2]]  # a negative count: a row seen twice
    assert not wrong, f"{len(wrong)} of {len(reads)} reads out of bounds, e.g. {wrong[:3]}"
    compact(events, GAME_EVENTS_SCHEMA, min_files=1, grace_s=0)
    assert ids(events) == (acked[0], acked[0])  # in the end: every row exactly once


def test_a_write_is_on_disk_before_it_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = landing.write_table(event_rows("a", 1), tmp_path / "game_events" / DAY, "a.parquet")
    # the new folders, the file (under its temporary name) and the folder holding its final name
    assert synced[:2] == [str(tmp_path), str(tmp_path / "game_events")]
    assert synced[-2].startswith(str(path.parent / ".a.parquet.")) and synced[-1] == str(path.parent)


def test_a_zero_length_or_torn_file_is_quarantined_and_reads_keep_working(tmp_path: Path, caplog) -> None:
    events = tmp_path / "game_events"
    for m in range(3):
        land(events, f"m{m}")
    (events / DAY / "empty.parquet").write_bytes(b"")
    torn = events / DAY / "m1.parquet"
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    with pytest.raises(duckdb.Error):
        ids(events)  # what a reader meets before recovery
    with caplog.at_level(logging.WARNING, logger="ingestion.streaming.landing"):
        result = compact(events, GAME_EVENTS_SCHEMA, min_files=2, grace_s=0)
    assert result.quarantined == 2 and ids(events) == (6, 6)
    quarantined = tmp_path / landing.QUARANTINE_DIR / "game_events" / DAY
    assert (quarantined / "empty.parquet.reason.txt").read_text() == "zero-length file\n"
    assert "torn or truncated" in (quarantined / "m1.parquet.reason.txt").read_text()
    assert sorted(m for m in caplog.messages if "quarantined" in m) == [
        m for m in sorted(caplog.messages) if "empty.parquet (zero-length file)" in m or "m1.parquet (" in m]


WRITER = """
import sys
from pathlib import Path
from tests.ingestion.streaming.test_landing import land
events = Path(sys.argv[1])
n = int(sys.argv[2])
while True:
    land(events, f"k{n}", 50)
    print(n, flush=True)  # the acknowledgement
    n += 1
"""


def test_a_writer_killed_at_any_moment_loses_no_acknowledged_row(tmp_path: Path) -> None:
    """kill -9 of a writing process, five times at different moments (mid-write, between write and
    acknowledgement, ...): every acknowledged row is read back, and reads keep working."""
    events = tmp_path / "game_events"
    landing.ensure_table(events, GAME_EVENTS_SCHEMA)
    acked: list[int] = []
    next_n = 0
    for kill in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(events), str(next_n)], cwd=REPO_ROOT,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for _ in range(5 + 7 * kill):
            acked.append(int(proc.stdout.readline()))
        time.sleep(0.003 * kill)
        os.kill(proc.pid, signal.SIGKILL)
        acked += [int(line) for line in proc.stdout.read().split()]  # acknowledged before it died
        proc.wait()
        next_n = max(acked) + 2  # the one it was writing when killed is sent again under a new name
        landing.recover(events)
        seen = {r[0] for r in duckdb.sql(f"select distinct event_id from read_parquet('{events}/**/*.parquet')").fetchall()}
        assert {f"k{n}-{i}" for n in acked for i in range(50)} <= seen


def test_the_warehouse_bronze_views_read_the_snapshot(tmp_path: Path, tiny_sim) -> None:
    """dbt's bronze views (register_bronze, at the start of each run) list the same files as
    ``snapshot``: after a compaction whose sources are still in place, no row is counted twice."""
    from tests.dbt.warehouse import dbt, prepare

    land_simulation(tiny_sim, tmp_path)
    settings = OrchestrationSettings(data_dir=tmp_path)
    events = settings.landing_dir / "game_events"
    distinct = "count(distinct event_id || message_id)"
    glob = f"select count(*), {distinct} from read_parquet('{events}/**/*.parquet')"
    expected = duckdb.sql(glob).fetchall()
    assert expected[0][0] == expected[0][1]
    assert compact(events, GAME_EVENTS_SCHEMA, min_files=2, grace_s=3600).merged > 0
    assert duckdb.sql(glob).fetchall()[0][0] > expected[0][0]  # a bare glob counts the merged rows twice
    prepare(settings)
    dbt(settings, "run", "--select", "stg_telemetry__game_events")
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        assert con.sql(f"select count(*), {distinct} from bronze.game_events").fetchall() == expected
        assert con.sql("select count(*) from silver.stg_telemetry__game_events").fetchall()[0][0] > 0
