"""The gold marts' columns are stated once, in their dbt contracts; the ground truth's tables carry
the same columns in the same order, and the written truth files say so in their headers."""
from __future__ import annotations

import csv
from pathlib import Path

import yaml

from deployments.local.report import MARTS
from simulator import Simulation
from simulator.truth import TRUTH_COLUMNS

DBT_MODELS = Path(__file__).resolve().parents[2] / "dbt" / "models"


def contract_columns() -> dict[str, list[str]]:
    """Model name -> its column names, in order, as the dbt model ymls declare them."""
    models: dict[str, list[str]] = {}
    for path in sorted(DBT_MODELS.rglob("*.yml")):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            models[model["name"]] = [column["name"] for column in model.get("columns", [])]
    return models


def test_each_truth_table_has_the_columns_of_its_marts_dbt_contract() -> None:
    contracts = contract_columns()
    assert sorted(truth for truth, _ in MARTS.values()) == sorted(TRUTH_COLUMNS)
    for mart, (truth, key) in MARTS.items():
        assert mart in contracts, f"no dbt yml declares {mart}"
        assert list(TRUTH_COLUMNS[truth]) == contracts[mart], mart
        assert set(key) <= set(contracts[mart]), mart


def test_the_truth_files_headers_are_the_truth_columns(small_sim: Simulation, tmp_path: Path) -> None:
    small_sim.truth.write(tmp_path)
    for truth, columns in TRUTH_COLUMNS.items():
        with (tmp_path / f"{truth}.csv").open(newline="") as handle:
            assert next(csv.reader(handle)) == list(columns), truth
