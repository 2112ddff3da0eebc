"""Validation of game events against contract v1.

A Pub/Sub message's data is UTF-8 JSON: one event object, or ``{"events": [event, ...]}``. The
message is decoded once into a list of raw event byte slices, then each event is decoded on its
own into a typed msgspec Struct, so one bad event never rejects its batch. The raw event bytes
(``payload``) and the raw ``params`` bytes are kept as sent, so unknown fields survive.

The typed decoders are built from the contract file at import (enums, patterns, lengths,
minimums, defaults, which params go with which event_name); nothing here restates them. Rules
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

import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from msgspec import UNSET, Raw, UnsetType

from ingestion.contract import (
    ContractError,
    ecma_to_python_pattern,
    load_game_event_schema,
    resolve_ref,
)

ERROR_TYPES: Final = (
    "malformed_json",
    "not_utf8",
    "schema_violation",
    "timestamp_out_of_range",
    "oversize",
    "decompression",
    "empty_message",
    "bigquery_refused",  # a valid event BigQuery refused to insert (written by the BigQuery sink)
)

# Pub/Sub caps a message at 10 MB; a compressed message may not inflate beyond this either.
MAX_MESSAGE_BYTES: Final = 10 * 1024 * 1024
# One event (its raw JSON) larger than this is rejected on its own as ``oversize``.
MAX_EVENT_BYTES: Final = 256 * 1024
# A batch holds at most this many events; the items beyond it are one message-level rejection.
MAX_EVENTS_PER_MESSAGE: Final = 10_000
# Up to this many items of a batch that are not objects are refused one row each; more are refused
# together in one message-level row.
MAX_NON_OBJECT_ROWS: Final = 100
EARLIEST_EVENT_TIME: Final = datetime(2015, 1, 1, tzinfo=UTC)
MAX_AHEAD_OF_PUBLISH: Final = timedelta(hours=24)
# BigQuery streams a row into a time-partitioned table only if its partition is at most 5 years in
# the past (and 1 year in the future); 1820 days stays inside that on every calendar.
MAX_EVENT_AGE: Final = timedelta(days=1820)
# Content encodings a publisher may declare (message attribute ``content-encoding``).
CONTENT_ENCODINGS: Final = ("identity", "gzip")

_JSON_WS: Final = b" \t\r\n"
_VALUE_REPR_MAX: Final = 80


class ValidEvent(msgspec.Struct, frozen=True, gc=False):
    """One event that satisfies the contract: its typed columns plus its raw JSON.

    A Struct rather than a dataclass: one is built per valid event, and a frozen dataclass costs
    about ten times as much to build."""

    event_id: str
    event_name: str
    event_timestamp: datetime  # tz-aware, UTC
    game_id: str
    player_id: str
    session_id: str
    platform: str
    app_version: str | None
    country: str | None
    schema_version: int
    params: bytes | None  # raw JSON object as sent, None when absent
    payload: bytes  # raw event JSON as sent
    event_index: int = 0  # its place in the message's batch


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event (``event_index``) or the whole message (``event_index`` None) was refused.
    ``log_message`` is ``error_message`` with the rejected value masked, for log lines (None: the
    message quotes no value)."""

    error_type: str
    error_message: str
    payload: bytes
    event_index: int | None
    log_message: str | None = None


# --------------------------------------------------------------------------------------------
# Contract -> typed decoders (at import)
# --------------------------------------------------------------------------------------------

_ANNOTATION_KEYS: Final = frozenset(
    {"description", "title", "$comment", "examples", "default", "format", "deprecated"}
)
_KNOWN_FORMATS: Final = frozenset({"uuid", "date-time"})
_CONTRACT_COLUMNS: Final = (
    "event_id",
    "event_name",
    "event_timestamp",
    "game_id",
    "player_id",
    "session_id",
    "platform",
    "app_version",
    "country",
    "schema_version",
)


