"""The warehouse built on DuckDB from the small simulation equals the simulator's ground truth,
every cell of every mart, and its tests and quality gate pass."""
from __future__ import annotations

import pytest

from ingestion.settings import Settings
from ingestion.simulator import Simulation
from tests.dbt import warehouse


@pytest.mark.parametrize("mart", sorted(warehouse.MARTS))
def test_every_cell_of_the_mart_equals_the_ground_truth(built: Settings, small_sim: Simulation, mart: str) -> None:
    got = warehouse.mart_rows(built.warehouse_path, mart)
    want = warehouse.truth_rows(small_sim, mart)
    assert want, f"the ground truth has no {mart} rows"
    assert warehouse.differences(got, want) == []


def test_the_data_exercises_what_the_marts_must_get_right(built: Settings) -> None:
    """Revenue in several currencies, days priced with the previous day's rate, repeated
    transactions, test accounts and unobservable retention: otherwise equality proves little."""
    rows = warehouse.query(built.warehouse_path, """
        select
            count(distinct currency) filter (where currency != 'USD') as currencies,
            count(*) filter (where fx_rate_date < purchase_date and currency != 'USD') as fallback_rates,
            count(*) filter (where purchase_events > 1) as repeated_transactions,
            (select count(*) from gold.dim_player where is_test_account and active_days > 0) as active_test_accounts,
            (select count(*) from gold.mart_retention where retained_d30 is null) as unobservable_cohorts,
            (select count(*) from gold.mart_retention where retained_d7 is not null) as observable_cohorts
        from gold.fct_purchases
    """)[0]
    assert rows["currencies"] >= 2
    assert rows["fallback_rates"] > 0
    assert rows["repeated_transactions"] > 0
    assert rows["active_test_accounts"] > 0
    assert rows["unobservable_cohorts"] > 0 and rows["observable_cohorts"] > 0


def test_the_quality_gate_ran_every_reconciliation(built: Settings) -> None:
    statuses = warehouse.run_results(built)
    for name in ("assert_every_bronze_event_in_silver", "assert_facts_hold_every_silver_event",
                 "assert_gold_revenue_equals_silver_revenue", "assert_no_fact_row_without_its_dimensions",
                 "assert_every_purchase_currency_has_a_rate"):
        assert statuses.get(name) == "pass", (name, statuses.get(name))
    # the simulated events are dated in the simulation's past: the freshness check warns, never fails
    assert statuses.get("assert_bronze_events_are_fresh") in ("pass", "warn")


def test_silver_holds_each_valid_event_once(built: Settings, small_sim: Simulation) -> None:
    silver = warehouse.query(built.warehouse_path, "select event_id from silver.stg_bronze__game_events")
    assert sorted(r["event_id"] for r in silver) == sorted({e["event_id"] for e in small_sim.valid_events})


def test_the_flow_summary_analysis_still_runs(built: Settings) -> None:
    from flows.dbt import show

    rows = show("latest_daily_kpis", built, target="local")
    assert rows and {"activity_date", "game_id", "dau", "mau", "revenue_usd"} <= set(rows[0])


def test_the_key_tests_find_each_repeated_key_and_nothing_else(built: Settings, tmp_path) -> None:
    """The warehouse's `unique` and `unique_combination` tests (two passes on DuckDB: key hashes,
    then the keys themselves) fail on a repeated key, and count each repeated key once."""
    import json
    import shutil

    import duckdb

    copy = Settings(data_dir=tmp_path)
    shutil.copytree(built.landing_dir, copy.landing_dir)
    shutil.copyfile(built.warehouse_path, copy.warehouse_path)
    with duckdb.connect(str(copy.warehouse_path)) as con:
        for relation in ("silver.stg_bronze__game_events", "gold.fct_sessions"):
            con.execute(f"insert into {relation} select * from {relation} using sample 3 rows")
    selected = ["stg_bronze__game_events,test_name:unique", "fct_sessions,test_name:unique_combination",
                "fct_purchases,test_name:unique_combination"]
    warehouse.dbt(copy, "test", "--select", *selected, check=False)
    results = json.loads((warehouse.target_dir(copy) / "run_results.json").read_text())["results"]
    outcomes = {r["unique_id"].split(".")[2]: (r["status"], r["failures"]) for r in results
                if r["unique_id"].startswith("test.")}
    assert outcomes == {
        "unique_stg_bronze__game_events_event_id": ("fail", 3),
        "unique_combination_fct_sessions_game_id__session_id__activity_date": ("fail", 3),
        "unique_combination_fct_purchases_game_id__transaction_id": ("pass", 0),
    }


