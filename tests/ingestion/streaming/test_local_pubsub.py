"""The local Pub/Sub twin's pieces: availability, subscription settings, process clean-up."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import requires_pubsub_emulator

from deployments.local import pubsub_emulator
from deployments.local.pubsub import DeliveryPolicy, push_endpoint, push_subscription_request, topology
from deployments.local.pubsub_emulator import emulator_unavailable_reason


def test_unavailable_reason_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    check = emulator_unavailable_reason.__wrapped__
    real_which = shutil.which
    monkeypatch.setattr(pubsub_emulator.shutil, "which", lambda name: None if name == "gcloud" else real_which(name))
    assert "gcloud is not installed" in (check() or "")
    monkeypatch.setattr(pubsub_emulator.shutil, "which", lambda name: None if name == "java" else real_which(name))
    if real_which("gcloud"):
        assert "Java is not installed" in (check() or "")


def test_push_subscription_settings() -> None:
    top = topology("proj")
    endpoint = push_endpoint("http://127.0.0.1:8080/", top.topic_path)
    assert endpoint == "http://127.0.0.1:8080/projects/proj/topics/game-events"
    request = push_subscription_request(top, endpoint, DeliveryPolicy())
    assert request["dead_letter_policy"] == {
        "dead_letter_topic": "projects/proj/topics/game-events-dead-letter",
        "max_delivery_attempts": 100,
    }
    assert request["enable_message_ordering"] is False  # with a dead-letter policy it stops the emulator's pushes
    assert "retry_policy" not in request  # the emulator's backoff stalls redelivery
    with_backoff = push_subscription_request(top, endpoint, DeliveryPolicy(10, 10, 600))
    assert with_backoff["retry_policy"]["maximum_backoff"].seconds == 600


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"max_delivery_attempts": 4}, "max_delivery_attempts"), ({"min_backoff_s": 1}, "min_backoff_s, max_backoff_s"),
     ({"min_backoff_s": 9, "max_backoff_s": 5}, "min_backoff_s, max_backoff_s"), ({"ack_deadline_s": 5}, "ack_deadline_s")],
)
def test_delivery_policy_errors_name_the_field(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        DeliveryPolicy(**kwargs)


@requires_pubsub_emulator()
def test_the_emulator_stops_with_its_java_process(tmp_path: Path) -> None:
    with pubsub_emulator.pubsub_emulator(tmp_path) as host:
        port = host.rsplit(":", 1)[1]
        group = [pid for pid in _pids() if f"--port={port}" in _cmdline(pid) or f"--host-port=127.0.0.1:{port}" in _cmdline(pid)]
        assert any("java" in _cmdline(pid) for pid in group), group
    assert not [pid for pid in group if _alive(pid)]


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
