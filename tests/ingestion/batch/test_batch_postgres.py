"""Loads from the operational database: a real PostgreSQL server, the Beam direct runner, bronze
read back with DuckDB."""
from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

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
from ingestion.batch.database_reader import DatabaseRead, read_database
from ingestion.batch.export_reader import RawRow, RowRejected, type_row
from ingestion.batch.pipeline import VALID
from ingestion.batch.postgres import (
    KeyRange,
    SnapshotLost,
    begin_snapshot,
    import_snapshot,
    plan_ranges,
    ranges_from_boundaries,
    read_range,
)
from ingestion.batch.postgres_connection import DatabaseUnreachable, lineage
from ingestion.batch.sources import PLAYERS, SourceFile
from common.settings import BatchSettings
from simulator.operational_db import copy_rows, create_tables
from simulator.simulation import PLAYER_COLUMNS, STORE_ITEM_COLUMNS

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
    settings: BatchSettings, db_settings: BatchSettings, postgres_dsn: str, db_schema: str, read_bronze, landing_files
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
    db_settings: BatchSettings, postgres_dsn: str, db_schema: str, read_bronze
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
    db_settings: BatchSettings, sql, read_bronze
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


def test_bad_prices_are_rejected(db_settings: BatchSettings, sql, read_bronze):
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
    settings: BatchSettings, db_settings: BatchSettings, sql, read_bronze, landing_files
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


def test_unreachable_database_is_a_clear_error_and_writes_nothing(settings: BatchSettings, landing_files):
    port = free_port()
    unreachable = settings.model_copy(update={"postgres_dsn": f"postgresql://postgres@127.0.0.1:{port}/studio"})

    with pytest.raises(DatabaseUnreachable, match=re.escape(f"PostgreSQL database 'studio' on 127.0.0.1:{port}")):
        run_local("players", DAY, DAY, unreachable)
    assert landing_files() == []


def test_missing_table_is_a_clear_error(db_settings: BatchSettings, db_schema: str, landing_files):
    with pytest.raises(ValueError, match=f"table {db_schema}.store_items not found in PostgreSQL database 'studio'"):
        run_local("store_items", DAY, DAY, db_settings)
    assert landing_files() == []


def test_without_a_database_players_come_from_the_csv_extract(settings: BatchSettings, write_export, read_bronze):
    write_export("players.csv", "player_id,game_id,created_at,country,acquisition_channel,is_test_account,updated_at\n"
                 "p-1,g,2024-01-01T00:00:00Z,DE,organic,false,2024-01-01T00:00:00Z\n")
    assert run_local("players", DAY, DAY, settings).rows_loaded == 1
    assert read_bronze("players")[0][-1] == str(settings.exports_dir / "players.csv")


# ---------------------------------------------------------------------------------------------
# Cloud SQL: the connector with IAM database authentication


