"""Replay dead-lettered messages through the function's handler, into the sink the settings choose.

    python -m ingestion.streaming.replay --project P [--subscription SUBSCRIPTION] [--max-messages N]

Pulls from the dead-letter subscription (``PUBSUB_EMULATOR_HOST`` points the client at the
emulator), hands each message to ``handle_message`` exactly as the function would, and
acknowledges it only once it is stored. Replaying is idempotent: a message keeps its dead-letter
message id on every pull, so its rows keep their insertIds, and silver keeps one row per
``event_id`` and per (message, event index) of a rejection. A message whose storing fails again is
handed back to the subscription (not acknowledged) and the command exits non-zero.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .handler import _stdout, handle_message, parse_time
from .settings import FunctionSettings
from .sinks import Sink, sink_from_settings
from .topics import DEAD_LETTER_SUBSCRIPTION

# Pub/Sub adds this attribute to a dead-lettered message: when it was first published
SOURCE_PUBLISH_TIME = "CloudPubSubDeadLetterSourceTopicPublishTime"


@dataclass(frozen=True)
class ReplayResult:
    replayed: int  # messages stored and acknowledged
    valid: int
    rejected: int
    failed: int  # messages handed back after storing failed


def publish_time(message: Any) -> datetime:
    """When the message was first published (the dead-letter attribute), else its own time."""
    return parse_time(message.attributes.get(SOURCE_PUBLISH_TIME)) or message.publish_time


def replay(
    subscriber: Any,
    subscription_path: str,
    sink: Sink,
    *,
    max_messages: int = 10_000,
    ack: bool = True,
    emit: Callable[[bytes], None] = _stdout,
) -> ReplayResult:
    """Replay up to ``max_messages`` messages of ``subscription_path``; ``ack`` False hands each back
    after storing it (a dry run of the acknowledgement, or a crash before it)."""
    from google.api_core import exceptions

    replayed = valid = rejected = failed = 0
    while replayed + failed < max_messages:
        try:
            response = subscriber.pull(
                request={"subscription": subscription_path, "max_messages": min(100, max_messages - replayed - failed),
                         "return_immediately": True},
                timeout=30,
            )
        except exceptions.DeadlineExceeded:
            break
        if not response.received_messages:
            break
        done, back = [], []
        for received in response.received_messages:
            message = received.message
            try:
                result = handle_message(message.data, dict(message.attributes), message.message_id,
                                        publish_time(message), sink, emit=emit)
            except Exception:  # noqa: BLE001 - logged by the handler; the message goes back
                back.append(received.ack_id)
                failed += 1
                continue
            done.append(received.ack_id)
            replayed, valid, rejected = replayed + 1, valid + result.valid, rejected + result.rejected
        if done and ack:
            subscriber.acknowledge(request={"subscription": subscription_path, "ack_ids": done})
        back += [] if ack else done
        if back:
            subscriber.modify_ack_deadline(
                request={"subscription": subscription_path, "ack_ids": back, "ack_deadline_seconds": 0})
        if failed or not ack:
            break  # what was handed back would be pulled again at once
    return ReplayResult(replayed, valid, rejected, failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingestion.streaming.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", default=FunctionSettings().gcp_project, help="Google Cloud project (default: GA_GCP_PROJECT)")
    parser.add_argument("--subscription", default=DEAD_LETTER_SUBSCRIPTION, help=f"the dead-letter subscription's id (default: {DEAD_LETTER_SUBSCRIPTION})")
    parser.add_argument("--max-messages", type=int, default=10_000)
    args = parser.parse_args(argv)
    if not args.project:
        parser.error("--project: required (or set GA_GCP_PROJECT)")

    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(args.project, args.subscription)
    try:
        result = replay(subscriber, path, sink_from_settings(FunctionSettings()), max_messages=args.max_messages)
    finally:
        subscriber.close()
    print(f"replayed {result.replayed} message(s) from {path}: {result.valid} valid event(s), "
          f"{result.rejected} rejection(s); {result.failed} handed back", file=sys.stderr)
    return 1 if result.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
