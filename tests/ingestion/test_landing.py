"""Compaction of the local landing area: the same rows, far fewer files, and readers never miss a row."""
from __future__ import annotations

import threading
from pathlib import Path

import duckdb

from ingestion.bronze import compact_local_bronze
from ingestion.landing import compact
from ingestion.settings import Settings
from ingestion.sinks import GAME_EVENTS_SCHEMA
from tests.conftest import land_simulation


def rows(folder: Path) -> list[tuple]:
    return duckdb.sql(f"select * exclude (ingested_at) from read_parquet('{folder}/**/*.parquet', union_by_name = true) "
                      "order by all").fetchall()


def test_compaction_keeps_every_row_and_merges_the_files(tmp_path: Path, tiny_sim) -> None:
    land_simulation(tiny_sim, tmp_path)
    events = Settings(data_dir=tmp_path).landing_dir / "game_events"
    before, files_before = rows(events), len(list(events.rglob("*.parquet")))
    merged = compact(events, GAME_EVENTS_SCHEMA, min_files=2)
    after = list(events.rglob("*.parquet"))
    assert merged > 0 and len(after) < files_before // 4
    assert rows(events) == before
    assert compact(events, GAME_EVENTS_SCHEMA, min_files=2) == 0  # one file per folder left: nothing to do
    assert compact_local_bronze(events.parent)["game_events"] == 0


def test_a_reader_never_sees_fewer_rows_while_compaction_runs(tmp_path: Path, tiny_sim) -> None:
    land_simulation(tiny_sim, tmp_path)
    events = Settings(data_dir=tmp_path).landing_dir / "game_events"
    expected = duckdb.sql(f"select count(distinct event_id || message_id) from "
                          f"read_parquet('{events}/**/*.parquet', union_by_name = true)").fetchall()[0][0]
    seen: list[int] = []
    reading, done = threading.Event(), threading.Event()

    def read() -> None:
        con = duckdb.connect()
        while not done.is_set():
            try:
                seen.append(con.sql(f"select count(distinct event_id || message_id) from "
                                    f"read_parquet('{events}/**/*.parquet', union_by_name = true)").fetchall()[0][0])
            except duckdb.IOException:  # a listed file was merged away before it was opened: read again
                continue
            finally:
                reading.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert reading.wait(60)  # the reader is in its loop before compaction starts
    compact(events, GAME_EVENTS_SCHEMA, min_files=2, max_files_per_output=3)
    done.set()
    reader.join()
    assert seen and all(n == expected for n in seen)  # each delivery seen, at least once, in every read
