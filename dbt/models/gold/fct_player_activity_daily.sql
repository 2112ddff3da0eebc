{{
    config(
        materialized='incremental',
        unique_key=['game_id', 'player_id', 'activity_date'],
        incremental_strategy=keyed_strategy(),
        on_schema_change='fail',
        partition_by=date_partition('activity_date'),
        cluster_by=clustering(['game_id', 'player_id']),
    )
}}
-- One row per player and UTC date with any valid event (test accounts included: the marts leave
-- them out through dim_player, so a re-flagged account needs no rebuild). The compact base of
-- DAU, MAU, cohorts and retention, as bigquery-etl's clients_daily is.
-- Incremental: (player, date) pairs first seen in newly arrived events are added.
with

events as (

    select * from {{ ref('stg_bronze__game_events') }}
    {% if is_incremental() %}
    where {{ arrival_window('ingested_at', watermark_column='first_ingested_at') }}
    {% endif %}

),

player_days as (

    select
        game_id,
        player_id,
        event_date as activity_date,
        min(ingested_at) as first_ingested_at
    from events
    group by game_id, player_id, event_date

),

{% if is_incremental() %}
new_player_days as (

    select player_days.*
    from player_days
    left join (
        select game_id, player_id, activity_date from {{ this }}
        where activity_date >= (select min(activity_date) from player_days)
    ) as existing
        on player_days.game_id = existing.game_id
        and player_days.player_id = existing.player_id
        and player_days.activity_date = existing.activity_date
    where existing.player_id is null

),
{% else %}
new_player_days as (

    select * from player_days

),
{% endif %}

final as (

    select
        -- ids
        game_id,
        player_id,

        -- timestamps
        activity_date,
        first_ingested_at

    from new_player_days

)

select * from final
