"""Handling one Pub/Sub message: validate, store valid events and rejections, log what happened.

Everything about the data ends as a stored, logged rejection; only a failing sink raises
(``TransientSinkError`` and friends), so that Pub/Sub redelivers the message.
"""
from __future__ import annotations

import base64
import binascii
import functools
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
import orjson

from .events import Rejection, ValidEvent
from .rows import Delivery, bronze_rows
from .settings import FunctionSettings
from .sinks import Sink, sink_from_settings
from .validate import parse_message

# How many rejections one log line lists; the counts are always complete.
MAX_LOGGED_REJECTIONS: Final = 50
CONTENT_ENCODING_ATTRIBUTE: Final = "content-encoding"


@dataclass(frozen=True, slots=True)
class HandleResult:
    valid: int
    rejected: int


@dataclass(frozen=True, slots=True)
class PubsubMessage:
    """A Pub/Sub message taken out of its push / CloudEvent envelope."""

    data: bytes
    attributes: dict[str, str]
    message_id: str
    publish_time: datetime
    # set when the envelope itself is broken (e.g. data that is not base64)
    envelope_error: str | None = None


# --------------------------------------------------------------------------------------------
# Envelope (pure)
# --------------------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time as Pub/Sub sends it (nanoseconds allowed), in UTC; None if unusable."""
    if not isinstance(value, str | datetime):
        return None
    try:
        when = value if isinstance(value, datetime) else msgspec.convert(value, datetime)
    except msgspec.ValidationError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def pubsub_message(
    event_data: Any, event_id: str | None, event_time: Any, now: datetime
) -> PubsubMessage:
    """Unwrap ``{"message": {"data": b64, "attributes": {...}, "messageId", "publishTime"},
    "subscription": ...}`` (also the snake_case keys). Missing parts fall back to the CloudEvent's
    id and time, then to ``now``; this never raises."""
    envelope: Mapping[str, Any] = event_data if isinstance(event_data, Mapping) else {}
    message: Mapping[str, Any] = envelope.get("message") or {}
    if not isinstance(message, Mapping):
        message = {}
    message_id = message.get("messageId") or message.get("message_id") or event_id or ""
    publish_time = (
        parse_time(message.get("publishTime") or message.get("publish_time"))
        or parse_time(event_time)
        or now
    )
    raw_attributes = message.get("attributes") or {}
    attributes = (
        {str(k): str(v) for k, v in raw_attributes.items()}
        if isinstance(raw_attributes, Mapping)
        else {}
    )
    encoded = message.get("data") or ""
    error = None
    if isinstance(encoded, bytes):
        data = encoded
    elif isinstance(encoded, str):
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            data, error = encoded.encode("utf-8", "surrogateescape"), "message.data: not valid base64"
    else:
        data = orjson.dumps(encoded)
        error = f"message.data: expected a base64 string, got {type(encoded).__name__}"
    return PubsubMessage(
        data=data,
        attributes=attributes,
        message_id=str(message_id),
        publish_time=publish_time,
        envelope_error=error,
    )


# --------------------------------------------------------------------------------------------
# Logging (one JSON object per line, as Cloud Logging reads stdout)
# --------------------------------------------------------------------------------------------


def log_record(severity: str, message: str, **fields: Any) -> bytes:
    return orjson.dumps({"severity": severity, "message": message, **fields}, default=str)


def _stdout(line: bytes) -> None:
    sys.stdout.write(line.decode() + "\n")
    sys.stdout.flush()


def outcome_record(
    message_id: str, valid: int, rejections: Sequence[Rejection], duration_ms: float
) -> bytes:
    # the masked message: a log line shows at most two characters of a rejected value
    listed = [
        {"event_index": r.event_index, "error_type": r.error_type, "error_message": r.log_message or r.error_message}
        for r in rejections[:MAX_LOGGED_REJECTIONS]
    ]
    extra = {"rejections_not_listed": len(rejections) - len(listed)} if len(rejections) > len(listed) else {}
    return log_record(
        "WARNING" if rejections else "INFO",
        f"message {message_id}: {valid} valid, {len(rejections)} rejected",
        message_id=message_id,
        valid=valid,
        rejected=len(rejections),
        duration_ms=round(duration_ms, 2),
        rejections=listed,
        **extra,
    )


# --------------------------------------------------------------------------------------------
# Handling
# --------------------------------------------------------------------------------------------


def handle_message(
    data: bytes,
    attributes: Mapping[str, str],
    message_id: str,
    publish_time: datetime,
    sink: Sink,
    *,
    envelope_error: str | None = None,
    now: datetime | None = None,
    emit: Callable[[bytes], None] = _stdout,
) -> HandleResult:
    """Validate one message, store its valid events and its rejections, log the outcome.

    Bad data never raises; a sink error propagates (after an ERROR log line) so the message is
    redelivered.
    """
    started = time.perf_counter()
    if publish_time.tzinfo is None:
        publish_time = publish_time.replace(tzinfo=UTC)
    ingested_at = now or datetime.now(UTC)
    valid: list[ValidEvent]
    rejections: list[Rejection]
    if envelope_error is not None:
        valid, rejections = [], [Rejection("malformed_json", envelope_error, data, None)]
    else:
        valid, rejections = parse_message(
            data, publish_time, content_encoding=attributes.get(CONTENT_ENCODING_ATTRIBUTE),
            ingested_at=ingested_at, max_age=max_event_age(),
        )
    delivery = Delivery(
        message_id=message_id,
        publish_time=publish_time,
        ingested_at=ingested_at,
        attributes=dict(attributes),
    )
    events, rejected = bronze_rows(delivery, valid, rejections)
    try:
        sink.write(events, rejected, [e.event_index for e in valid])
    except Exception as exc:
        emit(
            log_record(
                "ERROR",
                f"message {message_id}: storing failed, the message will be redelivered: {exc}",
                message_id=message_id,
                error=type(exc).__name__,
                valid=len(events),
                rejected=len(rejected),
            )
        )
        raise
    emit(outcome_record(message_id, len(events), rejections, (time.perf_counter() - started) * 1e3))
    return HandleResult(valid=len(events), rejected=len(rejected))


@functools.cache
def max_event_age() -> timedelta:
    """The oldest event this process accepts, before its arrival (setting ``event_max_age_days``)."""
    return timedelta(days=FunctionSettings().event_max_age_days)


@functools.cache
def process_sink() -> Sink:
    """The sink of this process, built once from the environment on first use."""
    return sink_from_settings(FunctionSettings())
