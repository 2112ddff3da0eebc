"""Bronze rows and the two sinks: local Parquet files (read back with DuckDB) and BigQuery
(exercised offline through a real client whose HTTP transport is recorded)."""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from ingestion.streaming.validate import parse_message
from ingestion.streaming.settings import FunctionSettings, MissingSetting
from ingestion.streaming.rows import (
    MAX_REJECTED_PAYLOAD_BYTES,
    GAME_EVENTS_REJECTED_SCHEMA,
    GAME_EVENTS_SCHEMA,
    BronzeEvent,
    BronzeRejection,
    Delivery,
    bronze_rows,
    encode_payload,
)
from ingestion.streaming.sinks import (
    BigQuerySink,
    LocalSink,
    SinkRowError,
    TransientSinkError,
    sink_from_settings,
)
from ingestion.streaming.sinks.bigquery import bigquery_json, chunks

PUBLISH = datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
INGESTED = datetime(2024, 6, 1, 12, 0, 5, tzinfo=UTC)


def raw_event(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"00000000-0000-0000-0000-{i:012d}",
        "event_name": "level_start",
        "event_timestamp": "2024-06-01T11:00:00Z",
        "game_id": "g",
        "player_id": f"p{i}",
        "session_id": "s",
        "platform": "ios",
        "params": {"level": 1},
        **extra,
    }


def rows(n_valid: int = 2, message_id: str = "m-1") -> tuple[list[BronzeEvent], list[BronzeRejection]]:
    data = json.dumps({"events": [raw_event(i, extra_field=i) for i in range(n_valid)] + [{"event_id": "bad"}]}).encode()
    valid, rejected = parse_message(data, PUBLISH)
    delivery = Delivery(message_id, PUBLISH, INGESTED, {"origin": "test"})
    return bronze_rows(delivery, valid, rejected)


# ---------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------


def test_rows_carry_delivery_facts() -> None:
    events, rejections = rows(1)
    (e,) = events
    assert (e.message_id, e.publish_time, e.ingested_at) == ("m-1", PUBLISH, INGESTED)
    assert e.params == '{"level": 1}'  # raw, as sent
    assert json.loads(e.payload)["extra_field"] == 0
    (r,) = rejections
    assert (r.error_type, r.event_index, r.payload_encoding) == ("schema_violation", 1, "utf8")
    assert json.loads(r.attributes) == {"origin": "test"}


def test_payload_encoding() -> None:
    assert encode_payload(b'{"a": "\xc3\xa9"}') == ('{"a": "é"}', "utf8")
    assert encode_payload(b"\xff\x00") == ("/wA=", "base64")


def test_chunks_respect_rows_and_bytes() -> None:
    assert [(o, list(c)) for o, c in chunks(list(range(5)), 2, 10**9)] == [(0, [0, 1]), (2, [2, 3]), (4, [4])]
    assert [(o, list(c)) for o, c in chunks([5, 5, 20, 1], 100, 10, size=lambda r: r)] == [
        (0, [5, 5]),
        (2, [20]),
        (3, [1]),
    ]
    assert list(chunks([], 2, 10)) == []


# ---------------------------------------------------------------------------------------------
# LocalSink
# ---------------------------------------------------------------------------------------------


def read(landing: Path, table: str) -> list[dict[str, Any]]:
    query = f"select * from read_parquet('{landing}/{table}/**/*.parquet', union_by_name=true)"
    with duckdb.connect() as con:
        result = con.execute(query)
        names = [d[0] for d in result.description]
        return [dict(zip(names, row)) for row in result.fetchall()]


def test_local_sink_empty_tables_exist_at_construction(tmp_path: Path) -> None:
    LocalSink(tmp_path)
    assert read(tmp_path, "game_events") == []
    assert read(tmp_path, "game_events_rejected") == []
    assert pq.read_schema(tmp_path / "game_events" / "_empty.parquet").equals(GAME_EVENTS_SCHEMA)


