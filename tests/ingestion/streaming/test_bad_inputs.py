"""Bad input, one case at a time, through the handler and through the function served by
functions-framework: each gets a stored rejection with its reason, the function never fails on
it, and the valid events next to it land. Also: a 10 MB message within the deployed memory, a
gzip bomb, and a redelivered message that leaves no duplicate in silver."""
from __future__ import annotations

import base64
import gzip
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from common.settings import PlatformSettings
from deployments.local.services import function_server
from deployments.streaming import config
from ingestion.streaming.events import MAX_MESSAGE_BYTES
from ingestion.streaming.sinks import BigQuerySink, LocalSink
from ingestion.streaming.handler import HandleResult, handle_message, pubsub_message
from tests.ingestion.streaming.silver import build_silver, query_silver

PUBLISH = datetime(2026, 6, 1, 12, tzinfo=UTC)
MIB = 1024 * 1024


def event(i: int, **overrides: Any) -> dict[str, Any]:
    base = {
        "event_id": f"00000000-0000-4000-8000-{i:012d}",
        "event_name": "level_complete",
        "event_timestamp": "2026-06-01T11:00:00Z",
        "game_id": "space_miner",
        "player_id": f"player-{i}",
        "session_id": f"session-{i}",
        "platform": "pc",
        "params": {"level": 2, "duration_s": 12.5},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def batch(*events: Any) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def query(landing: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect() as con:
        for table in ("game_events", "game_events_rejected"):
            con.execute(f"create view {table} as select * from read_parquet('{landing}/{table}/**/*.parquet', union_by_name=true)")
        return con.execute(sql).fetchall()


def quiet(_: bytes) -> None:
    pass


# ---------------------------------------------------------------------------------------------
# One bad element between two good ones, or one bad message
# ---------------------------------------------------------------------------------------------

NEIGHBOURED = [
    ("missing required field", event(9, player_id=None), "schema_violation", "events[1].player_id: required field is missing"),
    ("wrong type", event(9, params={"level": "2"}), "schema_violation", "events[1].params.level: expected int, got str '2'"),
    ("unknown event_name", event(9, event_name="level_up"), "schema_violation", "events[1].event_name: invalid value 'level_up', expected one of"),
    ("far-future timestamp", event(9, event_timestamp="2031-01-01T00:00:00Z"), "timestamp_out_of_range", "is more than 24h after the publish time"),
    ("pre-2015 timestamp", event(9, event_timestamp="2014-12-31T23:59:59Z"), "timestamp_out_of_range", "'2014-12-31T23:59:59Z' is before "),
    ("six years old", event(9, event_timestamp="2020-05-01T00:00:00Z"), "timestamp_out_of_range",
     "the oldest time BigQuery can stream into its partitioned table"),
    ("not an object", "oops", "schema_violation", "events[1]: expected object, got str 'oops'"),
]


@pytest.mark.parametrize(("name", "bad", "error_type", "message"), NEIGHBOURED, ids=[c[0] for c in NEIGHBOURED])
def test_one_bad_event_is_rejected_and_its_neighbours_land(tmp_path: Path, name: str, bad: Any, error_type: str, message: str) -> None:
    result = handle_message(batch(event(1), bad, event(2)), {}, "m-1", PUBLISH, LocalSink(tmp_path), emit=quiet)
    assert result == HandleResult(valid=2, rejected=1)
    assert query(tmp_path, "select event_id from game_events order by 1") == [(event(1)["event_id"],), (event(2)["event_id"],)]
    ((index, got_type, got_message, payload),) = query(tmp_path, "select event_index, error_type, error_message, payload from game_events_rejected")
    assert (index, got_type) == (1, error_type)
    assert message in got_message
    assert json.loads(payload) == bad


WHOLE = [
    ("malformed JSON", b'{"events": [{"event_id": ', {}, "malformed_json", "message: "),
    ("not UTF-8", '{"player_id": "J\u00fcrgen"}'.encode("latin-1"), {}, "not_utf8", "message: data is not valid UTF-8"),
    ("attributes and no data", b"", {"game_id": "space_miner"}, "empty_message", "message: no data"),
    ("empty batch", b'{"events": []}', {}, "empty_message", "message.events: empty batch"),
    ("gzip without the attribute", gzip.compress(batch(event(1))), {}, "not_utf8", "message: data is not valid UTF-8"),
    ("unknown content-encoding", batch(event(1)), {"content-encoding": "br"}, "decompression", "attributes.content-encoding: unsupported value 'br'"),
]


@pytest.mark.parametrize(("name", "data", "attributes", "error_type", "message"), WHOLE, ids=[c[0] for c in WHOLE])
def test_a_bad_message_is_one_rejection(tmp_path: Path, name: str, data: bytes, attributes: dict[str, str], error_type: str, message: str) -> None:
    result = handle_message(data, attributes, "m-1", PUBLISH, LocalSink(tmp_path), emit=quiet)
    assert result == HandleResult(valid=0, rejected=1)
    ((index, got_type, got_message, attrs),) = query(tmp_path, "select event_index, error_type, error_message, attributes from game_events_rejected")
    assert (index, got_type) == (None, error_type)
    assert got_message.startswith(message)
    assert json.loads(attrs) == attributes


def test_a_batch_of_1000_with_one_bad_event(tmp_path: Path) -> None:
    events: list[Any] = [event(i) for i in range(1000)]
    events[637] = event(637, platform="switch")
    result = handle_message(batch(*events), {}, "m-1", PUBLISH, LocalSink(tmp_path), emit=quiet)
    assert result == HandleResult(valid=999, rejected=1)
    assert query(tmp_path, "select count(distinct event_id) from game_events") == [(999,)]
    assert query(tmp_path, "select event_index, error_type from game_events_rejected") == [(637, "schema_violation")]


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    import tracemalloc

    bomb = gzip.compress(b" " * (256 * MIB), compresslevel=9)  # 256 MiB of spaces in 250 KB
    tracemalloc.start()
    try:
        started = time.perf_counter()
        result = handle_message(bomb, {"content-encoding": "gzip"}, "m-1", PUBLISH, LocalSink(tmp_path), emit=quiet)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result == HandleResult(valid=0, rejected=1)
    ((error_type, message),) = query(tmp_path, "select error_type, error_message from game_events_rejected")
    assert error_type == "oversize" and message == f"message: inflates to more than {MAX_MESSAGE_BYTES} bytes, the limit"
    assert peak < 4 * MAX_MESSAGE_BYTES  # inflation stops at the limit
    assert elapsed < 5


# ---------------------------------------------------------------------------------------------
# Redelivery
# ---------------------------------------------------------------------------------------------


def test_a_redelivered_message_leaves_no_duplicate_in_silver(tmp_path: Path) -> None:
    data = batch(event(1), event(2, platform="switch"), event(1), event(3))  # event 1 also repeated inside
    landing = tmp_path / "landing"
    sink = LocalSink(landing)
    for _ in range(2):
        handle_message(data, {}, "m-1", PUBLISH, sink, emit=quiet)
    assert query(landing, "select count(*) from game_events") == [(6,)]
    # rejections repeat with the same (message_id, event_index): the key of their insertId
    assert query(landing, "select distinct message_id, event_index from game_events_rejected") == [("m-1", 1)]
    build_silver(tmp_path)  # silver as dbt's models build it
    assert query_silver(tmp_path, "select event_id from silver.stg_telemetry__game_events order by 1") == [
        (event(1)["event_id"],), (event(3)["event_id"],)]
    assert query_silver(tmp_path, "select message_id, event_index, error_type from "
                        "silver.stg_telemetry__game_events_rejected") == [("m-1", 1, "schema_violation")]


def test_redelivery_sends_the_same_bigquery_insert_ids() -> None:
    sent: list[list[str | None]] = []

    class Recorder:
        def insert_rows_json(self, table: str, rows: list[dict[str, Any]], row_ids: Any, **_: Any) -> list[Any]:
            sent.append(list(row_ids))
            return []

    sink = BigQuerySink("proj", "bronze", client=Recorder())  # type: ignore[arg-type]
    data = batch(event(1), event(2, platform="switch"), "oops")
    for ingested in (datetime(2026, 6, 1, 12, 0, 1, tzinfo=UTC), datetime(2026, 6, 1, 12, 5, tzinfo=UTC)):
        handle_message(data, {}, "m-1", PUBLISH, sink, emit=quiet, now=ingested)
    assert sent == [[event(1)["event_id"]], ["m-1:1", "m-1:2"]] * 2
    handle_message(b"{", {}, "m-2", PUBLISH, sink, emit=quiet)
    assert sent[-1] == ["m-2:message"]


# ---------------------------------------------------------------------------------------------
# Through functions-framework: status codes, and memory for a 10 MB message
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("function")
    with function_server(data_dir) as url:
        yield url, data_dir


def post(url: str, data: bytes | None, message_id: str, attributes: dict[str, str] | None = None) -> int:
    message: dict[str, Any] = {"messageId": message_id, "publishTime": PUBLISH.isoformat()}
    if data is not None:
        message["data"] = base64.b64encode(data).decode()
    if attributes is not None:
        message["attributes"] = attributes
    body = json.dumps({"message": message, "subscription": "projects/p/subscriptions/s"}).encode()
    request = urllib.request.Request(f"{url}/projects/p/topics/game-events", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def worker_pid(data_dir: Path) -> int:
    """The gunicorn worker serving the function started for ``data_dir`` (found by its environment)."""
    marker = f"GA_LANDING_DIR={PlatformSettings(data_dir=data_dir).landing_dir}".encode()
    mine = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    mine[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    workers = [pid for pid, parent in mine.items() if parent in mine]
    assert len(workers) == 1, f"expected one worker among {mine}"
    return workers[0]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def post_cloud_event(url: str, message: dict[str, Any]) -> int:
    """A binary-mode CloudEvent, as Eventarc delivers a Pub/Sub message to a gen2 function."""
    headers = {
        "Content-Type": "application/json",
        "ce-id": message["messageId"],
        "ce-specversion": "1.0",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/game-events",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-time": PUBLISH.isoformat(),
    }
    body = json.dumps({"message": message, "subscription": "projects/p/subscriptions/eventarc"}).encode()
    request = urllib.request.Request(url, data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def test_bad_messages_answer_2xx_over_http(served: tuple[str, Path]) -> None:
    url, data_dir = served
    # the emulator (and a raw push) sends "data": "" for a message with attributes only
    assert post(url, b"", "push-no-data", {"game_id": "space_miner"}) == 200
    # Eventarc may leave "data" out altogether
    assert post_cloud_event(url, {"messageId": "ce-no-data", "attributes": {"game_id": "space_miner"}}) == 200
    assert post(url, b"\xff\xfe\x00", "binary") == 200
    assert post(url, b'{"events": [', "broken") == 200
    rows = query(data_dir / "landing", "select message_id, error_type from game_events_rejected "
                 "where message_id in ('push-no-data', 'ce-no-data', 'binary', 'broken') order by 1")
    assert rows == [("binary", "not_utf8"), ("broken", "malformed_json"), ("ce-no-data", "empty_message"), ("push-no-data", "empty_message")]


def ten_mb_batch(target: int) -> tuple[bytes, int]:
    """A batch of valid events as close to ``target`` bytes as whole events allow (each about 1.3 KB,
    so the batch stays within the contract's cap on events per message)."""
    parts: list[bytes] = []
    size = len(b'{"events":[]}')
    i = 0
    while True:
        raw = json.dumps(event(i, note="x" * 1000)).encode()
        if size + len(raw) + 1 > target:
            break
        parts.append(raw)
        size += len(raw) + 1
        i += 1
    return b'{"events":[' + b",".join(parts) + b"]}", i


def test_a_10_mb_message_fits_the_deployed_memory(served: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    url, data_dir = served
    assert post(url, json.dumps(event(0)).encode(), "warm-up") == 200
    pid = worker_pid(data_dir)
    idle = peak_rss_mb(pid)
    data, count = ten_mb_batch(MAX_MESSAGE_BYTES)
    started = time.perf_counter()
    assert post(url, data, "ten-mb") == 200
    elapsed = time.perf_counter() - started
    peak = peak_rss_mb(pid)
    assert query(data_dir / "landing", "select count(*) from game_events where message_id = 'ten-mb'") == [(count,)]
    assert post(url, data + b" " * (MAX_MESSAGE_BYTES - len(data) + 1), "too-big") == 200
    assert query(data_dir / "landing", "select error_type from game_events_rejected where message_id = 'too-big'") == [("oversize",)]

    per_message = peak - idle
    with capsys.disabled():
        print(f"\n10 MB message ({count} events): {elapsed:.2f} s, worker peak RSS {idle:.0f} -> {peak:.0f} MB "
              f"(+{per_message:.0f} MB); deployed {config.MEMORY_MB} MB at concurrency {config.CONCURRENCY}")
    assert idle + config.CONCURRENCY * per_message < config.MEMORY_MB
