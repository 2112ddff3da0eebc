{{ config(**date_partitioned_incremental(['game_id', 'session_id', 'activity_date'], 'activity_date', ['game_id', 'player_id'])) }}
-- One row per session and UTC date on which it has a session_start or a session_end event: a
-- session that runs past midnight has two rows. A session counts on the date of its start; its
-- length (duration_s reported at session_end) on the date of its end. Summing the end events per
-- day (rather than keeping one length per session) keeps the daily mean exact even when a client
-- sends a session's end twice.
-- Incremental: every session-day with a newly arrived event is rebuilt from all of its events.
with

session_events as (

    select * from {{ ref('stg_telemetry__game_events') }}
    where event_name in ('session_start', 'session_end')

),

{% if is_incremental() %}
-- silver is read a second time here rather than through session_events: a CTE read twice is
-- materialized in full (DuckDB), before the arrival window or the join could narrow it
touched as (

    select distinct game_id, session_id, event_date
    from {{ ref('stg_telemetry__game_events') }}
    where event_name in ('session_start', 'session_end')
        and {{ arrival_window('ingested_at', watermark_column='last_ingested_at') }}

),

candidates as (

    select session_events.*
    from session_events
    inner join touched
        on session_events.game_id = touched.game_id
        and session_events.session_id = touched.session_id
        and session_events.event_date = touched.event_date
    where session_events.event_date >= (select min(event_date) from touched)

),
{% else %}
candidates as (

    select * from session_events

),
{% endif %}

session_days as (

    select
        game_id,
        session_id,
        event_date as activity_date,
        min(player_id) as player_id,
        min(case when event_name = 'session_start' then event_timestamp end) as started_at,
        max(case when event_name = 'session_end' then event_timestamp end) as ended_at,
        count(case when event_name = 'session_start' then 1 end) as session_start_events,
        count(case when event_name = 'session_end' then 1 end) as session_end_events,
        sum(case when event_name = 'session_end' then duration_s end) as total_duration_s,
        max(ingested_at) as last_ingested_at
    from candidates
    group by game_id, session_id, event_date

),

final as (

    select
        -- ids
        game_id,
        session_id,
        player_id,

        -- numerics
        session_start_events,
        session_end_events,
        total_duration_s,

        -- timestamps
        activity_date,
        started_at,
        ended_at,
        last_ingested_at

    from session_days

)

select * from final
