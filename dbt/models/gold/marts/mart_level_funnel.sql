-- The level funnel per game and level: who started, who completed, how many attempts and fails.
-- Rebuilt on every run from fct_player_levels (one row per game, level and player).
with

counted_player_levels as (

    {{ counted_players_only(ref('fct_player_levels')) }}

),

levels as (

    select
        game_id,
        level,
        count(case when starts > 0 then 1 end) as players_started,
        count(case when completions > 0 then 1 end) as players_completed,
        sum(starts) as attempts,
        sum(fails) as fails
    from counted_player_levels
    group by game_id, level

),

final as (

    select
        -- keys
        game_id,
        cast(level as {{ type_integer() }}) as level,

        -- players
        cast(players_started as {{ type_integer() }}) as players_started,
        cast(players_completed as {{ type_integer() }}) as players_completed,

        -- events
        cast(attempts as {{ type_integer() }}) as attempts,
        cast(fails as {{ type_integer() }}) as fails,

        -- rates
        cast({{ round_ratio('players_completed', 'players_started', 0, 4) }} as {{ type_ratio() }}) as completion_rate

    from levels

)

select * from final
