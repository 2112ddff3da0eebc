"""dbt's source definitions agree with the code that writes bronze."""
from __future__ import annotations

from typing import Any

import yaml

from ingestion.bronze import bronze_schemas
from ingestion.streaming.events import ERROR_TYPES
from tests.dbt.warehouse import DBT_DIR


def dbt_sources() -> list[dict[str, Any]]:
    return [source for path in sorted((DBT_DIR / "models").rglob("*.yml"))
            for source in (yaml.safe_load(path.read_text()) or {}).get("sources", [])]


def source_table(name: str) -> dict[str, Any]:
    [table] = [table for source in dbt_sources() for table in source["tables"] if table["name"] == name]
    return table


def test_the_sources_list_every_bronze_table_ingestion_writes_and_no_other() -> None:
    tables = [table["name"] for source in dbt_sources() for table in source["tables"]]
    assert sorted(tables) == sorted(bronze_schemas())


def test_every_source_reads_the_one_bronze_schema() -> None:
    assert len({source["schema"] for source in dbt_sources()}) == 1


def test_the_accepted_error_types_are_the_functions_error_types() -> None:
    [column] = [column for column in source_table("game_events_rejected")["columns"] if column["name"] == "error_type"]
    [accepted] = [test["accepted_values"] for test in column["data_tests"] if "accepted_values" in test]
    assert sorted(accepted["arguments"]["values"]) == sorted(ERROR_TYPES)
