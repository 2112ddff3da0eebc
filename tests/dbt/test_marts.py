"""The warehouse built on DuckDB from the long simulation (ids shared across games) equals the
simulator's ground truth, every cell of every mart, and its tests and quality gate pass."""
from __future__ import annotations

import pytest

from common.settings import OrchestrationSettings
from simulator import Simulation
from tests.dbt import warehouse


@pytest.mark.parametrize("mart", sorted(warehouse.MARTS))
def test_every_cell_of_the_mart_equals_the_ground_truth(built: OrchestrationSettings, long_sim: Simulation, mart: str) -> None:
    got = warehouse.mart_rows(built.warehouse_path, mart)
    want = warehouse.truth_rows(long_sim, mart)
    assert want, f"the ground truth has no {mart} rows"
    assert warehouse.differences(got, want) == []


def test_the_data_exercises_what_the_marts_must_get_right(built: OrchestrationSettings) -> None:
    """Revenue in several currencies, days priced with a rate several days old, repeated
    transactions, test accounts, players missing from the export, ids shared across games, money
    sums ending on half a cent, D30 retention and a binding MAU window: otherwise equality proves
    little."""
    rows = warehouse.query(built.warehouse_path, """
        with counted_purchases as (
            select purchases.* from gold.fct_purchases as purchases
            inner join gold.dim_player as players using (game_id, player_id)
            where not players.is_test_account
        ),
        counted_ads as (
            select impressions.* from gold.fct_ad_impressions as impressions
            inner join gold.dim_player as players using (game_id, player_id)
            where not players.is_test_account
        ),
        activity as (
            select activity.* from gold.fct_player_activity_daily as activity
            inner join gold.dim_player as players using (game_id, player_id)
            where not players.is_test_account
        )
        select
            (select count(distinct currency) filter (where currency != 'USD') from counted_purchases) as currencies,
            (select max(purchase_date - fx_rate_date) filter (where currency != 'USD') from counted_purchases) as oldest_rate_days,
            (select count(*) filter (where purchase_events > 1) from counted_purchases) as repeated_transactions,
            (select count(*) from gold.dim_player where is_test_account and active_days > 0) as active_test_accounts,
            (select count(*) from gold.dim_player where not is_in_players_export and active_days > 0) as unexported_players,
            (select count(*) from (select player_id from gold.dim_player group by player_id
                                   having count(distinct is_test_account) = 2)) as test_in_one_game_only,
            (select count(*) from (select transaction_id from counted_purchases group by transaction_id
                                   having count(distinct game_id) > 1)) as repeated_order_numbers,
            (select count(*) from (select sku from gold.dim_store_item group by sku
                                   having count(distinct game_id) > 1)) as shared_skus,
            (select count(*) from (select game_id, purchase_date from counted_purchases group by all
                                   having sum(amount_usd) % 0.01 = 0.005)) as half_cent_revenue_days,
            (select count(*) from (select game_id, impression_date from counted_ads group by all
                                   having sum(revenue_usd) % 0.01 = 0.005)) as half_cent_ad_days,
            (select count(*) from gold.mart_retention where retained_d30 > 0) as retained_d30_cohorts,
            (select count(*) from gold.mart_retention where retained_d30 is null) as unobservable_cohorts,
            -- player-days 30 days before a day of the data with no activity in between: that day's
            -- MAU leaves the player out, a 31-day window would not
            (select count(*) from (
                select activity_date, lead(activity_date) over (partition by game_id, player_id order by activity_date) as next_date
                from activity)
             where coalesce(next_date, date '9999-12-31') > activity_date + 30
                 and activity_date + 30 <= (select max(activity_date) from activity)) as mau_window_edges
    """)[0]
    assert rows["currencies"] >= 2
    assert rows["oldest_rate_days"] >= 4
    assert rows["repeated_transactions"] > 0
    assert rows["active_test_accounts"] > 0
    assert rows["unexported_players"] > 0
    assert rows["test_in_one_game_only"] > 0
    assert rows["repeated_order_numbers"] > 0 and rows["shared_skus"] > 0
    assert rows["half_cent_revenue_days"] > 0 and rows["half_cent_ad_days"] > 0
    assert rows["retained_d30_cohorts"] > 0 and rows["unobservable_cohorts"] > 0
    assert rows["mau_window_edges"] > 0


