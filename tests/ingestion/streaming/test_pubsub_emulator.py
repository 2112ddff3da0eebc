"""The real local stack: the Pub/Sub emulator pushing to the function served by functions-framework,
writing to the local landing area. The simulator publishes through the Pub/Sub client; what lands
is reconciled with what was published, per server message id.

Silver keeps the first row per event_id (``stg_telemetry__game_events``); the checks below apply the
same rule to the bronze files with DuckDB.
"""
from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from deployments.local.pubsub import (
    LocalStream,
    local_streaming_stack,
    read_dead_letters,
    wait_for_delivery,
)
from simulator import Simulation, SimulationConfig, simulate
from simulator.deliver import publish_all
from tests.conftest import SMALL, requires_pubsub_emulator
from tests.ingestion.streaming.silver import build_silver, query_silver

pytestmark = requires_pubsub_emulator()

MAX_AHEAD = timedelta(hours=24)
# The simulated days end yesterday: the emulator stamps the real publish time, so events published
# "too far ahead" of the simulated publish time are judged against the real one (see expected()).
_END = datetime.now(UTC).date() - timedelta(days=1)


def recent(config: SimulationConfig) -> SimulationConfig:
    return dataclasses.replace(config, start_date=_END - timedelta(days=config.days))


# ---------------------------------------------------------------------------------------------
# Expectations (pure)
# ---------------------------------------------------------------------------------------------


def canonical(event: Any) -> str:
    return json.dumps(event, sort_keys=True, default=str)


def elements(data: bytes) -> int:
    """How many bronze rows a message yields: one per element of a batch, else one."""
    try:
        body = json.loads(data)
    except ValueError:
        return 1
    if isinstance(body, dict) and isinstance(body.get("events"), list) and body["events"]:
        return len(body["events"])
    return 1


def event_time(raw: bytes) -> datetime | None:
    try:
        return datetime.fromisoformat(json.loads(raw)["event_timestamp"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclasses.dataclass(frozen=True)
class Expected:
    valid: Counter[str]  # canonical event JSON -> how many copies were sent
    rejected: Counter[tuple[str, str, bytes]]  # (server message id, error_type, payload)
    rows_per_message: dict[str, int]  # server message id -> bronze rows (events + rejections)


def expected(sim: Simulation, ids: dict[str, str], publish_times: dict[str, datetime]) -> Expected:
    """What must land, given the server's message ids and publish times. An event the simulator
    made "more than 24 h after its publish time" is judged against the time Pub/Sub stamped."""
    valid = Counter(canonical(e) for e in sim.valid_events)
    rejected: Counter[tuple[str, str, bytes]] = Counter()
    for bad in sim.invalid_events:
        server_id = ids[bad.message_id]
        when = event_time(bad.raw)
        if bad.reason.startswith("timestamp_after_publish") and when is not None and when <= publish_times[server_id] + MAX_AHEAD:
            valid[canonical(json.loads(bad.raw, parse_float=Decimal))] += 1
        else:
            rejected[(server_id, bad.error_type, bad.raw)] += 1
    rows = {ids[m.message_id]: elements(m.data) for m in sim.messages}
    return Expected(valid, rejected, rows)


# ---------------------------------------------------------------------------------------------
# Reading the landing area
# ---------------------------------------------------------------------------------------------


def connect(landing: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for table in ("game_events", "game_events_rejected"):
        con.execute(
            f"create view {table} as select * from read_parquet('{landing}/{table}/**/*.parquet', union_by_name=true)"
        )
    return con


@dataclasses.dataclass(frozen=True)
class Landed:
    events: list[tuple[str, str, str]]  # (message_id, event_id, payload)
    silver_event_ids: list[str]
    rejected: list[tuple[str, int | None, str, bytes]]  # (message_id, event_index, error_type, payload)
    publish_times: dict[str, datetime]


def read_landed(landing: Path) -> Landed:
    """What landed, and silver's event ids as dbt's model builds them from it."""
    import base64

    build_silver(landing.parent)
    silver = [r[0] for r in query_silver(landing.parent, "select event_id from silver.stg_telemetry__game_events")]
    with connect(landing) as con:
        events = con.execute("select message_id, event_id, payload from game_events").fetchall()
        rejected = con.execute(
            "select message_id, event_index, error_type, payload, payload_encoding from game_events_rejected"
        ).fetchall()
        times = con.execute(
            "select message_id, min(publish_time) from (select message_id, publish_time from game_events "
            "union all select message_id, publish_time from game_events_rejected) group by 1"
        ).fetchall()
    return Landed(
        events=events,
        silver_event_ids=silver,
        rejected=[
            (m, i, t, base64.b64decode(p) if enc == "base64" else p.encode("utf-8")) for m, i, t, p, enc in rejected
        ],
        publish_times=dict(times),
    )


def run(stream: LocalStream, sim: Simulation) -> dict[str, str]:
    ids = publish_all(sim.messages, stream.project, stream.topic, emulator_host=stream.emulator_host)
    assert len(set(ids.values())) == len(sim.messages)
    return ids


# ---------------------------------------------------------------------------------------------
# Everything once, no faults
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Simulation, dict[str, str], Any, Landed]]:
    sim = simulate(recent(SMALL))
    data_dir = tmp_path_factory.mktemp("stream")
    with local_streaming_stack(data_dir) as stream:
        ids = run(stream, sim)
        report = wait_for_delivery(stream, ids.values(), timeout_s=240)
        dead = read_dead_letters(stream.emulator_host, stream.dead_letter_subscription_path)
    yield sim, ids, (report, dead), read_landed(data_dir / "landing")


def test_every_message_is_delivered_and_none_dead_lettered(delivered: Any) -> None:
    sim, ids, (report, dead), _ = delivered
    assert report.complete, f"{len(report.missing)} message(s) never landed, {report.dead_letters} dead letter(s)"
    assert len(report.landed) == len(sim.messages) > 1000
    assert dead == []


def test_counts_reconcile_per_message_id(delivered: Any) -> None:
    sim, ids, _, landed = delivered
    want = expected(sim, ids, landed.publish_times)
    got = Counter(m for m, _, _ in landed.events) + Counter(m for m, _, _, _ in landed.rejected)
    assert dict(got) == want.rows_per_message  # published = landed + rejected, message by message
    assert sum(got.values()) == sum(elements(m.data) for m in sim.messages)


def test_every_valid_event_lands_exactly_once_after_dedup(delivered: Any) -> None:
    sim, ids, _, landed = delivered
    want = expected(sim, ids, landed.publish_times)
    got = Counter(canonical(json.loads(payload, parse_float=Decimal)) for _, _, payload in landed.events)
    assert got == want.valid  # bronze keeps every copy sent, duplicates included
    assert sum(want.valid.values()) > len(want.valid)  # there were duplicates to remove
    silver = landed.silver_event_ids
    assert len(silver) == len(set(silver))
    assert set(silver) == {json.loads(e)["event_id"] for e in want.valid}


def test_every_invalid_event_is_rejected_with_its_reason(delivered: Any) -> None:
    sim, ids, _, landed = delivered
    want = expected(sim, ids, landed.publish_times)
    got = Counter((m, t, p) for m, _, t, p in landed.rejected)
    assert got == want.rejected
    assert {t for _, t, _ in want.rejected} == {"schema_violation", "timestamp_out_of_range", "malformed_json", "not_utf8"}


# ---------------------------------------------------------------------------------------------
# The sink fails for a while, then recovers
# ---------------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> None:
    """Swap two paths atomically (Linux renameat2), so no write can slip in between."""
    if _libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), str(a))


