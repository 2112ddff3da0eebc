"""The bronze rows of the function's two tables, ``game_events`` and ``game_events_rejected``:
their Arrow schemas, and the pure functions that build them from the validator's output and the
facts of the delivery (message id, publish time, attributes, ingest time). A sink only stores them.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
import orjson
import pyarrow as pa

from .events import Rejection, ValidEvent

# the platform's bronze catalog names them too (common.bronze); a test holds the two equal
GAME_EVENTS: Final = "game_events"
GAME_EVENTS_REJECTED: Final = "game_events_rejected"

_TS: Final = pa.timestamp("us", tz="UTC")

GAME_EVENTS_SCHEMA: Final = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_name", pa.string(), nullable=False),
        pa.field("event_timestamp", _TS, nullable=False),
        pa.field("game_id", pa.string(), nullable=False),
        pa.field("player_id", pa.string(), nullable=False),
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("platform", pa.string(), nullable=False),
        pa.field("app_version", pa.string()),
        pa.field("country", pa.string()),
        pa.field("schema_version", pa.int64(), nullable=False),
        pa.field("params", pa.string()),  # JSON text
        pa.field("payload", pa.string(), nullable=False),  # raw event JSON text
        pa.field("message_id", pa.string(), nullable=False),
        pa.field("publish_time", _TS, nullable=False),
        pa.field("ingested_at", _TS, nullable=False),
    ]
)

GAME_EVENTS_REJECTED_SCHEMA: Final = pa.schema(
    [
        pa.field("message_id", pa.string(), nullable=False),
        pa.field("publish_time", _TS, nullable=False),
        pa.field("ingested_at", _TS, nullable=False),
        pa.field("error_type", pa.string(), nullable=False),
        pa.field("error_message", pa.string(), nullable=False),
        pa.field("event_index", pa.int64()),  # null = the whole message
        pa.field("payload", pa.string(), nullable=False),
        pa.field("payload_encoding", pa.string(), nullable=False),  # utf8 | base64
        pa.field("attributes", pa.string(), nullable=False),  # JSON text
    ]
)

# insertAll accepts 10 MB and 50,000 rows per request; stay well below both.
# A rejection keeps at most this much of its payload (base64 makes it a third larger), so a row stays
# far below insertAll's 10 MB; its error message then records the original length and SHA-256.
MAX_REJECTED_PAYLOAD_BYTES: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class Delivery:
    """Facts about one Pub/Sub delivery that every bronze row carries."""

    message_id: str
    publish_time: datetime  # tz-aware
    ingested_at: datetime  # tz-aware
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)


class BronzeEvent(msgspec.Struct, frozen=True, gc=False):
    """One row of ``game_events`` (field order = column order)."""

    event_id: str
    event_name: str
    event_timestamp: datetime
    game_id: str
    player_id: str
    session_id: str
    platform: str
    app_version: str | None
    country: str | None
    schema_version: int
    params: str | None
    payload: str
    message_id: str
    publish_time: datetime
    ingested_at: datetime


class BronzeRejection(msgspec.Struct, frozen=True, gc=False):
    """One row of ``game_events_rejected`` (field order = column order)."""

    message_id: str
    publish_time: datetime
    ingested_at: datetime
    error_type: str
    error_message: str
    event_index: int | None
    payload: str
    payload_encoding: str
    attributes: str


for _cls, _schema in ((BronzeEvent, GAME_EVENTS_SCHEMA), (BronzeRejection, GAME_EVENTS_REJECTED_SCHEMA)):
    if list(_cls.__struct_fields__) != _schema.names:
        raise AssertionError(f"{_cls.__name__}: fields differ from the Arrow schema's columns")


# --------------------------------------------------------------------------------------------
# Rows (pure)
# --------------------------------------------------------------------------------------------


def encode_payload(data: bytes) -> tuple[str, str]:
    """Raw bytes as text: ``(text, "utf8")`` when valid UTF-8, else ``(base64, "base64")``."""
    try:
        return data.decode("utf-8"), "utf8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def bronze_event(event: ValidEvent, delivery: Delivery) -> BronzeEvent:
    return BronzeEvent(
        event_id=event.event_id,
        event_name=event.event_name,
        event_timestamp=event.event_timestamp,
        game_id=event.game_id,
        player_id=event.player_id,
        session_id=event.session_id,
        platform=event.platform,
        app_version=event.app_version,
        country=event.country,
        schema_version=event.schema_version,
        params=None if event.params is None else event.params.decode("utf-8"),
        payload=event.payload.decode("utf-8"),
        message_id=delivery.message_id,
        publish_time=delivery.publish_time,
        ingested_at=delivery.ingested_at,
    )


def truncated(data: bytes, limit: int = MAX_REJECTED_PAYLOAD_BYTES) -> tuple[bytes, str]:
    """``data`` cut to ``limit`` bytes (never inside a UTF-8 character of valid text), and what the
    row's message adds about the cut ("" when nothing was cut)."""
    if len(data) <= limit:
        return data, ""
    cut = data[:limit]
    for back in range(4):  # a UTF-8 character is at most 4 bytes
        try:
            data[: limit - back].decode("utf-8")
        except UnicodeDecodeError:
            continue
        cut = data[: limit - back]
        break
    note = f" [payload: the first {len(cut)} of {len(data)} bytes kept, sha256 {hashlib.sha256(data).hexdigest()}]"
    return cut, note


def bronze_rejection(rejection: Rejection, delivery: Delivery) -> BronzeRejection:
    kept, note = truncated(rejection.payload)
    payload, encoding = encode_payload(kept)
    return BronzeRejection(
        message_id=delivery.message_id,
        publish_time=delivery.publish_time,
        ingested_at=delivery.ingested_at,
        error_type=rejection.error_type,
        error_message=rejection.error_message + note,
        event_index=rejection.event_index,
        payload=payload,
        payload_encoding=encoding,
        attributes=orjson.dumps(dict(delivery.attributes), option=orjson.OPT_SORT_KEYS).decode(),
    )


def bronze_rows(
    delivery: Delivery, events: Sequence[ValidEvent], rejections: Sequence[Rejection]
) -> tuple[list[BronzeEvent], list[BronzeRejection]]:
    return (
        [bronze_event(e, delivery) for e in events],
        [bronze_rejection(r, delivery) for r in rejections],
    )


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def _column(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
    """One Arrow column. A timestamp column holding one value throughout (a delivery's publish
    and ingest time) is built from its integer microseconds: converting each tz-aware datetime
    is the costliest part of building a row."""
    first = values[0] if values else None
    if isinstance(first, datetime) and pa.types.is_timestamp(kind) and values.count(first) == len(values):
        micros = (first - _EPOCH) // _MICROSECOND
        return pa.array([micros] * len(values), type=pa.int64()).cast(kind)
    return pa.array(values, type=kind)


def to_arrow(rows: Sequence[BronzeEvent] | Sequence[BronzeRejection], schema: pa.Schema) -> pa.Table:
    """Rows -> an Arrow table with exactly ``schema`` (one column per field, in order)."""
    if not rows:
        return schema.empty_table()
    columns = zip(*map(msgspec.structs.astuple, rows))
    return pa.Table.from_arrays([_column(c, f.type) for c, f in zip(columns, schema)], schema=schema)

