"""The studio's operational database, as the simulator fills it: the ``players`` and ``store_items``
tables (Cloud SQL for PostgreSQL in production; a throwaway local server in the main job and the
tests), loaded with COPY from the simulated rows. The CSV exports stay as they are."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql

from simulator.simulation import PLAYER_COLUMNS, STORE_ITEM_COLUMNS, Simulation

# the operational schema: typed, keyed; the batch load still validates every row it reads
TABLE_DDL: dict[str, str] = {
    "players": """
        create table {table} (
            game_id             text not null,
            player_id           text not null,
            created_at          timestamptz not null,
            country             text,
            acquisition_channel text,
            is_test_account     boolean not null,
            updated_at          timestamptz not null,
            primary key (game_id, player_id)
        )""",
    "store_items": """
        create table {table} (
            game_id        text not null,
            sku            text not null,
            item_name      text not null,
            item_type      text not null,
            list_price_usd numeric(18, 6) not null,
            updated_at     timestamptz not null,
            primary key (game_id, sku)
        )""",
}
# the batch load reads each table in ranges of its split key (ingestion.batch.sources)
TABLE_INDEXES: dict[str, str] = {
    "players": "create index on {table} (player_id)",
    "store_items": "create index on {table} (sku)",
}
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {"players": PLAYER_COLUMNS, "store_items": STORE_ITEM_COLUMNS}


def create_tables(connection: psycopg.Connection, schema: str = "public") -> None:
    """(Re)create the operational tables in ``schema``, empty."""
    connection.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    for table, ddl in TABLE_DDL.items():
        name = sql.Identifier(schema, table)
        connection.execute(sql.SQL("drop table if exists {}").format(name))
        connection.execute(sql.SQL(ddl).format(table=name))
        connection.execute(sql.SQL(TABLE_INDEXES[table]).format(table=name))


def copy_rows(
    connection: psycopg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    schema: str = "public",
) -> int:
    """COPY ``rows`` (dicts by column name, Python values) into ``schema.table``; returns the count."""
    statement = sql.SQL("copy {} ({}) from stdin").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    count = 0
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[column] for column in columns])
            count += 1
    return count


def load_operational_tables(dsn: str, simulation: Simulation, schema: str = "public") -> dict[str, int]:
    """Create ``players`` and ``store_items`` in the database at ``dsn`` and load the simulation's
    rows into them, in one transaction; returns the row count per table."""
    with psycopg.connect(dsn) as connection:
        create_tables(connection, schema)
        counts = {
            "players": copy_rows(connection, "players", PLAYER_COLUMNS, simulation.players, schema),
            "store_items": copy_rows(connection, "store_items", STORE_ITEM_COLUMNS, simulation.store_items, schema),
        }
        for table in counts:
            connection.execute(sql.SQL("analyze {}").format(sql.Identifier(schema, table)))
    return counts
