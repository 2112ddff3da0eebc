"""Read the gold marts of the local warehouse and hold them against the simulator's ground truth."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable, Sequence

import duckdb

from common.settings import PlatformSettings
from ingestion.simulator.truth import DAILY_KPI_COLUMNS, LEVEL_FUNNEL_COLUMNS, RETENTION_COLUMNS

# each gold mart: the ground-truth file it must equal cell for cell, its key, and its columns
MARTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "mart_daily_kpis": ("daily_kpis", ("activity_date", "game_id"), DAILY_KPI_COLUMNS),
    "mart_retention": ("retention", ("cohort_date", "game_id"), RETENTION_COLUMNS),
    "mart_level_funnel": ("level_funnel", ("game_id", "level"), LEVEL_FUNNEL_COLUMNS),
}
HEADLINE = ("dau", "new_players", "mau", "sessions", "revenue_usd", "ad_revenue_usd", "arpdau")


def read_mart(settings: PlatformSettings, mart: str) -> list[dict[str, Any]]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        rel = con.sql(f"select * from gold.{mart}")
        return [dict(zip(rel.columns, row)) for row in rel.fetchall()]


def read_truth(truth_dir: Path, name: str) -> list[dict[str, str]]:
    with open(truth_dir / f"{name}.csv", newline="") as f:
        return list(csv.DictReader(f))


def as_text(value: Any) -> str:
    return "" if value is None else str(value)


def mismatches(
    mart: Iterable[dict[str, Any]], truth: Iterable[dict[str, str]], key: Sequence[str], columns: Sequence[str]
) -> list[str]:
    """Every difference between the mart and the truth, cell by cell, compared as text; [] when equal."""
    got = {tuple(as_text(r[k]) for k in key): r for r in mart}
    want = {tuple(as_text(r[k]) for k in key): r for r in truth}
    out = [f"{k}: in the truth, missing from the mart" for k in sorted(want.keys() - got.keys())]
    out += [f"{k}: in the mart, not in the truth" for k in sorted(got.keys() - want.keys())]
    for k in sorted(want.keys() & got.keys()):
        out += [f"{k} {c}: mart {as_text(got[k][c])!r} != truth {as_text(want[k][c])!r}"
                for c in columns if as_text(got[k][c]) != as_text(want[k][c])]
    return out


def mart_mismatches(settings: PlatformSettings, mart: str) -> tuple[int, int, list[str]]:
    """(rows, cells compared, differences) of one gold mart against its ground-truth file."""
    truth_name, key, all_columns = MARTS[mart]
    truth = read_truth(settings.truth_dir, truth_name)
    columns = [c for c in all_columns if c not in key]
    rows = read_mart(settings, mart)
    return len(rows), len(rows) * len(columns), mismatches(rows, truth, key, columns)


def kpi_report(settings: PlatformSettings, days: int = 7) -> str:
    rows = sorted(read_mart(settings, "mart_daily_kpis"), key=lambda r: (r["activity_date"], r["game_id"]))
    last_dates = sorted({r["activity_date"] for r in rows})[-days:]
    header = ("activity_date", "game_id", *HEADLINE)
    table = [header] + [tuple(as_text(r[c]) for c in header) for r in rows if r["activity_date"] in last_dates]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [f"Daily KPIs from gold.mart_daily_kpis, last {len(last_dates)} days:"]
    lines += ["  " + "  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in table]
    lines += ["", "Against the simulator's ground truth:"]
    for mart in MARTS:
        n_rows, n_cells, diffs = mart_mismatches(settings, mart)
        lines.append(f"  gold.{mart}: {n_rows} rows, all {n_cells} cells equal" if not diffs else
                     f"  gold.{mart}: {len(diffs)} differences, first ones:\n    " + "\n    ".join(diffs[:10]))
    lines += ["", "Where the results are:",
              f"  warehouse (DuckDB):   {settings.warehouse_path}   (schemas bronze, silver, gold)",
              f"  bronze landing area:  {settings.landing_dir}",
              f"  ground truth:         {settings.truth_dir}",
              f"  KPI report:           {settings.data_dir / 'reports' / 'latest' / 'kpi-report.html'}   (open it in a browser)",
              f"  dbt docs:             {settings.data_dir / 'reports' / 'latest' / 'dbt-docs.html'}",
              f"  Prefect runs:         PREFECT_HOME={settings.data_dir / 'prefect'} .venv/bin/prefect server start, then http://127.0.0.1:4200"]
    return "\n".join(lines)
