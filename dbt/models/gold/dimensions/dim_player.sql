-- One row per player of a game: the players export joined with what the events tell (first and
-- last active date). A player seen in events but missing from the export still has a row (not a
-- test account, not in the export), so every fact row finds its player.
with

players as (

    select * from {{ ref('stg_studio_db__players') }}

),

activity as (

    select
        game_id,
        player_id,
        min(activity_date) as first_seen_date,
        max(activity_date) as last_seen_date,
        count(*) as active_days
    from {{ ref('fct_player_activity_daily') }}
    group by game_id, player_id

),

final as (

    select
        -- ids
        coalesce(players.game_id, activity.game_id) as game_id,
        coalesce(players.player_id, activity.player_id) as player_id,

        -- flags
        coalesce(players.is_test_account, false) as is_test_account,
        players.player_id is not null as is_in_players_export,

        -- attributes
        players.country,
        players.acquisition_channel,

        -- activity
        activity.first_seen_date,
        activity.last_seen_date,
        coalesce(activity.active_days, 0) as active_days,

        -- timestamps
        players.created_at,
        players.updated_at

    from players
    full outer join activity
        on players.game_id = activity.game_id
        and players.player_id = activity.player_id

)

select * from final