def test_a_cloud_sql_target_connects_through_the_connector_with_iam_authentication(monkeypatch: pytest.MonkeyPatch):
    """The real Connector, stopped at the Cloud SQL Admin API (the two calls it makes before any
    connection: instance metadata and the ephemeral certificate, which carries the IAM login
    token when IAM database authentication is asked for)."""
    import aiohttp
    import google.auth
    from google.cloud.sql.connector import Connector
    from google.cloud.sql.connector.client import CloudSQLClient
    from google.oauth2.credentials import Credentials

    from ingestion.batch import postgres_connection as postgres

    monkeypatch.setattr(google.auth, "default", lambda scopes=None, **_: (Credentials(token="t"), "studio-analytics"))
    monkeypatch.setattr(postgres, "_connector", None)
    admin_calls: list[tuple[str, ...]] = []
    connects: list[tuple[tuple, dict]] = []

    async def get_metadata(self, project: str, region: str, instance: str) -> dict:
        admin_calls.append(("connectSettings", project, region, instance))
        return {"ip_addresses": {"PRIVATE": "10.1.2.3"}, "server_ca_cert": "", "database_version": "POSTGRES_16"}

    async def get_ephemeral(self, project: str, instance: str, pub_key: str, enable_iam_auth: bool = False):
        admin_calls.append(("generateEphemeralCert", project, instance, f"iam={enable_iam_auth}"))
        raise aiohttp.ClientResponseError(None, (), status=403, message="stopped at the Admin API boundary")

    real_connect = Connector.connect

    def connect(self: Connector, *args: object, **kwargs: object):
        connects.append((args, dict(kwargs)))
        return real_connect(self, *args, **kwargs)

    monkeypatch.setattr(CloudSQLClient, "_get_metadata", get_metadata)
    monkeypatch.setattr(CloudSQLClient, "_get_ephemeral", get_ephemeral)
    monkeypatch.setattr(Connector, "connect", connect)
    target = postgres.CloudSql("studio-analytics:europe-west1:studio-db", "studio",
                               "ga-dataflow@studio-analytics.iam.gserviceaccount.com").target()
    try:
        with pytest.raises(DatabaseUnreachable, match=re.escape(
                "PostgreSQL database 'studio' on Cloud SQL instance studio-analytics:europe-west1:studio-db as "
                "ga-dataflow@studio-analytics.iam.gserviceaccount.com (IAM authentication)")):
            postgres.connect(target)
        connector = postgres._connector
        assert isinstance(connector, Connector) and connector._enable_iam_auth
    finally:
        if postgres._connector is not None:
            postgres._connector.close()

    [(args, kwargs)] = connects
    assert args == ("studio-analytics:europe-west1:studio-db", "psycopg")
    assert kwargs["user"] == "ga-dataflow@studio-analytics.iam.gserviceaccount.com" and kwargs["db"] == "studio"
    assert kwargs["enable_iam_auth"] is True and kwargs["ip_type"] == "private"
    assert "password" not in kwargs
    assert ("generateEphemeralCert", "studio-analytics", "studio-db", "iam=True") in admin_calls
    assert ("connectSettings", "studio-analytics", "europe-west1", "studio-db") in admin_calls


def test_cloud_sql_targets_name_their_database_without_a_dsn():
    from ingestion.batch.postgres_connection import CloudSql, describe_dsn

    database = CloudSql("domain.com:studio:europe-west1:studio-db", "studio", "sa@p.iam", "psc")
    assert CloudSql.parse(database.target()) == database
    assert describe_dsn(database.target()) == "database 'studio' on Cloud SQL instance domain.com:studio:europe-west1:studio-db"
    assert lineage(database.target(), "public", "players") == (
        "cloudsql://domain.com:studio:europe-west1:studio-db/studio/public.players")
    with pytest.raises(ValueError, match="IP type 'vpn'"):
        CloudSql("p:r:i", "studio", "sa@p.iam", "vpn")  # type: ignore[arg-type]


