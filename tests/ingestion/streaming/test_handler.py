"""The message handler, called directly with a LocalSink, and the CloudEvent entry point."""
from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from cloudevents.http import CloudEvent

from ingestion.streaming.rows import BronzeEvent, BronzeRejection
from ingestion.streaming.sinks import LocalSink, TransientSinkError
from ingestion.streaming import handler
from ingestion.streaming.handler import HandleResult, handle_message, pubsub_message

PUBLISH = datetime(2024, 6, 1, 12, tzinfo=UTC)


def raw_event(i: int, **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": f"00000000-0000-0000-0000-{i:012d}",
        "event_name": "level_complete",
        "event_timestamp": "2024-06-01T11:00:00Z",
        "game_id": "g",
        "player_id": "p",
        "session_id": "s",
        "platform": "pc",
        "params": {"level": 2},
        **overrides,
    }


def query(landing: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect() as con:
        for table in ("game_events", "game_events_rejected"):
            con.execute(
                f"create view {table} as select * from "
                f"read_parquet('{landing}/{table}/**/*.parquet', union_by_name=true)"
            )
        return con.execute(sql).fetchall()


class Lines:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def __call__(self, line: bytes) -> None:
        assert b"\n" not in line
        self.records.append(json.loads(line))


def test_batch_with_valid_and_broken_events_lands(tmp_path: Path) -> None:
    data = json.dumps(
        {"events": [raw_event(0), raw_event(1, params={"level": "3"}), raw_event(2), "oops"]}
    ).encode()
    logs = Lines()
    result = handle_message(
        data, {"source": "game"}, "msg-7", PUBLISH, LocalSink(tmp_path), emit=logs
    )
    assert result == HandleResult(valid=2, rejected=2)
    assert query(tmp_path, "select event_id, message_id, publish_time from game_events order by 1") == [
        ("00000000-0000-0000-0000-000000000000", "msg-7", PUBLISH),
        ("00000000-0000-0000-0000-000000000002", "msg-7", PUBLISH),
    ]
    assert query(
        tmp_path,
        "select event_index, error_type, error_message, attributes from game_events_rejected order by 1",
    ) == [
        (1, "schema_violation", "events[1].params.level: expected int, got str '3'", '{"source":"game"}'),
        (3, "schema_violation", "events[3]: expected object, got str 'oops'", '{"source":"game"}'),
    ]
    (record,) = logs.records
    assert record["severity"] == "WARNING"
    assert record["message_id"] == "msg-7"
    assert (record["valid"], record["rejected"]) == (2, 2)
    assert record["rejections"][0] == {
        "event_index": 1,
        "error_type": "schema_violation",
        "error_message": "events[1].params.level: expected int, got str (1 chars)",  # the value masked
    }


def test_a_rejected_value_reaches_the_log_only_masked(tmp_path: Path) -> None:
    lines: list[bytes] = []
    data = json.dumps({"events": [raw_event(0, country="jane.doe@example.com")]}).encode()
    handle_message(data, {}, "m-mail", PUBLISH, LocalSink(tmp_path), emit=lines.append)
    (line,) = lines
    assert b"jane" not in line and b"example" not in line
    logs = Lines()
    logs(line)
    assert logs.records[0]["rejections"][0]["error_message"].endswith("got 'ja'... (20 chars)")
    # the stored row keeps the value, as sent, for whoever may read the rejected table
    ((message,),) = query(tmp_path, "select error_message from game_events_rejected")
    assert "'jane.doe@example.com'" in message


def test_malformed_message_is_logged_and_stored_not_raised(tmp_path: Path) -> None:
    logs = Lines()
    result = handle_message(b'{"events": [', {}, "m", PUBLISH, LocalSink(tmp_path), emit=logs)
    assert result == HandleResult(valid=0, rejected=1)
    assert query(tmp_path, "select error_type, event_index, payload from game_events_rejected") == [
        ("malformed_json", None, '{"events": [')
    ]
    assert logs.records[0]["rejections"][0]["error_type"] == "malformed_json"


def test_clean_message_logs_info(tmp_path: Path) -> None:
    logs = Lines()
    handle_message(json.dumps(raw_event(1)).encode(), {}, "m", PUBLISH, LocalSink(tmp_path), emit=logs)
    assert logs.records[0]["severity"] == "INFO"
    assert logs.records[0]["rejections"] == []


def test_gzip_attribute(tmp_path: Path) -> None:
    import gzip

    data = gzip.compress(json.dumps({"events": [raw_event(1), raw_event(2)]}).encode())
    result = handle_message(data, {"content-encoding": "gzip"}, "m", PUBLISH, LocalSink(tmp_path), emit=Lines())
    assert result == HandleResult(valid=2, rejected=0)


def test_log_lists_at_most_fifty_rejections(tmp_path: Path) -> None:
    logs = Lines()
    data = json.dumps({"events": [1] * 60}).encode()
    handle_message(data, {}, "m", PUBLISH, LocalSink(tmp_path), emit=logs)
    assert len(logs.records[0]["rejections"]) == 50
    assert logs.records[0]["rejections_not_listed"] == 10


class FailingSink:
    def write(self, events: Sequence[BronzeEvent], rejections: Sequence[BronzeRejection], event_indexes: Any = None) -> None:
        raise TransientSinkError("proj.ds.game_events: insertAll failed: 503")


def test_transient_sink_error_propagates_after_an_error_log() -> None:
    logs = Lines()
    with pytest.raises(TransientSinkError):
        handle_message(json.dumps(raw_event(1)).encode(), {}, "m", PUBLISH, FailingSink(), emit=logs)
    assert logs.records[0]["severity"] == "ERROR"
    assert logs.records[0]["error"] == "TransientSinkError"


def test_default_log_goes_to_stdout_as_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handle_message(b"", {}, "m-empty", PUBLISH, LocalSink(tmp_path))
    (line,) = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    assert record["severity"] == "WARNING" and record["message_id"] == "m-empty"
    assert record["rejections"][0]["error_type"] == "empty_message"


# ---------------------------------------------------------------------------------------------
# Envelope
# ---------------------------------------------------------------------------------------------

NOW = datetime(2024, 6, 1, 13, tzinfo=UTC)


def test_pubsub_message_camel_case() -> None:
    msg = pubsub_message(
        {
            "message": {
                "data": base64.b64encode(b'{"a":1}').decode(),
                "attributes": {"k": "v"},
                "messageId": "123",
                "publishTime": "2024-06-01T12:00:00.123456789Z",
            },
            "subscription": "projects/p/subscriptions/s",
        },
        "ce-id",
        "2024-01-01T00:00:00Z",
        NOW,
    )
    assert (msg.data, msg.attributes, msg.message_id) == (b'{"a":1}', {"k": "v"}, "123")
    assert msg.publish_time == datetime(2024, 6, 1, 12, 0, 0, 123457, tzinfo=UTC)
    assert msg.envelope_error is None


def test_pubsub_message_snake_case_and_fallbacks() -> None:
    msg = pubsub_message(
        {"message": {"data": "", "message_id": "9", "publish_time": "2024-06-01T12:00:00+02:00"}},
        "ce-id",
        None,
        NOW,
    )
    assert (msg.data, msg.attributes, msg.message_id) == (b"", {}, "9")
    assert msg.publish_time == datetime(2024, 6, 1, 10, tzinfo=UTC)
    bare = pubsub_message(None, "ce-id", "2024-06-01T11:00:00Z", NOW)
    assert (bare.message_id, bare.publish_time, bare.data) == ("ce-id", datetime(2024, 6, 1, 11, tzinfo=UTC), b"")
    assert pubsub_message({"message": "x"}, None, "garbage", NOW).publish_time == NOW


def test_pubsub_message_bad_base64_becomes_a_rejection(tmp_path: Path) -> None:
    msg = pubsub_message({"message": {"data": '{"not": "base64"}', "messageId": "1"}}, None, None, NOW)
    assert msg.envelope_error == "message.data: not valid base64"
    result = handle_message(
        msg.data, msg.attributes, msg.message_id, msg.publish_time, LocalSink(tmp_path),
        envelope_error=msg.envelope_error, emit=Lines(),
    )
    assert result == HandleResult(valid=0, rejected=1)
    assert query(tmp_path, "select error_type, error_message from game_events_rejected") == [
        ("malformed_json", "message.data: not valid base64")
    ]


# ---------------------------------------------------------------------------------------------
# The entry point, in process
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_process_sink() -> Iterator[None]:
    handler.process_sink.cache_clear()
    yield
    handler.process_sink.cache_clear()


def test_entry_point_uses_one_sink_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_process_sink: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from ingestion.streaming import main

    monkeypatch.setenv("GA_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("GA_SINK", "local")
    for n in range(2):
        event = CloudEvent(
            {
                "id": f"ce-{n}",
                "source": "//pubsub.googleapis.com/projects/p/topics/t",
                "type": "google.cloud.pubsub.topic.v1.messagePublished",
                "time": "2024-06-01T12:00:00Z",
            },
            {
                "message": {
                    "data": base64.b64encode(json.dumps(raw_event(n)).encode()).decode(),
                    "messageId": f"m-{n}",
                    "publishTime": "2024-06-01T12:00:00Z",
                },
                "subscription": "projects/p/subscriptions/s",
            },
        )
        main.handle_pubsub(event)
    assert handler.process_sink.cache_info().misses == 1
    assert query(tmp_path / "landing", "select message_id from game_events order by 1") == [("m-0",), ("m-1",)]
    assert len(capsys.readouterr().out.splitlines()) == 2
