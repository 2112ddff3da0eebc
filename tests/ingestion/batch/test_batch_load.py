"""End-to-end loads on the direct runner: real export files in, bronze read back with DuckDB."""
from __future__ import annotations

import json
import re
import socket
from datetime import date, datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestion.batch.launch import SOURCES, LoadResult, run_local
from ingestion.batch.sources import BATCH_SOURCES, SourceFileMissing
from common.settings import BatchSettings

DAY = date(2024, 1, 5)  # a Friday
PLAYERS_HEADER = "player_id,game_id,created_at,country,acquisition_channel,is_test_account,updated_at\n"
STORE_ITEMS_HEADER = "sku,game_id,item_name,item_type,list_price_usd,updated_at\n"
FX_HEADER = "date,currency,usd_per_unit\n"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def rejected(read_bronze, source: str) -> list[tuple[str, dict[str, str]]]:
    """(reason, raw row) of the rejected rows of ``source``, in file order."""
    rows = read_bronze("batch_rejected", exclude=("_loaded_at",))
    ordered = sorted((r for r in rows if r[0] == source), key=lambda r: (r[3], r[4]))
    return [(reason, json.loads(raw)) for _, reason, raw, _, _ in ordered]


# ---------------------------------------------------------------------------------------------
# exact bronze contents


def test_players_snapshot_lands_row_for_row(settings: BatchSettings, write_export, read_bronze, landing_files):
    path = write_export(
        "players.csv",
        PLAYERS_HEADER
        + "p-2,tiny-tycoon,2024-01-02T08:30:00Z,FR,organic,false,2024-01-03T00:00:00Z\n"
        + 'p-1,tiny-tycoon,2024-01-01T23:59:59.250Z,,"paid, social",true,2024-01-04T12:00:00Z\n',
    )

    result = run_local("players", DAY, DAY, settings)

    assert result == LoadResult("players", "DirectRunner", None, rows_read=2, rows_loaded=2, rows_rejected=0)
    assert read_bronze("players") == [
        ("p-1", "tiny-tycoon", utc(2024, 1, 1, 23, 59, 59, 250000), None, "paid, social", True,
         utc(2024, 1, 4, 12), str(path)),
        ("p-2", "tiny-tycoon", utc(2024, 1, 2, 8, 30), "FR", "organic", False, utc(2024, 1, 3), str(path)),
    ]
    assert landing_files() == [
        "batch_loaded_files/_empty.parquet",
        "batch_loaded_files/players__snapshot.parquet",
        "batch_rejected/_empty.parquet",
        "batch_rejected/players__snapshot.parquet",
        "players/_empty.parquet",
        "players/snapshot.parquet",
    ]
    loaded_at = read_bronze("players", exclude=())[0][-1]
    assert abs(loaded_at - datetime.now(timezone.utc)).total_seconds() < 60


def test_store_items_keep_exact_decimal_prices(settings: BatchSettings, write_export, read_bronze):
    path = write_export(
        "store_items.csv",
        STORE_ITEMS_HEADER
        + "gems_100,tiny-tycoon,100 Gems,currency_pack,0.99,2024-01-01T00:00:00Z\n"
        + "starter,tiny-tycoon,Starter Pack,bundle,4.990001,2024-01-01T00:00:00Z\n"
        + "free_hat,tiny-tycoon,Free Hat,cosmetic,0,2024-01-02T00:00:00Z\n",
    )

    result = run_local("store_items", DAY, DAY, settings)

    assert (result.rows_loaded, result.rows_rejected) == (3, 0)
    assert read_bronze("store_items") == [
        ("free_hat", "tiny-tycoon", "Free Hat", "cosmetic", Decimal("0"), utc(2024, 1, 2), str(path)),
        ("gems_100", "tiny-tycoon", "100 Gems", "currency_pack", Decimal("0.99"), utc(2024, 1, 1), str(path)),
        ("starter", "tiny-tycoon", "Starter Pack", "bundle", Decimal("4.990001"), utc(2024, 1, 1), str(path)),
    ]
    schema = pq.read_schema(settings.landing_dir / "store_items" / "snapshot.parquet")
    assert schema.field("list_price_usd").type == pa.decimal128(18, 6)


