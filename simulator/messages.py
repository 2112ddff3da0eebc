"""How events travel: the client packs a session's events into Pub/Sub messages (bare events or
``{"events": [...]}`` batches), sometimes delivers an event twice, and sometimes holds events
back for hours or days while offline."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import msgspec

from simulator.gameplay import TimedEvent
from simulator.population import Player
from simulator.timefmt import MS_PER_H, MS_PER_S, ms_to_datetime

LATE_MIN_MS = MS_PER_H
LATE_MAX_MS = 5 * 24 * MS_PER_H
FLUSH_INTERVAL_MS = 10 * 60 * MS_PER_S
RETRY_MAX_MS = 10 * 60 * MS_PER_S  # a repeat is published at most this long after the first delivery
SAME_MESSAGE_DUPLICATE_SHARE = 0.15  # of duplicated events in a batch: repeated inside that batch

_ENCODER = msgspec.json.Encoder(decimal_format="number")


def encode(value: object) -> bytes:
    """Compact JSON, Decimals written as plain numbers exactly as they are."""
    return _ENCODER.encode(value)


def decode(raw: bytes | str) -> object:
    """JSON with every non-integer number as a Decimal built from its text."""
    return json.loads(raw, parse_float=Decimal)


@dataclass(frozen=True)
class PublishedMessage:
    """A message the simulator publishes to the events topic, with the id and publish time that
    Pub/Sub gives it."""

    message_id: str  # deterministic, unique
    data: bytes  # UTF-8 JSON: one event object, or {"events": [...]} (except injected broken messages)
    attributes: dict[str, str]
    publish_time: datetime  # tz-aware UTC


@dataclass(frozen=True)
class InvalidEvent:
    message_id: str
    raw: bytes  # the event's own bytes; the whole data for a message that cannot be parsed at all
    error_type: str  # schema_violation | timestamp_out_of_range | malformed_json | not_utf8
    reason: str


@dataclass
class Item:
    """One element of a message: a valid event, or an injected broken one."""

    raw: bytes
    valid: bool = True
    error_type: str = ""
    reason: str = ""


@dataclass
class Envelope:
    """A message before it gets its id."""

    publish_ms: int
    attributes: dict[str, str]
    items: list[Item] = field(default_factory=list)
    batch: bool = True  # {"events": [...]} rather than one bare event
    late: bool = False
    broken_data: bytes | None = None  # a whole payload that is not a JSON document at all
    broken_error_type: str = ""
    broken_reason: str = ""

    def data(self) -> bytes:
        if self.broken_data is not None:
            return self.broken_data
        if not self.batch:
            return self.items[0].raw
        return b'{"events":[' + b",".join(item.raw for item in self.items) + b"]}"


def attributes_of(player: Player) -> dict[str, str]:
    return {"game_id": player.game_id, "sdk_version": player.sdk_version}


def flushes(rng: random.Random, events: list[TimedEvent], legacy: bool, max_events: int) -> list[list[TimedEvent]]:
    """How the client splits time-ordered events into messages: a legacy SDK sends each event on
    its own; a current one flushes when its buffer reaches a size drawn per flush or when the
    oldest buffered event is ``FLUSH_INTERVAL_MS`` old."""
    out: list[list[TimedEvent]] = []
    buffer: list[TimedEvent] = []
    size = 1
    for timed in events:
        if buffer and (len(buffer) >= size or timed[0] - buffer[0][0] > FLUSH_INTERVAL_MS):
            out.append(buffer)
            buffer = []
        if not buffer:
            size = 1 if legacy or max_events == 1 or rng.random() < 0.15 else rng.randint(2, max(2, min(max_events, 25)))
        buffer.append(timed)
    if buffer:
        out.append(buffer)
    return out


def send(
    rng: random.Random,
    chunk: list[TimedEvent],
    publish_ms: int,
    attributes: dict[str, str],
    legacy: bool,
    max_events: int,
    duplicate_rate: float,
    late: bool,
) -> list[Envelope]:
    """The message carrying ``chunk`` and, for events delivered twice, the repeat (in the same
    batch or in a retry message a little later)."""
    batch = len(chunk) > 1 or (not legacy and rng.random() < 0.5)
    items = [Item(encode(event)) for _, event in chunk]
    retried: list[Item] = []
    for item in list(items):
        if rng.random() >= duplicate_rate:
            continue
        if batch and len(items) < max_events and rng.random() < SAME_MESSAGE_DUPLICATE_SHARE:
            items.append(Item(item.raw))
        else:
            retried.append(Item(item.raw))
    envelopes = [Envelope(publish_ms, attributes, items, batch, late)]
    retry_ms = publish_ms + rng.randint(MS_PER_S, RETRY_MAX_MS)
    if legacy or (len(retried) == 1 and rng.random() < 0.5):
        envelopes += [Envelope(retry_ms + n, attributes, [item], False, late) for n, item in enumerate(retried)]
    elif retried:
        envelopes.append(Envelope(retry_ms, attributes, retried, True, late))
    return envelopes


def late_publish_ms(rng: random.Random, chunk: list[TimedEvent]) -> int:
    """A publish time 1 h .. 5 days after every event of the chunk (leaving room for a repeat)."""
    first, last = chunk[0][0], chunk[-1][0]
    low = last - first + LATE_MIN_MS
    return first + rng.randint(low, max(low, LATE_MAX_MS - RETRY_MAX_MS))


def package_session(rng: random.Random, player: Player, events: list[TimedEvent], max_events: int, duplicate_rate: float, late_rate: float) -> list[Envelope]:
    """All messages that carry one session's events."""
    attributes = attributes_of(player)
    legacy = player.legacy_sdk
    on_time: list[TimedEvent] = []
    held_back: list[TimedEvent] = []
    for timed in events:
        (held_back if rng.random() < late_rate else on_time).append(timed)
    envelopes: list[Envelope] = []
    for chunk in flushes(rng, on_time, legacy, max_events):
        publish_ms = chunk[-1][0] + rng.randint(200, 15_000)
        envelopes += send(rng, chunk, publish_ms, attributes, legacy, max_events, duplicate_rate, late=False)
    for chunk in flushes(rng, held_back, legacy, max_events):
        envelopes += send(rng, chunk, late_publish_ms(rng, chunk), attributes, legacy, max_events, duplicate_rate, late=True)
    return envelopes


@dataclass(frozen=True)
class Delivered:
    messages: list[PublishedMessage]
    valid_events: list[dict]
    invalid_events: list[InvalidEvent]


def finalize(envelopes: list[Envelope], first_message_number: int) -> Delivered:
    """Order messages by publish time, number them, and list what each one carries."""
    ordered = sorted(enumerate(envelopes), key=lambda pair: (pair[1].publish_ms, pair[0]))
    messages: list[PublishedMessage] = []
    valid: list[dict] = []
    invalid: list[InvalidEvent] = []
    for number, (_, envelope) in enumerate(ordered, start=first_message_number):
        message_id = str(number)
        messages.append(PublishedMessage(message_id, envelope.data(), dict(envelope.attributes), ms_to_datetime(envelope.publish_ms)))
        if envelope.broken_data is not None:
            invalid.append(InvalidEvent(message_id, envelope.broken_data, envelope.broken_error_type, envelope.broken_reason))
            continue
        for item in envelope.items:
            if item.valid:
                valid.append(decode(item.raw))  # type: ignore[arg-type]
            else:
                invalid.append(InvalidEvent(message_id, item.raw, item.error_type, item.reason))
    return Delivered(messages, valid, invalid)
