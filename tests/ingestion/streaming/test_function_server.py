"""The Cloud Function served for real by functions-framework, fed a raw Pub/Sub push."""
from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"functions-framework exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"functions-framework did not listen on port {port} within {timeout}s")


@pytest.fixture
def function_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GA_LANDING_DIR": str(tmp_path / "landing"),
        "GA_SINK": "local",
    }
    log = (tmp_path / "function.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "functions_framework",
            "--source", str(REPO / "ingestion/streaming/main.py"),
            "--target", "handle_pubsub",
            "--signature-type", "cloudevent",
            "--host", "127.0.0.1",
            "--port", str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_listening(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def post(url: str, body: dict[str, object]) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_raw_pubsub_push_lands_valid_and_rejected_rows(function_url: str, tmp_path: Path) -> None:
    good = {
        "event_id": "123e4567-e89b-12d3-a456-426614174000",
        "event_name": "purchase",
        "event_timestamp": "2024-06-01T11:59:00Z",
        "game_id": "space_miner",
        "player_id": "p1",
        "session_id": "s1",
        "platform": "ios",
        "params": {"transaction_id": "t1", "sku": "gems", "price": 0.99, "currency": "EUR"},
        "client_extra": {"kept": True},
    }
    broken = {**good, "event_id": "123e4567-e89b-12d3-a456-426614174001", "params": {"sku": "gems"}}
    future = {**good, "event_id": "123e4567-e89b-12d3-a456-426614174002", "event_timestamp": "2031-01-01T00:00:00Z"}
    data = json.dumps({"events": [good, broken, 17, future]}).encode()
    body = {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": {"game": "space_miner"},
            "messageId": "4242",
            "publishTime": "2024-06-01T12:00:00.5Z",
        },
        "subscription": "projects/p/subscriptions/ingest",
    }
    assert post(f"{function_url}/projects/p/topics/game-events", body) == 200

    landing = tmp_path / "landing"
    with duckdb.connect() as con:
        events = con.execute(
            f"select event_id, message_id, publish_time, json_extract(payload, '$.client_extra.kept') "
            f"from read_parquet('{landing}/game_events/**/*.parquet', union_by_name=true)"
        ).fetchall()
        rejected = con.execute(
            f"select event_index, error_type, error_message, attributes "
            f"from read_parquet('{landing}/game_events_rejected/**/*.parquet', union_by_name=true) "
            f"order by event_index"
        ).fetchall()
    assert [(e[0], e[1], e[2].isoformat(), json.loads(e[3])) for e in events] == [
        ("123e4567-e89b-12d3-a456-426614174000", "4242", "2024-06-01T12:00:00.500000+00:00", True)
    ]
    assert [(r[0], r[1]) for r in rejected] == [
        (1, "schema_violation"),
        (2, "schema_violation"),
        (3, "timestamp_out_of_range"),
    ]
    assert rejected[0][2] == "events[1].params.transaction_id: required field is missing"
    assert json.loads(rejected[0][3]) == {"game": "space_miner"}

    assert post(f"{function_url}/projects/p/topics/game-events", {"message": {"data": "", "messageId": "5"}, "subscription": "s"}) == 200
    time.sleep(0.2)
    lines = [json.loads(line) for line in (tmp_path / "function.log").read_text().splitlines() if line.startswith("{")]
    outcome = [line for line in lines if line.get("message_id") == "4242"]
    assert outcome and outcome[0]["severity"] == "WARNING" and outcome[0]["rejected"] == 3
    assert any(line.get("message_id") == "5" and line["rejections"][0]["error_type"] == "empty_message" for line in lines)
