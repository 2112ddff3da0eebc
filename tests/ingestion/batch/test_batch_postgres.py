"""Loads from the operational database: a real PostgreSQL server, the Beam direct runner, bronze
read back with DuckDB."""
from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from decimal import Decimal

import apache_beam as beam
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from deployments.local.postgres import free_port
from ingestion.batch.batches import type_batch
from ingestion.batch.launch import LoadResult, local_runner, run_local
from ingestion.batch.pipeline import VALID, DatabaseRead, RawRow, RowRejected, read_database, type_row
from ingestion.batch.postgres import (
    DatabaseUnreachable,
    KeyRange,
    SnapshotLost,
    begin_snapshot,
    import_snapshot,
    lineage,
    plan_ranges,
    ranges_from_boundaries,
    read_range,
)
from ingestion.batch.sources import PLAYERS, SourceFile
from ingestion.settings import Settings
from ingestion.simulator.operational_db import copy_rows, create_tables
from ingestion.simulator.simulation import PLAYER_COLUMNS, STORE_ITEM_COLUMNS

DAY = date(2024, 1, 5)
LOADED_AT = datetime(2024, 1, 6, 3, 0, tzinfo=timezone.utc)
LOOSE_PLAYERS = (
    "create table players (player_id text, game_id text, created_at text, country text, "
    "acquisition_channel text, is_test_account text, updated_at timestamptz)"
)
INSERT_PLAYER = "insert into players values (%s, %s, %s, %s, %s, %s, %s)"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def player(player_id: str, country: str | None = "DE", test: bool = False, day: int = 1) -> dict:
    return {"player_id": player_id, "game_id": "tiny-tycoon", "created_at": utc(2024, 1, day, 8, 30),
            "country": country, "acquisition_channel": "organic", "is_test_account": test,
            "updated_at": utc(2024, 1, day + 1)}


def load_operational(dsn: str, schema: str, players: list[dict], items: list[dict] = ()) -> None:
    with psycopg.connect(dsn) as connection:
        create_tables(connection, schema)
        copy_rows(connection, "players", PLAYER_COLUMNS, players, schema)
        copy_rows(connection, "store_items", STORE_ITEM_COLUMNS, list(items), schema)


def rejected(read_bronze, source: str) -> list[tuple[str, dict]]:
    rows = read_bronze("batch_rejected")
    ordered = sorted((reason, raw) for src, reason, raw, _, _ in rows if src == source)
    return [(reason, json.loads(raw)) for reason, raw in ordered]


# ---------------------------------------------------------------------------------------------
# exact bronze contents


def test_players_table_lands_row_for_row_from_parallel_key_ranges(
    settings: Settings, db_settings: Settings, postgres_dsn: str, db_schema: str, read_bronze, landing_files
):
    rows = [player(f"p-{i}", country=None if i == 3 else "DE", test=i == 5, day=1 + i % 3) for i in range(1, 10)]
    load_operational(postgres_dsn, db_schema, rows)

    result = run_local("players", DAY, DAY, db_settings)

    assert result == LoadResult("players", "DirectRunner", None, rows_read=9, rows_loaded=9, rows_rejected=0)
    label = lineage(postgres_dsn, db_schema, "players")
    assert label == f"postgresql://127.0.0.1:{postgres_dsn.rsplit(':', 1)[1].split('/')[0]}/studio/{db_schema}.players"
    assert read_bronze("players") == [
        (r["player_id"], r["game_id"], r["created_at"], r["country"], r["acquisition_channel"],
         r["is_test_account"], r["updated_at"], label)
        for r in sorted(rows, key=lambda r: r["player_id"])
    ]
    assert landing_files() == [
        "batch_loaded_files/_empty.parquet",  # a database read has no export file to record
        "batch_rejected/_empty.parquet",
        "batch_rejected/players__snapshot.parquet",
        "players/_empty.parquet",
        "players/snapshot.parquet",
    ]
    assert pq.read_schema(settings.landing_dir / "players" / "snapshot.parquet") == PLAYERS.schema


