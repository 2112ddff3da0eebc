"""Broken input the platform must reject: invalid events (copies of real players' events with a
fresh event_id, so counting one by mistake changes the KPIs), malformed elements inside batches,
and whole messages that are not JSON or not UTF-8."""
from __future__ import annotations

import copy
import gzip
import random
from datetime import date
from decimal import Decimal

from simulator.contract import EVENT_NAMES, LEVEL_EVENTS, PLATFORMS, REQUIRED_FIELDS
from simulator.messages import Envelope, Item, encode
from simulator.population import Player, new_uuid
from simulator.timefmt import MS_PER_DAY, MS_PER_S, date_to_ms, format_local, format_local_naive

SCHEMA_VIOLATION = "schema_violation"
TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
MALFORMED_JSON = "malformed_json"
NOT_UTF8 = "not_utf8"

SCHEMA_FAULTS: tuple[str, ...] = (
    "missing_required_field",
    "unknown_event_name",
    "wrong_type",
    "non_positive_price",
    "bad_platform",
    "bad_uuid",
    "upper_case_game_id",
    "timestamp_without_offset",
)
RANGE_FAULTS: tuple[str, ...] = ("timestamp_before_2015", "timestamp_after_publish")
EVENT_FAULTS: tuple[str, ...] = SCHEMA_FAULTS + RANGE_FAULTS
FRAGMENT_FAULTS: tuple[str, ...] = ("json_string", "json_number", "json_array", "json_null", "empty_object", "json_bool")
UNKNOWN_EVENT_NAMES: tuple[str, ...] = tuple(n for n in ("level_up", "tutorial_step", "SessionStart", "purchase_v2") if n not in EVENT_NAMES)
BAD_PLATFORMS: tuple[str, ...] = tuple(p for p in ("iphone", "Android", "switch", "desktop") if p not in PLATFORMS)
MS_PER_YEAR = 365 * MS_PER_DAY
FUTURE_MIN_YEARS = 40  # far more than the 24 h the platform tolerates, whatever the publish clock
EARLIEST_VALID_MS = date_to_ms(date(2015, 1, 1))


def fresh_copy(rng: random.Random, event: dict) -> dict:
    copied = copy.deepcopy(event)
    copied["event_id"] = new_uuid(rng)
    return copied


def _bad_uuid(rng: random.Random, good: str) -> str:
    variant = rng.randrange(3)
    if variant == 0:
        return good.replace("-", "")
    if variant == 1:
        return good[:-4]
    return "{" + good + "}"


def break_event(rng: random.Random, fault: str, event: dict, player: Player, publish_ms: int) -> str:
    """Apply ``fault`` to ``event`` in place (its timestamp is set relative to ``publish_ms``); returns
    what is wrong with it."""
    sent_ms = publish_ms - rng.randint(MS_PER_S, 10 * 60 * MS_PER_S)
    event["event_timestamp"] = format_local(sent_ms, player.offset_min)
    params = event.get("params", {})
    if fault == "missing_required_field":
        name = rng.choice(REQUIRED_FIELDS)
        del event[name]
        return f"required field {name} is missing"
    if fault == "unknown_event_name":
        event["event_name"] = rng.choice(UNKNOWN_EVENT_NAMES)
        return f"event_name {event['event_name']!r} is not in the contract"
    if fault == "wrong_type" and event["event_name"] in LEVEL_EVENTS:
        params["level"] = str(params["level"])
        return f"params.level is the string {params['level']!r}, not an integer"
    if fault == "wrong_type":
        event["schema_version"] = "1"
        return "schema_version is the string '1', not an integer"
    if fault == "non_positive_price":
        params["price"] = rng.choice((Decimal("0.00"), -params["price"]))
        return f"params.price {params['price']} is not positive"
    if fault == "bad_platform":
        event["platform"] = rng.choice(BAD_PLATFORMS)
        return f"platform {event['platform']!r} is not in the contract"
    if fault == "bad_uuid":
        event["event_id"] = _bad_uuid(rng, event["event_id"])
        return f"event_id {event['event_id']!r} is not a canonical UUID"
    if fault == "upper_case_game_id":
        upper = event["game_id"].title()
        event["game_id"] = upper if upper != event["game_id"] else f"G{upper}"
        return f"game_id {event['game_id']!r} has upper-case letters"
    if fault == "timestamp_without_offset":
        event["event_timestamp"] = format_local_naive(sent_ms, player.offset_min)
        return f"event_timestamp {event['event_timestamp']!r} has no UTC offset"
    if fault == "timestamp_before_2015":
        if rng.random() < 0.5:
            moment = rng.randrange(0, MS_PER_DAY)  # device clock reset to the epoch
        else:
            moment = EARLIEST_VALID_MS - rng.randint(2 * MS_PER_DAY, 4 * 365 * MS_PER_DAY)
        event["event_timestamp"] = format_local(moment, player.offset_min)
        return f"event_timestamp {event['event_timestamp']} is before 2015-01-01"
    if fault == "timestamp_after_publish":
        # a device clock set decades ahead: out of range against the simulated publish time and
        # against the real one when the messages go through Pub/Sub today
        ahead = rng.randint(FUTURE_MIN_YEARS * MS_PER_YEAR, (FUTURE_MIN_YEARS + 30) * MS_PER_YEAR)
        event["event_timestamp"] = format_local(publish_ms + ahead, player.offset_min)
        return f"event_timestamp {event['event_timestamp']} is more than 24 h after the publish time"
    raise ValueError(f"unknown fault {fault!r}")


