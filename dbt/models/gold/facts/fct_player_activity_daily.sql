{{ config(**date_partitioned_incremental(['game_id', 'player_id', 'activity_date'], 'activity_date', ['game_id', 'player_id'])) }}
-- One row per player and UTC date with any valid event (test accounts included: the marts leave
-- them out through dim_player, so a re-flagged account needs no rebuild). The compact base of
-- DAU, MAU, cohorts and retention, as bigquery-etl's clients_daily is. Each row also carries the
-- player's previous active date, so MAU needs no window over the whole table.
-- Incremental: (player, date) pairs first seen in newly arrived events are added; a new pair that
-- lands between two held ones (a late event) also gives the next held day its new previous date.
with

events as (

    select * from {{ ref('stg_telemetry__game_events') }}
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

    {{ new_keys_only('player_days', ['game_id', 'player_id', 'activity_date'], 'activity_date') }}

),

new_since as (

    select game_id, player_id, min(activity_date) as from_date
    from new_player_days
    group by game_id, player_id

),

-- the new days, the held days after them (their previous date may change), and the last held day
-- before them (a previous date only: not written again)
days_to_order as (

    select game_id, player_id, activity_date, first_ingested_at, true as is_written
    from new_player_days

    union all

    select held.game_id, held.player_id, held.activity_date, held.first_ingested_at, true as is_written
    from {{ this }} as held
    inner join new_since
        on held.game_id = new_since.game_id
        and held.player_id = new_since.player_id
        and held.activity_date > new_since.from_date

    union all

    select held.game_id, held.player_id, max(held.activity_date), min(held.first_ingested_at), false as is_written
    from {{ this }} as held
    inner join new_since
        on held.game_id = new_since.game_id
        and held.player_id = new_since.player_id
        and held.activity_date < new_since.from_date
    group by held.game_id, held.player_id

),
{% else %}
days_to_order as (

    select *, true as is_written from player_days

),
{% endif %}

ordered as (

    select
        *,
        lag(activity_date) over (partition by game_id, player_id order by activity_date) as previous_activity_date
    from days_to_order

),

final as (

    select
        -- ids
        game_id,
        player_id,

        -- timestamps
        activity_date,
        previous_activity_date,
        first_ingested_at

    from ordered
    where is_written

)

select * from final