def test_store_items_keep_exact_decimal_prices(
    db_settings: Settings, postgres_dsn: str, db_schema: str, read_bronze
):
    items = [
        {"sku": "gems_100", "game_id": "g", "item_name": "100 Gems", "item_type": "currency_pack",
         "list_price_usd": Decimal("0.99"), "updated_at": utc(2024, 1, 1)},
        {"sku": "starter", "game_id": "g", "item_name": "Starter, Pack \"1\"", "item_type": "bundle",
         "list_price_usd": Decimal("4.990001"), "updated_at": utc(2024, 1, 1, 12, 0, 0)},
        {"sku": "free_hat", "game_id": "g", "item_name": "Free Hat", "item_type": "cosmetic",
         "list_price_usd": Decimal("0"), "updated_at": utc(2024, 1, 2)},
    ]
    load_operational(postgres_dsn, db_schema, [], items)

    result = run_local("store_items", DAY, DAY, db_settings)

    assert (result.rows_loaded, result.rows_rejected) == (3, 0)
    label = lineage(postgres_dsn, db_schema, "store_items")
    assert read_bronze("store_items") == [
        ("free_hat", "g", "Free Hat", "cosmetic", Decimal("0"), utc(2024, 1, 2), label),
        ("gems_100", "g", "100 Gems", "currency_pack", Decimal("0.99"), utc(2024, 1, 1), label),
        ("starter", "g", 'Starter, Pack "1"', "bundle", Decimal("4.990001"), utc(2024, 1, 1, 12), label),
    ]


def test_read_database_transform_yields_typed_record_batches(postgres_dsn: str, db_schema: str):
    load_operational(postgres_dsn, db_schema, [player("p-1"), player("p-2", country=None)])
    read = DatabaseRead(postgres_dsn, db_schema, ranges=2)
    label = lineage(postgres_dsn, db_schema, "players")

    with BeamTestPipeline(runner=local_runner()) as pipeline:
        loaded = read_database(pipeline, PLAYERS, read, LOADED_AT)
        rows = loaded.valid | beam.FlatMap(lambda element: [(element[0], row) for row in element[1].to_pylist()])
        assert_that(
            rows,
            equal_to([("snapshot.parquet", {**player(pid, country), "_source": label, "_loaded_at": LOADED_AT})
                      for pid, country in (("p-1", "DE"), ("p-2", None))]),
            label=VALID,
        )
        assert_that(loaded.rejected, equal_to([]), label="rejected")


# ---------------------------------------------------------------------------------------------
# bad input: rejected with its reason, never dropped


