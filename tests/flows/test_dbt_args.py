from __future__ import annotations

import json
from datetime import date

import yaml

from flows.dbt import DBT_DIR, QUALITY_GATE, dbt_args
from ingestion.bronze import bronze_schemas


def test_build_arguments_carry_target_selection_window_and_vars() -> None:
    args = dbt_args("build", target="local", select=["gold"], exclude=[QUALITY_GATE], full_refresh=True,
                    dbt_vars={"lookback_days": 3}, start=date(2026, 1, 1), end=date(2026, 1, 31))
    assert args[:7] == ["build", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--target", "local"]
    assert args[args.index("--select") + 1] == "gold"
    assert args[args.index("--exclude") + 1] == QUALITY_GATE
    assert "--full-refresh" in args
    assert json.loads(args[args.index("--vars") + 1]) == {"lookback_days": 3, "start_date": "2026-01-01", "end_date": "2026-01-31"}


def test_no_vars_no_flags_when_nothing_is_asked() -> None:
    args = dbt_args("test", target="bigquery")
    assert "--vars" not in args and "--full-refresh" not in args and "--select" not in args


def test_the_warehouse_exposes_every_bronze_table_the_ingestion_writes() -> None:
    project = yaml.safe_load((DBT_DIR / "dbt_project.yml").read_text())
    assert project["vars"]["bronze_tables"] == list(bronze_schemas())
