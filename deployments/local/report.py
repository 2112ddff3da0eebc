"""Read the gold marts of the local warehouse and hold them against the simulator's ground truth."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable, Sequence

import duckdb

from ingestion.settings import Settings

# the daily KPI columns the warehouse builds today, compared cell by cell with the ground truth
DAILY_KPI_COLUMNS = ("dau", "new_players", "sessions")


def read_mart(settings: Settings, mart: str) -> list[dict[str, Any]]:
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
    want = {tuple(r[k] for k in key): r for r in truth}
    out = [f"{k}: in the truth, missing from the mart" for k in sorted(want.keys() - got.keys())]
    out += [f"{k}: in the mart, not in the truth" for k in sorted(got.keys() - want.keys())]
    for k in sorted(want.keys() & got.keys()):
        out += [f"{k} {c}: mart {as_text(got[k][c])!r} != truth {want[k][c]!r}"
                for c in columns if as_text(got[k][c]) != want[k][c]]
    return out


def kpi_report(settings: Settings, days: int = 7) -> str:
    rows = sorted(read_mart(settings, "mart_daily_kpis"), key=lambda r: (r["activity_date"], r["game_id"]))
    diffs = mismatches(rows, read_truth(settings.truth_dir, "daily_kpis"), ("activity_date", "game_id"), DAILY_KPI_COLUMNS)
    last_dates = sorted({r["activity_date"] for r in rows})[-days:]
    header = ("activity_date", "game_id", *DAILY_KPI_COLUMNS)
    table = [header] + [tuple(as_text(r[c]) for c in header) for r in rows if r["activity_date"] in last_dates]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [f"Daily KPIs from gold.mart_daily_kpis, last {len(last_dates)} days:"]
    lines += ["  " + "  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in table]
    verdict = (f"All {len(rows)} game-days match the simulator's ground truth exactly ({', '.join(DAILY_KPI_COLUMNS)})."
               if not diffs else f"{len(diffs)} differences from the ground truth, first ones:\n  " + "\n  ".join(diffs[:10]))
    lines += ["", verdict, "", "Where the results are:",
              f"  warehouse (DuckDB):   {settings.warehouse_path}   (schemas bronze, silver, gold)",
              f"  bronze landing area:  {settings.landing_dir}",
              f"  ground truth:         {settings.truth_dir}",
              f"  Prefect runs:         PREFECT_HOME={settings.data_dir / 'prefect'} .venv/bin/prefect server start, then http://127.0.0.1:4200"]
    return "\n".join(lines)
