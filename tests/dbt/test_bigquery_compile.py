"""Every model, analysis and data test compiles for the BigQuery target with no credentials, in both
branches of the incremental models, and each compiled statement is BigQuery SQL: sqlglot's
BigQuery dialect parses it strictly, every function is one BigQuery knows, and no DuckDB-only
spelling (casts, operators, types, functions) slipped through a macro."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from common import bronze
from common.settings import REPO_ROOT

# spellings that DuckDB accepts and BigQuery does not (sqlglot's BigQuery reader tolerates some of
# them, mapping them to BigQuery equivalents, so they are looked for in the text itself)
DUCKDB_ONLY = {
    "try_cast": re.compile(r"\btry_cast\s*\(", re.I),
    ":: cast": re.compile(r"::"),
    "->> / -> JSON operator": re.compile(r"->>?"),
    "// integer division": re.compile(r"//"),
    "hugeint": re.compile(r"\bhugeint\b", re.I),
    "varchar": re.compile(r"\bvarchar\b", re.I),
    "decimal(p, s)": re.compile(r"\bdecimal\s*\(", re.I),
    "json_extract_string": re.compile(r"\bjson_extract_string\b", re.I),
    "read_parquet": re.compile(r"\bread_parquet\b", re.I),
    "generate_series": re.compile(r"\bgenerate_series\b", re.I),
    "timezone()": re.compile(r"\btimezone\s*\(", re.I),
    "date_diff('part', ...)": re.compile(r"\bdate_diff\s*\(\s*'", re.I),
    "to_hours": re.compile(r"\bto_hours\b", re.I),
    "filter (where": re.compile(r"\bfilter\s*\(\s*where\b", re.I),
}
COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
PREFIX = "studio_x"
STRING = re.compile(r"'(?:[^'\\]|\\.)*'")


def compile_process(target_path: Path, branch: str, *vars_and_selection: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOOGLE_")}
    env.update(GA_GCP_PROJECT="offline-project", GA_BQ_DATASET_PREFIX=PREFIX,
               GOOGLE_APPLICATION_CREDENTIALS=str(target_path / "no-credentials.json"),
               PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "tests.dbt.compile_bigquery_offline", str(target_path), branch,
                           *vars_and_selection], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def compile_offline(target_path: Path, branch: str) -> Path:
    proc = compile_process(target_path, branch)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return target_path / "compiled" / "game_analytics"


@pytest.fixture(scope="module", params=["full", "incremental"])
def compiled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    root = compile_offline(tmp_path_factory.mktemp(f"bigquery-{request.param}"), request.param)
    files = {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*.sql"))}
    return request.param, files


def problems(sql: str) -> list[str]:
    found: list[str] = []
    try:
        tree = sqlglot.parse_one(sql, read="bigquery", error_level=ErrorLevel.RAISE)
    except sqlglot.errors.ParseError as error:
        return [f"not BigQuery SQL: {error}"]
    found += [f"unknown function {node.name}()" for node in tree.find_all(exp.Anonymous)]
    code = STRING.sub("''", COMMENT.sub(" ", sql))
    found += [f"DuckDB-only {name}" for name, pattern in DUCKDB_ONLY.items() if pattern.search(code)]
    return found


def test_every_model_compiles_for_bigquery(compiled) -> None:
    branch, files = compiled
    models = {name for name in files if name.startswith("models/") and "/_" not in name}
    expected = {str(p.relative_to(REPO_ROOT / "dbt")) for p in (REPO_ROOT / "dbt" / "models").rglob("*.sql")}
    assert models == expected
    assert any(name.startswith("analyses/") for name in files)


def test_the_incremental_branch_is_the_one_compiled(compiled) -> None:
    branch, files = compiled
    silver = files["models/silver/stg_telemetry__game_events.sql"]
    assert ("as existing" in silver) == (branch == "incremental")  # new_keys_only's anti-join
    # dbt's bronze dataset is the one the catalog names (common.bronze), which the function and loads write
    assert f"`offline-project`.`{bronze.dataset(PREFIX)}`.`game_events`" in silver
    gate = files["tests/assert_every_bronze_event_in_silver.sql"]
    assert ("reconcile_window" in gate) == (branch == "incremental")  # the hourly gate's window


def test_every_compiled_statement_is_bigquery_sql(compiled) -> None:
    _, files = compiled
    found = {name: p for name, sql in files.items() if (p := problems(sql))}
    assert found == {}


def test_the_check_catches_duckdb_sql() -> None:
    assert problems("select try_cast(x as decimal(38, 9)) from t")
    assert problems("select json_extract_string(params, '$.level') from t")
    assert problems("select a // b from t")
    assert problems("select cast(x as varchar) from t")
    assert not problems("select safe_cast(json_value(params, '$.level') as int64) from t where true qualify row_number() over (partition by a order by b) = 1")


INJECTED = "3 hour) or true or (1"


@pytest.mark.parametrize(("node", "dbt_vars", "error"), [
    # arrival_lookback_hours went into `interval ... hour` as it came
    ("stg_telemetry__game_events", {"arrival_lookback_hours": INJECTED},
     f"var arrival_lookback_hours: a whole number of at least 0, not '{INJECTED}'"),
    ("stg_telemetry__game_events", {"arrival_lookback_hours": True}, "var arrival_lookback_hours: a whole number"),
    # the backfill window's dates went between the quotes of a date literal
    ("stg_telemetry__game_events", {"start_date": "2026-01-01' as date) or true or (cast('2026-01-01", "end_date": "2026-01-31"},
     "var start_date: a date YYYY-MM-DD, not '2026-01-01' as date) or true"),
    ("dim_date", {"calendar_start": "2015-01-01', date '2016-01-01"}, "date_series(): start_date: a date YYYY-MM-DD"),
    ("assert_bronze_events_are_fresh", {"freshness_warn_hours": "26 hour) or (1"}, "hours_before(): hours: a whole number"),
])
def test_a_var_that_is_not_its_type_stops_the_compile_before_any_sql(tmp_path: Path, node: str, dbt_vars: dict, error: str) -> None:
    """However dbt is run (by the flow or by hand), a var reaches SQL only as a checked literal."""
    proc = compile_process(tmp_path, "incremental", json.dumps(dbt_vars), node)
    assert proc.returncode != 0 and error in proc.stdout + proc.stderr, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not list((tmp_path / "compiled").rglob("*.sql"))


def test_vars_of_their_type_become_literals(tmp_path: Path) -> None:
    dbt_vars = {"arrival_lookback_hours": 5, "start_date": "2026-01-01", "end_date": "2026-01-31", "reconcile_hours": 3}
    proc = compile_process(tmp_path, "incremental", json.dumps(dbt_vars), "stg_telemetry__game_events")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    silver = (tmp_path / "compiled" / "game_analytics" / "models" / "silver" / "stg_telemetry__game_events.sql").read_text()
    assert "interval 5 hour" in silver
    assert "between cast('2026-01-01' as date)\n            and cast('2026-01-31' as date)" in silver


@pytest.fixture(scope="module")
def merges(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], dict[str, dict]]:
    """The statements dbt-bigquery sends for an incremental run of each incremental model, recorded
    offline, and the models' configs."""
    target = tmp_path_factory.mktemp("bigquery-merge")
    proc = compile_process(target, "merge")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    manifest = json.loads((target / "manifest.json").read_text())
    configs = {n["name"]: n["config"] for n in manifest["nodes"].values()
               if n["resource_type"] == "model" and n["config"]["materialized"] == "incremental"}
    return {p.stem: p.read_text() for p in (target / "statements").glob("*.sql")}, configs