def fault_error_type(fault: str) -> str:
    return TIMESTAMP_OUT_OF_RANGE if fault in RANGE_FAULTS else SCHEMA_VIOLATION


def source_fault(fault: str, has_purchase: bool) -> str:
    """The fault to apply when the game has (or has no) purchase to copy."""
    return "wrong_type" if fault == "non_positive_price" and not has_purchase else fault


def invalid_item(rng: random.Random, fault: str, source: dict, player: Player, publish_ms: int) -> Item:
    event = fresh_copy(rng, source)
    reason = break_event(rng, fault, event, player, publish_ms)
    return Item(encode(event), valid=False, error_type=fault_error_type(fault), reason=f"{fault}: {reason}")


def fragment_item(rng: random.Random, fault: str, source: dict) -> Item:
    """An element of a batch that is valid JSON but not an event object."""
    if fault == "json_string":
        raw = encode(encode(fresh_copy(rng, source)).decode())
        reason = "the event is a JSON string holding the event's JSON text"
    elif fault == "json_number":
        raw = str(rng.randrange(0, 2_000_000_000)).encode()
        reason = "the event is a JSON number"
    elif fault == "json_array":
        raw = encode([[key, value] for key, value in fresh_copy(rng, source).items()])
        reason = "the event is a JSON array of key/value pairs"
    elif fault == "json_null":
        raw = b"null"
        reason = "the event is null"
    elif fault == "empty_object":
        raw = b"{}"
        reason = "the event is an object with nothing in it"
    elif fault == "json_bool":
        raw = b"true"
        reason = "the event is a JSON boolean"
    else:
        raise ValueError(f"unknown fragment fault {fault!r}")
    return Item(raw, valid=False, error_type=SCHEMA_VIOLATION, reason=f"{fault}: {reason}")


def not_json_payload(rng: random.Random, source: dict) -> tuple[bytes, str]:
    """UTF-8 bytes that are not a JSON document."""
    event = fresh_copy(rng, source)
    variant = rng.randrange(3)
    if variant == 0:
        text = encode({"events": [event]})
        return text[: rng.randint(10, len(text) - 2)], "payload truncated in the middle"
    if variant == 1:
        return repr(event).encode(), "Python dict repr instead of JSON (single quotes)"
    second = fresh_copy(rng, source)
    return encode(event) + b"\n" + encode(second), "two JSON documents separated by a newline"


def not_utf8_payload(rng: random.Random, source: dict) -> tuple[bytes, str]:
    """Bytes that are not valid UTF-8."""
    event = fresh_copy(rng, source)
    if rng.random() < 0.5:
        event["app_version"] = f"{event.get('app_version', '1.0.0')}-bêta"
        raw = encode(event).decode("utf-8").encode("latin-1")
        reason = "JSON encoded as Latin-1"
    else:
        raw = gzip.compress(encode({"events": [event]}), mtime=0)
        reason = "gzip-compressed JSON sent without decompression"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw, reason
    raise AssertionError("payload unexpectedly decodes as UTF-8")


def broken_envelope(rng: random.Random, error_type: str, source: dict, near: Envelope) -> Envelope:
    """A whole message that cannot be parsed, published shortly after ``near`` by the same client."""
    make = not_json_payload if error_type == MALFORMED_JSON else not_utf8_payload
    data, reason = make(rng, source)
    publish_ms = near.publish_ms + rng.randint(100, 30 * MS_PER_S)
    return Envelope(publish_ms, dict(near.attributes), [], batch=False, broken_data=data, broken_error_type=error_type, broken_reason=reason)