class CloudSqlInstance:
    """A Cloud SQL instance's server side, on loopback, around the local PostgreSQL: the Cloud SQL
    Admin API's two answers (the instance's metadata with its server CA; an ephemeral client
    certificate signed for the connector's key) and the instance's TLS endpoint on port 3307, which
    requires that client certificate and forwards to PostgreSQL. Only the Admin API calls are
    replaced; the connector's TLS, its psycopg proxy and psycopg run for real."""

    def __init__(self, postgres_dsn: str) -> None:
        import random
        import socket
        import ssl
        import tempfile
        import threading

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
        from psycopg.conninfo import conninfo_to_dict

        self.x509, self.hashes, self.serialization, self.NameOID = x509, hashes, serialization, NameOID
        self.ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ca = self.certificate("Test Cloud SQL CA", self.ca_key.public_key(), ca=True)
        server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        server = self.certificate("studio-analytics:studio-db", server_key.public_key())
        self.iam_requests: list[bool] = []
        parts = conninfo_to_dict(postgres_dsn)
        self.backend = (parts["host"], int(parts["port"]))
        # an address of its own in 127/8, so that port 3307 is free whatever else runs here
        self.ip = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.verify_mode = ssl.CERT_REQUIRED
        with tempfile.TemporaryDirectory() as folder:
            chain, key, ca = (Path(folder) / name for name in ("server.pem", "server.key", "ca.pem"))
            chain.write_bytes(server.public_bytes(serialization.Encoding.PEM))
            key.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
            ca.write_bytes(self.ca_pem.encode())
            context.load_cert_chain(chain, key)
            context.load_verify_locations(ca)
        self.context = context
        self.listener = socket.create_server((self.ip, 3307))
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def ca_pem(self) -> str:
        return self.ca.public_bytes(self.serialization.Encoding.PEM).decode()

    def certificate(self, name: str, public_key, ca: bool = False):
        from datetime import timedelta

        x509 = self.x509
        subject = x509.Name([x509.NameAttribute(self.NameOID.COMMON_NAME, name)])
        issuer = subject if ca else self.ca.subject
        now = datetime.now(timezone.utc)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
                .not_valid_after(now + timedelta(hours=1))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(self.ca_key, self.hashes.SHA256()))

    # the Cloud SQL Admin API (CloudSQLClient's two requests)
    async def get_metadata(self, client, project: str, region: str, instance: str) -> dict:
        assert (project, region, instance) == ("studio-analytics", "europe-west1", "studio-db")
        return {"ip_addresses": {"PRIVATE": [self.ip]}, "server_ca_cert": self.ca_pem,
                "database_version": "POSTGRES_18"}

    async def get_ephemeral(self, client, project: str, instance: str, pub_key: str, enable_iam_auth: bool = False):
        self.iam_requests.append(enable_iam_auth)
        key = self.serialization.load_pem_public_key(pub_key.encode())
        cert = self.certificate("ga-dataflow@studio-analytics.iam", key)
        return cert.public_bytes(self.serialization.Encoding.PEM).decode(), cert.not_valid_after_utc

    # the instance's endpoint
    def serve(self) -> None:
        import socket
        import threading

        while not self.stop:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            try:
                tls = self.context.wrap_socket(raw, server_side=True)
            except OSError:
                raw.close()
                continue
            backend = socket.create_connection(self.backend)
            threading.Thread(target=self.relay, args=(tls, backend), daemon=True).start()

    @staticmethod
    def relay(tls, backend) -> None:
        """Carry bytes both ways between the client's TLS socket and PostgreSQL. One thread owns
        the TLS socket: an OpenSSL connection must not be read and written from two threads."""
        import selectors

        peer = {tls: backend, backend: tls}
        try:
            with selectors.DefaultSelector() as selector:
                for end in peer:
                    selector.register(end, selectors.EVENT_READ)
                while True:
                    for key, _ in selector.select():
                        if not (data := key.fileobj.recv(65536)):
                            return
                        peer[key.fileobj].sendall(data)
                    while tls.pending():  # decrypted bytes a select on the raw socket cannot see
                        backend.sendall(tls.recv(65536))
        except OSError:
            pass
        finally:
            for end in peer:
                try:
                    end.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.stop = True
        self.listener.close()


@pytest.fixture
def cloud_sql(postgres_dsn: str, db_schema: str, monkeypatch: pytest.MonkeyPatch):
    import google.auth
    from google.cloud.sql.connector.client import CloudSQLClient
    from google.oauth2.credentials import Credentials

    from ingestion.batch import postgres_connection as postgres

    instance = CloudSqlInstance(postgres_dsn)
    monkeypatch.setattr(google.auth, "default", lambda scopes=None, **_: (Credentials(token="t"), "studio-analytics"))
    monkeypatch.setattr(CloudSQLClient, "_get_metadata", lambda client, *a: instance.get_metadata(client, *a))
    monkeypatch.setattr(CloudSQLClient, "_get_ephemeral", lambda client, *a, **k: instance.get_ephemeral(client, *a, **k))
    monkeypatch.setattr(postgres, "_connector", None)
    iam_user = "ga-dataflow@studio-analytics.iam"  # the service account, as Cloud SQL names its database user
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f'drop role if exists "{iam_user}"')
        connection.execute(f'create role "{iam_user}" login')
        connection.execute(f'grant usage on schema "{db_schema}" to "{iam_user}"')
        connection.execute(f'alter default privileges in schema "{db_schema}" grant select on tables to "{iam_user}"')
    try:
        yield instance
    finally:
        if postgres._connector is not None:
            postgres._connector.close()
        instance.close()
        with psycopg.connect(postgres_dsn, autocommit=True) as connection:
            connection.execute(f'drop owned by "{iam_user}"')
            connection.execute(f'drop role "{iam_user}"')


