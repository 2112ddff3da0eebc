-- The level funnel per game and level: who started, who completed, how many attempts and fails.
-- Rebuilt from fct_level_attempts on every run.
with

players as (

    select game_id, player_id
    from {{ ref('dim_player') }}
    where not is_test_account

),

-- per player first (one row per game, level and player), then per level: two small aggregations
-- instead of distinct counts over every level event
player_levels as (

    select
        game_id,
        level,
        player_id,
        count(case when attempt_step = 'start' then 1 end) as starts,
        count(case when attempt_step = 'complete' then 1 end) as completions,
        count(case when attempt_step = 'fail' then 1 end) as fails
    from {{ ref('fct_level_attempts') }}
    where level is not null
    group by game_id, level, player_id

),

counted_player_levels as (

    select player_levels.*
    from player_levels
    inner join players
        on player_levels.game_id = players.game_id
        and player_levels.player_id = players.player_id

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
