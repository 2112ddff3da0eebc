{{ config(tags=['quality_gate']) }}
-- Reconciliation of the incremental facts with silver, per event kind: every level event and ad
-- impression, every session-day, every transaction and every player-day of silver is in its fact, and
-- no fact holds more; and the per-player level totals add up to the level events. A gap means an
-- incremental run missed arrivals (or counted some twice). Hourly: the event dates the reconciled
-- hours' arrivals carry, and the transactions first bought on them; the level totals always in full.
with
{{ reconcile_window() }}

events as (

    select event_name, game_id, player_id, session_id, event_date
    from {{ ref('stg_telemetry__game_events') }}
    where {{ reconciled('event_date', 'date') }}

),

transactions as (

    select game_id, transaction_id
    from {{ ref('stg_telemetry__game_events') }}
    where event_name = 'purchase'
    group by game_id, transaction_id
    having {{ reconciled('min(event_date)', 'date') }}

),

expected as (

    select 'fct_level_attempts' as fact, count(*) as n_rows
    from events where event_name in ('level_start', 'level_complete', 'level_fail')
    union all
    select 'fct_ad_impressions', count(*) from events where event_name = 'ad_impression'
    union all
    select 'fct_sessions', count(*) from (
        select distinct game_id, session_id, event_date from events where event_name in ('session_start', 'session_end')
    ) as sessions
    union all
    select 'fct_purchases', count(*) from transactions
    union all
    select 'fct_player_activity_daily', count(*) from (
        select distinct game_id, player_id, event_date from events
    ) as player_days
    union all
    select 'fct_player_levels', count(*)
    from {{ ref('stg_telemetry__game_events') }}
    where event_name in ('level_start', 'level_complete', 'level_fail') and level is not null

),

actual as (

    select 'fct_level_attempts' as fact, count(*) as n_rows from {{ ref('fct_level_attempts') }}
    where {{ reconciled('event_date', 'date') }}
    union all
    select 'fct_ad_impressions', count(*) from {{ ref('fct_ad_impressions') }}
    where {{ reconciled('impression_date', 'date') }}
    union all
    select 'fct_sessions', count(*) from {{ ref('fct_sessions') }}
    where {{ reconciled('activity_date', 'date') }}
    union all
    select 'fct_purchases', count(*) from {{ ref('fct_purchases') }}
    where {{ reconciled('purchase_date', 'date') }}
    union all
    select 'fct_player_activity_daily', count(*) from {{ ref('fct_player_activity_daily') }}
    where {{ reconciled('activity_date', 'date') }}
    union all
    select 'fct_player_levels', sum(starts + completions + fails) from {{ ref('fct_player_levels') }}

)

select expected.fact, expected.n_rows as in_silver, actual.n_rows as in_fact
from expected
inner join actual on expected.fact = actual.fact
where expected.n_rows != actual.n_rows
