"""Reading a table of the operational database (PostgreSQL; Cloud SQL in production) as one
consistent snapshot, in parallel key ranges, as Arrow record batches of text.

Snapshot consistency: one planning transaction (REPEATABLE READ, READ ONLY) exports its snapshot
with ``pg_export_snapshot()`` and computes the key ranges inside it; every range reader opens its
own REPEATABLE READ transaction and imports that snapshot (``SET TRANSACTION SNAPSHOT``) before
reading. All ranges therefore see exactly the same committed state, whatever commits in between,
and the ranges partition the key space, so every row is read exactly once. A reader that can no
longer import the snapshot (the planning transaction has ended) fails loudly instead of reading a
newer state. A per-reader snapshot bounded by ``updated_at`` was rejected: a row updated after the
bound would be missing from every reader (its older version is no longer visible), silently.

How the readers connect, and how a database is named without its secrets: postgres_connection.py.

Values travel as text (``COPY (SELECT ...) TO STDOUT`` in CSV), rendered so that the pipeline's
parsers see the same forms as in the CSV extracts (ISO-8601 timestamps in UTC, ``true``/``false``);
typing and validation happen in the pipeline, so a column with a loose type in the database (text
holding a price) is checked exactly like an extract file.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import sql

from ingestion.batch.sources import TIMESTAMP, BatchSource, DatabaseTable

BATCH_ROWS = 50_000  # rows per record batch read from COPY


class SnapshotLost(RuntimeError):
    """A range reader could not import the planning transaction's snapshot."""


@dataclass(frozen=True)
class KeyRange:
    """``lower <= key < upper`` (None: unbounded), or the rows whose key is NULL."""

    lower: str | None = None
    upper: str | None = None
    null_keys: bool = False

    def describe(self) -> str:
        if self.null_keys:
            return "key is null"
        return f"[{self.lower!r}, {self.upper!r})"


@dataclass(frozen=True)
class RangeRead:
    """One unit of parallel work: a key range of a table, read in an exported snapshot."""

    snapshot_id: str
    key_range: KeyRange
    index: int


# ---------------------------------------------------------------------------------------------
# SQL (pure)


def ranges_from_boundaries(boundaries: Sequence[str]) -> list[KeyRange]:
    """Contiguous ranges covering every non-NULL key, split at the distinct sorted ``boundaries``,
    then the NULL-key range."""
    cuts = sorted(set(boundaries))
    edges: list[str | None] = [None, *cuts, None]
    ranges = [KeyRange(lower, upper) for lower, upper in zip(edges, edges[1:])]
    return [*ranges, KeyRange(null_keys=True)]


def boundaries_query(schema: str, table: DatabaseTable, parts: int) -> sql.Composed:
    """The ``parts - 1`` key values that cut the table into ranges of equal row counts."""
    fractions = [i / parts for i in range(1, parts)]
    return sql.SQL(
        "select percentile_disc({fractions}::float8[]) within group (order by {key}) "
        "from {table} where {key} is not null"
    ).format(
        fractions=sql.Literal(fractions),
        key=sql.Identifier(table.split_key),
        table=sql.Identifier(schema, table.table),
    )


def select_expression(name: str, arrow_type: pa.DataType) -> sql.Composable:
    """The column as text in the extracts' forms: JSON rendering for timestamps (ISO-8601 with the
    session's UTC offset) and booleans (true/false); plain text otherwise."""
    column = sql.Identifier(name)
    if arrow_type == TIMESTAMP or pa.types.is_boolean(arrow_type):
        return sql.SQL("to_json({}) #>> '{{}}'").format(column)
    return sql.SQL("{}::text").format(column)


def range_condition(key: str, key_range: KeyRange) -> sql.Composable:
    column = sql.Identifier(key)
    if key_range.null_keys:
        return sql.SQL("{} is null").format(column)
    conditions = [sql.SQL("{} is not null").format(column)]
    if key_range.lower is not None:
        conditions.append(sql.SQL("{} >= {}").format(column, sql.Literal(key_range.lower)))
    if key_range.upper is not None:
        conditions.append(sql.SQL("{} < {}").format(column, sql.Literal(key_range.upper)))
    return sql.SQL(" and ").join(conditions)