def test_a_dataflow_load_reads_cloud_sql_through_the_connector_as_its_iam_user(
    cloud_sql: CloudSqlInstance, postgres_dsn: str, db_schema: str, settings: BatchSettings, read_bronze
):
    """The options a Flex Template job receives (names only), read by the same pipeline as the local
    twin, through the real connector: TLS with an ephemeral certificate asked for with IAM
    authentication, psycopg connected as the service account's database user."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from ingestion.batch.load import run_to_landing
    from ingestion.batch.options import load_spec
    from ingestion.batch.postgres_connection import connect

    rows = [player(f"p-{i}") for i in range(1, 8)]
    load_operational(postgres_dsn, db_schema, rows)
    options = PipelineOptions([
        "--source", "players", "--cloudsql_instance", "studio-analytics:europe-west1:studio-db",
        "--cloudsql_database", "studio", "--cloudsql_user", "ga-dataflow@studio-analytics.iam.gserviceaccount.com",
        "--postgres_schema", db_schema, "--read_ranges", "3", "--sink", "local",
        "--landing_dir", str(settings.landing_dir), "--loaded_at", "2024-01-06T03:00:00Z",
    ])
    spec = load_spec(options)
    assert spec.database is not None

    with connect(spec.database.dsn) as connection:
        assert connection.execute("select current_user").fetchone() == ("ga-dataflow@studio-analytics.iam",)
    result = run_to_landing(spec, local_runner(), options, "DirectRunner")

    assert (result.rows_loaded, result.rows_rejected) == (7, 0)
    label = "cloudsql://studio-analytics:europe-west1:studio-db/studio/" + f"{db_schema}.players"
    assert sorted(row[0] for row in read_bronze("players")) == [f"p-{i}" for i in range(1, 8)]
    assert {row[-1] for row in read_bronze("players")} == {label}
    assert cloud_sql.iam_requests and all(cloud_sql.iam_requests)  # every certificate asked with IAM login


def test_a_studio_whose_games_share_ids_loads_every_player_and_item(
        db_settings: BatchSettings, postgres_dsn: str, db_schema: str, read_bronze):
    """The same player_id in two games, the same skus in every game: distinct keys per game, read in
    parallel ranges of player_id / sku, none rejected."""
    from simulator import SimulationConfig, simulate
    from simulator.operational_db import load_operational_tables

    sim = simulate(SimulationConfig(seed=3, days=3, players_per_game=40, shared_ids=True))
    assert len({p["player_id"] for p in sim.players}) < len(sim.players)
    assert len({i["sku"] for i in sim.store_items}) < len(sim.store_items)
    load_operational_tables(postgres_dsn, sim, db_schema)

    players = run_local("players", DAY, DAY, db_settings)
    items = run_local("store_items", DAY, DAY, db_settings)

    assert (players.rows_read, players.rows_loaded, players.rows_rejected) == (len(sim.players), len(sim.players), 0)
    assert (items.rows_read, items.rows_loaded, items.rows_rejected) == (len(sim.store_items), len(sim.store_items), 0)
    assert sorted(row[:2] for row in read_bronze("players")) == sorted((p["player_id"], p["game_id"]) for p in sim.players)
