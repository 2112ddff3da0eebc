"""Where validated events and rejections go: the bronze tables ``game_events`` and
``game_events_rejected``, either as local Parquet files (the embedded twin) or in BigQuery.

The rows are plain values built by pure functions from the validator's output and the facts of
the delivery (message id, publish time, attributes, ingest time); a sink only stores them.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec
import orjson
import pyarrow as pa

from ingestion import landing
from ingestion.events import ERROR_TYPES, Rejection, ValidEvent
from ingestion.streaming.settings import FunctionSettings

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud import bigquery

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
BQ_MAX_ROWS_PER_REQUEST: Final = 500
BQ_MAX_BYTES_PER_REQUEST: Final = 5 * 1024 * 1024
# A rejection keeps at most this much of its payload (base64 makes it a third larger), so a row stays
# far below insertAll's 10 MB; its error message then records the original length and SHA-256.
MAX_REJECTED_PAYLOAD_BYTES: Final = 256 * 1024
# How often rows BigQuery did not insert because another row of their request was refused
# ("stopped") are sent again before the delivery is retried as a whole.
BQ_STOPPED_ATTEMPTS: Final = 3
# error_type of a row BigQuery itself refused (it is then stored as a rejection, with its reason)
BIGQUERY_REFUSED: Final = "bigquery_refused"
if BIGQUERY_REFUSED not in ERROR_TYPES:
    raise AssertionError(f"{BIGQUERY_REFUSED}: missing from ingestion.events.ERROR_TYPES")


class TransientSinkError(RuntimeError):
    """The store is unavailable for now (5xx, rate limit, transport); delivery should be retried."""


class SinkRowError(RuntimeError):
    """The store refused specific rows; the message names them."""


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


class Sink(Protocol):
    """Stores bronze rows. Raises ``TransientSinkError`` when a retry may succeed.
    ``event_indexes`` (each event's place in its message) name an event the store refuses."""

    def write(
        self,
        events: Sequence[BronzeEvent],
        rejections: Sequence[BronzeRejection],
        event_indexes: Sequence[int] | None = None,
    ) -> None:
        ...


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
    costs about as much as the rest of a row."""
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


def _bq_timestamp(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f} UTC"


def bigquery_json(row: BronzeEvent | BronzeRejection) -> dict[str, Any]:
    """A row as the JSON object insertAll expects (timestamps in BigQuery's canonical form)."""
    return {
        name: _bq_timestamp(v) if isinstance(v := getattr(row, name), datetime) else v
        for name in row.__struct_fields__
    }


def chunks(
    rows: Sequence[Any],
    max_rows: int,
    max_bytes: int,
    size: Callable[[Any], int] | None = None,
) -> Iterator[tuple[int, Sequence[Any]]]:
    """Split ``rows`` into ``(offset, chunk)`` pieces of at most ``max_rows`` rows and about
    ``max_bytes`` bytes (``size(row)`` estimates a row; a single larger row still goes alone)."""
    start, total = 0, 0
    for i, row in enumerate(rows):
        n = size(row) if size else 0
        if i > start and (i - start >= max_rows or total + n > max_bytes):
            yield start, rows[start:i]
            start, total = i, 0
        total += n
    if start < len(rows):
        yield start, rows[start:]


# --------------------------------------------------------------------------------------------
# Local landing area
# --------------------------------------------------------------------------------------------

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def landing_file_name(message_id: str) -> str:
    """A unique Parquet file name that still tells which message it came from."""
    safe = _UNSAFE_NAME.sub("_", message_id)[:80] or "message"
    return f"{safe}-{uuid.uuid4().hex}.parquet"


class LocalSink:
    """Writes one Parquet file per call and table under ``landing_dir/<table>/<ingest date>/``.

    Every file is written under a temporary name, flushed to disk and renamed into place before
    ``write`` returns (see ``ingestion.landing``), so a reader globbing ``<table>/**/*.parquet`` sees
    whole files only and an acknowledged message survives an OS crash. The sink holds no mutable
    state, so any number of threads may call ``write`` at once.
    """

    def __init__(self, landing_dir: Path) -> None:
        self.landing_dir = Path(landing_dir)
        for table, schema in ((GAME_EVENTS, GAME_EVENTS_SCHEMA), (GAME_EVENTS_REJECTED, GAME_EVENTS_REJECTED_SCHEMA)):
            landing.ensure_table(self.landing_dir / table, schema)
            landing.recover(self.landing_dir / table)  # after an OS crash: damaged files out of the readers' way

    def write(
        self,
        events: Sequence[BronzeEvent],
        rejections: Sequence[BronzeRejection],
        event_indexes: Sequence[int] | None = None,
    ) -> None:
        """Raises ``TransientSinkError`` when the file system refuses a write (a full disk, a
        folder that is missing or not a folder): the message is redelivered and written again."""
        for table, rows, schema in (
            (GAME_EVENTS, events, GAME_EVENTS_SCHEMA),
            (GAME_EVENTS_REJECTED, rejections, GAME_EVENTS_REJECTED_SCHEMA),
        ):
            if not rows:
                continue
            first = rows[0]
            folder = self.landing_dir / table / f"{first.ingested_at.astimezone(UTC):%Y-%m-%d}"
            try:
                landing.write_table(to_arrow(rows, schema), folder, landing_file_name(first.message_id))
            except OSError as exc:
                raise TransientSinkError(f"{table}: writing {len(rows)} row(s) under {folder} failed: {exc}") from exc


# --------------------------------------------------------------------------------------------
# BigQuery
# --------------------------------------------------------------------------------------------


def _retry(deadline: float | None) -> Retry | None:
    """The client's own retry policy, cut to ``deadline`` seconds (None: no retry)."""
    if deadline is None:
        return None
    from google.cloud.bigquery import DEFAULT_RETRY

    return DEFAULT_RETRY.with_deadline(deadline)


def _is_transient(exc: BaseException) -> bool:
    import requests
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    return isinstance(
        exc,
        (
            api_exceptions.ServerError,
            api_exceptions.TooManyRequests,
            api_exceptions.RetryError,
            auth_exceptions.TransportError,
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError,
            ConnectionError,
            TimeoutError,
        ),
    )


def describe_insert_errors(
    table: str, errors: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]], key: str | None
) -> str:
    """``insertErrors`` as one readable message naming each refused row."""
    parts = []
    for err in errors:
        index = err.get("index")
        who = f"row {index}"
        if key and isinstance(index, int) and 0 <= index < len(rows):
            who += f" ({key}={rows[index].get(key)!r})"
        parts.append(f"{who}: {_reasons(err.get('errors', ()))}")
    return f"{table}: {len(errors)} row(s) refused: " + " | ".join(parts)


