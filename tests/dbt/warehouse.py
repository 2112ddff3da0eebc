"""Helpers of the dbt tests: land simulator output in a local bronze, run dbt, read marts and truth
as text. Bronze is written by the production code paths (the function's handler with the local
sink, the Beam batch loads), never by hand."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from ingestion.batch.launch import SOURCES, run_local
from ingestion.bronze import ensure_local_bronze
from common.settings import REPO_ROOT, OrchestrationSettings
from simulator import Simulation
from simulator.messages import PublishedMessage
from simulator.truth import TRUTH_COLUMNS
from deployments.local.report import MARTS as REPORT_MARTS
from ingestion.streaming.sinks import LocalSink
from ingestion.streaming.handler import handle_message

DBT_DIR = REPO_ROOT / "dbt"
DBT = Path(os.environ.get("GA_DBT_EXECUTABLE", REPO_ROOT / ".venv" / "bin" / "dbt"))

# mart -> (key columns, every column in the ground truth's order)
MARTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {mart: (key, TRUTH_COLUMNS[truth]) for mart, (truth, key) in REPORT_MARTS.items()}
TRUTH_TABLES = {mart: truth for mart, (truth, _) in REPORT_MARTS.items()}


def land_events(messages: Iterable[PublishedMessage], settings: OrchestrationSettings) -> int:
    """Hand each message to the Cloud Function's handler with the local sink, as if it were
    delivered at its publish time (ingested_at = publish_time). Returns the messages handled."""
    sink = LocalSink(settings.landing_dir)
    count = 0
    for message in messages:
        handle_message(message.data, message.attributes, message.message_id, message.publish_time, sink,
                       now=message.publish_time, emit=lambda _line: None)
        count += 1
    return count


def load_batch(sim: Simulation, settings: OrchestrationSettings) -> None:
    """The batch sources through the Beam pipelines (in-process runner), as the flow loads them."""
    sim.write_exports(settings.exports_dir)
    start = sim.config.start_date - timedelta(days=30)
    end = sim.config.start_date + timedelta(days=sim.config.days + 30)
    for source in SOURCES:
        run_local(source, start, end, settings)


def prepare(settings: OrchestrationSettings) -> None:
    ensure_local_bronze(settings.landing_dir)


def dbt(settings: OrchestrationSettings, *args: str, target_path: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the dbt CLI on the local target against ``settings.data_dir``; raise with its log on failure."""
    env = dict(os.environ, GA_DATA_DIR=str(settings.data_dir), GA_TARGET="local")
    cmd = [str(DBT), *args, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--target", "local",
           "--target-path", str(target_path or target_dir(settings))]
    proc = subprocess.run(cmd, env=env, cwd=DBT_DIR, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"dbt {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}")
    return proc


def target_dir(settings: OrchestrationSettings) -> Path:
    """Each test's dbt artifacts (run_results.json, compiled SQL) stay in its own data folder."""
    return settings.data_dir / "dbt-target"


def run_results(settings: OrchestrationSettings) -> dict[str, str]:
    """Node name -> status of the last dbt command run by :func:`dbt` for these settings."""
    import json

    results = json.loads((target_dir(settings) / "run_results.json").read_text())["results"]
    return {r["unique_id"].split(".")[-1]: r["status"] for r in results}


def text(value: Any) -> str:
    """A cell as the ground truth writes it (None -> '', dates ISO, Decimals as they are)."""
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def query(warehouse: Path, sql: str) -> list[dict[str, Any]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rel = con.sql(sql)
        return [dict(zip(rel.columns, row)) for row in rel.fetchall()]


def mart_rows(warehouse: Path, mart: str) -> dict[tuple[str, ...], dict[str, str]]:
    key, columns = MARTS[mart]
    rows = query(warehouse, f"select {', '.join(columns)} from gold.{mart}")
    return {tuple(text(r[k]) for k in key): {c: text(r[c]) for c in columns} for r in rows}


def truth_rows(sim: Simulation, mart: str) -> dict[tuple[str, ...], dict[str, str]]:
    key, columns = MARTS[mart]
    rows = getattr(sim.truth, TRUTH_TABLES[mart])
    return {tuple(text(r[k]) for k in key): {c: text(r[c]) for c in columns} for r in rows}


def differences(got: dict, want: dict, limit: int = 20) -> list[str]:
    """Cell-by-cell differences of two keyed tables of text; [] when equal."""
    out = [f"{k}: missing" for k in sorted(want.keys() - got.keys())]
    out += [f"{k}: unexpected" for k in sorted(got.keys() - want.keys())]
    for k in sorted(want.keys() & got.keys()):
        out += [f"{k} {c}: got {got[k][c]!r}, want {want[k][c]!r}" for c in want[k] if got[k].get(c) != want[k][c]]
    return out[:limit]


def table_text(warehouse: Path, relation: str, order_by: Sequence[str], leave_out: Sequence[str] = ()) -> list[tuple[str, ...]]:
    """Every row of a relation as text, in a fixed order (for incremental == full refresh)."""
    columns = f"* exclude ({', '.join(leave_out)})" if leave_out else "*"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.sql(f"select {columns} from {relation} order by {', '.join(order_by)}").fetchall()
    return [tuple(text(v) for v in row) for row in rows]


