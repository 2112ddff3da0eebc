"""The local twin of Pub/Sub's streaming set-up: on the emulator (``pubsub_emulator``), the topics and
subscriptions of production, and a push subscription to the streaming function served by
functions-framework.

    with local_streaming_stack(data_dir) as stack:
        ids = publish_all(messages, stack.project, stack.topic, emulator_host=stack.emulator_host)
        wait_for_delivery(stack, ids.values())

What the emulator does not do like Pub/Sub (so nothing here relies on it): it leaves
``deliveryAttempt`` and ``orderingKey`` out of push bodies, and a push subscription with both
message ordering and a dead-letter policy stops its push loop, so ordering is off; and its retry
backoff stalls redelivery, so locally redelivery is immediate (see ``DeliveryPolicy``).
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from deployments.local.pubsub_emulator import pubsub_emulator
from deployments.local.services import function_server
from ingestion.streaming.topics import DEAD_LETTER_SUBSCRIPTION, DEAD_LETTER_TOPIC, PUSH_SUBSCRIPTION, TOPIC

PROJECT: Final = "local"
_TABLES: Final = ("game_events", "game_events_rejected")


@dataclass(frozen=True)
class DeliveryPolicy:
    """How the push subscription retries a failed push, and when it gives up: after
    ``max_delivery_attempts`` failed attempts Pub/Sub moves the message to the dead-letter topic.
    With a backoff, redelivery waits ``min_backoff_s`` growing to ``max_backoff_s``; without one
    (None, Pub/Sub's default) it is immediate. ``ack_deadline_s`` is the push request timeout.

    The local default has no backoff, because the emulator's backoff stops redelivering once a few
    dozen messages wait on it. Immediate redelivery comes about once a second, so 100 attempts ride
    out about a minute and a half of failing writes. Production sets a backoff
    (deployments/streaming/).
    """

    max_delivery_attempts: int = 100
    min_backoff_s: int | None = None
    max_backoff_s: int | None = None
    ack_deadline_s: int = 60

    def __post_init__(self) -> None:
        if not 5 <= self.max_delivery_attempts <= 100:
            raise ValueError(f"max_delivery_attempts: must be 5..100 (Pub/Sub's range), got {self.max_delivery_attempts}")
        if (self.min_backoff_s is None) != (self.max_backoff_s is None):
            raise ValueError(
                f"min_backoff_s, max_backoff_s: set both or neither, got {self.min_backoff_s}, {self.max_backoff_s}"
            )
        if self.min_backoff_s is not None and not 0 <= self.min_backoff_s <= (self.max_backoff_s or 0) <= 600:
            raise ValueError(
                f"min_backoff_s, max_backoff_s: need 0 <= min <= max <= 600, got {self.min_backoff_s}, {self.max_backoff_s}"
            )
        if not 10 <= self.ack_deadline_s <= 600:
            raise ValueError(f"ack_deadline_s: must be 10..600, got {self.ack_deadline_s}")


@dataclass(frozen=True)
class Topology:
    """Resource paths of the streaming set-up in one project."""

    project: str
    topic_path: str
    dead_letter_topic_path: str
    subscription_path: str
    dead_letter_subscription_path: str


@dataclass(frozen=True)
class LocalStream:
    """What a caller of ``local_streaming_stack`` needs: where to publish and what is running."""

    project: str
    topic: str  # topic id, for ``publish_all(..., project, topic)``
    topic_path: str
    emulator_host: str  # host:port, also the value of PUBSUB_EMULATOR_HOST
    function_url: str
    subscription_path: str
    dead_letter_subscription_path: str
    landing_dir: Path


@dataclass(frozen=True)
class DeliveryReport:
    landed: frozenset[str]  # server message ids with at least one bronze row
    missing: frozenset[str]  # server message ids without any
    dead_letters: int  # messages waiting on the dead-letter subscription

    @property
    def complete(self) -> bool:
        return not self.missing and not self.dead_letters


# --------------------------------------------------------------------------------------------
# Topics and subscriptions
# --------------------------------------------------------------------------------------------


def topology(project: str = PROJECT) -> Topology:
    return Topology(
        project=project,
        topic_path=f"projects/{project}/topics/{TOPIC}",
        dead_letter_topic_path=f"projects/{project}/topics/{DEAD_LETTER_TOPIC}",
        subscription_path=f"projects/{project}/subscriptions/{PUSH_SUBSCRIPTION}",
        dead_letter_subscription_path=f"projects/{project}/subscriptions/{DEAD_LETTER_SUBSCRIPTION}",
    )


def push_endpoint(function_url: str, topic_path: str) -> str:
    """Where Pub/Sub pushes: functions-framework names the CloudEvent's source after the topic it
    finds in the request path (``/projects/P/topics/T``)."""
    return function_url.rstrip("/") + "/" + topic_path


def push_subscription_request(top: Topology, endpoint: str, policy: DeliveryPolicy) -> dict[str, Any]:
    """The CreateSubscription request of the push subscription (no message ordering, see above)."""
    from google.protobuf import duration_pb2

    request: dict[str, Any] = {
        "name": top.subscription_path,
        "topic": top.topic_path,
        "push_config": {"push_endpoint": endpoint},
        "ack_deadline_seconds": policy.ack_deadline_s,
        "dead_letter_policy": {
            "dead_letter_topic": top.dead_letter_topic_path,
            "max_delivery_attempts": policy.max_delivery_attempts,
        },
        "enable_message_ordering": False,
    }
    if policy.min_backoff_s is not None and policy.max_backoff_s is not None:
        request["retry_policy"] = {
            "minimum_backoff": duration_pb2.Duration(seconds=policy.min_backoff_s),
            "maximum_backoff": duration_pb2.Duration(seconds=policy.max_backoff_s),
        }
    return request


def admin_clients(emulator_host: str) -> tuple[Any, Any]:
    """Publisher and subscriber admin clients talking plain gRPC to the emulator."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    publisher = pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=grpc.insecure_channel(emulator_host)))
    subscriber = pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator_host)))
    return publisher, subscriber


