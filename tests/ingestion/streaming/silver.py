"""Silver as dbt builds it from what the function landed: the streaming tests assert on the real
models, not on a query of their own."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from ingestion.bronze import ensure_local_bronze
from common.settings import OrchestrationSettings
from tests.dbt.warehouse import dbt

MODELS = ("stg_telemetry__game_events", "stg_telemetry__game_events_rejected")


def build_silver(data_dir: Path) -> None:
    """``dbt run`` of the two silver models over the landing area under ``data_dir``."""
    settings = OrchestrationSettings(data_dir=data_dir)
    ensure_local_bronze(settings.landing_dir)
    dbt(settings, "run", "--select", *MODELS)


def query_silver(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(OrchestrationSettings(data_dir=data_dir).warehouse_path), read_only=True) as con:
        return con.sql(sql).fetchall()
