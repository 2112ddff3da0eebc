"""A row BigQuery refuses, through the function served by functions-framework with the BigQuery
sink and the real google-cloud-bigquery client: the client talks to a stand-in for BigQuery's REST
API on loopback (``BIGQUERY_EMULATOR_HOST``) that answers insertAll as BigQuery does (HTTP 200
with ``insertErrors``: ``invalid`` for the refused row, ``stopped`` for the rest of its request).
The message is acknowledged, the refused row is a rejection with BigQuery's reason, its
neighbours are inserted."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from deployments.local.services import free_port, wait_http
from common.settings import REPO_ROOT
from tests.ingestion.streaming.test_bad_inputs import event, post

REASON = "JSON parsing error in row starting at position 0: Could not convert value to string."


class FakeBigQuery(BaseHTTPRequestHandler):
    """insertAll and the OAuth token endpoint, recording every insertAll body."""

    requests: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/token":
            return self.answer({"access_token": "local", "expires_in": 3600, "token_type": "Bearer"})
        table = self.path.split("/tables/")[1].split("/")[0]
        request = json.loads(body)
        self.requests.append((table, request))
        refused = [i for i, row in enumerate(request["rows"]) if row["json"].get("player_id") == "refused-by-bigquery"]
        if not refused:
            return self.answer({"kind": "bigquery#tableDataInsertAllResponse"})
        errors = [{"index": i, "errors": [
            {"reason": "invalid", "location": "player_id", "debugInfo": "", "message": REASON} if i in refused else
            {"reason": "stopped", "location": "", "debugInfo": "", "message": ""}]} for i in range(len(request["rows"]))]
        return self.answer({"kind": "bigquery#tableDataInsertAllResponse", "insertErrors": errors})

    def answer(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def bigquery_function(tmp_path: Path) -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeBigQuery)
    FakeBigQuery.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_address[1]}"
    credentials = tmp_path / "credentials.json"  # a service account key whose token endpoint is the stand-in
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    credentials.write_text(json.dumps({"type": "service_account", "project_id": "proj", "private_key_id": "k",
                                       "private_key": key, "client_email": "function@proj.iam.gserviceaccount.com",
                                       "client_id": "1", "token_uri": f"{api}/token"}))
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), GA_SINK="bigquery",
               GA_GCP_PROJECT="proj", GA_BRONZE_DATASET="game_analytics_bronze", BIGQUERY_EMULATOR_HOST=api,
               GOOGLE_APPLICATION_CREDENTIALS=str(credentials))
    log = (tmp_path / "function.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "functions_framework", "--source", "ingestion/streaming/main.py",
                             "--target", "handle_pubsub", "--signature-type", "cloudevent", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}", proc, 60, tmp_path / "function.log")
        yield f"http://127.0.0.1:{port}", FakeBigQuery.requests
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
        server.shutdown()


def test_a_row_bigquery_refuses_is_a_rejection_and_its_neighbours_are_inserted(bigquery_function) -> None:
    url, requests = bigquery_function
    data = json.dumps({"events": [event(1), event(2, player_id="refused-by-bigquery"), event(3)]}).encode()
    assert post(url, data, "m-7") == 200  # acknowledged

    (first, again, rejected) = requests
    assert first[0] == again[0] == "game_events" and rejected[0] == "game_events_rejected"
    assert [r["insertId"] for r in first[1]["rows"]] == [event(i)["event_id"] for i in (1, 2, 3)]
    assert [r["insertId"] for r in again[1]["rows"]] == [event(i)["event_id"] for i in (1, 3)]  # the stopped rows
    ((row,),) = [rejected[1]["rows"]]
    assert row["insertId"] == "m-7:1:bigquery"
    assert {k: row["json"][k] for k in ("message_id", "error_type", "event_index", "payload_encoding")} == {
        "message_id": "m-7", "error_type": "bigquery_refused", "event_index": 1, "payload_encoding": "utf8"}
    assert row["json"]["error_message"] == (f"events[1] (event_id '{event(2)['event_id']}'): BigQuery refused the row: "
                                            f"invalid at player_id: {REASON}")
    assert json.loads(row["json"]["payload"])["player_id"] == "refused-by-bigquery"
