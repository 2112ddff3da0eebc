"""dbt's source definitions agree with the code that writes bronze."""
from __future__ import annotations

import yaml

from ingestion.streaming.events import ERROR_TYPES
from tests.dbt.warehouse import DBT_DIR


def test_the_accepted_error_types_are_the_functions_error_types() -> None:
    sources = yaml.safe_load((DBT_DIR / "models" / "silver" / "_bronze__sources.yml").read_text())
    [bronze] = [source for source in sources["sources"] if source["name"] == "bronze"]
    [table] = [table for table in bronze["tables"] if table["name"] == "game_events_rejected"]
    [column] = [column for column in table["columns"] if column["name"] == "error_type"]
    [accepted] = [test["accepted_values"] for test in column["data_tests"] if "accepted_values" in test]
    assert sorted(accepted["arguments"]["values"]) == sorted(ERROR_TYPES)