def test_bad_rows_are_rejected_with_their_reasons(
    db_settings: Settings, sql, read_bronze
):
    ok = ("tiny-tycoon", "2024-01-01T00:00:00Z", "DE", "organic", "false", "2024-01-02T00:00:00Z")
    sql(LOOSE_PLAYERS)
    sql(INSERT_PLAYER, params=[
        ("p-1", *ok),
        (None, *ok),  # NULL key
        ("", *ok),  # empty key
        ("p-2", "tiny-tycoon", "yesterday", "DE", "organic", "maybe", "2024-01-02T00:00:00Z"),  # wrong types
        ("p-3", *ok),  # duplicated key
        ("p-3", "tiny-tycoon", "2024-01-01T00:00:00Z", "FR", "paid", "true", "2024-01-03T00:00:00Z"),
        ("p-4", "tiny-tycoon", "2024-02-30T00:00:00Z", "DE", "organic", "false", "2024-01-02T00:00:00Z"),
        ("p-5", "tiny-tycoon", "2024-01-01T02:00:00+02:00", None, "organic", "true", "2024-01-02T00:00:00Z"),
        ("p-6", "   ", "2024-01-01T00:00:00Z", "DE", "organic", "false", "2024-01-02T00:00:00Z"),
        ("p-7", "tiny-tycoon", "2024-01-01T00:00:00Z", "", "", "false", "2024-01-02T00:00:00Z"),
    ])

    result = run_local("players", DAY, DAY, db_settings)

    assert (result.rows_loaded, result.rows_rejected) == (3, 7)
    assert [row[:7] for row in read_bronze("players")] == [
        ("p-1", "tiny-tycoon", utc(2024, 1, 1), "DE", "organic", False, utc(2024, 1, 2)),
        ("p-5", "tiny-tycoon", utc(2024, 1, 1), None, "organic", True, utc(2024, 1, 2)),
        ("p-7", "tiny-tycoon", utc(2024, 1, 1), None, None, False, utc(2024, 1, 2)),
    ]
    duplicate = ("duplicate key game_id='tiny-tycoon', player_id='p-3': 2 rows share it in one snapshot; "
                 "all copies rejected, none can be told to be the right one")
    assert sorted((reason, str(raw["player_id"])) for reason, raw in rejected(read_bronze, "players")) == sorted([
        ("player_id None is required but null or empty", "None"),
        ("player_id '' is required but null or empty", ""),
        ("created_at 'yesterday' is not an ISO-8601 timestamp with a UTC offset (e.g. 2024-01-31T12:00:00Z); "
         "is_test_account 'maybe' is not a boolean (expected true or false)", "p-2"),
        (duplicate, "p-3"),
        (duplicate, "p-3"),
        ("created_at '2024-02-30T00:00:00Z' is not a valid calendar timestamp", "p-4"),
        ("game_id '   ' is required but null or empty", "p-6"),
    ])
    raw = next(raw for _, raw in rejected(read_bronze, "players") if raw["player_id"] == "p-2")
    assert raw == {"player_id": "p-2", "game_id": "tiny-tycoon", "created_at": "yesterday", "country": "DE",
                   "acquisition_channel": "organic", "is_test_account": "maybe",
                   "updated_at": "2024-01-02T00:00:00+00:00"}


def test_bad_prices_are_rejected(db_settings: Settings, sql, read_bronze):
    sql("create table store_items (sku text, game_id text, item_name text, item_type text, "
        "list_price_usd text, updated_at timestamptz)")
    sql("insert into store_items values (%s, 'g', 'Item', 'bundle', %s, '2024-01-01T00:00:00Z')", params=[
        ("a", "0.99"), ("b", "-1.00"), ("c", "four ninety-nine"), ("d", "1.0000001"), ("e", None),
    ])

    result = run_local("store_items", DAY, DAY, db_settings)

    assert (result.rows_loaded, result.rows_rejected) == (1, 4)
    assert [row[:5] for row in read_bronze("store_items")] == [("a", "g", "Item", "bundle", Decimal("0.99"))]
    assert [(raw["sku"], reason) for reason, raw in sorted(rejected(read_bronze, "store_items"),
                                                          key=lambda r: r[1]["sku"])] == [
        ("b", "list_price_usd '-1.00' is negative"),
        ("c", "list_price_usd 'four ninety-nine' is not a decimal number"),
        ("d", "list_price_usd '1.0000001' has more than 6 decimal places"),
        ("e", "list_price_usd None is required but null or empty"),
    ]


