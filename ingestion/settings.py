"""The one settings object of the platform, read from the environment (prefix ``GA_``).

Production and local differ only in the adapters these settings choose (a sink, a Beam
runner, a dbt target); never in the logic.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GA_", frozen=True)

    # local twin: where the landing area (local bronze), the DuckDB warehouse and run outputs live
    data_dir: Path = REPO_ROOT / "data"
    # where valid and rejected events go: local files or BigQuery
    sink: Literal["local", "bigquery"] = "local"
    # dbt target and batch runner: the embedded twin or Google Cloud
    target: Literal["local", "bigquery"] = "local"

    # Google Cloud (production)
    gcp_project: str | None = None
    gcp_region: str = "europe-west1"
    bq_dataset_prefix: str = "game_analytics"
    bq_location: str = "EU"

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"

    @property
    def exports_dir(self) -> Path:
        """The local twin of the studio's export bucket and database extracts (batch sources)."""
        return self.data_dir / "exports"

    @property
    def truth_dir(self) -> Path:
        """Where the simulator writes the ground truth of every KPI."""
        return self.data_dir / "truth"

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    def bronze_dataset(self) -> str:
        return f"{self.bq_dataset_prefix}_bronze"
