{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy=new_keys_strategy(),
        on_schema_change='fail',
        partition_by=date_partition('event_date'),
        incremental_predicates=merge_pruning('event_date'),
        cluster_by=clustering(['game_id', 'level']),
    )
}}
-- One row per level event: an attempt's start (level_start) and its outcome (level_complete or
-- level_fail). Events, not paired attempts: the funnel counts starts and fails as events, and an
-- outcome whose start was lost still counts.
with

level_events as (

    select * from {{ ref('stg_telemetry__game_events') }}
    where event_name in ('level_start', 'level_complete', 'level_fail')

),

{% if is_incremental() %}
arrived as (

    select *
    from level_events
    where {{ arrival_window('ingested_at') }}

),

new_events as (

    {{ new_keys_only('arrived', 'event_id', 'event_date') }}

),
{% else %}
new_events as (

    select * from level_events

),
{% endif %}

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
