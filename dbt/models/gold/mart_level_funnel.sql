-- The level funnel per game and level: who started, who completed, how many attempts and fails.
-- Rebuilt on every run from fct_player_levels (one row per game, level and player).
with

-- test accounts' rows are left out by an anti-join with the few test accounts (every row has its
-- player in dim_player, which the relationship tests check)
test_accounts as (

    select game_id, player_id
    from {{ ref('dim_player') }}
    where is_test_account

),

player_levels as (

    select * from {{ ref('fct_player_levels') }}

),

counted_player_levels as (

    select player_levels.*
    from player_levels
    left join test_accounts
        on player_levels.game_id = test_accounts.game_id
        and player_levels.player_id = test_accounts.player_id
    where test_accounts.player_id is null

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