def test_the_quality_gate_ran_every_reconciliation(built: OrchestrationSettings) -> None:
    statuses = warehouse.run_results(built)
    for name in ("assert_every_bronze_event_in_silver", "assert_facts_hold_every_silver_event",
                 "assert_gold_revenue_equals_silver_revenue", "assert_no_fact_row_without_its_dimensions",
                 "assert_every_purchase_currency_has_a_rate"):
        assert statuses.get(name) == "pass", (name, statuses.get(name))
    # the simulated events are dated in the simulation's past: the freshness check warns, never fails
    assert statuses.get("assert_bronze_events_are_fresh") in ("pass", "warn")


def test_silver_holds_each_valid_event_once(built: OrchestrationSettings, long_sim: Simulation) -> None:
    silver = warehouse.query(built.warehouse_path, "select event_id from silver.stg_telemetry__game_events")
    assert sorted(r["event_id"] for r in silver) == sorted({e["event_id"] for e in long_sim.valid_events})


def test_the_flow_summary_analysis_still_runs(built: OrchestrationSettings) -> None:
    from flows.dbt import show

    rows = show("latest_daily_kpis", built, target="local")
    assert rows and {"activity_date", "game_id", "dau", "mau", "revenue_usd"} <= set(rows[0])


def test_the_key_tests_find_each_repeated_key_and_nothing_else(built: OrchestrationSettings, tmp_path) -> None:
    """The warehouse's `unique` and `unique_combination` tests (two passes on DuckDB: key hashes,
    then the keys themselves) fail on a repeated key, and count each repeated key once."""
    import json
    import shutil

    import duckdb

    copy = OrchestrationSettings(data_dir=tmp_path)
    shutil.copytree(built.landing_dir, copy.landing_dir)
    shutil.copyfile(built.warehouse_path, copy.warehouse_path)
    with duckdb.connect(str(copy.warehouse_path)) as con:
        for relation in ("silver.stg_telemetry__game_events", "gold.fct_sessions"):
            con.execute(f"insert into {relation} select * from {relation} using sample 3 rows")
    selected = ["stg_telemetry__game_events,test_name:unique", "fct_sessions,test_name:unique_combination",
                "fct_purchases,test_name:unique_combination"]
    warehouse.dbt(copy, "test", "--select", *selected, check=False)
    results = json.loads((warehouse.target_dir(copy) / "run_results.json").read_text())["results"]
    outcomes = {r["unique_id"].split(".")[2]: (r["status"], r["failures"]) for r in results
                if r["unique_id"].startswith("test.")}
    assert outcomes == {
        "unique_stg_telemetry__game_events_event_id": ("fail", 3),
        "unique_combination_fct_sessions_game_id__session_id__activity_date": ("fail", 3),
        "unique_combination_fct_purchases_game_id__transaction_id": ("pass", 0),
    }


def test_the_not_null_and_relationship_tests_count_each_bad_row(built: OrchestrationSettings, tmp_path) -> None:
    """`not_null_columns` (one scan for a model's not-null columns) fails with the number of null
    cells, and `relationships_composite` (keys grouped before the join) with the number of rows
    whose key has no dimension row; a model without such rows passes."""
    import json
    import shutil

    import duckdb

    copy = OrchestrationSettings(data_dir=tmp_path)
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


def test_the_marts_required_columns_are_not_null_in_the_warehouse(built: OrchestrationSettings) -> None:
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


def test_the_hourly_gate_reconciles_the_recent_arrivals_and_the_daily_gate_everything(built: OrchestrationSettings, tmp_path) -> None:
    """With var reconcile_hours (the hourly deployments), the reconciliation of bronze with silver
    and of the facts with the dimensions covers what arrived in those hours and the event dates it
    carries: on intact data it passes (the facts' reconciliation too), a recent gap fails it, an old
    one does not. Without the var, both gaps fail the gate."""
    import json
    import shutil

    import duckdb

    copy = OrchestrationSettings(data_dir=tmp_path)
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
            deleted = con.execute(f"""delete from silver.stg_telemetry__game_events where event_id = (
                                          select min(event_id) from arrivals where last_arrival {arrived})""").fetchall()
            inserted = con.execute(f"""insert into gold.fct_sessions
                                       select * replace ('nobody' as player_id, session_id || '-orphan' as session_id)
                                       from gold.fct_sessions where activity_date {dated} limit 1""").fetchall()
            assert deleted == [(1,)] and inserted == [(1,)], (arrived, dated)
    assert gate(*hourly) == {name: ("fail", 1) for name in selected}
    assert gate() == {name: ("fail", 2) for name in selected}
    wrong = warehouse.dbt(copy, "test", "--select", selected[0], "--vars", '{"reconcile_hours": "24h"}', check=False)
    assert wrong.returncode != 0 and "var reconcile_hours: a whole number of hours above 0, not '24h'" in wrong.stdout