def test_fx_rates_load_the_files_of_the_window_one_bronze_file_per_date(
    settings: BatchSettings, write_export, read_bronze, landing_files
):
    write_export("fx_rates/fx_rates_2024-01-04.csv", FX_HEADER + "2024-01-04,EUR,1.09\n")  # before
    friday = write_export(
        "fx_rates/fx_rates_2024-01-05.csv", FX_HEADER + "2024-01-05,EUR,1.0943\n2024-01-05,VND,0.000040983\n"
    )
    monday = write_export("fx_rates/fx_rates_2024-01-08.csv", FX_HEADER + "2024-01-08,EUR,1.0951\n")
    write_export("fx_rates/fx_rates_2024-01-09.csv", FX_HEADER + "2024-01-09,EUR,1.0900\n")  # after

    result = run_local("fx_rates", date(2024, 1, 5), date(2024, 1, 8), settings)

    assert (result.rows_loaded, result.rows_rejected) == (3, 0)
    assert read_bronze("fx_rates") == [
        (date(2024, 1, 5), "EUR", Decimal("1.0943"), str(friday)),
        (date(2024, 1, 5), "VND", Decimal("0.000040983"), str(friday)),
        (date(2024, 1, 8), "EUR", Decimal("1.0951"), str(monday)),
    ]
    assert [f for f in landing_files() if f.startswith("fx_rates/")] == [
        "fx_rates/_empty.parquet",
        "fx_rates/date=2024-01-05.parquet",
        "fx_rates/date=2024-01-08.parquet",
    ]
    schema = pq.read_schema(settings.landing_dir / "fx_rates" / "date=2024-01-05.parquet")
    assert schema.field("usd_per_unit").type == pa.decimal128(38, 9)


def test_reloading_a_date_replaces_only_that_date(settings: BatchSettings, write_export, read_bronze):
    write_export("fx_rates/fx_rates_2024-01-05.csv", FX_HEADER + "2024-01-05,EUR,1.0943\n")
    write_export("fx_rates/fx_rates_2024-01-08.csv", FX_HEADER + "2024-01-08,EUR,1.0951\n")
    run_local("fx_rates", date(2024, 1, 5), date(2024, 1, 8), settings)

    write_export(
        "fx_rates/fx_rates_2024-01-08.csv", FX_HEADER + "2024-01-08,EUR,1.0999\n2024-01-08,GBP,1.27\n"
    )
    run_local("fx_rates", date(2024, 1, 8), date(2024, 1, 8), settings)

    assert [row[:3] for row in read_bronze("fx_rates")] == [
        (date(2024, 1, 5), "EUR", Decimal("1.0943")),
        (date(2024, 1, 8), "EUR", Decimal("1.0999")),
        (date(2024, 1, 8), "GBP", Decimal("1.27")),
    ]


def test_a_rerun_leaves_bronze_as_one_run_does(settings: BatchSettings, write_export, read_bronze, landing_files):
    write_export(
        "players.csv",
        PLAYERS_HEADER
        + "p-1,tiny-tycoon,2024-01-01T00:00:00Z,DE,organic,false,2024-01-01T00:00:00Z\n"
        + ",tiny-tycoon,2024-01-01T00:00:00Z,DE,organic,false,2024-01-01T00:00:00Z\n",
    )
    first = run_local("players", DAY, DAY, settings)
    once = (read_bronze("players"), read_bronze("batch_rejected"), landing_files())

    second = run_local("players", DAY, DAY, settings)

    assert first == second
    assert (read_bronze("players"), read_bronze("batch_rejected"), landing_files()) == once


def test_sources_are_the_three_exports():
    assert SOURCES == ("players", "store_items", "fx_rates")
    assert set(SOURCES) == set(BATCH_SOURCES)


# ---------------------------------------------------------------------------------------------
# bad input: rejected with a reason, never dropped


def test_null_key_is_rejected(settings: BatchSettings, write_export, read_bronze):
    write_export(
        "players.csv",
        PLAYERS_HEADER
        + "p-1,tiny-tycoon,2024-01-01T00:00:00Z,DE,organic,false,2024-01-01T00:00:00Z\n"
        + ",tiny-tycoon,2024-01-01T00:00:00Z,DE,organic,false,2024-01-01T00:00:00Z\n",
    )

    result = run_local("players", DAY, DAY, settings)

    assert (result.rows_loaded, result.rows_rejected) == (1, 1)
    assert [row[0] for row in read_bronze("players")] == ["p-1"]
    [(reason, raw)] = rejected(read_bronze, "players")
    assert reason == "player_id '' is required but null or empty"
    assert raw["player_id"] == "" and raw["country"] == "DE"


