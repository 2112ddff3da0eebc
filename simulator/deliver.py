"""Getting simulated messages to the platform: Pub/Sub push bodies POSTed to the Cloud Function
(functions-framework), real publishing (Pub/Sub or its emulator), or a JSON-lines file."""
from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import requests

from simulator.messages import PublishedMessage
from simulator.timefmt import format_utc, parse_timestamp
from ingestion.streaming.topics import PUSH_SUBSCRIPTION, TOPIC

DEFAULT_SUBSCRIPTION = f"projects/local/subscriptions/{PUSH_SUBSCRIPTION}"
# functions-framework turns a raw push request into a CloudEvent whose source names the topic
# found in the request path (projects/P/topics/T); without it the source has no topic.
PUSH_PATH = f"/projects/local/topics/{TOPIC}"
CONNECT_ATTEMPTS = 5
REQUEST_TIMEOUT_S = 60.0


def push_body(msg: PublishedMessage, subscription: str = DEFAULT_SUBSCRIPTION) -> dict:
    """The JSON body Pub/Sub push sends for ``msg`` (both spellings of the id and publish time)."""
    publish_time = format_utc(msg.publish_time)
    return {
        "message": {
            "data": base64.b64encode(msg.data).decode("ascii"),
            "attributes": dict(msg.attributes),
            "messageId": msg.message_id,
            "message_id": msg.message_id,
            "publishTime": publish_time,
            "publish_time": publish_time,
        },
        "subscription": subscription,
    }


def message_line(msg: PublishedMessage) -> dict:
    return {
        "message_id": msg.message_id,
        "publish_time": format_utc(msg.publish_time),
        "attributes": dict(msg.attributes),
        "data_b64": base64.b64encode(msg.data).decode("ascii"),
    }


def write_messages(messages: Iterable[PublishedMessage], path: Path) -> None:
    """One JSON object per line: message_id, publish_time, attributes, data_b64."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for msg in messages:
            handle.write(json.dumps(message_line(msg), separators=(",", ":")) + "\n")


def read_messages(path: Path) -> list[PublishedMessage]:
    """The messages of a file written by ``write_messages``."""
    messages: list[PublishedMessage] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            messages.append(
                PublishedMessage(
                    message_id=row["message_id"],
                    data=base64.b64decode(row["data_b64"]),
                    attributes=row["attributes"],
                    publish_time=parse_timestamp(row["publish_time"]),
                )
            )
    return messages


class PushError(RuntimeError):
    """The function answered a push with a non-2xx status."""


_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        _local.session = session
    return session


def post_one(msg: PublishedMessage, endpoint: str, subscription: str = DEFAULT_SUBSCRIPTION) -> None:
    """POST one push body; retries connection errors only, raises ``PushError`` on non-2xx."""
    body = json.dumps(push_body(msg, subscription)).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            response = _session().post(endpoint, data=body, headers=headers, timeout=REQUEST_TIMEOUT_S)
            break
        except requests.ConnectionError:
            if attempt == CONNECT_ATTEMPTS:
                raise
            time.sleep(0.2 * 2**attempt)
    if not 200 <= response.status_code < 300:
        raise PushError(f"message {msg.message_id}: HTTP {response.status_code}: {response.text[:500]}")


def post_to_function(messages: Iterable[PublishedMessage], url: str, workers: int = 4) -> None:
    """POST every message as a Pub/Sub push request to a functions-framework server at ``url``,
    at most ``workers`` at a time (and a bounded number queued); stops at the first failure."""
    endpoint = url.rstrip("/") + PUSH_PATH
    max_pending = max(1, workers) * 4
    pending: set[Future[None]] = set()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        try:
            for msg in messages:
                if len(pending) >= max_pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()
                pending.add(pool.submit(post_one, msg, endpoint))
            for future in pending:
                future.result()
        except BaseException:
            for future in pending:
                future.cancel()
            raise


# Publisher batching: up to 500 messages or ~5 MB per publish request, flushed every 50 ms.
PUBLISH_BATCH_MESSAGES = 500
PUBLISH_BATCH_BYTES = 5_000_000
PUBLISH_BATCH_LATENCY_S = 0.05


def publisher_client(emulator_host: str | None = None) -> Any:
    """A batching ``PublisherClient``: to real Pub/Sub (or to ``PUBSUB_EMULATOR_HOST`` when that
    is set, as the client library does), or to the emulator at ``emulator_host`` (``host:port``)."""
    from google.cloud import pubsub_v1

    batch_settings = pubsub_v1.types.BatchSettings(
        max_messages=PUBLISH_BATCH_MESSAGES, max_bytes=PUBLISH_BATCH_BYTES, max_latency=PUBLISH_BATCH_LATENCY_S
    )
    if emulator_host is None:
        return pubsub_v1.PublisherClient(batch_settings=batch_settings)
    import grpc
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    transport = PublisherGrpcTransport(channel=grpc.insecure_channel(emulator_host))
    return pubsub_v1.PublisherClient(batch_settings=batch_settings, transport=transport)


def publish_all(
    messages: Iterable[PublishedMessage], project: str, topic: str, *, emulator_host: str | None = None
) -> dict[str, str]:
    """Publish every message through the Pub/Sub client with publisher batching and wait for each.

    Pub/Sub assigns its own message ids, so this returns ``{simulator message id: server message
    id}`` (in input order): whoever reconciles what landed with what was sent goes through it.
    """
    batch = list(messages)
    seen: set[str] = set()
    for msg in batch:
        if msg.message_id in seen:
            raise ValueError(f"message_id: {msg.message_id!r} appears twice among the messages to publish")
        seen.add(msg.message_id)
    publisher = publisher_client(emulator_host)
    topic_path = publisher.topic_path(project, topic)
    try:
        futures = [(msg.message_id, publisher.publish(topic_path, msg.data, **msg.attributes)) for msg in batch]
        return {message_id: future.result(timeout=REQUEST_TIMEOUT_S) for message_id, future in futures}
    finally:
        publisher.stop()


def publish(
    messages: Iterable[PublishedMessage], project: str, topic: str, *, emulator_host: str | None = None
) -> list[str]:
    """Like ``publish_all``; returns the server's message ids in input order."""
    return list(publish_all(messages, project, topic, emulator_host=emulator_host).values())