def test_vectorised_typing_agrees_with_row_by_row_typing():
    texts = pa.table({
        "player_id": ["p-1", "p-2", None, "  ", "日本", "p-6", "p-7", "p-8"],
        "game_id": ["g"] * 8,
        "created_at": ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.25+00:00", "2024-01-01T00:00:00Z",
                       "2024-01-01T00:00:00Z", "2024-01-01t01:00:00+01:00", "2023-02-29T00:00:00Z",
                       "2024-01-01", "2024-01-01T23:59:60Z"],
        "country": ["DE", None, "", " ", "FR", "DE", "DE", "DE"],
        "acquisition_channel": ["organic"] * 8,
        "is_test_account": ["true", "false", "true", "True", "false", None, "false", "false"],
        "updated_at": ["2024-01-02T00:00:00+00:00"] * 8,
    })
    file = SourceFile("db", "snapshot.parquet")

    typed = type_batch(PLAYERS, texts)

    expected_valid, expected_rejected = [], []
    for index, values in enumerate(texts.to_pylist()):
        try:
            row = type_row(PLAYERS, RawRow(file, 0, values), LOADED_AT)
        except RowRejected as error:
            expected_rejected.append((index, str(error), error.kind))
            continue
        expected_valid.append({k: v for k, v in row.items() if not k.startswith("_")})
    assert typed.valid.to_pylist() == expected_valid
    assert typed.rejected == expected_rejected
    assert {kind for _, _, kind in typed.rejected} == {"null_key", "wrong_type"}
    assert len(expected_valid) == 3 and typed.valid.schema == pa.schema([c.field() for c in PLAYERS.columns])


# ---------------------------------------------------------------------------------------------
# reruns, snapshots, ranges


def test_a_rerun_leaves_bronze_exactly_as_one_run_does(
    settings: Settings, db_settings: Settings, sql, read_bronze, landing_files
):
    sql(LOOSE_PLAYERS)
    sql(INSERT_PLAYER, params=[
        (f"p-{i:02d}", "g", "2024-01-01T00:00:00Z", "DE", "organic", "false", "2024-01-02T00:00:00Z")
        for i in range(20)
    ] + [(None, "g", "x", "DE", "organic", "false", "2024-01-02T00:00:00Z"),
         ("p-05", "g", "2024-01-01T00:00:00Z", "FR", "organic", "false", "2024-01-02T00:00:00Z")])
    first = run_local("players", DAY, DAY, db_settings)
    once = (read_bronze("players"), read_bronze("batch_rejected"), landing_files())

    second = run_local("players", DAY, DAY, db_settings)

    assert first == second == LoadResult("players", "DirectRunner", None, rows_read=22, rows_loaded=19, rows_rejected=3,
                                           rejection_reasons={"null_key": 1, "duplicate_key": 2})
    assert (read_bronze("players"), read_bronze("batch_rejected"), landing_files()) == once
    bronze = pq.read_table(settings.landing_dir / "players" / "snapshot.parquet")
    assert bronze.column("player_id").to_pylist() == sorted(f"p-{i:02d}" for i in range(20) if i != 5)


def test_range_readers_see_the_planned_snapshot_not_later_commits(postgres_dsn: str, db_schema: str, sql):
    load_operational(postgres_dsn, db_schema, [player("p-1"), player("p-2")])
    with psycopg.connect(postgres_dsn) as planner:
        snapshot = begin_snapshot(planner)
        sql("insert into players values ('p-3', 'g', now(), 'DE', 'organic', false, now())",
            "update players set country = 'FR' where player_id = 'p-1'",
            "delete from players where player_id = 'p-2'")
        with psycopg.connect(postgres_dsn) as reader:
            import_snapshot(reader, snapshot)
            [texts] = read_range(reader, PLAYERS, db_schema, PLAYERS.database, KeyRange())
        assert texts.select(["player_id", "country"]).to_pylist() == [
            {"player_id": "p-1", "country": "DE"}, {"player_id": "p-2", "country": "DE"}
        ]
    with psycopg.connect(postgres_dsn) as late:
        with pytest.raises(SnapshotLost, match=f"snapshot {re.escape(snapshot)} can no longer be imported"):
            import_snapshot(late, snapshot)


