"""The type-and-validate transform on its own, and the pure functions around it."""
from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from ingestion.batch.launch import local_runner
from ingestion.batch.parsing import FieldError, decimal_parser, parse_bool, parse_timestamp
from ingestion.batch.export_reader import RawRow, ValidateRows, check_header, raw_row, read_export
from ingestion.batch.pipeline import REJECTED, VALID
from ingestion.batch.sources import FX_RATES, PLAYERS, STORE_ITEMS, SourceFile

LOADED_AT = datetime(2024, 1, 6, 3, 0, tzinfo=timezone.utc)
FX_FILE = SourceFile("exports/fx_rates/fx_rates_2024-01-05.csv", "date=2024-01-05.parquet", date(2024, 1, 5))
ITEMS_FILE = SourceFile("exports/store_items.csv", "snapshot.parquet")


def fx_row(line: int, day: str, currency: str, rate: str) -> RawRow:
    return RawRow(FX_FILE, line, {"date": day, "currency": currency, "usd_per_unit": rate})


def reason_by_line(element: tuple[str, dict]) -> tuple[int, str]:
    _, rejected = element
    return rejected["_line"], rejected["reason"]


def test_validate_rows_types_valid_rows_and_rejects_the_rest_with_reasons():
    raw_rows = [
        fx_row(2, "2024-01-05", "EUR", "1.0943"),
        fx_row(3, "2024-01-05", "XYZ", "1.5"),
        fx_row(4, "2024-01-05", "GBP", "-1.27"),
        fx_row(5, "", "JPY", "0.0067"),
        fx_row(6, "2024-01-05", "CHF", "1.17"),
        fx_row(7, "2024-01-05", "CHF", "1.18"),
        fx_row(8, "2024-01-04", "SEK", "0.096"),
        fx_row(9, "05/01/2024", "NOK", "0.095"),
        fx_row(10, "2024-01-05", "CAD", "0.7466666666"),
        RawRow(FX_FILE, 11, {"date": "2024-01-05", "currency": "AUD"}, "row has 2 fields, header has 3"),
    ]
    with BeamTestPipeline(runner=local_runner()) as pipeline:
        outputs = pipeline | beam.Create(raw_rows) | ValidateRows(FX_RATES, LOADED_AT)
        assert_that(
            outputs[VALID],
            equal_to(
                [
                    (
                        "date=2024-01-05.parquet",
                        {
                            "date": date(2024, 1, 5),
                            "currency": "EUR",
                            "usd_per_unit": Decimal("1.094300000"),
                            "_source": FX_FILE.path,
                            "_loaded_at": LOADED_AT,
                        },
                    )
                ]
            ),
            label="valid",
        )
        assert_that(
            outputs[REJECTED] | beam.Map(reason_by_line),
            equal_to(
                [
                    (3, "currency 'XYZ' is not a known ISO 4217 currency code"),
                    (4, "usd_per_unit '-1.27' is not greater than 0"),
                    (5, "date '' is required but null or empty"),
                    (6, "duplicate key date='2024-01-05', currency='CHF': 2 rows share it in one "
                        "snapshot; all copies rejected, none can be told to be the right one"),
                    (7, "duplicate key date='2024-01-05', currency='CHF': 2 rows share it in one "
                        "snapshot; all copies rejected, none can be told to be the right one"),
                    (8, "date '2024-01-04' is not the file's export date 2024-01-05"),
                    (9, "date '05/01/2024' is not a date (expected YYYY-MM-DD)"),
                    (10, "usd_per_unit '0.7466666666' has more than 9 decimal places"),
                    (11, "row has 2 fields, header has 3"),
                ]
            ),
            label="rejected",
        )


