"""The batch sources: for each, its typed schema, its key and where its rows come from.

A source is a small adapter: a :class:`BatchSource` names its columns (each with an Arrow type and
a parser), the columns that identify a row within one snapshot, a layout that turns a date window
into the export files to read and the bronze file each one lands in, and, for the tables of the
studio's operational database, the :class:`DatabaseTable` read in parallel key ranges. The
pipeline knows nothing about any particular source.

``players`` and ``store_items`` are read from PostgreSQL when a database is configured; their CSV
extract files (``players.csv``, ``store_items.csv``) remain a second way in, for a studio that can
only hand over extracts. ``fx_rates`` is a daily CSV export in a bucket.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from ingestion.batch.parsing import (
    FieldError,
    Parser,
    decimal_parser,
    non_negative,
    parse_bool,
    parse_currency,
    parse_date,
    parse_string,
    parse_timestamp,
    positive,
)

TIMESTAMP = pa.timestamp("us", tz="UTC")
# Money in USD: cents and below, exact. 18 digits fit a signed 64-bit integer of micro-dollars.
USD_AMOUNT = pa.decimal128(18, 6)
# An exchange rate: 9 decimal places (BigQuery NUMERIC) so weak currencies such as VND or IDR
# (0.00004 USD per unit) keep their significant digits.
FX_RATE = pa.decimal128(38, 9)

SNAPSHOT_FILE = "snapshot.parquet"
# the column of a daily export that holds the export date: each file holds that day's rows only,
# and BigQuery partitions the table by it
EXPORT_DATE = "date"

# Lineage columns every bronze row carries.
LINEAGE_FIELDS = (
    pa.field("_source", pa.string(), nullable=False),
    pa.field("_loaded_at", TIMESTAMP, nullable=False),
)


class SourceFileMissing(FileNotFoundError):
    """An export file (or folder) the load needs does not exist; the message names the path."""


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    parse: Parser
    required: bool = True

    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=not self.required)


@dataclass(frozen=True)
class SourceFile:
    """One export file to read, and the bronze file (within the source's folder) it lands in."""

    path: str
    bronze_file: str
    export_date: date | None = None


class FileLayout(Protocol):
    def files(self, exports_dir: str | Path, start: date, end: date) -> list[SourceFile]:
        """The export files to load for the window ``[start, end]``; raises SourceFileMissing."""
        ...


@dataclass(frozen=True)
class FullSnapshot:
    """One file that always holds the whole table (a database extract): the window is ignored and
    the file replaces the single bronze snapshot."""

    filename: str

    def files(self, exports_dir: str | Path, start: date, end: date) -> list[SourceFile]:
        path = FileSystems.join(str(exports_dir), self.filename)
        if not FileSystems.exists(path):
            raise SourceFileMissing(f"export file not found: {path}")
        return [SourceFile(path=path, bronze_file=SNAPSHOT_FILE)]


@dataclass(frozen=True)
class DailyFiles:
    """One file per export date, ``<folder>/<prefix>YYYY-MM-DD.csv``; each lands in its own bronze
    file ``date=YYYY-MM-DD.parquet``, replaced when that date is loaded again.

    The window selects the files whose date lies in ``[start, end]``; days without a file (weekends,
    days not exported yet) load nothing, so a wide window loads every export the folder holds. A
    missing folder is an error. Files whose name is not ``<prefix><valid date>.csv`` are ignored."""

    folder: str
    prefix: str

    def files(self, exports_dir: str | Path, start: date, end: date) -> list[SourceFile]:
        check_window(start, end)
        folder = FileSystems.join(str(exports_dir), self.folder)
        pattern = FileSystems.join(folder, f"{self.prefix}*.csv")
        [matched] = FileSystems.match([pattern])
        if not matched.metadata_list and not folder_exists(folder):
            raise SourceFileMissing(f"export folder not found: {folder}")
        found: list[SourceFile] = []
        for path in sorted(metadata.path for metadata in matched.metadata_list):
            day = export_date(path, self.prefix)
            if day is not None and start <= day <= end:
                found.append(SourceFile(path, daily_bronze_file(day), export_date=day))
        return found


def folder_exists(folder: str) -> bool:
    """A local folder exists as such; a bucket has no folder objects (``FileSystems.exists`` on
    ``gs://bucket/fx_rates`` asks for an object of that name, never there), so there a folder
    exists when an object's name starts with its prefix."""
    if FileSystems.exists(folder):
        return True
    [listed] = FileSystems.match([FileSystems.join(folder, "*")])
    return bool(listed.metadata_list)


def export_date(path: str, prefix: str) -> date | None:
    """The date in a daily export's file name, or None when the name does not carry one."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    match = re.fullmatch(re.escape(prefix) + r"(\d{4}-\d{2}-\d{2})\.csv", name)
    if match is None:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


def check_window(start: date, end: date) -> None:
    if start > end:
        raise ValueError(f"window start {start.isoformat()} is after end {end.isoformat()}")


def daily_bronze_file(day: date) -> str:
    return f"date={day.isoformat()}.parquet"


@dataclass(frozen=True)
class DatabaseTable:
    """A table of the operational database, read as one consistent snapshot in parallel ranges of
    ``split_key`` (an ordered, ideally indexed column of the source's key, so that every copy of a
    key falls in one range; rows whose split key is NULL are read as a range of their own so that
    they reach the rejected output). The snapshot replaces the bronze table."""

    table: str
    split_key: str
    bronze_file: str = SNAPSHOT_FILE


# A check over a whole typed row (after every field parsed), given the file's export date.
RowCheck = Callable[[Mapping[str, Any], "date | None"], None]


@dataclass(frozen=True)
class BatchSource:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    layout: FileLayout
    row_checks: tuple[RowCheck, ...] = ()
    database: DatabaseTable | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def schema(self) -> pa.Schema:
        """The bronze table: the typed columns, then the lineage columns."""
        return pa.schema([column.field() for column in self.columns] + list(LINEAGE_FIELDS))


# rejection kinds that are not a single field's parse error (ingestion.batch.parsing.FieldError.kind)
DUPLICATE_KEY = "duplicate_key"
WRONG_FIELD_COUNT = "wrong_field_count"


def missing_kind(source: BatchSource, column: str) -> str:
    """The rejection kind of a required column left empty: a key column is worse news."""
    return "null_key" if column in source.key else "null_value"


def key_of(source: BatchSource, row: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(row[name]) for name in source.key)


def duplicate_reason(source: BatchSource, key: tuple[str, ...], copies: int) -> str:
    named = ", ".join(f"{name}={value!r}" for name, value in zip(source.key, key))
    return (
        f"duplicate key {named}: {copies} rows share it in one snapshot; "
        "all copies rejected, none can be told to be the right one"
    )


def date_matches_export(row: Mapping[str, Any], export_date: date | None) -> None:
    """A daily file holds that day's rows only, so that reloading a date replaces all of it."""
    if export_date is not None and row[EXPORT_DATE] != export_date:
        raise FieldError(
            EXPORT_DATE, row[EXPORT_DATE].isoformat(), f"is not the file's export date {export_date.isoformat()}",
            "wrong_export_date",
        )


def studio_table(name: str, columns: tuple[Column, ...], key: tuple[str, ...], split_key: str) -> BatchSource:
    """A table of the studio's operational database, of the same name, with its CSV extract
    ``<name>.csv`` as a second way in."""
    return BatchSource(name=name, columns=columns, key=key, layout=FullSnapshot(f"{name}.csv"),
                       database=DatabaseTable(name, split_key=split_key))


def daily_export(name: str, columns: tuple[Column, ...], key: tuple[str, ...],
                 row_checks: tuple[RowCheck, ...]) -> BatchSource:
    """A daily CSV export: ``<name>/<name>_YYYY-MM-DD.csv``."""
    return BatchSource(name=name, columns=columns, key=key, layout=DailyFiles(folder=name, prefix=f"{name}_"),
                       row_checks=row_checks)


PLAYERS = studio_table(
    "players",
    columns=(
        Column("player_id", pa.string(), parse_string),
        Column("game_id", pa.string(), parse_string),
        Column("created_at", TIMESTAMP, parse_timestamp),
        Column("country", pa.string(), parse_string, required=False),
        Column("acquisition_channel", pa.string(), parse_string, required=False),
        Column("is_test_account", pa.bool_(), parse_bool),
        Column("updated_at", TIMESTAMP, parse_timestamp),
    ),
    key=("game_id", "player_id"),
    split_key="player_id",
)

STORE_ITEMS = studio_table(
    "store_items",
    columns=(
        Column("sku", pa.string(), parse_string),
        Column("game_id", pa.string(), parse_string),
        Column("item_name", pa.string(), parse_string),
        Column("item_type", pa.string(), parse_string),
        Column("list_price_usd", USD_AMOUNT, non_negative(decimal_parser(18, 6), kind="negative_price")),
        Column("updated_at", TIMESTAMP, parse_timestamp),
    ),
    key=("game_id", "sku"),
    split_key="sku",
)

FX_RATES = daily_export(
    "fx_rates",
    columns=(
        Column(EXPORT_DATE, pa.date32(), parse_date),
        Column("currency", pa.string(), parse_currency),
        Column("usd_per_unit", FX_RATE, positive(decimal_parser(38, 9), kind="negative_rate")),
    ),
    key=(EXPORT_DATE, "currency"),
    row_checks=(date_matches_export,),
)

BATCH_SOURCES: dict[str, BatchSource] = {s.name: s for s in (PLAYERS, STORE_ITEMS, FX_RATES)}


def get_source(name: str) -> BatchSource:
    try:
        return BATCH_SOURCES[name]
    except KeyError:
        raise ValueError(
            f"source {name!r} is not a batch source (expected one of {', '.join(BATCH_SOURCES)})"
        ) from None
