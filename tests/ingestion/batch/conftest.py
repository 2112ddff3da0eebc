from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ingestion.settings import Settings

WriteExport = Callable[[str, str], Path]
ReadBronze = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def write_export(settings: Settings) -> WriteExport:
    """Write an export file under ``exports_dir`` as the simulator does."""

    def write(relative: str, text: str) -> Path:
        path = settings.exports_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def read_bronze(settings: Settings) -> ReadBronze:
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
def landing_files(settings: Settings) -> Callable[[], list[str]]:
    """Every file under the landing area, relative to it."""

    def files() -> list[str]:
        landing = settings.landing_dir
        if not landing.exists():
            return []
        return sorted(str(p.relative_to(landing)) for p in landing.rglob("*") if p.is_file())

    return files
