"""What validation produces: a valid event (typed columns and its raw JSON) or a rejection (why,
with the bytes refused), the kinds of rejection, and the limits a message is held to."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec

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


class ValidEvent(msgspec.Struct, frozen=True, gc=False):
    """One event that satisfies the contract: its typed columns plus its raw JSON.

    A Struct rather than a dataclass: one is built per valid event, and a Struct is far cheaper to
    build."""

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


def whole_message(error_type: str, message: str, data: bytes) -> Rejection:
    """A rejection of the whole message (no event index)."""
    return Rejection(error_type=error_type, error_message=message, payload=data, event_index=None)
