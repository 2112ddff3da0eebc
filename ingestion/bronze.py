"""The bronze tables and their schemas, in one list: the streaming function's two tables and the
batch pipelines' snapshots. The local twin keeps each as a folder of the landing area."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ingestion.batch.rejected import REJECTED_SCHEMA, REJECTED_TABLE
from ingestion.batch.sources import FX_RATES, PLAYERS, STORE_ITEMS
from ingestion.landing import compact, ensure_table
from ingestion.sinks import GAME_EVENTS_REJECTED_SCHEMA, GAME_EVENTS_SCHEMA


def bronze_schemas() -> dict[str, pa.Schema]:
    return {
        "game_events": GAME_EVENTS_SCHEMA,
        "game_events_rejected": GAME_EVENTS_REJECTED_SCHEMA,
        PLAYERS.name: PLAYERS.schema,
        STORE_ITEMS.name: STORE_ITEMS.schema,
        FX_RATES.name: FX_RATES.schema,
        REJECTED_TABLE: REJECTED_SCHEMA,
    }


def ensure_local_bronze(landing_dir: Path) -> None:
    """Every bronze folder exists with its schema, so the warehouse's bronze views always resolve,
    even for a table nothing has been written to yet."""
    for table, schema in bronze_schemas().items():
        ensure_table(landing_dir / table, schema)


STREAMED_TABLES = ("game_events", "game_events_rejected")


def compact_local_bronze(landing_dir: Path) -> dict[str, int]:
    """Compact the streamed tables of the local landing area (files merged, per table); a damaged
    file is quarantined on the way (see ``ingestion.landing``)."""
    schemas = bronze_schemas()
    return {table: compact(landing_dir / table, schemas[table]).merged for table in STREAMED_TABLES}
