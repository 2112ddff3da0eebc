"""Validation of game events: conformance with the JSON Schema contract, and the bad inputs."""
from __future__ import annotations

import gzip
import json
import random
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import msgspec
import pytest
from jsonschema import Draft202012Validator, ValidationError
from jsonschema.validators import extend

from ingestion.streaming.contract import ContractError, ecma_to_python_pattern, load_game_event_schema
from ingestion.streaming.body import nesting_depth
from ingestion.streaming.events import (
    ERROR_TYPES,
    MAX_EVENT_AGE,
    MAX_EVENT_BYTES,
    MAX_EVENTS_PER_MESSAGE,
    MAX_NON_OBJECT_ROWS,
    Rejection,
    ValidEvent,
)
from ingestion.streaming.validate import parse_message

PUBLISH = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "123e4567-e89b-12d3-a456-426614174000",
        "event_name": "level_complete",
        "event_timestamp": "2024-06-01T11:59:30.250Z",
        "game_id": "space_miner",
        "player_id": "player-1",
        "session_id": "session-1",
        "platform": "android",
        "app_version": "1.4.2",
        "country": "DE",
        "schema_version": 1,
        "params": {"level": 3, "duration_s": 41.5},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def without(*names: str, **overrides: Any) -> dict[str, Any]:
    return event(**{n: _DROP for n in names}, **overrides)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def one(data: bytes, publish_time: datetime = PUBLISH, **options: Any) -> ValidEvent | Rejection:
    valid, rejected = parse_message(data, publish_time, **options)
    assert len(valid) + len(rejected) == 1
    return (valid or rejected)[0]


# ---------------------------------------------------------------------------------------------
# Conformance with the contract
# ---------------------------------------------------------------------------------------------


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    """``pattern`` with ECMA-262 ``$``: a match must reach the very end of the string."""
    if not validator.is_type(instance, "string"):
        return
    found = re.search(pattern, instance)
    if found is None or (pattern.endswith("$") and found.end() != len(instance)):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = extend(Draft202012Validator, {"pattern": _ecma_pattern})

# (name, raw JSON of one event)
CORPUS_VALID: list[tuple[str, bytes]] = [
    ("full level_complete", dumps(event())),
    ("minimal session_start", dumps(without("app_version", "country", "schema_version", "params", event_name="session_start"))),
    ("session_start with params", dumps(event(event_name="session_start", params={"source": "push"}))),
    ("session_end", dumps(event(event_name="session_end", params={"duration_s": 0}))),
    ("session_end float duration", dumps(event(event_name="session_end", params={"duration_s": 12.75}))),
    ("level_start no duration", dumps(event(event_name="level_start", params={"level": 1}))),
    ("level_fail", dumps(event(event_name="level_fail", params={"level": 99, "duration_s": 3}))),
    ("purchase quantity defaulted", dumps(event(event_name="purchase", params={"transaction_id": "t1", "sku": "gems_100", "price": 0.99, "currency": "EUR"}))),
    ("purchase quantity 3", dumps(event(event_name="purchase", params={"transaction_id": "t1", "sku": "gems_100", "price": 4, "currency": "USD", "quantity": 3}))),
    ("ad_impression zero revenue", dumps(event(event_name="ad_impression", params={"ad_network": "net", "placement": "level_end", "revenue_usd": 0}))),
    ("upper-case uuid", dumps(event(event_id="123E4567-E89B-12D3-A456-426614174000"))),
    ("offset timestamp", dumps(event(event_timestamp="2024-06-01T13:59:30+02:00"))),
    ("negative offset", dumps(event(event_timestamp="2024-06-01T07:00:00-05:00"))),
    ("lower-case t and z", dumps(event(event_timestamp="2024-06-01t11:00:00z"))),
    ("nanosecond fraction", dumps(event(event_timestamp="2024-06-01T11:00:00.123456789Z"))),
    ("unknown top-level field", dumps(event(device={"model": "Pixel 8"}, debug=True))),
    ("unknown params field", dumps(event(params={"level": 2, "boss": "dragon"}))),
    ("empty app_version", dumps(event(app_version=""))),
    ("app_version 64 chars", dumps(event(app_version="v" * 64))),
    ("player_id 128 chars", dumps(event(player_id="p" * 128))),
    ("non-ascii player_id", dumps(event(player_id="Jürgen-🎮"))),
    ("game_id 64 chars", dumps(event(game_id="a" * 64))),
    ("schema_version 2", dumps(event(schema_version=2))),
    ("every platform: web", dumps(event(platform="web"))),
    ("every platform: console", dumps(event(platform="console"))),
    ("leap day", dumps(event(event_timestamp="2024-02-29T10:00:00Z"))),
    ("ad_impression extra params", dumps(event(event_name="ad_impression", params={"ad_network": "n", "placement": "p", "revenue_usd": 0.002, "format": "video"}))),
    ("escaped string content", b'{"event_id":"123e4567-e89b-12d3-a456-426614174000","event_name":"session_start","event_timestamp":"2024-06-01T11:00:00Z","game_id":"g","player_id":"a\\"b\\\\c\\u00e9","session_id":"s","platform":"pc"}'),
]

