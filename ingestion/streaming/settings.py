"""The function's own settings, read from its environment (prefix ``GA_``).

The function is deployed as this one folder, so whoever deploys it names its destinations:
``deployments/streaming/deploy.py`` sets ``GA_BRONZE_DATASET`` (and ``GA_GCP_PROJECT``) from the
platform's dataset naming, and the local stack sets ``GA_LANDING_DIR`` from the platform's data
folder. A sink whose destination is unset fails naming the variable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "GA_"


class MissingSetting(ValueError):
    """A setting the chosen sink needs is not set."""


class FunctionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True)

    # where valid and rejected events go: local Parquet files or BigQuery
    sink: Literal["local", "bigquery"] = "local"
    # the oldest event the function accepts, in days before its arrival: BigQuery streams rows into
    # a time-partitioned table only within 5 years back (older events are timestamp_out_of_range)
    event_max_age_days: int = Field(default=1820, ge=1, le=1825)
    # sink local: the landing area (the local bronze), one folder per table
    landing_dir: Path | None = None
    # sink bigquery: the project and the bronze dataset the tables are in
    gcp_project: str | None = None
    bronze_dataset: str | None = None

    def required(self, name: str) -> str | Path:
        """The setting ``name``, or ``MissingSetting`` naming its environment variable."""
        value = getattr(self, name)
        if not value:
            raise MissingSetting(f"{ENV_PREFIX}{name.upper()}: required when {ENV_PREFIX}SINK={self.sink}, but it is unset")
        return value
