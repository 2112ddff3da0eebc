"""The bronze tables' Arrow schemas, keyed by the catalog's names (``common.bronze``): the
streaming function's two tables and the batch pipelines' snapshots. The local twin keeps each as a
folder of the landing area."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from common import bronze
from ingestion.batch.rejected import REJECTED_SCHEMA
from ingestion.batch.sources import FX_RATES, PLAYERS, STORE_ITEMS
from ingestion.streaming.compaction import compact
from ingestion.streaming.landing import ensure_table
from ingestion.streaming.rows import GAME_EVENTS_REJECTED_SCHEMA, GAME_EVENTS_SCHEMA


def bronze_schemas() -> dict[str, pa.Schema]:
    """Every bronze table's schema, in the catalog's order."""
    schemas = {
        bronze.GAME_EVENTS: GAME_EVENTS_SCHEMA,
        bronze.GAME_EVENTS_REJECTED: GAME_EVENTS_REJECTED_SCHEMA,
        bronze.PLAYERS: PLAYERS.schema,
        bronze.STORE_ITEMS: STORE_ITEMS.schema,
        bronze.FX_RATES: FX_RATES.schema,
        bronze.BATCH_REJECTED: REJECTED_SCHEMA,
    }
    return {table: schemas[table] for table in bronze.TABLES}


def ensure_local_bronze(landing_dir: Path) -> None:
    """Every bronze folder exists with its schema, so the warehouse's bronze views always resolve,
    even for a table nothing has been written to yet."""
    for table, schema in bronze_schemas().items():
        ensure_table(landing_dir / table, schema)


def compact_local_bronze(landing_dir: Path) -> dict[str, int]:
    """Compact the streamed tables of the local landing area (files merged, per table); a damaged
    file is quarantined on the way (see ``ingestion.streaming.compaction``)."""
    schemas = bronze_schemas()
    return {table: compact(landing_dir / table, schemas[table]).merged for table in bronze.STREAMED_TABLES}