CORPUS_INVALID: list[tuple[str, bytes]] = [
    ("missing event_id", dumps(without("event_id"))),
    ("missing event_name", dumps(without("event_name"))),
    ("missing event_timestamp", dumps(without("event_timestamp"))),
    ("missing game_id", dumps(without("game_id"))),
    ("missing player_id", dumps(without("player_id"))),
    ("missing session_id", dumps(without("session_id"))),
    ("missing platform", dumps(without("platform"))),
    ("bad uuid", dumps(event(event_id="not-a-uuid"))),
    ("uuid without dashes", dumps(event(event_id="123e4567e89b12d3a456426614174000"))),
    ("uuid trailing newline", dumps(event(event_id="123e4567-e89b-12d3-a456-426614174000\n"))),
    ("unknown event_name", dumps(event(event_name="level_up"))),
    ("event_name wrong case", dumps(event(event_name="Purchase"))),
    ("unknown platform", dumps(event(platform="ps5"))),
    ("date only timestamp", dumps(event(event_timestamp="2024-06-01"))),
    ("naive timestamp", dumps(event(event_timestamp="2024-06-01T11:00:00"))),
    ("space separator", dumps(event(event_timestamp="2024-06-01 11:00:00Z"))),
    ("timestamp trailing newline", dumps(event(event_timestamp="2024-06-01T11:00:00Z\n"))),
    ("30 February", dumps(event(event_timestamp="2024-02-30T10:00:00Z"))),
    ("leap second", dumps(event(event_timestamp="2016-12-31T23:59:60Z"))),
    ("offset hour 24", dumps(event(event_timestamp="2024-06-01T11:00:00+24:00"))),
    ("hour 24", dumps(event(event_timestamp="2024-06-01T24:00:00Z"))),
    ("offset minutes 60", dumps(event(event_timestamp="2024-06-01T11:00:00+01:60"))),
    ("timestamp as number", dumps(event(event_timestamp=1717243200))),
    ("game_id upper case", dumps(event(game_id="Space_Miner"))),
    ("game_id trailing newline", dumps(event(game_id="space_miner\n"))),
    ("game_id too long", dumps(event(game_id="a" * 65))),
    ("empty player_id", dumps(event(player_id=""))),
    ("player_id too long", dumps(event(player_id="p" * 129))),
    ("session_id not a string", dumps(event(session_id=42))),
    ("app_version null", dumps(event(app_version=None))),
    ("app_version too long", dumps(event(app_version="v" * 65))),
    ("country lower case", dumps(event(country="de"))),
    ("country trailing newline", dumps(event(country="DE\n"))),
    ("country three letters", dumps(event(country="DEU"))),
    ("schema_version 0", dumps(event(schema_version=0))),
    ("schema_version string", dumps(event(schema_version="1"))),
    ("schema_version bool", dumps(event(schema_version=True))),
    ("params not an object", dumps(event(event_name="session_start", params=[1, 2]))),
    ("params null", dumps(event(event_name="session_start", params=None))),
    ("session_end without params", dumps(without("params", event_name="session_end"))),
    ("session_end negative duration", dumps(event(event_name="session_end", params={"duration_s": -1}))),
    ("session_end duration string", dumps(event(event_name="session_end", params={"duration_s": "10"}))),
    ("level without params", dumps(without("params"))),
    ("level missing level", dumps(event(params={"duration_s": 3}))),
    ("level as string", dumps(event(params={"level": "3"}))),
    ("level 0", dumps(event(params={"level": 0}))),
    ("level 2.5", dumps(event(params={"level": 2.5}))),
    ("level bool", dumps(event(params={"level": True}))),
    ("purchase without params", dumps(without("params", event_name="purchase"))),
    ("purchase price 0", dumps(event(event_name="purchase", params={"transaction_id": "t", "sku": "s", "price": 0, "currency": "EUR"}))),
    ("purchase currency lower", dumps(event(event_name="purchase", params={"transaction_id": "t", "sku": "s", "price": 1, "currency": "eur"}))),
    ("purchase currency newline", dumps(event(event_name="purchase", params={"transaction_id": "t", "sku": "s", "price": 1, "currency": "EUR\n"}))),
    ("purchase quantity 0", dumps(event(event_name="purchase", params={"transaction_id": "t", "sku": "s", "price": 1, "currency": "EUR", "quantity": 0}))),
    ("purchase empty sku", dumps(event(event_name="purchase", params={"transaction_id": "t", "sku": "", "price": 1, "currency": "EUR"}))),
    ("purchase missing transaction_id", dumps(event(event_name="purchase", params={"sku": "s", "price": 1, "currency": "EUR"}))),
    ("ad_impression negative revenue", dumps(event(event_name="ad_impression", params={"ad_network": "n", "placement": "p", "revenue_usd": -0.1}))),
    ("ad_impression missing placement", dumps(event(event_name="ad_impression", params={"ad_network": "n", "revenue_usd": 0.1}))),
    ("event is an array", dumps([event()])),
    ("event is a string", dumps("event")),
]