def target_partition_filters(merge: exp.Merge, column: str) -> list[exp.Expression]:
    """The conditions of the MERGE's ON clause that filter the target (DBT_INTERNAL_DEST) on `column`
    by themselves, without the source's row: what BigQuery can prune partitions with."""
    def conjuncts(node: exp.Expression) -> list[exp.Expression]:
        node = node.unnest() if isinstance(node, exp.Paren) else node
        return conjuncts(node.left) + conjuncts(node.right) if isinstance(node, exp.And) else [node]

    def on_target_column(c: exp.Column) -> bool:
        return c.table.upper() == "DBT_INTERNAL_DEST" and c.name == column

    return [c for c in conjuncts(merge.args["on"])
            if any(on_target_column(col) for col in c.find_all(exp.Column))
            and not any(col.table.upper() == "DBT_INTERNAL_SOURCE" for col in c.find_all(exp.Column))]


def test_every_incremental_merge_reads_only_the_target_partitions_its_batch_touches(merges) -> None:
    """Without it, each hourly MERGE scans the key columns of every partition of the target: a cost
    that grows with history (silver's event_id alone grows by tens of GB a day at 10k events/s)."""
    statements, configs = merges
    partitioned = {name: c["partition_by"]["field"] for name, c in configs.items() if c.get("partition_by")}
    assert set(partitioned) == {"stg_telemetry__game_events", "fct_level_attempts", "fct_ad_impressions", "fct_sessions",
                                "fct_player_activity_daily", "fct_purchases"}
    for name, column in partitioned.items():
        script = next(s for s in statements[name].split(";;\n") if "merge into" in s.lower())
        trees = [t for t in sqlglot.parse(script, read="bigquery", error_level=ErrorLevel.RAISE) if t]
        merge = next(t for t in trees if isinstance(t, exp.Merge))
        filters = target_partition_filters(merge, column)
        assert filters, f"{name}: the MERGE does not filter the target on {column}: {merge.args['on'].sql('bigquery')}"
        # each filter is on script variables computed from the batch (constants for the MERGE), declared before it
        declared = {name.name: d for t in trees if isinstance(t, exp.Declare) for d in t.expressions for name in d.this}
        for condition in filters:
            variables = {c.name for c in condition.find_all(exp.Column) if not c.table}
            assert variables and variables <= set(declared), f"{name}: {condition.sql('bigquery')}"
            for variable in variables:
                source = declared[variable].sql("bigquery")
                assert column in source and "__dbt_tmp" in source, f"{name}: {source}"


def test_the_check_catches_a_merge_that_scans_every_partition() -> None:
    merge = sqlglot.parse_one("merge into t as DBT_INTERNAL_DEST using s as DBT_INTERNAL_SOURCE "
                              "on DBT_INTERNAL_SOURCE.event_id = DBT_INTERNAL_DEST.event_id "
                              "and DBT_INTERNAL_SOURCE.event_date = DBT_INTERNAL_DEST.event_date "
                              "when not matched then insert (event_id) values (event_id)", read="bigquery")
    assert target_partition_filters(merge, "event_date") == []
