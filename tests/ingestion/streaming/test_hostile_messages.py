"""Hostile messages against the function served by functions-framework: each is answered 2xx, each
defect is a stored rejection with its reason, each valid neighbour lands, and the worker's memory
stays within the instance for the worst of them."""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.local.services import function_server
from deployments.streaming import config
from ingestion.streaming.events import MAX_EVENTS_PER_MESSAGE
from ingestion.streaming.rows import MAX_REJECTED_PAYLOAD_BYTES
from tests.ingestion.streaming.test_bad_inputs import event, peak_rss_mb, post, query, worker_pid

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("hostile")
    with function_server(data_dir) as url:
        yield url, data_dir


def rejected(data_dir: Path, message_id: str) -> list[tuple]:
    return query(data_dir / "landing", "select event_index, error_type, error_message, strlen(payload) "
                 f"from game_events_rejected where message_id = '{message_id}' order by event_index")


def landed(data_dir: Path, message_id: str) -> list[str]:
    return [r[0] for r in query(data_dir / "landing", f"select event_id from game_events where message_id = '{message_id}' order by 1")]


def tiny_items(size: int) -> bytes:
    """One valid event, then ``1,1,1,...`` up to ``size`` bytes."""
    head = b'{"events": [' + json.dumps(event(1)).encode()
    return head + b",1" * ((size - len(head) - 2) // 2) + b"]}"


def test_hostile_messages_are_rejected_in_bounded_memory(served: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    url, data_dir = served
    assert post(url, json.dumps(event(0)).encode(), "warm-up") == 200
    pid = worker_pid(data_dir)
    idle = peak_rss_mb(pid)

    for depth in (1000, 200_000):
        assert post(url, b"[" * depth + b"]" * depth, f"deep-{depth}") == 200
        ((index, error_type, message, _),) = rejected(data_dir, f"deep-{depth}")
        assert (index, error_type) == (None, "malformed_json")
        assert message.startswith(f"message: JSON nested {depth} levels deep")

    for size in (1 * MIB, 9 * MIB):
        data = tiny_items(size)
        assert post(url, data, f"tiny-{size}") == 200
        assert landed(data_dir, f"tiny-{size}") == [event(1)["event_id"]]
        ((index, error_type, message, payload_bytes),) = rejected(data_dir, f"tiny-{size}")
        items = (len(data) - len(b'{"events": [') - len(json.dumps(event(1))) - 2) // 2 + 1
        assert (index, error_type) == (None, "oversize")
        assert message.startswith(f"message.events: {items} items, the limit is {MAX_EVENTS_PER_MESSAGE} events")
        assert f"{MAX_EVENTS_PER_MESSAGE - 1} item(s) are not event objects" in message
        assert payload_bytes == MAX_REJECTED_PAYLOAD_BYTES and f"of {len(data)} bytes kept" in message

    binary = bytes(range(256)) * (8 * MIB // 256)
    assert post(url, binary, "binary-8mb") == 200
    ((index, error_type, message, payload_bytes),) = rejected(data_dir, "binary-8mb")
    assert (index, error_type) == (None, "not_utf8")
    assert payload_bytes == len(base64.b64encode(binary[:MAX_REJECTED_PAYLOAD_BYTES]))
    assert message == (f"message: data is not valid UTF-8 [payload: the first {MAX_REJECTED_PAYLOAD_BYTES} of "
                       f"{len(binary)} bytes kept, sha256 {hashlib.sha256(binary).hexdigest()}]")

    old = event(2, event_timestamp="2020-11-01T00:00:00Z")  # about six years before the arrival
    assert post(url, json.dumps({"events": [old, event(3)]}).encode(), "six-years") == 200
    assert landed(data_dir, "six-years") == [event(3)["event_id"]]
    ((index, error_type, message, _),) = rejected(data_dir, "six-years")
    assert (index, error_type) == (0, "timestamp_out_of_range")
    assert "the oldest time BigQuery can stream into its partitioned table" in message

    peak = peak_rss_mb(pid)
    with capsys.disabled():
        print(f"\nhostile messages: worker peak RSS {idle:.0f} -> {peak:.0f} MB (worst: 9 MB of tiny items); "
              f"instance {config.MEMORY_MB} MB")
    assert peak < config.MEMORY_MB
