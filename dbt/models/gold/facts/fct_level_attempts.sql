{{ config(**date_partitioned_incremental('event_id', 'event_date', ['game_id', 'level'], adds_new_keys_only=true)) }}
-- One row per level event: an attempt's start (level_start) and its outcome (level_complete or
-- level_fail). Events, not paired attempts: the funnel counts starts and fails as events, and an
-- outcome whose start was lost still counts.
with

level_events as (

    select * from {{ ref('stg_telemetry__game_events') }}
    where event_name in ('level_start', 'level_complete', 'level_fail')
    {% if is_incremental() %}
        and {{ arrival_window('ingested_at') }}
    {% endif %}

),

new_events as (

    {{ new_keys_only('level_events', 'event_id', 'event_date') }}

),

final as (

    select
        -- ids
        event_id,
        game_id,
        player_id,
        session_id,

        -- attempt
        level,
        case event_name
            when 'level_start' then 'start'
            when 'level_complete' then 'complete'
            when 'level_fail' then 'fail'
        end as attempt_step,
        duration_s,

        -- timestamps
        event_timestamp,
        event_date,
        ingested_at,
        {{ run_started_timestamp() }} as loaded_at

    from new_events

)

select * from final
