"""Push bodies and POSTs to a local receiver and to a real functions-framework server."""
from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from simulator import PublishedMessage, Simulation
from simulator import deliver
from simulator.deliver import PushError, post_to_function, push_body, read_messages

MSG = PublishedMessage(
    message_id="1234567890123456",
    data=b'{"events":[{"event_id":"x"}]}',
    attributes={"game_id": "dragon_idle", "sdk_version": "3.4.1"},
    publish_time=datetime(2026, 1, 3, 12, 15, 2, 123000, tzinfo=timezone.utc),
)


def test_push_body_is_what_pubsub_push_sends() -> None:
    assert push_body(MSG) == {
        "message": {
            "data": base64.b64encode(MSG.data).decode(),
            "attributes": {"game_id": "dragon_idle", "sdk_version": "3.4.1"},
            "messageId": "1234567890123456",
            "message_id": "1234567890123456",
            "publishTime": "2026-01-03T12:15:02.123Z",
            "publish_time": "2026-01-03T12:15:02.123Z",
        },
        "subscription": "projects/local/subscriptions/game-events-push",
    }
    assert push_body(MSG, "projects/p/subscriptions/s")["subscription"] == "projects/p/subscriptions/s"


class Receiver:
    """A local HTTP server recording every POST; answers 500 for the message ids in ``fail``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict]] = []
        self.fail: set[str] = set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.requests.append((self.path, self.headers["Content-Type"], body))
                status = 500 if body["message"]["messageId"] in receiver.fail else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def test_post_to_function_pushes_every_message_once(receiver: Receiver, small_sim: Simulation) -> None:
    messages = small_sim.messages[:120]
    post_to_function(messages, receiver.url, workers=4)
    assert {path for path, _, _ in receiver.requests} == {"/projects/local/topics/game-events"}
    assert {ctype for _, ctype, _ in receiver.requests} == {"application/json"}
    received = {body["message"]["messageId"]: body for _, _, body in receiver.requests}
    assert len(receiver.requests) == len(messages) == len(received)
    for msg in messages:
        assert received[msg.message_id] == push_body(msg)
        assert base64.b64decode(received[msg.message_id]["message"]["data"]) == msg.data


def test_post_to_function_raises_on_an_error_status(receiver: Receiver, small_sim: Simulation) -> None:
    messages = small_sim.messages[:30]
    receiver.fail = {messages[7].message_id}
    with pytest.raises(PushError, match=messages[7].message_id):
        post_to_function(messages, receiver.url, workers=3)


def test_post_to_function_retries_connection_errors_then_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(deliver.time, "sleep", sleeps.append)
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    url = f"http://127.0.0.1:{closed.server_address[1]}"
    closed.server_close()
    with pytest.raises(requests.ConnectionError):
        post_to_function([MSG], url, workers=1)
    assert len(sleeps) == deliver.CONNECT_ATTEMPTS - 1


FUNCTION_SOURCE = '''
import json, os
import functions_framework

@functions_framework.cloud_event
def receive(event):
    with open(os.environ["SIMULATOR_TEST_SINK"], "a") as sink:
        sink.write(json.dumps({"source": event["source"], "type": event["type"], "id": event["id"], "data": event.data}) + "\\n")
'''


def test_functions_framework_turns_pushes_into_cloud_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_sim: Simulation) -> None:
    from functions_framework import create_app
    from werkzeug.serving import make_server

    sink = tmp_path / "events.jsonl"
    monkeypatch.setenv("SIMULATOR_TEST_SINK", str(sink))
    (tmp_path / "main.py").write_text(FUNCTION_SOURCE)
    app = create_app(target="receive", source=str(tmp_path / "main.py"), signature_type="cloudevent")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        messages = small_sim.messages[:10]
        post_to_function(messages, f"http://127.0.0.1:{server.server_port}", workers=2)
    finally:
        server.shutdown()
    events = {e["id"]: e for e in map(json.loads, sink.read_text().splitlines())}
    assert set(events) == {m.message_id for m in messages}
    for msg in messages:
        event = events[msg.message_id]
        assert event["source"] == "//pubsub.googleapis.com/projects/local/topics/game-events"
        assert event["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
        assert base64.b64decode(event["data"]["message"]["data"]) == msg.data
        assert event["data"]["message"]["attributes"] == msg.attributes


def test_write_messages_round_trips(tmp_path: Path, small_sim: Simulation) -> None:
    path = tmp_path / "out" / "messages.jsonl"
    small_sim.write_messages(path)
    lines = path.read_text().splitlines()
    assert len(lines) == len(small_sim.messages)
    assert list(json.loads(lines[0])) == ["message_id", "publish_time", "attributes", "data_b64"]
    assert read_messages(path) == small_sim.messages


class FakeFuture:
    def __init__(self, value: str) -> None:
        self.value = value

    def result(self, timeout: float | None = None) -> str:
        return self.value


class FakePublisher:
    created: list["FakePublisher"] = []

    def __init__(self, batch_settings: object = None) -> None:
        self.batch_settings = batch_settings
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self.stopped = False
        FakePublisher.created.append(self)

    def topic_path(self, project: str, topic: str) -> str:
        return f"projects/{project}/topics/{topic}"

    def publish(self, topic: str, data: bytes, **attributes: str) -> FakeFuture:
        self.published.append((topic, data, attributes))
        return FakeFuture(f"server-{len(self.published)}")

    def stop(self) -> None:
        self.stopped = True


def test_publish_batches_through_the_client_and_returns_server_ids(monkeypatch: pytest.MonkeyPatch, small_sim: Simulation) -> None:
    from google.cloud import pubsub_v1

    monkeypatch.setattr(pubsub_v1, "PublisherClient", FakePublisher)
    messages = small_sim.messages[:5]
    ids = deliver.publish(messages, "local", "game-events")
    publisher = FakePublisher.created[-1]
    assert ids == [f"server-{n}" for n in range(1, 6)]
    assert publisher.published == [("projects/local/topics/game-events", m.data, m.attributes) for m in messages]
    assert publisher.batch_settings.max_messages > 1 and publisher.stopped


def test_command_line_writes_exports_truth_and_messages(tmp_path: Path) -> None:
    from simulator.__main__ import main

    assert main(["--seed", "3", "--days", "3", "--players-per-game", "6", "--games", "solo_game", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "exports" / "players.csv").read_text().count("\n") == 7
    assert (tmp_path / "truth" / "daily_kpis.csv").exists() and (tmp_path / "truth" / "retention.csv").exists()
    messages = read_messages(tmp_path / "messages.jsonl")
    assert messages and {m.attributes["game_id"] for m in messages} == {"solo_game"}