def test_wrong_type_is_rejected(settings: BatchSettings, write_export, read_bronze):
    write_export(
        "store_items.csv",
        STORE_ITEMS_HEADER
        + "gems_100,tiny-tycoon,100 Gems,currency_pack,0.99,2024-01-01T00:00:00Z\n"
        + "gems_500,tiny-tycoon,500 Gems,currency_pack,four ninety-nine,2024-01-01T00:00:00Z\n",
    )

    result = run_local("store_items", DAY, DAY, settings)

    assert (result.rows_loaded, result.rows_rejected) == (1, 1)
    assert [(reason, raw["sku"]) for reason, raw in rejected(read_bronze, "store_items")] == [
        ("list_price_usd 'four ninety-nine' is not a decimal number", "gems_500")
    ]


def test_unknown_currency_is_rejected(settings: BatchSettings, write_export, read_bronze):
    write_export(
        "fx_rates/fx_rates_2024-01-05.csv",
        FX_HEADER + "2024-01-05,EUR,1.09\n2024-01-05,XYZ,2.5\n2024-01-05,gbp,1.27\n",
    )

    result = run_local("fx_rates", DAY, DAY, settings)

    assert (result.rows_loaded, result.rows_rejected) == (1, 2)
    assert [row[1] for row in read_bronze("fx_rates")] == ["EUR"]
    assert [reason for reason, _ in rejected(read_bronze, "fx_rates")] == [
        "currency 'XYZ' is not a known ISO 4217 currency code",
        "currency 'gbp' is not a known ISO 4217 currency code",
    ]


def test_negative_or_zero_fx_rate_is_rejected(settings: BatchSettings, write_export, read_bronze):
    write_export(
        "fx_rates/fx_rates_2024-01-05.csv",
        FX_HEADER + "2024-01-05,EUR,-1.09\n2024-01-05,GBP,0\n2024-01-05,JPY,0.0067\n",
    )

    result = run_local("fx_rates", DAY, DAY, settings)

    assert (result.rows_loaded, result.rows_rejected) == (1, 2)
    assert [row[1] for row in read_bronze("fx_rates")] == ["JPY"]
    assert [reason for reason, _ in rejected(read_bronze, "fx_rates")] == [
        "usd_per_unit '-1.09' is not greater than 0",
        "usd_per_unit '0' is not greater than 0",
    ]


def test_duplicated_key_rejects_every_copy(settings: BatchSettings, write_export, read_bronze):
    write_export(
        "fx_rates/fx_rates_2024-01-05.csv",
        FX_HEADER + "2024-01-05,EUR,1.09\n2024-01-05,GBP,1.27\n2024-01-05,EUR,1.10\n",
    )

    result = run_local("fx_rates", DAY, DAY, settings)

    assert (result.rows_loaded, result.rows_rejected) == (1, 2)
    assert [row[1] for row in read_bronze("fx_rates")] == ["GBP"]
    reasons = rejected(read_bronze, "fx_rates")
    assert [raw["usd_per_unit"] for _, raw in reasons] == ["1.09", "1.10"]
    assert {reason for reason, _ in reasons} == {
        "duplicate key date='2024-01-05', currency='EUR': 2 rows share it in one snapshot; "
        "all copies rejected, none can be told to be the right one"
    }


def test_duplicated_player_of_a_game_rejects_every_copy_and_the_same_id_in_another_game_loads(
    settings: BatchSettings, write_export, read_bronze
):
    write_export(
        "players.csv",
        PLAYERS_HEADER
        + "p-1,tiny-tycoon,2024-01-01T00:00:00Z,DE,organic,false,2024-01-01T00:00:00Z\n"
        + "p-1,tiny-tycoon,2024-01-01T00:00:00Z,FR,organic,false,2024-01-02T00:00:00Z\n"
        + "p-1,space-farm,2024-01-01T00:00:00Z,FR,organic,true,2024-01-02T00:00:00Z\n",
    )

    result = run_local("players", DAY, DAY, settings)

    assert (result.rows_loaded, result.rows_rejected) == (1, 2)
    assert [row[:2] for row in read_bronze("players")] == [("p-1", "space-farm")]
    assert [reason.split(":")[0] for reason, _ in rejected(read_bronze, "players")] == [
        "duplicate key game_id='tiny-tycoon', player_id='p-1'"
    ] * 2


