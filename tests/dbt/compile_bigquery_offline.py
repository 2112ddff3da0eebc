"""Compile the dbt project for the ``bigquery`` target with no credentials and no network.

dbt's compile opens a warehouse connection (to run introspective queries) and ``is_incremental()``
asks the adapter whether the model's table exists. Here the BigQuery adapter is given a connection
that never reaches Google, an empty relation cache, and a ``get_relation`` that answers "absent"
(the full-refresh branch of every incremental model) or "a table" (the incremental branch). Every
other part of dbt-bigquery (its macros, its SQL dialect, the project's dispatch) runs for real.
The incremental branch is compiled as the hourly runs compile it (var reconcile_hours set).

    python -m tests.dbt.compile_bigquery_offline <target-path> full|incremental [<vars-json> [<selector>...]]
    python -m tests.dbt.compile_bigquery_offline <target-path> merge

With vars given, they replace the hourly run's; with selectors, only those nodes are compiled.
`merge` runs the incremental models (`dbt run`, incremental branch) against the same offline
connection, which records every statement dbt-bigquery's materialization sends instead of sending
it (each table then answers with a fixed list of columns); the statements of each model are written
to <target-path>/statements/<model>.sql, one after the other, separated by ';;'.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from common.settings import REPO_ROOT

DBT_DIR = REPO_ROOT / "dbt"


class OfflineHandle:
    """A connection handle that refuses every query: compiling must not run one."""

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"offline compile tried to use the BigQuery client ({name})")


def compile_offline(target_path: Path, branch: str, dbt_vars: str | None = None, select: list[str] | None = None) -> bool:
    from dbt.adapters.bigquery.connections import BigQueryConnectionManager
    from dbt.adapters.bigquery.impl import BigQueryAdapter
    from dbt.adapters.bigquery.relation import BigQueryRelation
    from dbt.cli.main import dbtRunner

    @classmethod
    def open_offline(cls: Any, connection: Any) -> Any:
        connection.handle = OfflineHandle()
        connection.state = "open"
        return connection

    def get_relation(self: Any, database: str, schema: str, identifier: str) -> Any:
        if branch == "incremental":
            return BigQueryRelation.create(database=database, schema=schema, identifier=identifier, type="table")
        return None

    BigQueryConnectionManager.open = open_offline  # type: ignore[method-assign]
    BigQueryAdapter.get_relation = get_relation  # type: ignore[method-assign]
    BigQueryAdapter.list_relations_without_caching = lambda self, schema_relation: []  # type: ignore[method-assign]

    os.environ.setdefault("GA_GCP_PROJECT", "offline-project")
    os.environ["GA_TARGET"] = "bigquery"
    result = dbtRunner().invoke([
        "compile", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--target", "bigquery",
        "--target-path", str(target_path),
        "--select", *(select or ["resource_type:model", "resource_type:analysis", "resource_type:test"]),
        "--no-populate-cache", "--no-partial-parse", "--quiet",
        # the incremental branch is the hourly run's: its quality gate reconciles a window of hours
        *(["--vars", dbt_vars] if dbt_vars else ["--vars", '{"reconcile_hours": 3}'] if branch == "incremental" else []),
    ])
    if not result.success:
        print(result.exception, file=sys.stderr)
    return result.success


def record_incremental_runs(target_path: Path) -> bool:
    from dbt.adapters.bigquery.column import BigQueryColumn
    from dbt.adapters.bigquery.connections import BigQueryAdapterResponse, BigQueryConnectionManager
    from dbt.adapters.bigquery.impl import BigQueryAdapter
    from dbt.adapters.bigquery.relation import BigQueryRelation
    from dbt.cli.main import dbtRunner
    from dbt_common.clients import agate_helper

    out = target_path / "statements"
    out.mkdir(parents=True, exist_ok=True)

    @classmethod
    def open_offline(cls: Any, connection: Any) -> Any:
        connection.handle = OfflineHandle()
        connection.state = "open"
        return connection

    def execute(self: Any, sql: str, auto_begin: bool = False, fetch: Any = None, limit: Any = None) -> Any:
        name = self.get_thread_connection().name or "master"
        with open(out / f"{name.rsplit('.', 1)[-1]}.sql", "a") as statements:
            statements.write(sql + "\n;;\n")
        return BigQueryAdapterResponse(_message="OK"), agate_helper.empty_table()

    columns = [BigQueryColumn("event_id", "STRING"), BigQueryColumn("loaded_at", "TIMESTAMP")]
    BigQueryConnectionManager.open = open_offline  # type: ignore[method-assign]
    BigQueryConnectionManager.execute = execute  # type: ignore[method-assign]
    BigQueryAdapter.get_relation = lambda self, database, schema, identifier: BigQueryRelation.create(  # type: ignore[method-assign]
        database=database, schema=schema, identifier=identifier, type="table")
    BigQueryAdapter.list_relations_without_caching = lambda self, schema_relation: []  # type: ignore[method-assign]
    BigQueryAdapter.list_schemas = lambda self, database: []  # type: ignore[method-assign]
    BigQueryAdapter.create_schema = lambda self, relation: None  # type: ignore[method-assign]
    BigQueryAdapter.drop_relation = lambda self, relation: None  # type: ignore[method-assign]
    BigQueryAdapter.get_columns_in_relation = lambda self, relation: columns  # type: ignore[method-assign]
    BigQueryAdapter.update_columns = lambda self, relation, cols: None  # type: ignore[method-assign]
    BigQueryAdapter.update_table_description = lambda self, *args, **kwargs: None  # type: ignore[method-assign]

    os.environ.setdefault("GA_GCP_PROJECT", "offline-project")
    os.environ["GA_TARGET"] = "bigquery"
    result = dbtRunner().invoke([
        "run", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--target", "bigquery",
        "--target-path", str(target_path), "--select", "config.materialized:incremental",
        "--no-populate-cache", "--no-partial-parse", "--quiet", "--threads", "1",
    ])
    if not result.success:
        print(result.exception, [(r.node.unique_id, r.message) for r in (result.result or [])], file=sys.stderr)
    return result.success


if __name__ == "__main__":
    if sys.argv[2] == "merge":
        sys.exit(0 if record_incremental_runs(Path(sys.argv[1])) else 1)
    sys.exit(0 if compile_offline(Path(sys.argv[1]), sys.argv[2], *(sys.argv[3:4] or [None]), sys.argv[4:] or None) else 1)
