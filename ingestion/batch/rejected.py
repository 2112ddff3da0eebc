"""The rejected rows: one bronze table, ``batch_rejected``, for every batch source (locally a folder
of the landing area, in production a BigQuery table), each row with its reason and the row as read."""
from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pyarrow as pa

from common import bronze
from ingestion.batch.sources import TIMESTAMP

REJECTED_TABLE = bronze.BATCH_REJECTED
REJECTED_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),  # the row as read, a JSON object of column: text
        pa.field("_source", pa.string(), nullable=False),
        pa.field("_line", pa.int64(), nullable=False),  # line of the row's last physical line
        pa.field("_loaded_at", TIMESTAMP, nullable=False),
    ]
)
# the line of a row read from a database: it has none, the key in its raw JSON identifies it
NO_LINE = 0


def rejected_row(
    source: str, values: Mapping[str, Any], reason: str, source_label: str, line: int, loaded_at: datetime
) -> dict[str, Any]:
    """A row of the rejected table: ``values`` are the row's fields as read, by column."""
    return {
        "source": source,
        "reason": reason,
        "raw": json.dumps(values, ensure_ascii=False),
        "_source": source_label,
        "_line": line,
        "_loaded_at": loaded_at,
    }
