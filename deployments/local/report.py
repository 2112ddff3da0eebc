"""Read the gold marts of the local warehouse and hold them against the simulator's ground truth."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable, Sequence

import duckdb

from common.settings import PlatformSettings

# each gold mart: the ground-truth file it must equal cell for cell, and its key. The columns are
# those of the data compared: the truth file's header and the mart's own; a column on one side only
# is a difference.
MARTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mart_daily_kpis": ("daily_kpis", ("activity_date", "game_id")),
    "mart_retention": ("retention", ("cohort_date", "game_id")),
    "mart_level_funnel": ("level_funnel", ("game_id", "level")),
}
HEADLINE = ("dau", "new_players", "mau", "sessions", "revenue_usd", "ad_revenue_usd", "arpdau")


def query_mart(settings: PlatformSettings, mart: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of a gold mart."""
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        rel = con.sql(f"select * from gold.{mart}")
        return rel.columns, [dict(zip(rel.columns, row)) for row in rel.fetchall()]


def read_mart(settings: PlatformSettings, mart: str) -> list[dict[str, Any]]:
    return query_mart(settings, mart)[1]


def read_truth(truth_dir: Path, name: str) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of a ground-truth file."""
    with open(truth_dir / f"{name}.csv", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or ()), list(reader)


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
    truth_name, key = MARTS[mart]
    truth_columns, truth = read_truth(settings.truth_dir, truth_name)
    mart_columns, rows = query_mart(settings, mart)
    out = [f"column {c}: in the truth, missing from the mart" for c in truth_columns if c not in mart_columns]
    out += [f"column {c}: in the mart, not in the truth" for c in mart_columns if c not in truth_columns]
    out += [f"key column {k}: in neither the mart nor the truth" for k in key if k not in {*truth_columns, *mart_columns}]
    if any(k not in truth_columns or k not in mart_columns for k in key):
        return len(rows), 0, out  # rows cannot be paired without their whole key
    columns = [c for c in truth_columns if c in mart_columns and c not in key]
    return len(rows), len(rows) * len(columns), out + mismatches(rows, truth, key, columns)


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