# On purpose, the platform is stricter than plain JSON Schema here (see the contract's $comment).
DIVERGENT: list[tuple[str, bytes]] = [
    ("level 2.0", b'{"event_id":"123e4567-e89b-12d3-a456-426614174000","event_name":"level_start","event_timestamp":"2024-06-01T11:00:00Z","game_id":"g","player_id":"p","session_id":"s","platform":"pc","params":{"level":2.0}}'),
    ("schema_version 1.0", dumps(event(schema_version=1.0))),
    ("quantity 1e0", dumps(event(event_name="purchase", params={"transaction_id": "t", "sku": "s", "price": 1, "currency": "EUR"})).replace(b'"EUR"}', b'"EUR","quantity":1e0}')),
]


def _ours_valid(raw: bytes) -> bool:
    """The verdict on ``raw`` as an element of a batch and, for objects, as a whole message."""
    verdicts = set()
    messages = [b'{"events": [' + raw + b"]}"] + ([raw] if raw.startswith(b"{") else [])
    for data in messages:
        valid, rejected = parse_message(data, PUBLISH)
        assert all(r.error_type == "schema_violation" and r.event_index == 0 for r in rejected), rejected
        verdicts.add(bool(valid))
    assert len(verdicts) == 1, f"{raw!r}: single and batch verdicts differ"
    return verdicts.pop()


@pytest.fixture(scope="module")
def reference() -> Draft202012Validator:
    schema = load_game_event_schema()
    EcmaValidator.check_schema(schema)
    return EcmaValidator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS_VALID) + len(CORPUS_INVALID) + len(DIVERGENT) >= 60


@pytest.mark.parametrize(("name", "raw"), CORPUS_VALID, ids=[n for n, _ in CORPUS_VALID])
def test_valid_corpus_agrees_with_json_schema(name: str, raw: bytes, reference: Any) -> None:
    assert reference.is_valid(json.loads(raw)), name
    assert _ours_valid(raw), name


@pytest.mark.parametrize(("name", "raw"), CORPUS_INVALID, ids=[n for n, _ in CORPUS_INVALID])
def test_invalid_corpus_agrees_with_json_schema(name: str, raw: bytes, reference: Any) -> None:
    assert not reference.is_valid(json.loads(raw)), name
    assert not _ours_valid(raw), name


@pytest.mark.parametrize(("name", "raw"), DIVERGENT, ids=[n for n, _ in DIVERGENT])
def test_integral_floats_are_not_integers_on_purpose(name: str, raw: bytes, reference: Any) -> None:
    assert reference.is_valid(json.loads(raw)), f"{name}: plain JSON Schema accepts it"
    result = one(raw)
    assert isinstance(result, Rejection)
    assert result.error_type == "schema_violation"
    assert "expected int, got float" in result.error_message