def test_local_sink_round_trip(tmp_path: Path) -> None:
    sink = LocalSink(tmp_path)
    events, rejections = rows(3, message_id="projects/p/messages/42")
    sink.write(events, rejections)
    got = sorted(read(tmp_path, "game_events"), key=lambda r: r["event_id"])
    assert [r["event_id"] for r in got] == [e.event_id for e in events]
    first = got[0]
    assert first["event_timestamp"] == datetime(2024, 6, 1, 11, tzinfo=UTC)
    assert first["publish_time"] == PUBLISH and first["ingested_at"] == INGESTED
    assert first["schema_version"] == 1 and first["app_version"] is None
    assert json.loads(first["payload"])["extra_field"] == 0
    (rej,) = read(tmp_path, "game_events_rejected")
    assert rej["event_index"] == 3 and rej["error_type"] == "schema_violation"
    assert rej["payload"] == '{"event_id": "bad"}'
    files = list((tmp_path / "game_events").glob("2024-06-01/*.parquet"))
    assert len(files) == 1 and files[0].name.startswith("projects_p_messages_42-")
    assert pq.read_schema(files[0]).equals(GAME_EVENTS_SCHEMA)
    assert pq.read_schema(next((tmp_path / "game_events_rejected").glob("2024-*/*.parquet"))).equals(
        GAME_EVENTS_REJECTED_SCHEMA
    )


def test_local_sink_file_names_unique_and_no_empty_files(tmp_path: Path) -> None:
    sink = LocalSink(tmp_path)
    events, _ = rows(1)
    sink.write(events, [])
    sink.write(events, [])
    assert len(list((tmp_path / "game_events").glob("*/*.parquet"))) == 2
    assert list((tmp_path / "game_events_rejected").glob("*/*.parquet")) == []


def test_local_sink_binary_rejection_payload(tmp_path: Path) -> None:
    sink = LocalSink(tmp_path)
    valid, rejected = parse_message(b"\xff\xfe{}", PUBLISH)
    _, rejection_rows = bronze_rows(Delivery("m", PUBLISH, INGESTED), valid, rejected)
    sink.write([], rejection_rows)
    (row,) = read(tmp_path, "game_events_rejected")
    assert (row["payload"], row["payload_encoding"], row["event_index"]) == ("//57fQ==", "base64", None)


def test_local_sink_readable_while_threads_write(tmp_path: Path) -> None:
    sink = LocalSink(tmp_path)
    errors: list[BaseException] = []
    n_writers, per_writer, batch = 4, 25, 20

    def writer(w: int) -> None:
        try:
            for k in range(per_writer):
                events, rejections = rows(batch, message_id=f"w{w}-{k}")
                sink.write(events, rejections)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(n_writers)]
    for t in threads:
        t.start()
    seen: list[int] = []
    with duckdb.connect() as con:
        query = f"select count(*) from read_parquet('{tmp_path}/game_events/**/*.parquet', union_by_name=true)"
        while any(t.is_alive() for t in threads) or not seen:
            seen.append(con.execute(query).fetchone()[0])  # type: ignore[index]
        for t in threads:
            t.join()
        final = con.execute(query).fetchone()[0]  # type: ignore[index]
    assert not errors
    assert seen == sorted(seen)  # never goes backwards, never sees a partial file
    assert all(c % batch == 0 for c in seen)
    assert final == n_writers * per_writer * batch
    assert len(seen) > 1


def test_sink_from_settings(tmp_path: Path) -> None:
    sink = sink_from_settings(FunctionSettings(landing_dir=tmp_path / "landing", sink="local"))
    assert isinstance(sink, LocalSink) and sink.landing_dir == tmp_path / "landing"