def copy_columns(source: BatchSource, table: DatabaseTable) -> list[str]:
    """The columns in the order COPY writes them: the split key first. The split key must be a
    column of the source's key: every copy of a key then shares its split key value, so it falls in
    one range and one batch, where the duplicate check sees all of them."""
    if table.split_key not in source.key:
        raise ValueError(f"source {source.name}: reads split by {table.split_key!r} need it to be a "
                         f"column of the source's key, which is {source.key}")
    return [table.split_key] + [c.name for c in source.columns if c.name != table.split_key]


def copy_range_statement(source: BatchSource, schema: str, table: DatabaseTable, key_range: KeyRange) -> sql.Composed:
    types = {c.name: c.type for c in source.columns}
    columns = sql.SQL(", ").join(select_expression(name, types[name]) for name in copy_columns(source, table))
    return sql.SQL(
        "copy (select {columns} from {table} where {condition} order by {key}) to stdout with (format csv)"
    ).format(
        columns=columns,
        table=sql.Identifier(schema, table.table),
        condition=range_condition(table.split_key, key_range),
        key=sql.Identifier(table.split_key),
    )


def text_table(csv_bytes: bytes, column_names: Sequence[str]) -> pa.Table:
    """COPY's CSV as an Arrow table of strings: unquoted empty is NULL, quoted empty is ''."""
    return pa_csv.read_csv(
        pa.py_buffer(csv_bytes),
        read_options=pa_csv.ReadOptions(column_names=list(column_names), use_threads=False),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in column_names},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )


# ---------------------------------------------------------------------------------------------
# planning and reading (I/O)


def begin_snapshot(connection: psycopg.Connection) -> str:
    """Open a REPEATABLE READ, READ ONLY transaction on ``connection`` and export its snapshot."""
    connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    connection.read_only = True
    row = connection.execute("select pg_export_snapshot()").fetchone()
    assert row is not None
    return str(row[0])


def plan_ranges(connection: psycopg.Connection, schema: str, table: DatabaseTable, parts: int) -> list[KeyRange]:
    """Key ranges of about equal row counts, computed inside the connection's current snapshot."""
    if parts < 1:
        raise ValueError(f"read ranges must be at least 1, got {parts}")
    if parts == 1:
        return ranges_from_boundaries([])
    row = connection.execute(boundaries_query(schema, table, parts)).fetchone()
    boundaries = [value for value in (row[0] if row and row[0] else []) if value is not None]
    return ranges_from_boundaries([str(value) for value in boundaries])


def import_snapshot(connection: psycopg.Connection, snapshot_id: str) -> None:
    connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    connection.read_only = True
    try:
        connection.execute(sql.SQL("set transaction snapshot {}").format(sql.Literal(snapshot_id)))
    except (psycopg.errors.InvalidParameterValue, psycopg.errors.UndefinedObject) as error:
        raise SnapshotLost(
            f"snapshot {snapshot_id} can no longer be imported ({str(error).strip()}): the planning "
            "transaction ended before every range was read; rerun the load"
        ) from None
    connection.execute("set local timezone = 'UTC'")


def first_field(line: bytes) -> str | None:
    """The first field of one CSV row as COPY writes it (None for NULL)."""
    text = line.decode("utf-8")
    if not text.startswith('"'):
        field = text.split(",", 1)[0].rstrip("\r\n")
        return field or None
    return next(csv.reader(io.StringIO(text)))[0]


def read_range(
    connection: psycopg.Connection,
    source: BatchSource,
    schema: str,
    table: DatabaseTable,
    key_range: KeyRange,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.Table]:
    """The range's rows, in key order, as tables of text columns of about ``batch_rows`` rows.

    COPY sends one message per row, so message boundaries are row boundaries; a batch is only cut
    where the key changes, so that every copy of a repeated key lands in the same batch."""
    statement = copy_range_statement(source, schema, table, key_range)
    names = copy_columns(source, table)
    chunks: list[bytes] = []
    last_key: str | None = None
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for data in copy:
            line = bytes(data)
            if len(chunks) >= batch_rows and not key_range.null_keys:
                if last_key is None:
                    last_key = first_field(chunks[-1])
                if first_field(line) != last_key:
                    yield text_table(b"".join(chunks), names)
                    chunks, last_key = [], None
            chunks.append(line)
    if chunks:
        yield text_table(b"".join(chunks), names)