def test_missing_snapshot_file_is_a_clear_error_and_writes_nothing(settings: BatchSettings, landing_files):
    expected = settings.exports_dir / "players.csv"
    with pytest.raises(SourceFileMissing, match=re.escape(f"export file not found: {expected}")):
        run_local("players", DAY, DAY, settings)
    assert landing_files() == []


def test_missing_fx_rates_folder_is_a_clear_error_and_writes_nothing(settings: BatchSettings, landing_files):
    settings.exports_dir.mkdir(parents=True)
    expected = settings.exports_dir / "fx_rates"

    with pytest.raises(SourceFileMissing, match=re.escape(f"export folder not found: {expected}")):
        run_local("fx_rates", DAY, DAY, settings)
    assert landing_files() == []


def test_a_window_without_fx_files_loads_nothing(settings: BatchSettings, write_export, landing_files):
    write_export("fx_rates/fx_rates_2024-01-05.csv", FX_HEADER + "2024-01-05,EUR,1.09\n")

    result = run_local("fx_rates", date(2024, 1, 6), date(2024, 1, 7), settings)  # a weekend

    assert (result.rows_loaded, result.rows_rejected) == (0, 0)
    assert landing_files() == []


def test_a_wide_window_loads_every_fx_export_and_ignores_other_files(
    settings: BatchSettings, write_export, read_bronze
):
    write_export("fx_rates/fx_rates_2024-01-05.csv", FX_HEADER + "2024-01-05,EUR,1.09\n")
    write_export("fx_rates/fx_rates_2024-01-08.csv", FX_HEADER + "2024-01-08,EUR,1.10\n")
    write_export("fx_rates/fx_rates_latest.csv", FX_HEADER + "2024-01-08,EUR,1.10\n")
    write_export("fx_rates/notes.txt", "not an export\n")

    result = run_local("fx_rates", date(2015, 1, 1), date(2030, 1, 1), settings)

    assert result.rows_loaded == 2
    assert [row[:2] for row in read_bronze("fx_rates")] == [(date(2024, 1, 5), "EUR"), (date(2024, 1, 8), "EUR")]


def test_window_start_after_end_is_a_clear_error(settings: BatchSettings, write_export):
    write_export("fx_rates/fx_rates_2024-01-05.csv", FX_HEADER + "2024-01-05,EUR,1.09\n")
    with pytest.raises(ValueError, match="window start 2024-01-08 is after end 2024-01-05"):
        run_local("fx_rates", date(2024, 1, 8), date(2024, 1, 5), settings)


def test_a_failed_load_leaves_bronze_untouched(settings: BatchSettings, write_export, read_bronze, landing_files):
    write_export(
        "players.csv", PLAYERS_HEADER + "p-1,g,2024-01-01T00:00:00Z,DE,o,false,2024-01-01T00:00:00Z\n"
    )
    run_local("players", DAY, DAY, settings)
    before = (read_bronze("players"), read_bronze("batch_rejected"), landing_files())
    write_export("players.csv", "player_id,game_id\np-2,g\n")

    with pytest.raises(Exception, match="header lacks column"):
        run_local("players", DAY, DAY, settings)

    assert (read_bronze("players"), read_bronze("batch_rejected"), landing_files()) == before


def test_unknown_source_is_a_clear_error(settings: BatchSettings):
    with pytest.raises(ValueError, match="source 'purchases' is not a batch source"):
        run_local("purchases", DAY, DAY, settings)


# ---------------------------------------------------------------------------------------------
# the local path stays local


