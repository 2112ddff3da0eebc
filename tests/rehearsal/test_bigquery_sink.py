"""The batch load's BigQuery sink replaces what each run owns, shown on the BigQuery emulator with
the sink's own load configurations and jobs (ingestion/batch/bigquery.py; the Beam write itself is
checked at the client boundary in tests/ingestion/batch/test_batch_bigquery.py): an empty snapshot
empties its table, a daily run replaces only the export dates it reads, and each run replaces its
source's earlier rejections in the one ``batch_rejected`` table, leaving the other sources'."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from google.cloud import bigquery

from ingestion.batch.bigquery import Destination, bronze_destination, rejected_destination
from ingestion.batch.sources import FX_RATES, PLAYERS, SourceFile, daily_bronze_file
from tests.rehearsal.conftest import PROJECT, Emulators, write_as_the_sink

DATASET = "sink_bronze"
LOADED_AT = datetime(2024, 1, 9, 3, tzinfo=timezone.utc)


def fx_file(day: date) -> SourceFile:
    return SourceFile(f"gs://studio-exports/fx_rates/fx_rates_{day.isoformat()}.csv", daily_bronze_file(day), day)


def run(client: bigquery.Client, destination: Destination, rows: Sequence[dict[str, Any]]) -> None:
    write_as_the_sink(client, f"{PROJECT}.{DATASET}.{destination.table}", destination, rows)


def select(client: bigquery.Client, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row.values()) for row in client.query(sql.replace("$", f"{PROJECT}.{DATASET}.")).result()]


def player(player_id: str) -> dict[str, Any]:
    return {"player_id": player_id, "game_id": "g", "created_at": LOADED_AT, "country": None,
            "acquisition_channel": None, "is_test_account": False, "updated_at": LOADED_AT,
            "_source": "postgres://studio/public.players", "_loaded_at": LOADED_AT}


def rate(day: date, usd: str) -> dict[str, Any]:
    return {"date": day, "currency": "EUR", "usd_per_unit": Decimal(usd), "_source": fx_file(day).path,
            "_loaded_at": LOADED_AT}


def rejection(source: str, file: str, line: int) -> dict[str, Any]:
    return {"source": source, "reason": "bad", "raw": "{}", "_source": file, "_line": line, "_loaded_at": LOADED_AT}


@pytest.fixture
def client(emulators: Emulators) -> bigquery.Client:
    emulators.bigquery.delete_dataset(f"{PROJECT}.{DATASET}", delete_contents=True, not_found_ok=True)
    emulators.bigquery.create_dataset(f"{PROJECT}.{DATASET}")
    return emulators.bigquery


def test_a_snapshot_without_a_valid_row_empties_its_table(client: bigquery.Client) -> None:
    run(client, bronze_destination(PLAYERS), [player("p-1"), player("p-2")])
    assert select(client, "select player_id from `$players` order by 1") == [("p-1",), ("p-2",)]

    run(client, bronze_destination(PLAYERS), [player("p-3")])
    assert select(client, "select player_id from `$players`") == [("p-3",)]

    run(client, bronze_destination(PLAYERS), [])
    assert select(client, "select count(*) from `$players`") == [(0,)]


def test_a_daily_run_replaces_only_the_export_dates_it_reads(client: bigquery.Client) -> None:
    first, second = date(2024, 1, 5), date(2024, 1, 8)
    run(client, bronze_destination(FX_RATES, [fx_file(first), fx_file(second)]),
        [rate(first, "1.09"), rate(second, "1.10")])

    run(client, bronze_destination(FX_RATES, [fx_file(second)]), [rate(second, "1.11")])
    assert select(client, "select date, usd_per_unit from `$fx_rates` order by 1") == [
        (first, Decimal("1.09")), (second, Decimal("1.11"))]

    run(client, bronze_destination(FX_RATES, [fx_file(second)]), [])  # the file now has no valid row
    assert select(client, "select date from `$fx_rates`") == [(first,)]


def test_each_run_replaces_its_source_s_rejections_and_no_other(client: bigquery.Client) -> None:
    database = "postgres://studio/public.players"
    jan5, jan8 = fx_file(date(2024, 1, 5)), fx_file(date(2024, 1, 8))
    run(client, rejected_destination(PLAYERS), [rejection("players", database, 0)] * 2)
    run(client, rejected_destination(FX_RATES, [jan5, jan8]),
        [rejection("fx_rates", jan5.path, 2), rejection("fx_rates", jan8.path, 3)])

    run(client, rejected_destination(PLAYERS), [])  # a clean rerun
    run(client, rejected_destination(FX_RATES, [jan8]), [rejection("fx_rates", jan8.path, 4)])

    assert select(client, "select source, _source, _line from `$batch_rejected` order by 1, 2") == [
        ("fx_rates", jan5.path, 2), ("fx_rates", jan8.path, 4)]
