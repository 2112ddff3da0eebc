"""Validation of game events against contract v1.

A Pub/Sub message's data is UTF-8 JSON: one event object, or ``{"events": [event, ...]}``. The
message is decoded once into a list of raw event byte slices, then each event is decoded on its
own into a typed msgspec Struct, so one bad event never rejects its batch. The raw event bytes
(``payload``) and the raw ``params`` bytes are kept as sent, so unknown fields survive.

The typed decoders (``contract.decoders``) are built from the contract file at import (enums,
patterns, lengths, minimums, defaults, which params go with which event_name); nothing here
restates them. Rules
the validator applies on purpose beyond plain JSON Schema:

* integers must be JSON integers: ``2.0`` or ``1e2`` is not an ``integer`` (the contract says so);
* patterns follow ECMA-262: ``$`` is the very end of the string, a trailing newline fails;
* ``event_timestamp`` must also be a real instant (no 30 February, no leap second ``:60``, an
  offset below 24 h) and fall between 2015-01-01T00:00:00Z (and at most ``max_age`` before the
  ingest time: BigQuery refuses to stream a row into a partition more than 5 years back) and 24 h
  after the publish time.

Any message is handled in work and memory bounded by its size, and never raises: nesting deeper
than the decoder's stack is one rejection naming the depth; a batch holds at most
``MAX_EVENTS_PER_MESSAGE`` events, and the items beyond it (with the items that are not objects,
when there are more than ``MAX_NON_OBJECT_ROWS`` of those) make one message-level rejection, not
one row each.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
from msgspec import UNSET, Raw

from .body import ENVELOPE_DECODER, batch_items, decode_body, is_utf8, nesting_depth, too_deep
from .contract.decoders import CONTRACT, Contract
from .describe import describe_validation_error, masked_repr, value_repr
from .events import (
    EARLIEST_EVENT_TIME,
    MAX_AHEAD_OF_PUBLISH,
    MAX_EVENT_AGE,
    MAX_EVENT_BYTES,
    MAX_EVENTS_PER_MESSAGE,
    MAX_MESSAGE_BYTES,
    MAX_NON_OBJECT_ROWS,
    Rejection,
    ValidEvent,
    whole_message,
)

_JSON_WS = b" \t\r\n"


def _check_time(when: datetime, text: str, where: str, publish_time: datetime, earliest: datetime) -> tuple[str, str] | None:
    """Why ``when`` is out of range, as (error message, log message); None when in range."""
    if when < earliest:
        bound = (f"before {EARLIEST_EVENT_TIME.isoformat()}" if earliest == EARLIEST_EVENT_TIME else
                 f"before {earliest.isoformat()}, the oldest time BigQuery can stream into its partitioned table")
        return f"{where}.event_timestamp: {text!r} is {bound}", f"{where}.event_timestamp: {masked_repr(text)} is {bound}"
    if when > publish_time + MAX_AHEAD_OF_PUBLISH:
        bound = f"is more than 24h after the publish time {publish_time.isoformat()}"
        return f"{where}.event_timestamp: {text!r} {bound}", f"{where}.event_timestamp: {masked_repr(text)} {bound}"
    return None


def _reject(error_type: str, message: str, payload: bytes, index: int, log_message: str | None = None) -> Rejection:
    return Rejection(error_type, message, payload, index, log_message)


def validate_event(
    payload: bytes,
    where: str,
    index: int,
    publish_time: datetime,
    max_event_bytes: int = MAX_EVENT_BYTES,
    contract: Contract = CONTRACT,
    earliest: datetime = EARLIEST_EVENT_TIME,
) -> ValidEvent | Rejection:
    """Validate one raw event; ``where`` names it in messages (``events[3]`` or ``event``);
    ``earliest`` is the oldest event time accepted."""
    if len(payload) > max_event_bytes:
        message = f"{where}: {len(payload)} bytes, the limit is {max_event_bytes}"
        return _reject("oversize", message, payload, index)
    try:
        event = contract.event_decoder.decode(payload)
    except msgspec.ValidationError as exc:
        message = describe_validation_error(exc, payload, where, contract.enums)
        masked = describe_validation_error(exc, payload, where, contract.enums, masked_repr)
        return _reject("schema_violation", message, payload, index, masked)

    rule = contract.params_rules.get(event.event_name, contract.default_params)
    params: Raw = event.params
    if params:
        try:
            rule.decoder.decode(params)
        except msgspec.ValidationError as exc:
            message = describe_validation_error(exc, bytes(params), f"{where}.params", {})
            masked = describe_validation_error(exc, bytes(params), f"{where}.params", {}, masked_repr)
            return _reject("schema_violation", message, payload, index, masked)
    elif rule.required:
        message = f"{where}.params: required field is missing for event_name {event.event_name!r}"
        return _reject("schema_violation", message, payload, index)

    # the contract's pattern has already required an offset; this checks the calendar and clock
    text: str = event.event_timestamp
    try:
        when: datetime = msgspec.convert(text, datetime)
    except msgspec.ValidationError:
        message = f"{where}.event_timestamp: not a valid RFC 3339 date-time, got "
        return _reject("schema_violation", message + value_repr(text), payload, index, message + masked_repr(text))
    if when.tzinfo is None:  # pragma: no cover - excluded by the pattern
        message = f"{where}.event_timestamp: an offset is required, got {value_repr(text)}"
        return _reject("schema_violation", message, payload, index)
    when = when.astimezone(UTC)
    out_of_range = _check_time(when, text, where, publish_time, earliest)
    if out_of_range:
        return _reject("timestamp_out_of_range", *out_of_range[:1], payload, index, out_of_range[1])

    return ValidEvent(
        event_id=event.event_id,
        event_name=event.event_name,
        event_timestamp=when,
        game_id=event.game_id,
        player_id=event.player_id,
        session_id=event.session_id,
        platform=event.platform,
        app_version=None if event.app_version is UNSET else event.app_version,
        country=None if event.country is UNSET else event.country,
        schema_version=event.schema_version,
        params=bytes(params) if params else None,
        payload=payload,
        event_index=index,
    )



def _collapsed(data: bytes, non_objects: list[int], beyond: int, total: int) -> Rejection:
    """One message-level rejection for the items not validated one by one."""
    parts = []
    if beyond:
        parts.append(f"{total} items, the limit is {MAX_EVENTS_PER_MESSAGE} events: the {beyond} from "
                     f"events[{MAX_EVENTS_PER_MESSAGE}] on are not validated")
    if non_objects:
        shown = ", ".join(f"events[{i}]" for i in non_objects[:10])
        more = f" and {len(non_objects) - 10} more" if len(non_objects) > 10 else ""
        parts.append(f"{len(non_objects)} item(s) are not event objects: {shown}{more}")
    return whole_message("oversize" if beyond else "schema_violation", "message.events: " + "; ".join(parts), data)


def parse_message(
    data: bytes,
    publish_time: datetime,
    *,
    content_encoding: str | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    max_event_bytes: int = MAX_EVENT_BYTES,
    ingested_at: datetime | None = None,
    max_age: timedelta = MAX_EVENT_AGE,
) -> tuple[list[ValidEvent], list[Rejection]]:
    """Split a Pub/Sub message's data into valid events and rejections. Never raises on bad data.

    ``publish_time`` must be tz-aware; events more than 24 h after it, or more than ``max_age``
    before ``ingested_at`` (default: the publish time), are out of range.
    """
    if publish_time.tzinfo is None:
        raise ValueError(f"publish_time: must be tz-aware, got naive {publish_time.isoformat()}")
    body = decode_body(data, content_encoding, max_message_bytes)
    if isinstance(body, Rejection):
        return [], [body]
    body = body.strip(_JSON_WS)
    if not body:
        return [], [whole_message("empty_message", "message: no data", data)]
    if not is_utf8(body):
        return [], [whole_message("not_utf8", "message: data is not valid UTF-8", data)]
    raw_batch: bytes | None = None
    try:
        envelope = ENVELOPE_DECODER.decode(body)
        raw_batch = None if envelope.events is UNSET else bytes(envelope.events)
        batch, total = (None, 1) if raw_batch is None else batch_items(raw_batch)
    except RecursionError:
        return [], [too_deep(data, body)]
    except msgspec.ValidationError as exc:
        hint = " (expected one event object or {\"events\": [...]})"
        where, doc = ("message", body) if raw_batch is None else ("message.events", raw_batch)
        try:
            text = describe_validation_error(exc, doc, where, {})
        except RecursionError:
            return [], [too_deep(data, body)]
        return [], [whole_message("malformed_json", text + hint, data)]
    except msgspec.DecodeError as exc:
        return [], [whole_message("malformed_json", f"message: {exc}", data)]

    if batch is None:
        items: list[tuple[bytes, str]] = [(body, "event")]
    elif not batch:
        return [], [whole_message("empty_message", "message.events: empty batch", data)]
    else:
        items = [(bytes(raw), f"events[{i}]") for i, raw in enumerate(batch)]
    del envelope, batch

    published = publish_time.astimezone(UTC)
    earliest = max(EARLIEST_EVENT_TIME, (ingested_at or published).astimezone(UTC) - max_age)
    valid: list[ValidEvent] = []
    rejected: list[Rejection] = []
    non_objects: list[int] = []
    if items[0][1] != "event":
        non_objects = [i for i, (payload, _) in enumerate(items) if payload[:1] != b"{"]
        if len(non_objects) <= MAX_NON_OBJECT_ROWS:
            non_objects = []  # each refused on its own below
    skip = set(non_objects)
    for index, (payload, where) in enumerate(items):
        if index in skip:
            continue
        try:
            result = validate_event(payload, where, index, published, max_event_bytes, earliest=earliest)
        except RecursionError:
            message = f"{where}: JSON nested {nesting_depth(payload)} levels deep, more than the decoder's stack allows"
            result = _reject("malformed_json", message, payload, index)
        if isinstance(result, ValidEvent):
            valid.append(result)
        else:
            rejected.append(result)
    if non_objects or total > len(items):
        rejected.append(_collapsed(data, non_objects, total - len(items), total))
    return valid, rejected
