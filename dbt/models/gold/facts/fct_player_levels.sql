{{
    config(
        materialized='incremental',
        unique_key=['game_id', 'level', 'player_id'],
        incremental_strategy=keyed_strategy(),
        on_schema_change='fail',
        cluster_by=clustering(['game_id', 'level']),
    )
}}
-- One row per game, level and player: how often the player started, completed and failed the
-- level. The level funnel's base: players per level are counted over these rows instead of over
-- every level event.
-- Incremental and additive: the level events fct_level_attempts added since this table's last run
-- (its loaded_at, the run that added them) are counted and added to the players' totals, so each
-- level event counts exactly once however late it arrived. If fct_level_attempts was rebuilt since
-- (a full refresh of it alone), none of its rows is older than this table's newest: the totals
-- start over from its rows.
with

held_up_to as (

    {% if is_incremental() %}
    select coalesce(max(loaded_at), cast('1970-01-01 00:00:00' as timestamp)) as loaded_at from {{ this }}
    {% else %}
    select cast('1970-01-01 00:00:00' as timestamp) as loaded_at
    {% endif %}

),

attempts as (

    select * from {{ ref('fct_level_attempts') }}
    where level is not null
        and loaded_at > (select loaded_at from held_up_to)

),

counted as (

    select
        game_id,
        level,
        player_id,
        count(case when attempt_step = 'start' then 1 end) as starts,
        count(case when attempt_step = 'complete' then 1 end) as completions,
        count(case when attempt_step = 'fail' then 1 end) as fails,
        max(loaded_at) as loaded_at
    from attempts
    group by game_id, level, player_id

),

{% if is_incremental() %}
rebuilt as (

    select coalesce(min(loaded_at) > (select loaded_at from held_up_to), false) as since_last_run
    from {{ ref('fct_level_attempts') }}

),

totals as (

    select
        counted.game_id,
        counted.level,
        counted.player_id,
        {% for measure in ['starts', 'completions', 'fails'] -%}
        counted.{{ measure }} + case when rebuilt.since_last_run then 0 else coalesce(held.{{ measure }}, 0) end as {{ measure }},
        {% endfor -%}
        counted.loaded_at
    from counted
    cross join rebuilt
    left join {{ this }} as held
        on counted.game_id = held.game_id
        and counted.level = held.level
        and counted.player_id = held.player_id

),
{% else %}
totals as (

    select * from counted

),
{% endif %}

final as (

    select
        -- ids
        game_id,
        cast(level as {{ type_integer() }}) as level,
        player_id,

        -- events
        cast(starts as {{ type_integer() }}) as starts,
        cast(completions as {{ type_integer() }}) as completions,
        cast(fails as {{ type_integer() }}) as fails,

        -- timestamps
        loaded_at

    from totals

)

select * from final
