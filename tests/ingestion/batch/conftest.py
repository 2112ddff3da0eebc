from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest

from common.settings import BatchSettings

WriteExport = Callable[[str, str], Path]
ReadBronze = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
def settings(tmp_path: Path) -> BatchSettings:
    return BatchSettings(data_dir=tmp_path / "data")


@pytest.fixture
def write_export(settings: BatchSettings) -> WriteExport:
    """Write an export file under ``exports_dir`` as the simulator does."""

    def write(relative: str, text: str) -> Path:
        path = settings.exports_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def read_bronze(settings: BatchSettings) -> ReadBronze:
    """Every row of a landing-area table as DuckDB reads it (the warehouse's glob), sorted."""

    def read(table: str, exclude: tuple[str, ...] = ("_loaded_at",)) -> list[tuple[Any, ...]]:
        connection = duckdb.connect()
        connection.execute("set TimeZone = 'UTC'")
        columns = f"* exclude ({', '.join(exclude)})" if exclude else "*"
        glob = settings.landing_dir / table / "**" / "*.parquet"
        return connection.sql(
            f"select {columns} from read_parquet('{glob}', union_by_name = true) order by all"
        ).fetchall()

    return read


@pytest.fixture
def landing_files(settings: BatchSettings) -> Callable[[], list[str]]:
    """Every file under the landing area, relative to it."""

    def files() -> list[str]:
        landing = settings.landing_dir
        if not landing.exists():
            return []
        return sorted(str(p.relative_to(landing)) for p in landing.rglob("*") if p.is_file())

    return files


# ---------------------------------------------------------------------------------------------
# the operational database: one real PostgreSQL server per test session, one schema per test

BATCH_ENV = (
    "GA_POSTGRES_DSN", "GA_POSTGRES_SCHEMA", "GA_READ_RANGES", "GA_EXPORTS_URL", "GA_DATAFLOW_TEMPLATE_PATH",
    "GA_DATAFLOW_SDK_IMAGE", "GA_DATAFLOW_TEMP_LOCATION", "GA_DATAFLOW_SERVICE_ACCOUNT", "GA_DATAFLOW_MAX_WORKERS",
    "GA_CLOUDSQL_INSTANCE", "GA_CLOUDSQL_DATABASE", "GA_CLOUDSQL_USER", "GA_CLOUDSQL_IP_TYPE",
)


@pytest.fixture(autouse=True)
def _no_batch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's GA_* batch settings never leak into a test."""
    for name in BATCH_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def db_schema(postgres_dsn: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh schema for one test, dropped afterwards."""
    import psycopg

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6]
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f'create schema "{name}"')
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f'drop schema "{name}" cascade')


@pytest.fixture
def db_settings(settings: BatchSettings, postgres_dsn: str, db_schema: str) -> BatchSettings:
    """``settings`` reading players and store_items from the test's schema of the operational database."""
    return settings.model_copy(update={"postgres_dsn": postgres_dsn, "postgres_schema": db_schema, "read_ranges": 3})


@pytest.fixture
def sql(postgres_dsn: str, db_schema: str) -> Callable[..., None]:
    """Run statements in the test's schema (search_path set to it), committed."""
    import psycopg

    def run(*statements: str, params: Sequence[Sequence[Any]] | None = None) -> None:
        with psycopg.connect(postgres_dsn, autocommit=True) as connection:
            connection.execute(f'set search_path = "{db_schema}"')
            for statement in statements:
                if params is not None:
                    connection.cursor().executemany(statement, params)
                else:
                    connection.execute(statement)

    return run
