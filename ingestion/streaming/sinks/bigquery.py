"""The BigQuery sink: the function's rows streamed into the bronze dataset with insertAll, each with
an insertId that is the same on every delivery of its message."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson

from ..events import ERROR_TYPES
from ..rows import GAME_EVENTS, GAME_EVENTS_REJECTED, BronzeEvent, BronzeRejection
from .base import SinkRowError, TransientSinkError

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud import bigquery

# insertAll accepts 10 MB and 50,000 rows per request; stay well below both.
BQ_MAX_ROWS_PER_REQUEST: Final = 500
BQ_MAX_BYTES_PER_REQUEST: Final = 5 * 1024 * 1024
# How often rows BigQuery did not insert because another row of their request was refused
# ("stopped") are sent again before the delivery is retried as a whole.
BQ_STOPPED_ATTEMPTS: Final = 3
# error_type of a row BigQuery itself refused (it is then stored as a rejection, with its reason)
BIGQUERY_REFUSED: Final = "bigquery_refused"
if BIGQUERY_REFUSED not in ERROR_TYPES:
    raise AssertionError(f"{BIGQUERY_REFUSED}: missing from events.ERROR_TYPES")


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