def test_rejected_rows_carry_source_raw_json_and_lineage():
    raw = RawRow(
        ITEMS_FILE,
        2,
        {"sku": "hat", "game_id": "g", "item_name": "Hat", "item_type": "cosmetic",
         "list_price_usd": "1.99", "updated_at": "2024-01-01"},
    )
    with BeamTestPipeline(runner=local_runner()) as pipeline:
        outputs = pipeline | beam.Create([raw]) | ValidateRows(STORE_ITEMS, LOADED_AT)
        assert_that(outputs[VALID], equal_to([]), label="valid")
        assert_that(
            outputs[REJECTED],
            equal_to(
                [
                    (
                        "snapshot.parquet",
                        {
                            "source": "store_items",
                            "reason": "updated_at '2024-01-01' is not an ISO-8601 timestamp with a UTC "
                            "offset (e.g. 2024-01-31T12:00:00Z)",
                            "raw": json.dumps(raw.values),
                            "_source": ITEMS_FILE.path,
                            "_line": 2,
                            "_loaded_at": LOADED_AT,
                        },
                    )
                ]
            ),
            label="rejected",
        )


# ---------------------------------------------------------------------------------------------
# reading


def test_read_export_keeps_quoted_commas_skips_blank_lines_and_flags_short_rows(tmp_path: Path):
    path = tmp_path / "store_items.csv"
    path.write_text(
        "sku,game_id,item_name,item_type,list_price_usd,updated_at\n"
        'hat,g,"Hat, red",cosmetic,1.99,2024-01-01T00:00:00Z\n'
        "\n"
        "cap,g,Cap\n",
        encoding="utf-8",
    )
    file = SourceFile(str(path), "snapshot.parquet")

    rows = list(read_export(file, STORE_ITEMS))

    assert [(row.line, row.values.get("item_name"), row.problem) for row in rows] == [
        (2, "Hat, red", None),
        (4, "Cap", "row has 3 fields, header has 6"),
    ]


def test_header_must_hold_every_column():
    with pytest.raises(ValueError, match=r"players.csv: header lacks column\(s\) created_at"):
        check_header(PLAYERS, "players.csv", [c for c in PLAYERS.column_names if c != "created_at"])
    with pytest.raises(ValueError, match="players.csv: file is empty"):
        check_header(PLAYERS, "players.csv", None)


def test_long_row_keeps_its_extra_fields_in_the_raw_json():
    row = raw_row(FX_FILE, 3, ["date", "currency", "usd_per_unit"], ["2024-01-05", "EUR", "1.09", "x"])
    assert row.problem == "row has 4 fields, header has 3"
    assert row.values["_extra_fields"] == ["x"]


# ---------------------------------------------------------------------------------------------
# parsers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=timezone.utc)),
        ("2024-01-01T02:00:00.123456+02:00", datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=timezone.utc)),
        ("", None),
    ],
)
def test_parse_timestamp_returns_utc(text: str, expected: datetime | None):
    assert parse_timestamp("updated_at", text) == expected


@pytest.mark.parametrize("text", ["2024-01-01", "2024-01-01T00:00:00", "2024-13-01T00:00:00Z", "now"])
def test_parse_timestamp_rejects_dates_naive_times_and_nonsense(text: str):
    with pytest.raises(FieldError, match=f"updated_at '{text}'"):
        parse_timestamp("updated_at", text)


@pytest.mark.parametrize("text", ["True", "1", "yes"])
def test_parse_bool_accepts_only_true_and_false(text: str):
    assert (parse_bool("b", "true"), parse_bool("b", "false")) == (True, False)
    with pytest.raises(FieldError, match=f"b '{text}' is not a boolean"):
        parse_bool("b", text)


def test_decimals_are_exact_and_never_rounded():
    parse = decimal_parser(18, 6)
    assert parse("p", "0.1") == Decimal("0.1")
    assert parse("p", "4.9900000000") == Decimal("4.99")  # trailing zeros are not precision
    for text, problem in [
        ("4.9900001", "has more than 6 decimal places"),
        ("1e3", "is not a decimal number"),
        ("NaN", "is not a decimal number"),
        ("1234567890123", "does not fit decimal(18, 6)"),
    ]:
        with pytest.raises(FieldError, match=re.escape(f"p '{text}' {problem}")):
            parse("p", text)