def test_python_dollar_would_let_a_trailing_newline_through() -> None:
    # why patterns are translated: Python's `$` also matches before a final newline
    assert re.search("^[A-Z]{2}$", "DE\n")
    assert not re.search(ecma_to_python_pattern("^[A-Z]{2}$"), "DE\n")
    assert ecma_to_python_pattern(r"^a\$[$]$") == r"^a\$[$]\Z"
    with pytest.raises(ContractError, match=r"\\d"):
        ecma_to_python_pattern(r"^\d+$")


# ---------------------------------------------------------------------------------------------
# What a valid event becomes
# ---------------------------------------------------------------------------------------------


def test_valid_event_columns_and_raw_bytes_kept() -> None:
    raw = b'{"event_id":"123e4567-e89b-12d3-a456-426614174000", "event_name":"purchase","event_timestamp":"2024-06-01T13:00:00.5+02:00","game_id":"g","player_id":"p","session_id":"s","platform":"ios","params":{"transaction_id":"t","sku":"gems","price":1.99,"currency":"EUR","promo":{"code":"X"}},"future_field":[1,2]}'
    result = one(raw)
    assert isinstance(result, ValidEvent)
    assert result.event_timestamp == datetime(2024, 6, 1, 11, 0, 0, 500000, tzinfo=UTC)
    assert result.event_timestamp.tzinfo is UTC
    assert (result.app_version, result.country, result.schema_version) == (None, None, 1)
    assert result.payload == raw  # byte for byte, unknown fields included
    assert result.params == b'{"transaction_id":"t","sku":"gems","price":1.99,"currency":"EUR","promo":{"code":"X"}}'
    assert json.loads(result.payload)["future_field"] == [1, 2]


def test_session_start_may_omit_params() -> None:
    result = one(dumps(without("params", event_name="session_start")))
    assert isinstance(result, ValidEvent) and result.params is None


def test_batch_payloads_are_the_exact_event_slices() -> None:
    a, b = dumps(event()), dumps(event(event_id="00000000-0000-0000-0000-000000000001"))
    valid, rejected = parse_message(b'{ "events" : [ ' + a + b" ,\n" + b + b" ] }", PUBLISH)
    assert not rejected
    assert [v.payload for v in valid] == [a, b]


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "error_type"),
    [
        (b"", "empty_message"),
        (b"  \n\t", "empty_message"),
        (b'{"events": []}', "empty_message"),
        (b'{"event_id": ', "malformed_json"),
        (b"not json", "malformed_json"),
        (b"[1, 2]", "malformed_json"),
        (b"null", "malformed_json"),
        (b'"text"', "malformed_json"),
        (b'{"events": {"a": 1}}', "malformed_json"),
        (b'{"events": []} trailing', "malformed_json"),
        (b'{"player_id": "\xff\xfe"}', "not_utf8"),
        (b"\xc3\x28", "not_utf8"),
        ('{"x": "é"}'.encode("latin-1"), "not_utf8"),
    ],
)
def test_whole_message_failures(data: bytes, error_type: str) -> None:
    valid, rejected = parse_message(data, PUBLISH)
    assert valid == []
    assert len(rejected) == 1
    assert rejected[0].error_type == error_type
    assert rejected[0].event_index is None
    assert rejected[0].payload == data
    assert rejected[0].error_message.startswith("message")


def test_invalid_utf8_in_an_unknown_field_is_still_caught() -> None:
    data = dumps(event())[:-1] + b', "junk": "\xff"}'
    (rejection,) = parse_message(data, PUBLISH)[1]
    assert rejection.error_type == "not_utf8"


def test_non_object_element_rejects_only_that_element() -> None:
    valid, rejected = parse_message(b'{"events": [' + dumps(event()) + b', 7, "x", null]}', PUBLISH)
    assert len(valid) == 1
    assert [(r.event_index, r.error_type) for r in rejected] == [
        (1, "schema_violation"),
        (2, "schema_violation"),
        (3, "schema_violation"),
    ]
    assert rejected[0].error_message == "events[1]: expected object, got int 7"
    assert rejected[0].payload == b"7"


