"""The bronze catalog: the name of every bronze table and how each layer's dataset is named.

The streaming function writes ``game_events`` and ``game_events_rejected``; the batch pipelines
write the snapshots and exports and their rejections. Locally each table is a folder of the
landing area; on BigQuery each is a table of the dataset ``<prefix>_bronze``.
"""
from __future__ import annotations

from typing import Final

GAME_EVENTS: Final = "game_events"
GAME_EVENTS_REJECTED: Final = "game_events_rejected"
PLAYERS: Final = "players"
STORE_ITEMS: Final = "store_items"
FX_RATES: Final = "fx_rates"
BATCH_REJECTED: Final = "batch_rejected"

STREAMED_TABLES: Final = (GAME_EVENTS, GAME_EVENTS_REJECTED)
BATCH_TABLES: Final = (PLAYERS, STORE_ITEMS, FX_RATES, BATCH_REJECTED)
# every bronze table, in the order dbt's ``bronze_tables`` var lists them
TABLES: Final = (*STREAMED_TABLES, *BATCH_TABLES)


def dataset(prefix: str, layer: str = "bronze") -> str:
    """The BigQuery dataset of a layer (bronze, silver, gold, audit): ``<prefix>_<layer>``. dbt names
    its datasets the same way (``dbt/macros/generate_schema_name.sql``)."""
    return f"{prefix}_{layer}"
