-- The events that count for player KPIs: valid, deduplicated (silver), and not from a test account.
with

events as (

    select * from {{ ref('stg_bronze__game_events') }}

),

players as (

    select * from {{ ref('stg_bronze__players') }}

),

counted as (

    select events.*
    from events
    left join players
        on events.game_id = players.game_id
        and events.player_id = players.player_id
    where not coalesce(players.is_test_account, false)

)

select * from counted