def _check_keys(node: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = set(node) - allowed - _ANNOTATION_KEYS
    if unknown:
        raise ContractError(f"{where}: keyword(s) {sorted(unknown)} not supported by the validator")


def _scalar_type(node: Mapping[str, Any], where: str) -> Any:
    """The msgspec type of one scalar property schema."""
    if "enum" in node or "const" in node:
        _check_keys(node, frozenset({"enum", "const", "type"}), where)
        values = tuple(node["enum"]) if "enum" in node else (node["const"],)
        if not values or not all(isinstance(v, str) for v in values):
            raise ContractError(f"{where}: only non-empty enums of strings are supported")
        return Literal[values]  # type: ignore[valid-type]
    fmt = node.get("format")
    if fmt is not None and fmt not in _KNOWN_FORMATS:
        raise ContractError(f"{where}: format {fmt!r} not supported by the validator")
    if fmt == "uuid" and "pattern" not in node:
        raise ContractError(f"{where}: format 'uuid' needs a pattern that spells it out")
    kind = node.get("type")
    if kind == "string":
        _check_keys(node, frozenset({"type", "pattern", "minLength", "maxLength"}), where)
        meta = msgspec.Meta(
            pattern=ecma_to_python_pattern(node["pattern"]) if "pattern" in node else None,
            min_length=node.get("minLength"),
            max_length=node.get("maxLength"),
        )
        return Annotated[str, meta]
    if kind in ("integer", "number"):
        _check_keys(
            node,
            frozenset({"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}),
            where,
        )
        meta = msgspec.Meta(
            ge=node.get("minimum"),
            le=node.get("maximum"),
            gt=node.get("exclusiveMinimum"),
            lt=node.get("exclusiveMaximum"),
        )
        return Annotated[int if kind == "integer" else float, meta]
    if kind == "boolean":
        _check_keys(node, frozenset({"type"}), where)
        return bool
    raise ContractError(f"{where}: type {kind!r} not supported by the validator")


def _object_struct(
    name: str,
    node: Mapping[str, Any],
    root: dict[str, Any],
    where: str,
    raw_fields: frozenset[str] = frozenset(),
    skip_keys: frozenset[str] = frozenset(),
) -> type[msgspec.Struct]:
    """A Struct for an object schema. ``raw_fields`` are kept as undecoded JSON (``Raw``)."""
    if "$ref" in node:
        node = resolve_ref(root, node["$ref"])
    _check_keys(
        node,
        frozenset({"type", "properties", "required", "additionalProperties"}) | skip_keys,
        where,
    )
    if node.get("type") != "object":
        raise ContractError(f"{where}: expected an object schema, got type {node.get('type')!r}")
    required = set(node.get("required", ()))
    fields: list[tuple[Any, ...]] = []
    for prop, sub in node.get("properties", {}).items():
        sub_where = f"{where}.{prop}"
        if prop in raw_fields:
            _object_struct(f"{name}_{prop}", sub, root, sub_where)  # must itself be supported
            fields.append((prop, Raw, Raw()))  # an empty Raw means "absent"
            continue
        typ = _scalar_type(sub, sub_where)
        if prop in required:
            fields.append((prop, typ))
        else:
            fields.append((prop, typ | UnsetType, sub.get("default", UNSET)))
    missing = required - set(node.get("properties", {}))
    if missing:
        raise ContractError(f"{where}: required field(s) {sorted(missing)} have no schema")
    return msgspec.defstruct(
        name,
        fields,
        kw_only=True,
        forbid_unknown_fields=node.get("additionalProperties", True) is False,
    )


@dataclass(frozen=True)
class _ParamsRule:
    decoder: msgspec.json.Decoder[Any]
    required: bool


def _params_rules(
    root: dict[str, Any],
) -> tuple[Mapping[str, _ParamsRule], _ParamsRule]:
    """Read the ``allOf`` of ``if event_name is X then params ...`` blocks of the contract."""
    default_struct = _object_struct("Params", root["properties"]["params"], root, "params")
    default = _ParamsRule(msgspec.json.Decoder(default_struct), required=False)
    rules: dict[str, _ParamsRule] = {}
    for n, block in enumerate(root.get("allOf", ())):
        where = f"allOf[{n}]"
        cond, then = block.get("if", {}), block.get("then", {})
        if set(block) - {"if", "then"} or set(cond.get("properties", {})) != {"event_name"}:
            raise ContractError(f"{where}: only 'if event_name ... then params ...' is supported")
        if set(then) - {"required", "properties"} or set(then.get("properties", {})) - {"params"}:
            raise ContractError(f"{where}: a 'then' may only constrain params")
        if set(then.get("required", ())) - {"params"}:
            raise ContractError(f"{where}: a 'then' may only require params")
        name_schema = cond["properties"]["event_name"]
        names = name_schema["enum"] if "enum" in name_schema else [name_schema["const"]]
        params_schema = then.get("properties", {}).get("params", root["properties"]["params"])
        struct = _object_struct(f"Params_{n}", params_schema, root, f"{where}.then.params")
        rule = _ParamsRule(msgspec.json.Decoder(struct), required="params" in then.get("required", ()))
        for event_name in names:
            if event_name in rules:
                raise ContractError(f"{where}: event_name {event_name!r} has two params rules")
            rules[event_name] = rule
    return MappingProxyType(rules), default


@dataclass(frozen=True)
class _Contract:
    event_decoder: msgspec.json.Decoder[Any]
    params_rules: Mapping[str, _ParamsRule]
    default_params: _ParamsRule
    enums: Mapping[str, tuple[str, ...]]


def _build_contract(root: dict[str, Any]) -> _Contract:
    props = root.get("properties", {})
    columns = tuple(p for p in props if p != "params")
    if set(columns) != set(_CONTRACT_COLUMNS) or "params" not in props:
        raise ContractError(
            f"properties: the contract's columns {sorted(columns)} differ from the typed "
            f"columns {sorted(_CONTRACT_COLUMNS)}; update ValidEvent and the bronze schema"
        )
    if props["event_timestamp"].get("format") != "date-time":
        raise ContractError("properties.event_timestamp: expected format 'date-time'")
    event_struct = _object_struct(
        "GameEvent",
        root,
        root,
        "$",
        raw_fields=frozenset({"params"}),
        skip_keys=frozenset({"$schema", "$id", "allOf", "$defs"}),
    )
    rules, default = _params_rules(root)
    enums = {p: tuple(s["enum"]) for p, s in props.items() if "enum" in s}
    return _Contract(
        event_decoder=msgspec.json.Decoder(event_struct),
        params_rules=rules,
        default_params=default,
        enums=MappingProxyType(enums),
    )


_CONTRACT: Final = _build_contract(load_game_event_schema())


class _Envelope(msgspec.Struct):
    events: Raw | UnsetType = UNSET  # the batch's JSON text: its items are decoded only up to the cap


_ENVELOPE_DECODER: Final = msgspec.json.Decoder(_Envelope)
_BATCH_DECODER: Final = msgspec.json.Decoder(list[Raw])
_GENERIC_DECODER: Final = msgspec.json.Decoder()


# --------------------------------------------------------------------------------------------
# Error messages
# --------------------------------------------------------------------------------------------

_MSGSPEC_ERROR = re.compile(r"^(?P<detail>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_PATH_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_BAD_ENUM = re.compile(r"^Invalid enum value ")
_ENDS_WITH_GOT_TYPE = re.compile(r"got \w+$")


def value_repr(value: Any) -> str:
    """A short, readable rendering of a JSON value for an error message."""
    text = repr(value) if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= _VALUE_REPR_MAX else text[: _VALUE_REPR_MAX - 3] + "..."


def masked_repr(value: Any) -> str:
    """A JSON value as a log line may show it: its first two characters at most, and its size
    (a player's e-mail typed into ``country`` must not reach the logs)."""
    if isinstance(value, str):
        return f"{value[:2]!r}... ({len(value)} chars)" if len(value) > 2 else f"({len(value)} chars)"
    if isinstance(value, dict):
        return f"an object of {len(value)} key(s)"
    if isinstance(value, list):
        return f"an array of {len(value)} item(s)"
    return "null" if value is None else type(value).__name__


def _lookup(doc: Any, path: str) -> tuple[bool, Any]:
    node = doc
    for key, index in _PATH_TOKEN.findall(path):
        if key and isinstance(node, dict) and key in node:
            node = node[key]
        elif index and isinstance(node, list) and int(index) < len(node):
            node = node[int(index)]
        else:
            return False, None
    return True, node


def describe_validation_error(
    error: msgspec.ValidationError,
    raw: bytes,
    where: str,
    enums: Mapping[str, tuple[str, ...]],
    render: Callable[[Any], str] = value_repr,
) -> str:
    """Rewrite a msgspec error as ``<where><path>: <what>, got <value>`` (the value as ``render``
    shows it)."""
    match = _MSGSPEC_ERROR.match(str(error))
    assert match is not None  # the pattern matches any string
    detail, path = match["detail"], match["path"] or ""
    missing = _MISSING_FIELD.match(detail)
    if missing:
        return f"{where}{path}.{missing['field']}: required field is missing"
    try:
        found, value = _lookup(_GENERIC_DECODER.decode(raw), path)
    except (msgspec.DecodeError, UnicodeDecodeError):
        found, value = False, None
    location = f"{where}{path}"
    if _BAD_ENUM.match(detail):
        allowed = enums.get(path.lstrip("."), ())
        options = f", expected one of {', '.join(allowed)}" if allowed else ""
        shown = detail.removeprefix("Invalid enum value ")
        got = render(value) if found else shown if render is value_repr else masked_repr(shown)
        return f"{location}: invalid value {got}{options}"
    text = detail.replace("`", "").replace("\\\\Z", "$")
    text = text[:1].lower() + text[1:]
    if found and not (value is None and text.endswith("got null")):
        sep = " " if _ENDS_WITH_GOT_TYPE.search(text) else ", got "
        text = f"{text}{sep}{render(value)}"
    return f"{location}: {text}"


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _is_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _whole(error_type: str, message: str, data: bytes) -> Rejection:
    return Rejection(error_type=error_type, error_message=message, payload=data, event_index=None)


def decode_body(
    data: bytes, content_encoding: str | None, max_bytes: int = MAX_MESSAGE_BYTES
) -> bytes | Rejection:
    """Undo the declared content encoding, refusing bodies that are (or inflate) too large."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in CONTENT_ENCODINGS:
        return _whole(
            "decompression",
            f"attributes.content-encoding: unsupported value {content_encoding!r}, "
            f"expected one of {', '.join(CONTENT_ENCODINGS)}",
            data,
        )
    if len(data) > max_bytes:
        return _whole("oversize", f"message: {len(data)} bytes, the limit is {max_bytes}", data)
    if encoding == "identity":
        return data
    return _gunzip(data, max_bytes)


def _gunzip(data: bytes, max_bytes: int) -> bytes | Rejection:
    """Inflate every gzip member (concatenated members are one valid gzip stream), never
    producing more than ``max_bytes + 1`` bytes whatever the data claims."""
    parts: list[bytes] = []
    size = 0
    rest = data
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(rest, max_bytes + 1 - size)
        except zlib.error as exc:
            return _whole("decompression", f"message: not valid gzip data ({exc})", data)
        size += len(part)
        if size > max_bytes:
            return _whole(
                "oversize", f"message: inflates to more than {max_bytes} bytes, the limit", data
            )
        if not inflater.eof:
            return _whole("decompression", "message: gzip data is truncated", data)
        parts.append(part)
        rest = inflater.unused_data
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)


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
    contract: _Contract = _CONTRACT,
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


_JSON_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"')
_OPENERS: Final = pa.array([ord("["), ord("{")], pa.uint8())
_CLOSERS: Final = pa.array([ord("]"), ord("}")], pa.uint8())


def nesting_depth(data: bytes) -> int:
    """How deep arrays and objects nest in JSON text (strings skipped), vectorised: linear in the
    size, no recursion."""
    text = _JSON_STRING.sub(b'""', data)
    chars = pa.Array.from_buffers(pa.uint8(), len(text), [None, pa.py_buffer(text)])
    steps = pc.subtract(pc.cast(pc.is_in(chars, _OPENERS), pa.int32()), pc.cast(pc.is_in(chars, _CLOSERS), pa.int32()))
    depth = pc.max(pc.cumulative_sum(steps)).as_py() if len(text) else 0
    return depth or 0


# A batch with fewer separators than this is decoded whole (each item costs about 72 bytes);
# one with more has its items counted first and only the first MAX_EVENTS_PER_MESSAGE decoded.
_DECODE_WHOLE_BELOW: Final = 400_000


def _batch(raw: bytes) -> tuple[list[Raw], int]:
    """The first ``MAX_EVENTS_PER_MESSAGE`` items of the JSON array ``raw`` and how many it holds.
    Items past the cap are counted, not decoded (a vectorised pass over the text), so 9 MB of
    ``1,1,1,...`` costs a few arrays of its size rather than a Python object per item."""
    if raw.count(b",") < _DECODE_WHOLE_BELOW:  # at most that many items: decode them all (< 30 MB)
        items = _BATCH_DECODER.decode(raw)
        return (items[:MAX_EVENTS_PER_MESSAGE] if len(items) > MAX_EVENTS_PER_MESSAGE else items), len(items)
    total, cut = _count_items(raw)  # its arrays are freed before the decode
    return _BATCH_DECODER.decode(raw if cut is None else raw[:cut] + b"]"), total


def _count_items(raw: bytes) -> tuple[int, int | None]:
    """How many items the JSON array ``raw`` holds, and the offset of the separator after the
    ``MAX_EVENTS_PER_MESSAGE``-th (None when there are no more)."""
    masked = _JSON_STRING.sub(lambda m: b'"' + b"." * (len(m[0]) - 2) + b'"', raw)  # same offsets
    chars = pa.Array.from_buffers(pa.uint8(), len(masked), [None, pa.py_buffer(masked)])
    # int16 is enough: the envelope's decode has already refused anything nested deeper than ~1000
    depth = pc.cumulative_sum(pc.subtract(pc.cast(pc.is_in(chars, _OPENERS), pa.int16()),
                                          pc.cast(pc.is_in(chars, _CLOSERS), pa.int16())))
    separators = pc.indices_nonzero(pc.and_(pc.equal(chars, ord(",")), pc.equal(depth, 1)))
    total = len(separators) + 1
    return total, None if total <= MAX_EVENTS_PER_MESSAGE else separators[MAX_EVENTS_PER_MESSAGE - 1].as_py()


def _too_deep(data: bytes, body: bytes) -> Rejection:
    return _whole("malformed_json", f"message: JSON nested {nesting_depth(body)} levels deep, more than the "
                  "decoder's stack allows (an event nests 3 levels)", data)


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
    return _whole("oversize" if beyond else "schema_violation", "message.events: " + "; ".join(parts), data)


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
        return [], [_whole("empty_message", "message: no data", data)]
    if not _is_utf8(body):
        return [], [_whole("not_utf8", "message: data is not valid UTF-8", data)]
    raw_batch: bytes | None = None
    try:
        envelope = _ENVELOPE_DECODER.decode(body)
        raw_batch = None if envelope.events is UNSET else bytes(envelope.events)
        batch, total = (None, 1) if raw_batch is None else _batch(raw_batch)
    except RecursionError:
        return [], [_too_deep(data, body)]
    except msgspec.ValidationError as exc:
        hint = " (expected one event object or {\"events\": [...]})"
        where, doc = ("message", body) if raw_batch is None else ("message.events", raw_batch)
        try:
            text = describe_validation_error(exc, doc, where, {})
        except RecursionError:
            return [], [_too_deep(data, body)]
        return [], [_whole("malformed_json", text + hint, data)]
    except msgspec.DecodeError as exc:
        return [], [_whole("malformed_json", f"message: {exc}", data)]

    if batch is None:
        items: list[tuple[bytes, str]] = [(body, "event")]
    elif not batch:
        return [], [_whole("empty_message", "message.events: empty batch", data)]
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