def test_the_not_null_and_relationship_tests_count_each_bad_row(built: Settings, tmp_path) -> None:
    """`not_null_columns` (one scan for a model's not-null columns) fails with the number of null
    cells, and `relationships_composite` (keys grouped before the join) with the number of rows
    whose key has no dimension row; a model without such rows passes."""
    import json
    import shutil

    import duckdb

    copy = Settings(data_dir=tmp_path)
    shutil.copytree(built.landing_dir, copy.landing_dir)
    shutil.copyfile(built.warehouse_path, copy.warehouse_path)
    with duckdb.connect(str(copy.warehouse_path)) as con:
        con.execute("""update gold.fct_sessions set player_id = null
                       where session_id in (select session_id from gold.fct_sessions order by session_id limit 2)""")
        con.execute("""update gold.fct_sessions set session_id = null
                       where session_id = (select max(session_id) from gold.fct_sessions)""")
        con.execute("""insert into gold.fct_level_attempts
                       select * replace ('nobody_' || (row_number() over () % 2) as player_id, event_id || '-orphan' as event_id)
                       from (select * from gold.fct_level_attempts limit 3)""")
    selected = ["fct_sessions,test_name:not_null_columns", "fct_purchases,test_name:not_null_columns",
                "fct_level_attempts,test_name:relationships_composite"]
    warehouse.dbt(copy, "test", "--select", *selected, check=False)
    results = json.loads((warehouse.target_dir(copy) / "run_results.json").read_text())["results"]
    outcomes = {r["unique_id"].split(".")[2].split("_game_id")[0]: (r["status"], r["failures"]) for r in results
                if r["unique_id"].startswith("test.")}
    nulls = warehouse.query(copy.warehouse_path, """
        select count(*) filter (where player_id is null) + count(*) filter (where session_id is null) as cells
        from gold.fct_sessions""")[0]["cells"]
    assert nulls >= 3
    assert outcomes == {
        "not_null_columns_fct_sessions": ("fail", nulls),
        "not_null_columns_fct_purchases": ("pass", 0),
        "relationships_composite_fct_level_attempts": ("fail", 3),
    }


def test_the_marts_required_columns_are_not_null_in_the_warehouse(built: Settings) -> None:
    """Not-null on the marts is a constraint of their contracts, enforced by the warehouse on
    write (a null fails the model), not a separate test."""
    rows = warehouse.query(built.warehouse_path, """
        select table_name, column_name from information_schema.columns
        where table_schema = 'gold' and table_name like 'mart_%' and is_nullable = 'NO'
    """)
    assert {(r["table_name"], r["column_name"]) for r in rows} == {
        ("mart_daily_kpis", c) for c in ("activity_date", "game_id", "dau", "mau", "revenue_usd", "ad_revenue_usd")
    } | {("mart_retention", c) for c in ("cohort_date", "game_id", "cohort_size")} | {
        ("mart_level_funnel", c) for c in ("game_id", "level")}


def test_the_hourly_gate_reconciles_the_recent_arrivals_and_the_daily_gate_everything(built: Settings, tmp_path) -> None:
    """With var reconcile_hours (the hourly deployments), the reconciliation of bronze with silver
    and of the facts with the dimensions covers what arrived in those hours and the event dates it
    carries: on intact data it passes (the facts' reconciliation too), a recent gap fails it, an old
    one does not. Without the var, both gaps fail the gate."""
    import json
    import shutil

    import duckdb

    copy = Settings(data_dir=tmp_path)
    shutil.copytree(built.landing_dir, copy.landing_dir)
    shutil.copyfile(built.warehouse_path, copy.warehouse_path)
    selected = ["assert_every_bronze_event_in_silver", "assert_no_fact_row_without_its_dimensions"]
    hourly = ["--vars", '{"reconcile_hours": 24}']

    def gate(*args: str, tests: list[str] = selected) -> dict[str, tuple[str, int]]:
        warehouse.dbt(copy, "test", "--select", *tests, *args, check=False)
        results = json.loads((warehouse.target_dir(copy) / "run_results.json").read_text())["results"]
        return {r["unique_id"].split(".")[2]: (r["status"], r["failures"]) for r in results if r["unique_id"].startswith("test.")}

    # the window cuts the history in two: the facts' counts on its dates still add up (transactions
    # first bought on them included), and so do the rest
    windowed = [*selected, "assert_facts_hold_every_silver_event"]
    assert gate(*hourly, tests=windowed) == {name: ("pass", 0) for name in windowed}
    with duckdb.connect(str(copy.warehouse_path)) as con:
        con.execute("set TimeZone = 'UTC'")
        # the simulated arrivals span days (late events): the hours reconciled are the last 24
        con.execute("""create temp table arrivals as
                       select event_id, max(ingested_at) as last_arrival, min(cast(timezone('UTC', event_timestamp) as date)) as event_date
                       from bronze.game_events group by event_id""")
        since, from_date = con.execute("""select max(last_arrival) - interval 24 hours,
                                                 (select min(event_date) from arrivals
                                                  where last_arrival >= (select max(last_arrival) - interval 24 hours from arrivals))
                                          from arrivals""").fetchone()
        # a gap of each age: an event missing from silver, a fact row without its player
        for arrived, dated in ((f">= '{since}'", f">= date '{from_date}'"), (f"< '{since}'", f"< date '{from_date}'")):
            deleted = con.execute(f"""delete from silver.stg_bronze__game_events where event_id = (
                                          select min(event_id) from arrivals where last_arrival {arrived})""").fetchall()
            inserted = con.execute(f"""insert into gold.fct_sessions
                                       select * replace ('nobody' as player_id, session_id || '-orphan' as session_id)
                                       from gold.fct_sessions where activity_date {dated} limit 1""").fetchall()
            assert deleted == [(1,)] and inserted == [(1,)], (arrived, dated)
    assert gate(*hourly) == {name: ("fail", 1) for name in selected}
    assert gate() == {name: ("fail", 2) for name in selected}
    wrong = warehouse.dbt(copy, "test", "--select", selected[0], "--vars", '{"reconcile_hours": "24h"}', check=False)
    assert wrong.returncode != 0 and "var reconcile_hours: a whole number of hours above 0, not '24h'" in wrong.stdout