def rejection_insert_id(row: Mapping[str, Any]) -> str:
    """A rejection's insertId, the same on every delivery of its message:
    ``<message_id>:<event_index>``, or ``<message_id>:message`` when the whole message was refused;
    a row BigQuery refused adds ``:bigquery`` (its event was first taken as valid)."""
    index = row.get("event_index")
    suffix = ":bigquery" if row.get("error_type") == BIGQUERY_REFUSED else ""
    return f"{row['message_id']}:{'message' if index is None else index}{suffix}"


def refused_rejection(event: BronzeEvent, reasons: str, event_index: int | None) -> BronzeRejection:
    """A valid event BigQuery refused, as a row of ``game_events_rejected`` with its reason."""
    where = "event" if event_index is None else f"events[{event_index}]"
    return BronzeRejection(
        message_id=event.message_id,
        publish_time=event.publish_time,
        ingested_at=event.ingested_at,
        error_type=BIGQUERY_REFUSED,
        error_message=f"{where} (event_id {event.event_id!r}): BigQuery refused the row: {reasons}",
        event_index=event_index,
        payload=event.payload,
        payload_encoding="utf8",
        attributes="{}",
    )


def event_insert_id(row: Mapping[str, Any]) -> str:
    """An event's insertId: its ``event_id``, the deduplication key of the contract."""
    return str(row["event_id"])