def create_topics(emulator_host: str, top: Topology) -> None:
    """The topic, the dead-letter topic and its pull subscription (so dead letters can be read)."""
    publisher, subscriber = admin_clients(emulator_host)
    try:
        publisher.create_topic(name=top.topic_path)
        publisher.create_topic(name=top.dead_letter_topic_path)
        subscriber.create_subscription(
            request={"name": top.dead_letter_subscription_path, "topic": top.dead_letter_topic_path, "ack_deadline_seconds": 60}
        )
    finally:
        subscriber.close()


@contextmanager
def push_subscription(emulator_host: str, top: Topology, endpoint: str, policy: DeliveryPolicy) -> Iterator[str]:
    """The push subscription to ``endpoint``, deleted on exit so no push outlives the function."""
    _, subscriber = admin_clients(emulator_host)
    try:
        subscriber.create_subscription(request=push_subscription_request(top, endpoint, policy))
        try:
            yield top.subscription_path
        finally:
            subscriber.delete_subscription(subscription=top.subscription_path)
    finally:
        subscriber.close()


def read_dead_letters(emulator_host: str, subscription_path: str, max_messages: int = 1000, ack: bool = False) -> list[Any]:
    """The messages waiting on the dead-letter subscription (``ReceivedMessage``s). Unless ``ack``,
    they are handed back at once (ack deadline 0), so a later look sees them again."""
    from google.api_core import exceptions

    _, subscriber = admin_clients(emulator_host)
    received: list[Any] = []
    try:
        while len(received) < max_messages:
            try:
                response = subscriber.pull(
                    request={"subscription": subscription_path, "max_messages": min(100, max_messages - len(received)),
                             "return_immediately": True},
                    timeout=10,
                )
            except exceptions.DeadlineExceeded:
                break
            if not response.received_messages:
                break
            received.extend(response.received_messages)
        ack_ids = [m.ack_id for m in received]
        for start in range(0, len(ack_ids), 100):
            chunk = ack_ids[start : start + 100]
            if ack:
                subscriber.acknowledge(request={"subscription": subscription_path, "ack_ids": chunk})
            else:
                subscriber.modify_ack_deadline(
                    request={"subscription": subscription_path, "ack_ids": chunk, "ack_deadline_seconds": 0}
                )
    finally:
        subscriber.close()
    return received


# --------------------------------------------------------------------------------------------
# The whole stack
# --------------------------------------------------------------------------------------------


@contextmanager
def local_streaming_stack(
    data_dir: Path,
    *,
    project: str = PROJECT,
    policy: DeliveryPolicy = DeliveryPolicy(),
    function_env: Mapping[str, str] | None = None,
) -> Iterator[LocalStream]:
    """Emulator, topics, the function server (local sink under ``data_dir``) and the push
    subscription, started in that order and stopped in reverse. Raises ``EmulatorUnavailable``."""
    top = topology(project)
    with ExitStack() as stack:
        host = stack.enter_context(pubsub_emulator(data_dir))
        create_topics(host, top)
        url = stack.enter_context(function_server(data_dir, extra_env=function_env))
        stack.enter_context(push_subscription(host, top, push_endpoint(url, top.topic_path), policy))
        yield LocalStream(
            project=project,
            topic=TOPIC,
            topic_path=top.topic_path,
            emulator_host=host,
            function_url=url,
            subscription_path=top.subscription_path,
            dead_letter_subscription_path=top.dead_letter_subscription_path,
            landing_dir=data_dir / "landing",
        )


# --------------------------------------------------------------------------------------------
# Waiting for delivery
# --------------------------------------------------------------------------------------------

_VISIBLE_FILE = re.compile(r"^[^.].*\.parquet$")


def landed_files(landing_dir: Path) -> set[Path]:
    """Whole Parquet files of the function's two tables (temporary files start with a dot)."""
    files: set[Path] = set()
    for table in _TABLES:
        folder = landing_dir / table
        if folder.is_dir():
            files.update(p for p in folder.glob("*/*.parquet") if _VISIBLE_FILE.match(p.name))
    return files


def message_ids_in(files: Iterable[Path]) -> set[str]:
    import pyarrow.parquet as pq

    ids: set[str] = set()
    for path in files:
        ids.update(pq.read_table(path, columns=["message_id"]).column("message_id").to_pylist())
    return ids


def wait_for_delivery(
    stream: LocalStream, message_ids: Iterable[str], timeout_s: float = 300.0, poll_s: float = 0.5
) -> DeliveryReport:
    """Wait until every published message (server ids) has bronze rows, or the ones without are
    all accounted for by messages on the dead-letter subscription (a dead letter is republished
    with a new id, so it is counted, not matched). Every message yields at least one row (its
    events or its rejection), so this is exact. Files are written whole and never change, so each
    is read once."""
    expected = set(message_ids)
    landed: set[str] = set()
    seen: set[Path] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        new = landed_files(stream.landing_dir) - seen
        landed |= message_ids_in(new)
        seen |= new
        missing = expected - landed
        dead = len(read_dead_letters(stream.emulator_host, stream.dead_letter_subscription_path)) if missing else 0
        if len(missing) <= dead or time.monotonic() > deadline:
            return DeliveryReport(frozenset(expected & landed), frozenset(missing), dead)
        time.sleep(poll_s)
