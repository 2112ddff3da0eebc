{{ config(tags=['quality_gate']) }}
-- Each player-day's previous_activity_date is the player's active date just before it, as a window
-- over the whole table computes it: incremental runs keep it up to date as late days arrive.
with

player_days as (

    select * from {{ ref('fct_player_activity_daily') }}

),

recomputed as (

    select
        game_id,
        player_id,
        activity_date,
        previous_activity_date,
        lag(activity_date) over (partition by game_id, player_id order by activity_date) as expected_previous_date
    from player_days

)

select *
from recomputed
where previous_activity_date is distinct from expected_previous_date
