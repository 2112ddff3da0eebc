"""The platform's settings, read from the environment (prefix ``GA_``), one class per component.

``PlatformSettings`` holds what every part shares (where the local data lives, the Google Cloud
project and the BigQuery datasets); ``WarehouseSettings``, ``BatchSettings`` and
``OrchestrationSettings`` add what only their component reads, and each part imports only the
class it needs. The streaming function has its own settings (``ingestion/streaming/settings.py``):
it is deployed as one folder and cannot import this package.

Production and local differ only in the adapters these settings choose (a Beam runner, a dbt
target, a sink); never in the logic.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common import bronze

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT / "data"


class PlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GA_", frozen=True)

    # local twin: where the landing area (local bronze), the DuckDB warehouse and run outputs live
    data_dir: Path = DEFAULT_DATA_DIR
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
        return bronze.dataset(self.bq_dataset_prefix, "bronze")


class WarehouseSettings(PlatformSettings):
    """What the warehouse's readers and publishers need beyond the shared settings."""

    # where each run publishes its KPI report and the daily dbt docs: gs://bucket/prefix; unset:
    # data_dir/reports
    reports_url: str | None = None
    # the marts are fresh when their newest event arrival is at most this old (the freshness
    # automation alerts when no fresh build is reported for that long)
    mart_max_age_hours: float = Field(default=2, gt=0)


class BatchSettings(PlatformSettings):
    """The batch loads' sources and, on Google Cloud, their Dataflow jobs."""

    # the studio's operational database (players, store_items) for in-process loads (local
    # target): a libpq DSN or URI. Unset: those sources are read from their CSV extract files in
    # the exports folder instead. Never sent to Dataflow.
    postgres_dsn: str | None = None
    # the same database for Dataflow loads: a Cloud SQL for PostgreSQL instance, reached by the
    # workers through the Cloud SQL Python Connector with IAM database authentication as
    # cloudsql_user (default: the workers' service account), so no password exists anywhere
    cloudsql_instance: str | None = None  # project:region:instance
    cloudsql_database: str | None = None
    cloudsql_user: str | None = None
    cloudsql_ip_type: Literal["private", "public", "psc"] = "private"
    postgres_schema: str = "public"
    # key ranges each database table is split into, read in parallel
    read_ranges: int = Field(default=4, ge=1, le=256)
    # where the daily exports (fx_rates) live in production: gs://bucket/prefix
    exports_url: str | None = None

    # Dataflow (target=bigquery): the batch load's Flex Template spec, and the job's environment
    dataflow_template_path: str | None = None  # gs://bucket/templates/batch-load.json
    dataflow_sdk_image: str | None = None  # the template's image, also run by the workers
    dataflow_temp_location: str | None = None  # gs://bucket/tmp
    dataflow_service_account: str | None = None
    dataflow_max_workers: int = Field(default=4, ge=1)


class OrchestrationSettings(WarehouseSettings, BatchSettings):
    """The flows' settings: a flow runs the batch loads and builds the warehouse, so it reads both
    components' settings, and its own."""

    # flow-level retries of the pipeline (a retry resumes dbt where it failed) and the pause before one
    flow_retries: int = Field(default=1, ge=0)
    flow_retry_delay_s: int = Field(default=60, ge=0)
    # each flow run keeps its dbt target folder (data_dir/dbt-runs/<flow run id>) this many days
    dbt_runs_keep_days: int = Field(default=14, ge=1)
    # what the flow's dbt also writes to dbt/logs/dbt.log (its log reaches Prefect either way);
    # "debug" keeps every query there
    dbt_file_log_level: Literal["debug", "info", "warn", "error", "none"] = "warn"

    # the Prefect notification block failure alerts go through, as "<block-type-slug>/<name>"
    # (registered by blocks/register.py: slack-webhook/... or custom-webhook/...)
    notify_block: str = "slack-webhook/game-analytics-alerts"
    # the prefect-gcp GcpCredentials block (its name) the flows' Google clients take credentials
    # from; unset, or a block with no key: Application Default Credentials (Workload Identity on GKE)
    gcp_credentials_block: str | None = None