@contextmanager
def replaced_by_a_file(folder: Path) -> Iterator[None]:
    """The table folder becomes a regular file (writes under it raise OSError), then comes back.
    Permission bits would not do: the tests may run as root."""
    blocker = folder.with_name(f".{folder.name}.blocked")
    blocker.write_bytes(b"")
    exchange(folder, blocker)
    try:
        yield
    finally:
        exchange(folder, blocker)
        blocker.unlink()


def test_a_failing_sink_loses_nothing_and_duplicates_nothing_in_silver(tmp_path: Path) -> None:
    sim = simulate(recent(dataclasses.replace(SMALL, players_per_game=12)))
    half = len(sim.messages) // 2
    first, second = dataclasses.replace(sim, messages=sim.messages[:half]), dataclasses.replace(sim, messages=sim.messages[half:])
    landing = tmp_path / "landing"
    with local_streaming_stack(tmp_path) as stream:
        ids = run(stream, first)
        assert wait_for_delivery(stream, ids.values(), timeout_s=120).complete
        # both tables refuse writes; then events are accepted again while rejections still fail,
        # so messages with rejections are stored half and redelivered (their events land twice)
        with replaced_by_a_file(landing / "game_events_rejected"):
            with replaced_by_a_file(landing / "game_events"):
                published: dict[str, str] = {}
                publisher = threading.Thread(target=lambda: published.update(run(stream, second)))
                publisher.start()
                time.sleep(4)
            time.sleep(4)
        publisher.join(60)
        ids.update(published)
        report = wait_for_delivery(stream, ids.values(), timeout_s=180)
        dead = read_dead_letters(stream.emulator_host, stream.dead_letter_subscription_path)
        time.sleep(1)  # let redeliveries still in flight finish before counting duplicates

    assert report.complete and dead == []
    log = [json.loads(line) for line in (tmp_path / "logs" / "function.log").read_text().splitlines() if line.startswith("{")]
    failures = [r for r in log if r.get("severity") == "ERROR" and r.get("error") == "TransientSinkError"]
    assert len({r["message_id"] for r in failures}) > 10, "the sink never failed: the fault was not injected"

    landed = read_landed(landing)
    want = expected(sim, ids, landed.publish_times)
    silver = landed.silver_event_ids
    assert len(silver) == len(set(silver))  # nothing duplicated in silver
    assert set(silver) == {json.loads(e)["event_id"] for e in want.valid}  # nothing lost
    assert len(landed.events) > sum(want.valid.values()), "no half-stored message was redelivered"
    # rejections: one per (message, element) once redeliveries are collapsed on (message_id,
    # event_index), the key their BigQuery insertId is made of
    got_rejected = Counter((m, t, p) for m, _, t, p in set(landed.rejected))
    assert got_rejected == want.rejected
