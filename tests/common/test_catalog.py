"""The shared facts hold together: every bronze table has one name, used by the function, the
batch pipelines and the local bronze alike; every variable the deployments set is read."""
from __future__ import annotations

import re

import pytest

from common import bronze
from common.settings import (
    DEFAULT_DATA_DIR,
    REPO_ROOT,
    BatchSettings,
    OrchestrationSettings,
    PlatformSettings,
    WarehouseSettings,
)
from ingestion.streaming import rows
from ingestion.batch.rejected import REJECTED_TABLE
from ingestion.batch.sources import FX_RATES, PLAYERS, STORE_ITEMS
from ingestion.bronze import bronze_schemas


def test_every_bronze_table_has_one_schema_under_the_catalogs_name() -> None:
    assert tuple(bronze_schemas()) == bronze.TABLES
    assert (PLAYERS.name, STORE_ITEMS.name, FX_RATES.name, REJECTED_TABLE) == bronze.BATCH_TABLES
    # the function cannot import the catalog (it deploys as one folder): its copy must agree
    assert (rows.GAME_EVENTS, rows.GAME_EVENTS_REJECTED) == bronze.STREAMED_TABLES


def test_datasets_are_named_by_layer() -> None:
    assert bronze.dataset("ga") == "ga_bronze"
    assert PlatformSettings(bq_dataset_prefix="ga").bronze_dataset() == "ga_bronze"
    assert bronze.dataset("ga", "gold") == "ga_gold"


def test_every_variable_prefect_yaml_sets_is_read_by_the_flows_settings() -> None:
    deployed = set(re.findall(r"\b(GA_[A-Z_]+):", (REPO_ROOT / "prefect.yaml").read_text()))
    assert deployed
    read = {f"GA_{name.upper()}" for name in OrchestrationSettings.model_fields}
    assert deployed <= read, deployed - read


def test_each_component_reads_only_its_own_settings_and_the_shared_ones() -> None:
    shared = set(PlatformSettings.model_fields)
    warehouse = set(WarehouseSettings.model_fields) - shared
    batch = set(BatchSettings.model_fields) - shared
    assert warehouse and batch and not warehouse & batch
    assert {"flow_retries", "notify_block", "dbt_file_log_level"} <= set(OrchestrationSettings.model_fields) - warehouse - batch
    assert not {"flow_retries", "notify_block"} & (set(WarehouseSettings.model_fields) | set(BatchSettings.model_fields))


def test_one_default_data_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GA_DATA_DIR", raising=False)
    assert {cls().data_dir for cls in (PlatformSettings, WarehouseSettings, BatchSettings, OrchestrationSettings)} == {
        REPO_ROOT / "data"}
    monkeypatch.setenv("GA_DATA_DIR", "/elsewhere")
    assert OrchestrationSettings().landing_dir.as_posix() == "/elsewhere/landing"



def test_every_image_that_ships_ingestion_ships_common() -> None:
    """Batch and flows import ``common``: an image with ``ingestion/`` and without it fails at start."""
    for dockerfile in (REPO_ROOT / "deployments").glob("*/Dockerfile"):
        copies = re.findall(r"^COPY (\S+)/ (\S+)$", dockerfile.read_text(), re.MULTILINE)
        sources = {src: dst.removesuffix("/").removesuffix("ingestion").removesuffix("common") for src, dst in copies}
        if "ingestion" in sources:
            assert sources.get("common") == sources["ingestion"], dockerfile


def test_dbts_default_data_folder_is_the_settings_one() -> None:
    """dbt cannot import the settings: its ``GA_DATA_DIR`` defaults (relative to the project) are
    copies, held here to the one default."""
    dbt = REPO_ROOT / "dbt"
    found = []
    for path in [*dbt.glob("*.yml"), *dbt.glob("macros/**/*.sql"), *dbt.glob("models/**/*.yml")]:
        for default in re.findall(r"env_var\(\s*'GA_DATA_DIR'\s*,\s*'([^']*)'\s*\)", path.read_text()):
            found.append((path.name, (dbt / default).resolve()))
    assert found, "no GA_DATA_DIR default found under dbt/"
    assert all(resolved == DEFAULT_DATA_DIR for _, resolved in found), found