@pytest.mark.parametrize(("sink", "present", "variable"), [
    ("local", {}, "GA_LANDING_DIR"),
    ("bigquery", {"bronze_dataset": "ds"}, "GA_GCP_PROJECT"),
    ("bigquery", {"gcp_project": "p"}, "GA_BRONZE_DATASET"),
])
def test_a_sink_without_its_destination_names_the_variable(
    sink: str, present: dict[str, str], variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GA_LANDING_DIR", "GA_GCP_PROJECT", "GA_BRONZE_DATASET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(MissingSetting, match=f"^{variable}: required when GA_SINK={sink}"):
        sink_from_settings(FunctionSettings(sink=sink, **present))


# ---------------------------------------------------------------------------------------------
# BigQuerySink through a real client and a recorded transport
# ---------------------------------------------------------------------------------------------


@dataclass
class FakeSession:
    """Stands in for the authorized ``requests.Session`` the BigQuery client talks through."""

    responses: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    is_mtls: bool = False

    def request(self, method: str, url: str, data: Any = None, headers: Any = None, **kwargs: Any) -> requests.Response:
        body = json.loads(data) if data else None
        self.requests.append({"method": method, "url": url, "json": body})
        status, payload = self.responses.pop(0) if self.responses else (200, {})
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(payload).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = url
        response.request = requests.Request(method, url).prepare()
        return response


def bq_sink(session: FakeSession, retry_deadline: float | None = None) -> BigQuerySink:
    client = bigquery.Client(project="proj", credentials=AnonymousCredentials(), _http=session)
    return BigQuerySink("proj", "game_analytics_bronze", client=client, retry_deadline=retry_deadline)


def test_bigquery_sink_sends_rows_with_insert_ids() -> None:
    session = FakeSession()
    events, rejections = rows(2)
    bq_sink(session).write(events, rejections)

    assert len(session.requests) == 2
    ev_req, rej_req = session.requests
    assert ev_req["method"] == "POST"
    assert urlsplit(ev_req["url"]).path == (
        "/bigquery/v2/projects/proj/datasets/game_analytics_bronze/tables/game_events/insertAll"
    )
    assert ev_req["json"] == {
        "rows": [
            {
                "insertId": e.event_id,
                "json": {
                    "event_id": e.event_id,
                    "event_name": "level_start",
                    "event_timestamp": "2024-06-01 11:00:00.000000 UTC",
                    "game_id": "g",
                    "player_id": e.player_id,
                    "session_id": "s",
                    "platform": "ios",
                    "app_version": None,
                    "country": None,
                    "schema_version": 1,
                    "params": '{"level": 1}',
                    "payload": e.payload,
                    "message_id": "m-1",
                    "publish_time": "2024-06-01 12:00:00.123456 UTC",
                    "ingested_at": "2024-06-01 12:00:05.000000 UTC",
                },
            }
            for e in events
        ]
    }
    assert urlsplit(rej_req["url"]).path.endswith("/tables/game_events_rejected/insertAll")
    (rej_row,) = rej_req["json"]["rows"]
    assert rej_row["insertId"] == "m-1:2"  # <message_id>:<event_index>, the same on redelivery
    assert rej_row["json"]["error_type"] == "schema_violation"
    assert rej_row["json"]["event_index"] == 2
    assert rej_row["json"]["payload_encoding"] == "utf8"


def test_bigquery_sink_skips_empty_tables() -> None:
    session = FakeSession()
    events, _ = rows(1)
    bq_sink(session).write(events, [])
    assert [urlsplit(r["url"]).path.split("/")[-2] for r in session.requests] == ["game_events"]


OUT_OF_BOUNDS = ("Value 2019-01-01 00:00:00 UTC for field event_timestamp of the destination table is outside the "
                 "allowed bounds. You can only stream to date range within 1825 days in the past and 366 days in the future")


def test_rows_bigquery_refuses_become_rejections_and_the_stopped_rows_are_sent_again() -> None:
    """insertAll answers 200 with insertErrors, as the real client returns them: the refused row
    (reason ``invalid``) and the rows of its request BigQuery did not insert (``stopped``)."""
    stopped = [{"reason": "stopped", "location": "", "debugInfo": "", "message": ""}]
    insert_errors = {"insertErrors": [
        {"index": 0, "errors": stopped},
        {"index": 1, "errors": [{"reason": "invalid", "location": "event_timestamp", "debugInfo": "", "message": OUT_OF_BOUNDS}]},
        {"index": 2, "errors": stopped},
    ]}
    session = FakeSession(responses=[(200, insert_errors), (200, {}), (200, {})])
    events, rejections = rows(3)
    bq_sink(session).write(events, rejections, [0, 1, 2])  # acknowledged: nothing raised

    first, again, rejected = (r["json"]["rows"] for r in session.requests)
    assert [r["insertId"] for r in first] == [e.event_id for e in events]
    assert [r["insertId"] for r in again] == [events[0].event_id, events[2].event_id]  # the stopped rows only
    assert [r["insertId"] for r in rejected] == ["m-1:3", "m-1:1:bigquery"]
    refused = rejected[1]["json"]
    assert (refused["error_type"], refused["event_index"], refused["payload"]) == ("bigquery_refused", 1, events[1].payload)
    assert refused["error_message"] == (f"events[1] (event_id '{events[1].event_id}'): BigQuery refused the row: "
                                        f"invalid at event_timestamp: {OUT_OF_BOUNDS}")


def test_a_rejection_bigquery_refuses_fails_the_delivery_and_names_it() -> None:
    insert_errors = {"insertErrors": [{"index": 0, "errors": [{"reason": "invalid", "location": "payload", "message": "too big"}]}]}
    session = FakeSession(responses=[(200, {}), (200, insert_errors)])
    events, rejections = rows(1)
    with pytest.raises(SinkRowError, match=r"game_events_rejected: 1 row\(s\) refused: row 0: invalid at payload: too big"):
        bq_sink(session).write(events, rejections)


def test_rows_stopped_again_and_again_are_a_transient_failure() -> None:
    stopped = {"insertErrors": [{"index": 0, "errors": [{"reason": "stopped", "message": ""}]}]}
    session = FakeSession(responses=[(200, stopped)] * 3)
    events, _ = rows(1)
    with pytest.raises(TransientSinkError, match="still not inserted after 3 attempts"):
        bq_sink(session).write(events, [])


def test_a_rejection_row_stays_small_whatever_its_payload() -> None:
    data = bytes(range(256)) * (8 * 4096)  # 8 MiB, not UTF-8
    valid, rejected = parse_message(data, PUBLISH)
    _, (row,) = bronze_rows(Delivery("m-8", PUBLISH, INGESTED), valid, rejected)
    assert row.error_type == "not_utf8" and row.payload_encoding == "base64"
    assert len(base64.b64decode(row.payload)) == MAX_REJECTED_PAYLOAD_BYTES
    assert row.error_message.endswith(f"[payload: the first {MAX_REJECTED_PAYLOAD_BYTES} of {len(data)} bytes kept, "
                                      f"sha256 {hashlib.sha256(data).hexdigest()}]")
    assert len(orjson.dumps(bigquery_json(row))) < 400 * 1024


def test_bigquery_sink_503_is_transient() -> None:
    session = FakeSession(responses=[(503, {"error": {"code": 503, "message": "Backend unavailable", "errors": [{"reason": "backendError"}]}})])
    events, rejections = rows(1)
    with pytest.raises(TransientSinkError, match="game_events"):
        bq_sink(session).write(events, rejections)


def test_bigquery_sink_retries_within_its_deadline() -> None:
    session = FakeSession(responses=[(503, {"error": {"code": 503, "message": "try again"}}), (200, {})])
    events, _ = rows(1)
    bq_sink(session, retry_deadline=10.0).write(events, [])
    assert len(session.requests) == 2
    assert session.requests[0]["json"] == session.requests[1]["json"]


def test_bigquery_sink_client_errors_are_not_transient() -> None:
    session = FakeSession(responses=[(404, {"error": {"code": 404, "message": "Not found: Table"}})])
    events, _ = rows(1)
    with pytest.raises(Exception) as info:
        bq_sink(session).write(events, [])
    assert not isinstance(info.value, TransientSinkError)
    assert "Not found" in str(info.value)


def test_bigquery_sink_transport_error_is_transient() -> None:
    class Broken(FakeSession):
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:
            raise requests.exceptions.ConnectionError("connection reset")

    events, _ = rows(1)
    with pytest.raises(TransientSinkError, match="connection reset"):
        bq_sink(Broken()).write(events, [])





def test_local_sink_file_system_errors_are_transient(tmp_path: Path) -> None:
    """A table folder that cannot be written (here: replaced by a regular file) is a transient
    failure, so the function answers 5xx and Pub/Sub redelivers."""
    sink = LocalSink(tmp_path)
    events, rejections = rows(1)
    folder = tmp_path / "game_events"
    folder.rename(tmp_path / "moved")
    folder.write_bytes(b"")
    with pytest.raises(TransientSinkError, match=r"^game_events: writing 1 row\(s\) under .*game_events/2024-06-01 failed"):
        sink.write(events, rejections)
    folder.unlink()
    (tmp_path / "moved").rename(folder)
    sink.write(events, rejections)
    assert len(read(tmp_path, "game_events")) == 1
