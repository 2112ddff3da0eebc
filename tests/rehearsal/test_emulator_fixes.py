"""Each fix deployments/local/bqemulator_launch.py applies to bqemulator, shown through the
BigQuery client on the running emulator: without the fix, each of these queries fails or returns
a wrong value (and the rehearsal's dbt build or mart comparison fails)."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from google.cloud import bigquery

from tests.rehearsal.conftest import PROJECT, Emulators

DATASET = "fixes"


def rows(emulators: Emulators, sql: str) -> list[tuple]:
    return [tuple(row.values()) for row in emulators.bigquery.query(sql).result()]


def test_a_quote_in_a_comment_does_not_corrupt_a_later_literal(emulators: Emulators) -> None:
    sql = """-- the studio's first day
             select cast('2026-01-01 00:00:00.000' as timestamp) as t, 3.25 as f"""
    assert rows(emulators, sql) == [(datetime(2026, 1, 1, tzinfo=timezone.utc), 3.25)]


def test_create_table_with_columns_as_a_parenthesised_select(emulators: Emulators) -> None:
    emulators.bigquery.create_dataset(f"{PROJECT}.{DATASET}", exists_ok=True)
    emulators.bigquery.query(f"""
        create or replace table `{PROJECT}.{DATASET}.contract` (game_id STRING, revenue NUMERIC)
        as ( select 'g' as game_id, cast('1.5' as numeric) as revenue )""").result()
    table = emulators.bigquery.get_table(f"{PROJECT}.{DATASET}.contract")
    assert [(f.name, f.field_type) for f in table.schema] == [("game_id", "STRING"), ("revenue", "NUMERIC")]
    assert rows(emulators, f"select * from `{PROJECT}.{DATASET}.contract`") == [("g", Decimal("1.5"))]


def test_numeric_and_bignumeric_keep_bigquery_s_scale(emulators: Emulators) -> None:
    [(third, rate, big)] = rows(emulators, """
        select cast(1 as numeric) / 3, cast('0.000040983' as numeric), cast('0.1234567891' as bignumeric)""")
    assert (third, rate, big) == (Decimal("0.333333333"), Decimal("0.000040983"), Decimal("0.1234567891"))


def test_a_load_job_of_json_rows(emulators: Emulators) -> None:
    emulators.bigquery.create_dataset(f"{PROJECT}.{DATASET}", exists_ok=True)
    config = bigquery.LoadJobConfig(schema=[bigquery.SchemaField("n", "INT64")],
                                    source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
                                    write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE)
    # load_table_from_json: a multipart upload, its media part typed */*
    emulators.bigquery.load_table_from_json([{"n": 1}, {"n": 2}], f"{PROJECT}.{DATASET}.loaded",
                                            job_config=config).result()
    assert rows(emulators, f"select sum(n) from `{PROJECT}.{DATASET}.loaded`") == [(3,)]