class BigQuerySink:
    """Streams rows into ``project.dataset.game_events`` / ``game_events_rejected`` (insertAll).

    Every row carries an insertId that is the same when Pub/Sub redelivers its message (events:
    ``event_id``; rejections: ``<message_id>:<event_index>``), so BigQuery drops most repeats on
    its own (best effort, about a minute); silver deduplicates the rest.
    """

    def __init__(
        self,
        project: str,
        dataset: str,
        *,
        client: bigquery.Client | None = None,
        retry_deadline: float | None = 30.0,
        timeout: float | None = 30.0,
    ) -> None:
        """``retry_deadline``: seconds the client may spend retrying transient errors before
        ``TransientSinkError`` is raised and Pub/Sub redelivers (None: do not retry)."""
        if client is None:
            from google.cloud import bigquery

            client = bigquery.Client(project=project)
        self.client = client
        self.project = project
        self.dataset = dataset
        self.retry = _retry(retry_deadline)
        self.timeout = timeout

    def table_id(self, table: str) -> str:
        return f"{self.project}.{self.dataset}.{table}"

    def write(
        self,
        events: Sequence[BronzeEvent],
        rejections: Sequence[BronzeRejection],
        event_indexes: Sequence[int] | None = None,
    ) -> None:
        """Rows BigQuery refuses (reason ``invalid`` and the like) become rejections with its reason;
        rows it did not insert because another row of their request was refused (``stopped``) are
        sent again. Only a rejection it refuses, or a transient failure, raises."""
        refused = self._insert(GAME_EVENTS, [bigquery_json(r) for r in events], event_insert_id, key="event_id")
        more = [refused_rejection(events[i], why, event_indexes[i] if event_indexes else None) for i, why in refused]
        rows = [bigquery_json(r) for r in [*rejections, *more]]
        refused = self._insert(GAME_EVENTS_REJECTED, rows, rejection_insert_id, key=None)
        if refused:
            raise SinkRowError(f"{self.table_id(GAME_EVENTS_REJECTED)}: {len(refused)} row(s) refused: "
                               + " | ".join(f"row {i}: {why}" for i, why in refused))

    def _insert(
        self,
        table: str,
        rows: list[dict[str, Any]],
        insert_id: Callable[[Mapping[str, Any]], str],
        key: str | None,
    ) -> list[tuple[int, str]]:
        """Insert ``rows``; returns the (index, reasons) of the rows BigQuery refused."""
        table_id = self.table_id(table)
        refused: list[tuple[int, str]] = []
        for offset, chunk in chunks(rows, BQ_MAX_ROWS_PER_REQUEST, BQ_MAX_BYTES_PER_REQUEST, size=_json_size):
            pending = list(range(offset, offset + len(chunk)))
            for _ in range(BQ_STOPPED_ATTEMPTS):
                errors = self._insert_all(table_id, [rows[i] for i in pending], insert_id)
                stopped = []
                for error in errors:
                    index = pending[error["index"]]
                    reasons = [e for e in error.get("errors", ()) if e.get("reason") != "stopped"]
                    if reasons:
                        refused.append((index, _reasons(reasons)))
                    else:
                        stopped.append(index)
                if not stopped:
                    break
                pending = stopped
            else:
                raise TransientSinkError(
                    f"{table_id}: {len(pending)} row(s) still not inserted after {BQ_STOPPED_ATTEMPTS} attempts: "
                    + describe_insert_errors(table_id, errors, [rows[i] for i in pending], key))
        return refused

    def _insert_all(
        self, table_id: str, rows: list[dict[str, Any]], insert_id: Callable[[Mapping[str, Any]], str]
    ) -> Sequence[Mapping[str, Any]]:
        try:
            return self.client.insert_rows_json(
                table_id, rows, row_ids=[insert_id(r) for r in rows], retry=self.retry, timeout=self.timeout
            )
        except Exception as exc:
            if _is_transient(exc):
                raise TransientSinkError(f"{table_id}: insertAll failed: {exc}") from exc
            raise


def _reasons(errors: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(
        f"{e.get('reason', '?')}"
        + (f" at {e['location']}" if e.get("location") else "")
        + (f": {e['message']}" if e.get("message") else "")
        for e in errors
    )


def _json_size(row: Mapping[str, Any]) -> int:
    return len(orjson.dumps(row)) + 64


def sink_from_settings(settings: FunctionSettings) -> Sink:
    """The sink the settings choose: local Parquet files or BigQuery."""
    if settings.sink == "local":
        return LocalSink(Path(settings.required("landing_dir")))
    if settings.sink == "bigquery":
        return BigQuerySink(str(settings.required("gcp_project")), str(settings.required("bronze_dataset")))
    raise ValueError(f"sink: expected 'local' or 'bigquery', got {settings.sink!r}")