def test_many_items_that_are_not_objects_are_one_message_level_rejection() -> None:
    data = b'{"events": [' + dumps(event()) + b"," + b",".join([b"7"] * (MAX_NON_OBJECT_ROWS + 1)) + b"]}"
    valid, rejected = parse_message(data, PUBLISH)
    assert len(valid) == 1
    assert [(r.event_index, r.error_type, r.error_message, r.payload) for r in rejected] == [
        (None, "schema_violation", f"message.events: {MAX_NON_OBJECT_ROWS + 1} item(s) are not event objects: "
         + ", ".join(f"events[{i}]" for i in range(1, 11)) + f" and {MAX_NON_OBJECT_ROWS + 1 - 10} more", data)]


def test_a_batch_beyond_the_cap_validates_the_first_events_and_refuses_the_rest_in_one_row() -> None:
    events = [event(event_id=f"00000000-0000-0000-0000-{i:012d}") for i in range(MAX_EVENTS_PER_MESSAGE + 5)]
    data = dumps({"events": events[:-1] + [7]})
    valid, rejected = parse_message(data, PUBLISH)
    assert len(valid) == MAX_EVENTS_PER_MESSAGE
    assert [(r.event_index, r.error_type, r.error_message) for r in rejected] == [(
        None, "oversize", f"message.events: {MAX_EVENTS_PER_MESSAGE + 5} items, the limit is {MAX_EVENTS_PER_MESSAGE} "
        f"events: the 5 from events[{MAX_EVENTS_PER_MESSAGE}] on are not validated")]


def test_a_million_tiny_items_cost_one_row_and_bounded_time() -> None:
    data = b'{"events": [' + b"1," * 999_999 + b"1]}"
    started = time.perf_counter()
    valid, (rejection,) = parse_message(data, PUBLISH)
    assert not valid and rejection.event_index is None and rejection.error_type == "oversize"
    assert rejection.error_message.startswith(f"message.events: 1000000 items, the limit is {MAX_EVENTS_PER_MESSAGE} events")
    assert f"{MAX_EVENTS_PER_MESSAGE} item(s) are not event objects: events[0], events[1]" in rejection.error_message
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("depth", [1000, 200_000])
@pytest.mark.parametrize("shape", ["array", "batch item", "unknown field", "params"])
def test_deep_nesting_is_a_rejection_naming_the_depth(depth: int, shape: str) -> None:
    nested = b"[" * depth + b"]" * depth
    data = {"array": nested,
            "batch item": b'{"events": [' + dumps(event()) + b", " + nested + b"]}",
            "unknown field": dumps(event())[:-1] + b', "x": ' + nested + b"}",
            "params": dumps(event())[:-2] + b', "x": ' + nested + b"}}"}[shape]
    valid, rejected = parse_message(data, PUBLISH)
    assert not valid and len(rejected) == 1
    (rejection,) = rejected
    assert rejection.error_type == "malformed_json" and rejection.event_index is None
    found = re.search(r"JSON nested (\d+) levels deep", rejection.error_message)
    assert found and depth <= int(found[1]) <= depth + 3, rejection.error_message  # its own and the envelope's


def test_nesting_depth_skips_strings() -> None:
    assert nesting_depth(b'{"a": "[[[{{", "b": [{"c": "\\"]"}]}') == 3
    assert nesting_depth(b"") == 0


def test_an_event_older_than_bigquery_streams_into_its_partitions_is_out_of_range() -> None:
    arrived = datetime(2026, 3, 1, tzinfo=UTC)
    old = event(event_id="00000000-0000-0000-0000-000000000001", event_timestamp="2020-02-01T00:00:00Z")
    recent = event(event_id="00000000-0000-0000-0000-000000000002", event_timestamp="2021-04-01T00:00:00Z")
    valid, rejected = parse_message(dumps({"events": [old, recent]}), arrived, ingested_at=arrived)
    assert [v.event_id for v in valid] == [recent["event_id"]]
    ((index, error_type, message),) = [(r.event_index, r.error_type, r.error_message) for r in rejected]
    assert (index, error_type) == (0, "timestamp_out_of_range")
    assert message == ("events[0].event_timestamp: '2020-02-01T00:00:00Z' is before 2021-03-07T00:00:00+00:00, "
                       "the oldest time BigQuery can stream into its partitioned table")
    assert MAX_EVENT_AGE == timedelta(days=1820)


