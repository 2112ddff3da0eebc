"""dbt warehouse benchmark on DuckDB: synthetic bronze of about 10 million events over 30 days.

(a) the full `dbt build` as the pipeline flow runs it (models and their data tests, from an empty
    warehouse) against a hand-written SQL script that computes the same three marts straight from
    bronze in one DuckDB connection (target: at most 2x); the marts of both are compared cell by
    cell; the ratio with the session's start counted is printed too;
(b) an hourly incremental `dbt run` with one new hour of events on 30 days of history, against a
    `dbt run --full-refresh` of the same data (target: at most 0.1).
Each dbt command runs in a new dbt session (flows.dbt.DbtSession) prepared as the flow prepares its
build while the batch loads run: the process started, the project parsed from the parse state the
flow image ships, dbt's macro templates compiled. That fixed start is printed on its own; unit tests
run in CI, not in production builds, so the build leaves them out as the flow does.

Bronze is generated directly as Parquet with DuckDB SQL, matching the landing area's schemas
(ingestion/streaming/rows.py, ingestion/batch/sources.py) and its layout once compacted (ingestion/streaming/compaction.py): duplicated deliveries, purchases sent twice,
events up to 5 days late, test accounts, five currencies with weekday FX rates.

    .venv/bin/python benchmarks/dbt_benchmark.py                  # 10M events
    .venv/bin/python benchmarks/dbt_benchmark.py --events 200000  # a quick run
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from flows.dbt import DbtSession  # noqa: E402
from ingestion.bronze import ensure_local_bronze  # noqa: E402
from ingestion.streaming.compaction import COMPACTED_PREFIX  # noqa: E402
from common.settings import OrchestrationSettings  # noqa: E402

DBT_DIR = REPO_ROOT / "dbt"
START = date(2026, 1, 1)
GAMES = 2
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "BRL")
MARTS = ("mart_daily_kpis", "mart_retention", "mart_level_funnel")


def generate_events(con: duckdb.DuckDBPyConnection, events: int, days: int) -> None:
    """Table `events`: the bronze rows (one row per delivery), deterministic from the row number."""
    players = max(50, events // 150)
    start = f"timestamptz '{START.isoformat()} 00:00:00+00'"
    con.execute(f"""
        create or replace table base as
        with numbers as (select range as i from range({events})),
        drawn as (
            select
                i,
                cast(hash(i, 1) % {players} as bigint) as player_num,
                hash(i, 2) % {days} as day_offset,
                hash(i, 3) % 86400000 as ms_of_day,
                cast(hash(i, 5) % 100 as bigint) as kind,
                cast(hash(i, 7) % 30 + 1 as bigint) as level,
                cast(hash(i, 8) % 100 as bigint) as late_draw,
                hash(i, 9) % (5 * 86400 - 3600) + 3600 as late_s,
                hash(i, 10) % 30 as delay_s,
                cast(hash(i, 11) % 100 as bigint) as dup_draw,
                hash(i, 12) % 4000000 as duration_ms,
                hash(i, 13) % 40000 + 100 as ad_micros,
                cast(hash(i, 14) % {len(CURRENCIES)} as bigint) as currency_num,
                cast(hash(i, 15) % 4 as bigint) as price_num
            from numbers
        )
        select
            *,
            {start} + to_days(cast(day_offset as integer)) + to_milliseconds(cast(ms_of_day as bigint)) as event_timestamp
        from drawn
    """)
    con.execute(f"""
        create or replace table events as
        with typed as (
            select
                i,
                md5(cast(i as varchar)) as h,
                'game_' || (player_num % {GAMES}) as game_id,
                'p_' || player_num as player_id,
                's_' || player_num || '_' || day_offset || '_' || (hash(i, 6) % 2) as session_id,
                case
                    when kind < 10 then 'session_start'
                    when kind < 20 then 'session_end'
                    when kind < 50 then 'level_start'
                    when kind < 70 then 'level_complete'
                    when kind < 80 then 'level_fail'
                    when kind < 97 then 'ad_impression'
                    else 'purchase'
                end as event_name,
                *
            from base
        ),
        with_params as (
            select
                *,
                case event_name
                    when 'session_start' then null
                    when 'session_end' then '{{"duration_s":' || printf('%.3f', duration_ms / 1000.0) || '}}'
                    when 'level_start' then '{{"level":' || level || '}}'
                    when 'ad_impression' then '{{"ad_network":"unity","placement":"banner_home","revenue_usd":'
                        || printf('%.6f', ad_micros / 1000000.0) || '}}'
                    when 'purchase' then '{{"transaction_id":"t_' || i || '","sku":"' || game_id || '.pack_' || price_num
                        || '","price":' || ['0.99', '4.99', '19.99', '99.99'][price_num + 1]
                        || ',"currency":"' || {list(CURRENCIES)}[currency_num + 1] || '"'
                        || case when price_num = 0 then ',"quantity":3' else '' end || '}}'
                    else '{{"level":' || level || ',"duration_s":' || printf('%.3f', duration_ms / 10000.0) || '}}'
                end as params,
                event_timestamp + to_seconds(cast(case when late_draw < 2 then late_s else delay_s end as bigint)) as publish_time
            from typed
        ),
        rows as (
            select
                substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-' || substr(h, 17, 4) || '-' || substr(h, 21, 12) as event_id,
                event_name, event_timestamp, game_id, player_id, session_id,
                'android' as platform, '1.4.2' as app_version, 'DE' as country, cast(1 as bigint) as schema_version,
                params, publish_time, i, dup_draw
            from with_params
        ),
        deliveries as (
            select *, 'm_' || (i // 20) as message_id, publish_time + interval 1 second as ingested_at from rows
            union all  -- the same event delivered again (redelivery)
            select *, 'm_' || (i // 20) || '_again', publish_time + interval 90 second from rows where dup_draw < 2
            union all  -- a purchase sent again with a new event_id, same transaction
            select
                substr(md5(event_id), 1, 8) || '-' || substr(event_id, 10), event_name, event_timestamp + interval 2 second,
                game_id, player_id, session_id, platform, app_version, country, schema_version, params,
                publish_time + interval 2 second, i, dup_draw, 'm_' || (i // 20) || '_resent', publish_time + interval 3 second
            from rows where event_name = 'purchase' and dup_draw between 2 and 6
        )
        select
            event_id, event_name, event_timestamp, game_id, player_id, session_id, platform, app_version, country,
            schema_version, params,
            '{{"event_id":"' || event_id || '","event_name":"' || event_name || '","game_id":"' || game_id
                || '","player_id":"' || player_id || '","params":' || coalesce(params, 'null') || '}}' as payload,
            message_id, publish_time, ingested_at
        from deliveries
    """)
    con.execute("drop table base")


def write_bronze(con: duckdb.DuckDBPyConnection, landing: Path, days: int, cut: datetime, until: datetime) -> None:
    """History (ingested before `cut`) laid out as the landing area holds it once the flow has
    compacted it (one folder per ingest day, one merged file in each), the batch tables, and the
    next hour's deliveries kept aside in `new_hour.parquet` next to the landing area."""
    ensure_local_bronze(landing)
    players = con.sql("select count(distinct player_id) from events").fetchall()[0][0]
    days_landed = con.sql(f"select distinct cast(timezone('UTC', ingested_at) as date) from events "
                          f"where ingested_at < timestamptz '{cut.isoformat()}' order by 1").fetchall()
    for (day,) in days_landed:
        folder = landing / "game_events" / day.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        con.execute(f"""
            copy (
                select * from events
                where ingested_at < timestamptz '{cut.isoformat()}' and cast(timezone('UTC', ingested_at) as date) = date '{day}'
            ) to '{folder / (COMPACTED_PREFIX + "history.parquet")}' (format parquet, compression zstd)
        """)
    con.execute(f"""
        copy (select * from events where ingested_at >= timestamptz '{cut.isoformat()}' and ingested_at < timestamptz '{until.isoformat()}')
        to '{landing.parent}/new_hour.parquet' (format parquet, compression zstd)
    """)
    loaded = f"timestamptz '{START.isoformat()} 00:00:00+00' + to_days({days})"
    con.execute(f"""
        copy (
            select distinct player_id, game_id, timestamptz '2025-12-01 00:00:00+00' as created_at, 'DE' as country,
                   'organic' as acquisition_channel, hash(player_id) % 100 < 3 as is_test_account,
                   timestamptz '2025-12-01 00:00:00+00' as updated_at, 'players.csv' as _source, {loaded} as _loaded_at
            from events
        ) to '{landing}/players/snapshot.parquet' (format parquet)
    """)
    con.execute(f"""
        copy (
            select game_id || '.pack_' || n as sku, game_id, 'Pack ' || n as item_name, 'currency_pack' as item_type,
                   cast(['0.99', '4.99', '19.99', '99.99'][n + 1] as decimal(18, 6)) as list_price_usd,
                   timestamptz '2025-12-01 00:00:00+00' as updated_at, 'store_items.csv' as _source, {loaded} as _loaded_at
            from (select distinct game_id from events), range(4) as r(n)
        ) to '{landing}/store_items/snapshot.parquet' (format parquet)
    """)
    con.execute(f"""
        copy (
            select cast(d as date) as date, currency,
                   cast(base * (1 + 0.01 * sin(day_number)) as decimal(38, 9)) as usd_per_unit,
                   'fx_rates_' || strftime(d, '%Y-%m-%d') || '.csv' as _source, {loaded} as _loaded_at
            from (select range as d, row_number() over () as day_number
                  from range(date '{(START - timedelta(days=7)).isoformat()}', date '{(START + timedelta(days=days + 7)).isoformat()}', interval 1 day)),
                 (values ('EUR', 1.0845), ('GBP', 1.2718), ('JPY', 0.00665), ('BRL', 0.2013)) as c(currency, base)
            where isodow(d) <= 5
        ) to '{landing}/fx_rates/rates.parquet' (format parquet)
    """)
    history = con.sql(f"select count(*) from events where ingested_at < timestamptz '{cut.isoformat()}'").fetchall()[0][0]
    print(f"  bronze: {history:,} deliveries in history, {players:,} players")


# The same three marts, by hand, straight from bronze: what an analyst would write without dbt.
HAND_WRITTEN = """
create schema if not exists hand;
create or replace temp table counted as
    with deduplicated as (
        select * from read_parquet('{landing}/game_events/**/*.parquet', union_by_name = true)
        qualify row_number() over (partition by event_id order by ingested_at, message_id) = 1
    ),
    test_accounts as (
        select game_id, player_id from read_parquet('{landing}/players/*.parquet') where is_test_account
    )
    select
        e.event_id, e.event_name, e.game_id, e.player_id, e.session_id, e.event_timestamp,
        cast(timezone('UTC', e.event_timestamp) as date) as day,
        try_cast(json_extract_string(e.params, '$.level') as bigint) as level,
        try_cast(json_extract_string(e.params, '$.duration_s') as decimal(38, 9)) as duration_s,
        json_extract_string(e.params, '$.transaction_id') as transaction_id,
        try_cast(json_extract_string(e.params, '$.price') as decimal(38, 9)) as price,
        json_extract_string(e.params, '$.currency') as currency,
        coalesce(try_cast(json_extract_string(e.params, '$.quantity') as bigint), 1) as quantity,
        try_cast(json_extract_string(e.params, '$.revenue_usd') as decimal(38, 9)) as ad_revenue
    from deduplicated e
    anti join test_accounts t on e.game_id = t.game_id and e.player_id = t.player_id;

create or replace temp table player_days as
    select distinct game_id, player_id, day from counted;
create or replace temp table cohorts as
    select game_id, player_id, min(day) as cohort_date from player_days group by all;

create or replace temp table purchases as
    with fx as (
        select currency, date, usd_per_unit from read_parquet('{landing}/fx_rates/*.parquet')
        union all select 'USD', date '1900-01-01', 1
    ),
    first_purchase as (
        select * from counted where event_name = 'purchase'
        qualify row_number() over (partition by game_id, transaction_id order by event_timestamp, event_id) = 1
    )
    select p.*, p.price * p.quantity * fx.usd_per_unit as amount_usd
    from first_purchase p
    asof left join fx on p.currency = fx.currency and p.day >= fx.date;

create or replace table hand.mart_daily_kpis as
    with daily as (
        select day, game_id, count(distinct player_id) as dau,
               count(distinct case when event_name = 'session_start' then session_id end) as sessions,
               sum(case when event_name = 'session_end' then duration_s end) as total_s,
               count(case when event_name = 'session_end' then 1 end) as ends,
               round(coalesce(sum(case when event_name = 'ad_impression' then ad_revenue end), 0), 2) as ad_revenue_usd
        from counted group by all
    ),
    revenue as (
        select day, game_id, round(sum(amount_usd), 2) as revenue_usd, count(distinct player_id) as payers
        from purchases group by all
    ),
    new_players as (select cohort_date as day, game_id, count(*) as new_players from cohorts group by all),
    mau as (
        select d.day, d.game_id, count(distinct p.player_id) as mau
        from daily d join player_days p on p.game_id = d.game_id and p.day between d.day - 29 and d.day
        group by all
    )
    select d.day as activity_date, d.game_id, d.dau, coalesce(n.new_players, 0) as new_players, m.mau,
           d.sessions,
           case when d.ends > 0 then round(d.total_s / d.ends, 2) end as avg_session_length_s,
           coalesce(r.revenue_usd, 0) as revenue_usd, coalesce(r.payers, 0) as payers, d.ad_revenue_usd,
           round((coalesce(r.revenue_usd, 0) + d.ad_revenue_usd) / d.dau, 4) as arpdau,
           case when r.payers > 0 then round(r.revenue_usd / r.payers, 4) end as arppu
    from daily d
    left join revenue r using (day, game_id)
    left join new_players n using (day, game_id)
    left join mau m using (day, game_id);

create or replace table hand.mart_retention as
    with last_day as (select max(day) as last_day from player_days),
    returned as (
        select c.cohort_date, c.game_id, p.day - c.cohort_date as n, count(*) as players
        from cohorts c join player_days p using (game_id, player_id)
        where p.day - c.cohort_date in (1, 7, 30) group by all
    ),
    sizes as (select cohort_date, game_id, count(*) as cohort_size from cohorts group by all)
    select s.cohort_date, s.game_id, s.cohort_size,
           case when s.cohort_date + 1 <= l.last_day then coalesce(r1.players, 0) end as retained_d1,
           case when s.cohort_date + 7 <= l.last_day then coalesce(r7.players, 0) end as retained_d7,
           case when s.cohort_date + 30 <= l.last_day then coalesce(r30.players, 0) end as retained_d30,
           round(retained_d1 / s.cohort_size, 4) as retention_d1,
           round(retained_d7 / s.cohort_size, 4) as retention_d7,
           round(retained_d30 / s.cohort_size, 4) as retention_d30
    from sizes s cross join last_day l
    left join returned r1 on r1.cohort_date = s.cohort_date and r1.game_id = s.game_id and r1.n = 1
    left join returned r7 on r7.cohort_date = s.cohort_date and r7.game_id = s.game_id and r7.n = 7
    left join returned r30 on r30.cohort_date = s.cohort_date and r30.game_id = s.game_id and r30.n = 30;

create or replace table hand.mart_level_funnel as
    select game_id, level,
           count(distinct case when event_name = 'level_start' then player_id end) as players_started,
           count(distinct case when event_name = 'level_complete' then player_id end) as players_completed,
           count(case when event_name = 'level_start' then 1 end) as attempts,
           count(case when event_name = 'level_fail' then 1 end) as fails,
           round(players_completed / nullif(players_started, 0), 4) as completion_rate
    from counted where event_name in ('level_start', 'level_complete', 'level_fail')
    group by all;
"""


def timed(label: str, action) -> float:
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    print(f"  {label}: {elapsed:.1f} s")
    return elapsed


def command(data_dir: Path, *args: str) -> list[str]:
    return [*args, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--target", "local",
            "--target-path", str(data_dir / "dbt-target")]


def prepared_session(settings: OrchestrationSettings, data_dir: Path) -> DbtSession:
    """A new dbt session, started and prepared as the flow prepares its build while the batch loads
    run (imports, the project parsed from the shipped parse state, macro templates compiled)."""
    session = DbtSession(settings).start()
    session.prepare(command(data_dir, "parse")).join()
    return session


def dbt(session: DbtSession, data_dir: Path, *args: str) -> None:
    """Run one dbt command in the session; print dbt's own execution time, which leaves out the
    process start-up and project parsing."""
    lines: list[str] = []
    results = data_dir / "dbt-target" / "run_results.json"
    results.unlink(missing_ok=True)
    code = session.run(command(data_dir, *args), on_log=lambda line: lines.append(line.message))
    if code != 0:
        raise SystemExit(f"dbt {' '.join(args)} failed:\n" + "\n".join(lines[-60:]))
    if results.exists():  # `dbt parse` leaves none
        run = json.loads(results.read_text())
        print(f"    dbt's own execution time: {run['elapsed_time']:.1f} s; slowest: " + ", ".join(
            f"{r['unique_id'].split('.')[-1]} {r['execution_time']:.2f}"
            for r in sorted(run["results"], key=lambda r: -r["execution_time"])[:4]))


def hand_written(data_dir: Path) -> None:
    with duckdb.connect(str(data_dir / "baseline.duckdb")) as con:
        con.execute("set TimeZone = 'UTC'")
        con.execute(HAND_WRITTEN.format(landing=data_dir / "landing"))


def compare_marts(data_dir: Path) -> list[str]:
    """Cell-by-cell differences between dbt's marts and the hand-written ones, as text."""
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        con.execute(f"attach '{data_dir / 'baseline.duckdb'}' as handdb (read_only)")
        out = []
        for mart in MARTS:
            # values compared as numbers: the hand-written ratios are doubles, the mart's exact decimals
            columns = [(r[0], r[1]) for r in con.sql(f"describe gold.{mart}").fetchall()]
            select = ", ".join(f"cast(cast({c} as double) as varchar) as {c}" if t.startswith("DECIMAL")
                               else f"cast({c} as varchar) as {c}" for c, t in columns)
            for a, b in ((f"gold.{mart}", f"handdb.hand.{mart}"), (f"handdb.hand.{mart}", f"gold.{mart}")):
                n = con.sql(f"select count(*) from (select {select} from {a} except all select {select} from {b})").fetchall()[0][0]
                if n:
                    out.append(f"{mart}: {n} rows of {a} not in {b}")
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000, help="events to generate (before redeliveries)")
    parser.add_argument("--days", type=int, default=30, help="days of history")
    parser.add_argument("--repeat", type=int, default=5, help="paired runs of each measurement (the median is reported)")
    parser.add_argument("--keep", type=Path, help="keep the data in this folder (default: a temporary one, removed)")
    args = parser.parse_args()

    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="ga-dbt-bench-"))
    if data_dir.exists():
        shutil.rmtree(data_dir)
    landing = data_dir / "landing"
    landing.mkdir(parents=True)
    end = datetime(START.year, START.month, START.day, tzinfo=timezone.utc) + timedelta(days=args.days)
    cut, until = end - timedelta(hours=1), end
    print(f"dbt benchmark: {args.events:,} events over {args.days} days, data in {data_dir}")
    try:
        with duckdb.connect() as con:
            con.execute("set TimeZone = 'UTC'")
            timed("generate bronze", lambda: (generate_events(con, args.events, args.days),
                                              write_bronze(con, landing, args.days, cut, until)))

        settings = OrchestrationSettings(data_dir=data_dir, target="local")
        with DbtSession(settings) as session:  # the parse state, as the flow image ships it
            dbt(session, data_dir, "parse")

        warehouse, history = data_dir / "warehouse.duckdb", data_dir / "warehouse-history.duckdb"
        new_hour, landed_hour = data_dir / "new_hour.parquet", landing / "game_events" / "new_hour.parquet"

        def in_new_session(label: str, *dbt_args: str) -> tuple[float, float]:
            """One dbt command in a new session prepared as the flow prepares its build: (the
            session's start, the command's time)."""
            sessions: list[DbtSession] = []
            start = timed("a new dbt session, prepared (in the flow: while the batch loads run)",
                          lambda: sessions.append(prepared_session(settings, data_dir)))
            with sessions[0] as session:
                return start, timed(label, lambda: dbt(session, data_dir, *dbt_args))

        # paired runs, each ratio from one pair; the median of the pairs is the figure (this
        # machine's speed drifts by up to a quarter between minutes)
        builds, hourly = [], []
        for round_ in range(1, args.repeat + 1):
            print(f"(a) full build, round {round_}")
            warehouse.unlink(missing_ok=True)
            baseline = timed("hand-written SQL, three marts from bronze", lambda: hand_written(data_dir))
            start, build = in_new_session("dbt build (models + data tests, empty warehouse)", "build", "--exclude",
                                          "tag:quality_gate", "--exclude-resource-type", "unit_test")
            builds.append((baseline, start, build))
            if round_ == 1:
                differences = compare_marts(data_dir)
                print(f"  marts identical to the hand-written ones: {'yes' if not differences else differences}")
                shutil.copyfile(warehouse, history)  # the 30 days of history, before the new hour
        for round_ in range(1, args.repeat + 1):
            print(f"(b) hourly incremental run, round {round_}")
            shutil.copyfile(history, warehouse)
            shutil.move(str(new_hour), str(landed_hour))
            incremental = in_new_session("dbt run, one new hour on the history", "run")[1]
            full = in_new_session("dbt run --full-refresh, same data", "run", "--full-refresh")[1]
            shutil.move(str(landed_hour), str(new_hour))
            hourly.append((full, incremental))

        size = warehouse.stat().st_size / 2**30
        print(f"  warehouse file: {size:.2f} GiB")
        print()
        for baseline, start, build in builds:
            print(f"(a) baseline {baseline:.1f} s, dbt build {build:.1f} s: ratio {build / baseline:.2f}x; "
                  f"with the session's start ({start:.1f} s): {(start + build) / baseline:.2f}x")
        for full, incremental in hourly:
            print(f"(b) full refresh {full:.1f} s, hourly incremental {incremental:.2f} s: ratio {incremental / full:.3f}")
        print(f"(a) median ratio {statistics.median(b / a for a, _, b in builds):.2f}x (target <= 2); with the "
              f"session's start {statistics.median((s + b) / a for a, s, b in builds):.2f}x")
        print(f"(b) median ratio {statistics.median(i / f for f, i in hourly):.3f} (target <= 0.1)")
    finally:
        if args.keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