# ---------------------------------------------------------------------------------------------
# one key per entity, everywhere

# the identity of each entity: every game has its own players, store items, orders and sessions
ENTITY_KEYS: dict[str, tuple[str, ...]] = {
    "player": ("game_id", "player_id"),
    "store_item": ("game_id", "sku"),
    "transaction": ("game_id", "transaction_id"),
    "session": ("game_id", "session_id"),
}


def dbt_model_tests(folder: str) -> dict[str, list[dict]]:
    """Model name -> its model-level data tests, from every yml under ``dbt/models/<folder>``."""
    import yaml

    from common.settings import REPO_ROOT

    found: dict[str, list[dict]] = {}
    for path in sorted((REPO_ROOT / "dbt" / "models" / folder).rglob("*.yml")):
        for model in yaml.safe_load(path.read_text()).get("models", []):
            found[model["name"]] = model.get("data_tests", [])
    return found


def test_every_layer_keys_each_entity_the_same_way(postgres_dsn: str) -> None:
    """The batch sources' keys, the operational tables' primary keys, the warehouse's key tests
    (silver, dimensions, facts) and every composite relationship agree on one key per entity."""
    import psycopg

    from ingestion.batch.sources import BATCH_SOURCES
    from simulator.operational_db import create_tables

    entity_of_source = {"players": "player", "store_items": "store_item"}
    assert {name: BATCH_SOURCES[name].key for name in entity_of_source} == {
        name: ENTITY_KEYS[entity] for name, entity in entity_of_source.items()}
    for name in entity_of_source:
        database = BATCH_SOURCES[name].database
        assert database is not None and database.split_key in BATCH_SOURCES[name].key

    schema = "keys_check"
    with psycopg.connect(postgres_dsn) as connection:
        create_tables(connection, schema)
        primary_keys = {
            table: tuple(columns) for table, columns in connection.execute(
                """select c.relname, array_agg(a.attname order by k.ordinality)
                   from pg_constraint p
                   join pg_class c on c.oid = p.conrelid
                   join pg_namespace n on n.oid = c.relnamespace
                   cross join unnest(p.conkey) with ordinality as k(attnum, ordinality)
                   join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum
                   where p.contype = 'p' and n.nspname = %s
                   group by c.relname""", (schema,))
        }
    assert primary_keys == {name: ENTITY_KEYS[entity] for name, entity in entity_of_source.items()}

    tests = dbt_model_tests("silver") | dbt_model_tests("gold")
    unique_keys = {
        model: tuple(test["unique_combination"]["arguments"]["columns"])
        for model, model_tests in tests.items() for test in model_tests
        if isinstance(test, dict) and "unique_combination" in test
    }
    assert {model: unique_keys.get(model) for model in (
        "stg_studio_db__players", "dim_player", "stg_studio_db__store_items", "dim_store_item", "fct_purchases")} == {
        "stg_studio_db__players": ENTITY_KEYS["player"], "dim_player": ENTITY_KEYS["player"],
        "stg_studio_db__store_items": ENTITY_KEYS["store_item"], "dim_store_item": ENTITY_KEYS["store_item"],
        "fct_purchases": ENTITY_KEYS["transaction"]}
    # a session is cut at UTC midnight in its fact: one row per session and day
    assert unique_keys["fct_sessions"] == (*ENTITY_KEYS["session"], "activity_date")

    key_of_dimension = {"ref('dim_player')": ENTITY_KEYS["player"], "ref('dim_store_item')": ENTITY_KEYS["store_item"]}
    relationships = [
        (model, test["relationships_composite"]["arguments"])
        for model, model_tests in tests.items() for test in model_tests
        if isinstance(test, dict) and "relationships_composite" in test
    ]
    assert {arguments["to"] for _, arguments in relationships} == set(key_of_dimension)
    for model, arguments in relationships:
        key = key_of_dimension[arguments["to"]]
        assert (tuple(arguments["columns"]), tuple(arguments["to_columns"])) == (key, key), model
