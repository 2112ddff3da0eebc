"""The local sink: the function's rows as Parquet files in the landing area (the embedded twin
of the bronze dataset)."""
from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path

from .. import landing
from ..rows import (
    GAME_EVENTS,
    GAME_EVENTS_REJECTED,
    GAME_EVENTS_REJECTED_SCHEMA,
    GAME_EVENTS_SCHEMA,
    BronzeEvent,
    BronzeRejection,
    to_arrow,
)
from .base import TransientSinkError

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def landing_file_name(message_id: str) -> str:
    """A unique Parquet file name that still tells which message it came from."""
    safe = _UNSAFE_NAME.sub("_", message_id)[:80] or "message"
    return f"{safe}-{uuid.uuid4().hex}.parquet"


class LocalSink:
    """Writes one Parquet file per call and table under ``landing_dir/<table>/<ingest date>/``.

    Every file is written under a temporary name, flushed to disk and renamed into place before
    ``write`` returns (see ``landing``), so a reader globbing ``<table>/**/*.parquet`` sees
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

