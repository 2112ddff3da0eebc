-- One row per game and UTC activity date with any counted activity.
with

activity as (

    select * from {{ ref('int_player_activity') }}

),

first_seen as (

    select
        game_id,
        player_id,
        min(event_date) as cohort_date
    from activity
    group by game_id, player_id

),

daily_activity as (

    select
        event_date as activity_date,
        game_id,
        count(distinct player_id) as dau,
        count(distinct case when event_name = 'session_start' then session_id end) as sessions
    from activity
    group by event_date, game_id

),

daily_new_players as (

    select
        cohort_date as activity_date,
        game_id,
        count(*) as new_players
    from first_seen
    group by cohort_date, game_id

),

final as (

    select
        -- keys
        daily_activity.activity_date,
        daily_activity.game_id,

        -- players
        daily_activity.dau,
        coalesce(daily_new_players.new_players, 0) as new_players,

        -- sessions
        daily_activity.sessions

    from daily_activity
    left join daily_new_players
        on daily_activity.activity_date = daily_new_players.activity_date
        and daily_activity.game_id = daily_new_players.game_id

)

select * from final