def test_local_load_never_tries_prism_or_the_network(settings: BatchSettings, write_export, monkeypatch):
    from apache_beam.runners.portability import prism_runner

    def refuse(*args, **kwargs):
        raise AssertionError("the local load must not start the Prism runner or open a connection")

    monkeypatch.setattr(prism_runner.PrismRunner, "__init__", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    write_export("fx_rates/fx_rates_2024-01-05.csv", FX_HEADER + "2024-01-05,EUR,1.09\n")

    assert run_local("fx_rates", DAY, DAY, settings).rows_loaded == 1


# ---------------------------------------------------------------------------------------------
# every load reports its counts; a load that is mostly rejected fails loudly


def test_a_load_counts_rows_read_loaded_and_rejected_by_kind(settings: BatchSettings, write_export):
    write_export(
        "fx_rates/fx_rates_2024-01-05.csv",
        FX_HEADER + "2024-01-05,EUR,1.09\n2024-01-05,XXX,1.0\n2024-01-05,GBP,-1\n2024-01-05,CHF,1.1\n"
        + "2024-01-05,CHF,1.2\n,JPY,0.0067\n2024-01-04,SEK,0.09\n2024-01-05,NOK,abc\n2024-01-05,DKK\n",
    )

    result = run_local("fx_rates", DAY, DAY, settings)

    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (9, 1, 8)
    assert result.rejection_reasons == {"unknown_currency": 1, "negative_rate": 1, "duplicate_key": 2, "null_key": 1,
                                        "wrong_export_date": 1, "wrong_type": 1, "wrong_field_count": 1}


def test_check_load_fails_above_the_rejected_share_or_when_nothing_loads():
    from ingestion.batch.load import LoadRejected, check_load

    def load(read: int | None, loaded: int | None, rejected: int | None, **reasons: int) -> LoadResult:
        return LoadResult("players", "DirectRunner", None, read, loaded, rejected, reasons)

    check_load(load(100, 95, 5, null_key=5), 0.05)  # at the threshold
    check_load(load(0, 0, 0), 0.05)  # an empty source
    check_load(load(None, None, None), 0.05)  # a job whose counts are not known yet
    with pytest.raises(LoadRejected, match=re.escape(
            "batch load of players rejected more than 5.0%: 6 of 100 rows read rejected (6.0%); "
            "top reasons: duplicate_key 4, null_key 1, wrong_type 1")):
        check_load(load(100, 94, 6, wrong_type=1, duplicate_key=4, null_key=1), 0.05)
    with pytest.raises(LoadRejected, match=re.escape("batch load of players loaded no row: 3 of 3 rows read rejected")):
        check_load(load(3, 0, 3, duplicate_key=3), 1.0)
    with pytest.raises(ValueError, match="max_rejected_share must be between 0 and 1, not 5"):
        check_load(load(1, 1, 0), 5)


def test_an_entirely_rejected_load_fails_its_task_with_the_reasons(
        settings: BatchSettings, write_export, read_bronze, prefect_api: str, monkeypatch: pytest.MonkeyPatch):
    from prefect import flow

    from flows.parameters import PipelineParameters
    from flows.pipeline import ingest_batch

    monkeypatch.setenv("GA_DATA_DIR", str(settings.data_dir))
    write_export(
        "players.csv",
        PLAYERS_HEADER
        + "p-1,dragon_idle,2024-01-01T00:00:00Z,DE,organic,false,2024-01-01T00:00:00Z\n"
        + "p-1,dragon_idle,2024-01-01T00:00:00Z,FR,organic,false,2024-01-02T00:00:00Z\n"
        + ",dragon_idle,2024-01-01T00:00:00Z,FR,organic,false,2024-01-02T00:00:00Z\n",
    )

    @flow(name="one-batch-load")
    def one_load() -> LoadResult:
        return ingest_batch(source="players", start=DAY, end=DAY, params=PipelineParameters(sources=["players"]))

    state = one_load(return_state=True)

    assert state.is_failed()
    assert ("batch load of players loaded no row: 3 of 3 rows read rejected (100.0%); "
            "top reasons: duplicate_key 2, null_key 1") in state.message
    assert len(rejected(read_bronze, "players")) == 3  # the reasons stay in bronze for a look
    with pytest.raises(ValueError, match="max_rejected_share"):
        PipelineParameters(max_rejected_share=1.5)


def test_an_emptied_snapshot_empties_bronze_and_a_clean_rerun_replaces_the_rejected_rows(
        settings: BatchSettings, write_export, read_bronze):
    write_export("players.csv", PLAYERS_HEADER
                 + "p-1,dragon_idle,2024-01-01T00:00:00Z,DE,organic,false,2024-01-01T00:00:00Z\n"
                 + "p-2,dragon_idle,yesterday,DE,organic,false,2024-01-01T00:00:00Z\n")
    first = run_local("players", DAY, DAY, settings)
    assert (first.rows_loaded, first.rows_rejected) == (1, 1) and len(rejected(read_bronze, "players")) == 1

    write_export("players.csv", PLAYERS_HEADER + "p-1,dragon_idle,2024-01-01T00:00:00Z,DE,organic,false,2024-01-01T00:00:00Z\n")
    clean = run_local("players", DAY, DAY, settings)
    assert (clean.rows_loaded, clean.rows_rejected) == (1, 0) and rejected(read_bronze, "players") == []

    write_export("players.csv", PLAYERS_HEADER)
    emptied = run_local("players", DAY, DAY, settings)
    assert (emptied.rows_read, emptied.rows_loaded, emptied.rows_rejected) == (0, 0, 0)
    assert read_bronze("players") == [] and rejected(read_bronze, "players") == []


# ---------------------------------------------------------------------------------------------
# incremental windows: an hourly run loads only the exports new or changed since their last load


def test_an_hourly_run_after_a_daily_run_loads_only_new_or_changed_exports(
        settings: BatchSettings, write_export, read_bronze, landing_files):
    import os

    from ingestion.batch.load import LOADED_FILES_TABLE

    for day in (3, 4, 5):
        write_export(f"fx_rates/fx_rates_2024-01-0{day}.csv", FX_HEADER + f"2024-01-0{day},EUR,1.0{day}\n")
    daily = run_local("fx_rates", date(2023, 12, 29), date(2024, 1, 6), settings)
    assert daily.rows_read == 3
    loaded = {path: (settings.landing_dir / path).stat().st_mtime_ns for path in landing_files()}

    hourly = run_local("fx_rates", date(2023, 12, 29), date(2024, 1, 6), settings, only_changed=True)
    assert (hourly.rows_read, hourly.rows_loaded, hourly.rows_rejected) == (0, 0, 0)
    assert {path: (settings.landing_dir / path).stat().st_mtime_ns for path in landing_files()} == loaded

    # the 4th is exported again with a corrected rate, the 8th for the first time
    corrected = write_export("fx_rates/fx_rates_2024-01-04.csv", FX_HEADER + "2024-01-04,EUR,1.041\n")
    os.utime(corrected, (loaded_mtime := corrected.stat().st_mtime + 60, loaded_mtime))
    write_export("fx_rates/fx_rates_2024-01-08.csv", FX_HEADER + "2024-01-08,EUR,1.08\n")
    hourly = run_local("fx_rates", date(2023, 12, 29), date(2024, 1, 9), settings, only_changed=True)

    assert (hourly.rows_read, hourly.rows_loaded) == (2, 2)
    assert [row[:3] for row in read_bronze("fx_rates")] == [
        (date(2024, 1, d), "EUR", Decimal(rate)) for d, rate in ((3, "1.03"), (4, "1.041"), (5, "1.05"), (8, "1.08"))]
    rewritten = {path for path in landing_files()
                 if loaded.get(path) != (settings.landing_dir / path).stat().st_mtime_ns}
    assert rewritten == {f"{table}/{prefix}date=2024-01-0{d}.parquet" for d in (4, 8)
                         for table, prefix in (("fx_rates", ""), ("batch_rejected", "fx_rates__"),
                                               (LOADED_FILES_TABLE, "fx_rates__"))}
    again = run_local("fx_rates", date(2023, 12, 29), date(2024, 1, 9), settings, only_changed=True)
    assert again.rows_read == 0


def test_the_flow_parameters_choose_the_batch_window():
    from flows.parameters import EARLIEST, PipelineParameters

    today = date(2026, 3, 10)
    assert PipelineParameters().window(today) == (EARLIEST, date(2026, 3, 11))  # every export
    assert PipelineParameters(batch_days=3).window(today) == (date(2026, 3, 7), date(2026, 3, 11))  # a daily run
    assert PipelineParameters(batch_days=3, start=date(2026, 1, 1), end=date(2026, 1, 31)).window(today) == (
        date(2026, 1, 1), date(2026, 1, 31))  # a backfill's window wins
    assert PipelineParameters(changed_only=True).changed_only
    with pytest.raises(ValueError, match="changed_only: .* on target bigquery, set batch_days instead"):
        PipelineParameters(target="bigquery", changed_only=True)
    with pytest.raises(ValueError, match="batch_days"):
        PipelineParameters(batch_days=0)