def test_log_messages_mask_the_rejected_value() -> None:
    (rejection,) = parse_message(dumps(event(country="jane.doe@example.com")), PUBLISH)[1]
    assert "jane.doe@example.com" in rejection.error_message  # stored with the row, as sent
    assert rejection.log_message == (rejection.error_message.replace("'jane.doe@example.com'", "'ja'... (20 chars)"))
    assert "doe" not in rejection.log_message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (dumps(without("game_id")), "event.game_id: required field is missing"),
        (dumps(event(params={"level": "3"})), "event.params.level: expected int, got str '3'"),
        (dumps(event(session_id=42)), "event.session_id: expected str, got int 42"),
        (
            dumps(event(event_name="level_up")),
            "event.event_name: invalid value 'level_up', expected one of session_start, "
            "session_end, level_start, level_complete, level_fail, purchase, ad_impression",
        ),
        (dumps(event(country="DE\n")), "event.country: expected str matching regex '^[A-Z]{2}$', got 'DE\\n'"),
        (dumps(event(schema_version=0)), "event.schema_version: expected int >= 1, got 0"),
        (dumps(without("params", event_name="purchase")), "event.params: required field is missing for event_name 'purchase'"),
        (
            dumps(event(event_name="purchase", params={"sku": "s", "price": 1, "currency": "EUR"})),
            "event.params.transaction_id: required field is missing",
        ),
        (dumps(event(event_timestamp="2024-06-01")), "event.event_timestamp: expected str matching regex"),
        (dumps(event(event_timestamp="2024-02-30T10:00:00Z")), "event.event_timestamp: not a valid RFC 3339 date-time, got '2024-02-30T10:00:00Z'"),
    ],
)
def test_error_messages_name_the_field_and_the_value(raw: bytes, message: str) -> None:
    result = one(raw)
    assert isinstance(result, Rejection) and result.error_type == "schema_violation"
    assert result.error_message.startswith(message), result.error_message
    assert result.event_index == 0 and result.payload == raw


def test_batch_error_message_names_the_index() -> None:
    batch = {"events": [event(), event(), event(), event(params={"level": "3"})]}
    valid, rejected = parse_message(dumps(batch), PUBLISH)
    assert len(valid) == 3
    assert rejected[0].error_message == "events[3].params.level: expected int, got str '3'"
    assert rejected[0].event_index == 3


@pytest.mark.parametrize(
    ("timestamp", "accepted"),
    [
        ("2024-06-02T12:00:00Z", True),  # exactly 24 h after publish
        ("2024-06-02T12:00:00.000001Z", False),
        ("2024-06-02T13:59:59+02:00", True),  # 11:59:59Z
        ("2030-01-01T00:00:00Z", False),
        ("2015-01-01T00:00:00Z", True),
        ("2014-12-31T23:59:59.999Z", False),
        ("2015-01-01T00:30:00+01:00", False),  # 2014-12-31T23:30Z
        ("1970-01-01T00:00:00Z", False),
    ],
)
def test_time_rule(timestamp: str, accepted: bool) -> None:
    # the contract's fixed floor, 2015-01-01, with the window of BigQuery's partitions opened wide
    result = one(dumps(event(event_timestamp=timestamp)), max_age=timedelta(days=36500))
    if accepted:
        assert isinstance(result, ValidEvent)
    else:
        assert isinstance(result, Rejection)
        assert result.error_type == "timestamp_out_of_range"
        assert timestamp in result.error_message and "event.event_timestamp" in result.error_message


def test_time_rule_follows_the_publish_time() -> None:
    raw = dumps(event(event_timestamp="2030-01-01T00:00:00Z"))
    assert isinstance(one(raw, datetime(2029, 12, 31, 1, tzinfo=UTC)), ValidEvent)
    assert isinstance(one(raw, datetime(2029, 12, 30, tzinfo=UTC)), Rejection)


def test_publish_time_must_be_aware() -> None:
    with pytest.raises(ValueError, match="publish_time"):
        parse_message(dumps(event()), datetime(2024, 6, 1))


def test_batch_of_1000_with_one_bad_event() -> None:
    events = [event(event_id=f"00000000-0000-0000-0000-{i:012d}") for i in range(1000)]
    events[637]["params"] = {"level": 2.0}
    valid, rejected = parse_message(dumps({"events": events}), PUBLISH)
    assert len(valid) == 999
    assert [(r.event_index, r.error_type) for r in rejected] == [(637, "schema_violation")]
    assert rejected[0].error_message == "events[637].params.level: expected int, got float 2.0"
    assert json.loads(rejected[0].payload)["event_id"] == "00000000-0000-0000-0000-000000000637"
    assert {v.event_id for v in valid} == {e["event_id"] for i, e in enumerate(events) if i != 637}