def test_key_ranges_read_every_row_once_including_null_keys(postgres_dsn: str, db_schema: str, sql):
    sql(LOOSE_PLAYERS)
    keys = [f"k{i:03d}" for i in range(50)] + ["k010", "k020"]
    sql(INSERT_PLAYER, params=[(key, "g", "", "", "", "", None) for key in keys] + [(None, "g", "", "", "", "", None)] * 2)

    with psycopg.connect(postgres_dsn) as connection:
        begin_snapshot(connection)
        ranges = plan_ranges(connection, db_schema, PLAYERS.database, 4)
        read = [t.column("player_id").to_pylist()
                for r in ranges for t in read_range(connection, PLAYERS, db_schema, PLAYERS.database, r, batch_rows=7)]

    assert len(ranges) == 5 and ranges[-1] == KeyRange(null_keys=True)
    assert [r.lower for r in ranges[1:-1]] == [r.upper for r in ranges[:-2]]  # contiguous
    assert sorted(k for batch in read for k in batch if k) == sorted(keys)
    assert sum(k is None for batch in read for k in batch) == 2
    # a batch is only cut where the key changes: both copies of k010 are in one batch
    assert any(batch.count("k010") == 2 for batch in read)


def test_ranges_from_boundaries_cover_the_key_space():
    assert ranges_from_boundaries(["m", "c", "m"]) == [
        KeyRange(None, "c"), KeyRange("c", "m"), KeyRange("m", None), KeyRange(null_keys=True)
    ]
    assert ranges_from_boundaries([]) == [KeyRange(None, None), KeyRange(null_keys=True)]


# ---------------------------------------------------------------------------------------------
# clear errors, nothing written


def test_unreachable_database_is_a_clear_error_and_writes_nothing(settings: Settings, landing_files):
    port = free_port()
    unreachable = settings.model_copy(update={"postgres_dsn": f"postgresql://postgres@127.0.0.1:{port}/studio"})

    with pytest.raises(DatabaseUnreachable, match=re.escape(f"PostgreSQL database 'studio' on 127.0.0.1:{port}")):
        run_local("players", DAY, DAY, unreachable)
    assert landing_files() == []


def test_missing_table_is_a_clear_error(db_settings: Settings, db_schema: str, landing_files):
    with pytest.raises(ValueError, match=f"table {db_schema}.store_items not found in PostgreSQL database 'studio'"):
        run_local("store_items", DAY, DAY, db_settings)
    assert landing_files() == []


def test_without_a_database_players_come_from_the_csv_extract(settings: Settings, write_export, read_bronze):
    write_export("players.csv", "player_id,game_id,created_at,country,acquisition_channel,is_test_account,updated_at\n"
                 "p-1,g,2024-01-01T00:00:00Z,DE,organic,false,2024-01-01T00:00:00Z\n")
    assert run_local("players", DAY, DAY, settings).rows_loaded == 1
    assert read_bronze("players")[0][-1] == str(settings.exports_dir / "players.csv")


def test_a_studio_whose_games_share_ids_loads_every_player_and_item(
        db_settings: Settings, postgres_dsn: str, db_schema: str, read_bronze):
    """The same player_id in two games, the same skus in every game: distinct keys per game, read in
    parallel ranges of player_id / sku, none rejected."""
    from ingestion.simulator import SimulationConfig, simulate
    from ingestion.simulator.operational_db import load_operational_tables

    sim = simulate(SimulationConfig(seed=3, days=3, players_per_game=40, shared_ids=True))
    assert len({p["player_id"] for p in sim.players}) < len(sim.players)
    assert len({i["sku"] for i in sim.store_items}) < len(sim.store_items)
    load_operational_tables(postgres_dsn, sim, db_schema)

    players = run_local("players", DAY, DAY, db_settings)
    items = run_local("store_items", DAY, DAY, db_settings)

    assert (players.rows_read, players.rows_loaded, players.rows_rejected) == (len(sim.players), len(sim.players), 0)
    assert (items.rows_read, items.rows_loaded, items.rows_rejected) == (len(sim.store_items), len(sim.store_items), 0)
    assert sorted(row[:2] for row in read_bronze("players")) == sorted((p["player_id"], p["game_id"]) for p in sim.players)