def test_every_error_type_is_declared() -> None:
    assert len(set(ERROR_TYPES)) == 8 and "bigquery_refused" in ERROR_TYPES


# ---------------------------------------------------------------------------------------------
# Size and compression
# ---------------------------------------------------------------------------------------------


def test_oversize_event_is_rejected_alone() -> None:
    big = event(padding="x" * MAX_EVENT_BYTES)
    valid, rejected = parse_message(dumps({"events": [event(), big]}), PUBLISH)
    assert len(valid) == 1
    assert [(r.event_index, r.error_type) for r in rejected] == [(1, "oversize")]


def test_oversize_message() -> None:
    data = dumps(event())
    (rejection,) = parse_message(data, PUBLISH, max_message_bytes=100)[1]
    assert (rejection.error_type, rejection.event_index) == ("oversize", None)


def test_gzip_message() -> None:
    data = gzip.compress(dumps({"events": [event(), event()]}))
    valid, rejected = parse_message(data, PUBLISH, content_encoding="gzip")
    assert len(valid) == 2 and not rejected


def test_gzip_members_are_all_inflated() -> None:
    whole = dumps({"events": [event(), event(event_id="123e4567-e89b-12d3-a456-426614174001")]})
    data = gzip.compress(whole[:40]) + gzip.compress(whole[40:])  # one stream, two members
    valid, rejected = parse_message(data, PUBLISH, content_encoding="gzip")
    assert len(valid) == 2 and not rejected


@pytest.mark.parametrize(
    ("data", "encoding", "error_type"),
    [
        (gzip.compress(b'{"events": []}') + b"trailing garbage", "gzip", "decompression"),
        (gzip.compress(b" " * 3000) + gzip.compress(b" " * 3000), "gzip", "oversize"),
        (b"not gzip", "gzip", "decompression"),
        (gzip.compress(b'{"a": 1}' * 100)[:-20], "gzip", "decompression"),
        (b"{}", "br", "decompression"),
        (gzip.compress(b" " * 5000), "gzip", "oversize"),
    ],
)
def test_bad_compression(data: bytes, encoding: str, error_type: str) -> None:
    (rejection,) = parse_message(data, PUBLISH, content_encoding=encoding, max_message_bytes=4096)[1]
    assert (rejection.error_type, rejection.event_index, rejection.payload) == (error_type, None, data)


# ---------------------------------------------------------------------------------------------
# Robustness: arbitrary bytes never raise
# ---------------------------------------------------------------------------------------------


def test_mutated_messages_never_raise() -> None:
    rng = random.Random(7)
    seed = dumps({"events": [event(), event(event_name="purchase", params={"transaction_id": "t", "sku": "s", "price": 1, "currency": "EUR"})]})
    for _ in range(3000):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            op = rng.random()
            if op < 0.4:
                data[pos] = rng.randrange(256)
            elif op < 0.7:
                del data[pos : pos + rng.randint(1, 8)]
            else:
                data[pos:pos] = bytes([rng.randrange(256)])
        valid, rejected = parse_message(bytes(data), PUBLISH)
        assert all(r.error_type in ERROR_TYPES for r in rejected)
        assert valid or rejected


def test_decoders_come_from_the_schema() -> None:
    # a constraint changed in the schema file changes the validator (nothing re-typed by hand)
    from ingestion.streaming import validate
    from ingestion.streaming.contract.decoders import build_contract

    schema = load_game_event_schema()
    schema["properties"]["country"]["pattern"] = "^[A-Z]{3}$"
    contract = build_contract(schema)
    raw = dumps(event(country="DEU"))
    assert isinstance(validate.validate_event(raw, "event", 0, PUBLISH, contract=contract), ValidEvent)
    assert isinstance(validate.validate_event(raw, "event", 0, PUBLISH), Rejection)

    schema["properties"]["country"]["format"] = "iso-3166"
    with pytest.raises(ContractError, match=r"\$\.country: format 'iso-3166'"):
        build_contract(schema)


def test_msgspec_version_rejects_integral_floats() -> None:
    # the 2.0 rule relies on msgspec's strict int decoding
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b"2.0", type=int)
    assert jsonschema.Draft202012Validator({"type": "integer"}).is_valid(2.0)



