-- Retention per cohort (players whose first counted event is that day) and game: how many came
-- back exactly 1, 7 and 30 days later. A day N that lies after the last activity date of the whole
-- data set is not observable yet: retained_dN and retention_dN are null, not 0.
-- Rebuilt from the facts on every run (a late event can change any cohort).
with

counted_players as (

    {{ counted_players_only(ref('dim_player')) }}

),

players as (

    select game_id, player_id, first_seen_date as cohort_date
    from counted_players
    where first_seen_date is not null

),

player_days as (

    {{ counted_players_only(ref('fct_player_activity_daily')) }}

),

last_day as (

    select max(activity_date) as last_activity_date from player_days

),

cohorts as (

    select cohort_date, game_id, count(*) as cohort_size
    from players
    group by cohort_date, game_id

),

returns as (

    select
        players.cohort_date,
        players.game_id,
        {{ days_between('players.cohort_date', 'player_days.activity_date') }} as days_after
    from players
    inner join player_days
        on players.game_id = player_days.game_id
        and players.player_id = player_days.player_id
    where {{ days_between('players.cohort_date', 'player_days.activity_date') }} in (1, 7, 30)

),

returned as (

    select
        cohort_date,
        game_id,
        count(case when days_after = 1 then 1 end) as returned_d1,
        count(case when days_after = 7 then 1 end) as returned_d7,
        count(case when days_after = 30 then 1 end) as returned_d30
    from returns
    group by cohort_date, game_id

),

observed as (

    select
        cohorts.cohort_date,
        cohorts.game_id,
        cohorts.cohort_size,
        {% for n in [1, 7, 30] -%}
        case
            when {{ add_days('cohorts.cohort_date', n) }} <= last_day.last_activity_date
                then coalesce(returned.returned_d{{ n }}, 0)
        end as retained_d{{ n }}{{ ',' if not loop.last }}
        {% endfor %}
    from cohorts
    cross join last_day
    left join returned
        on cohorts.cohort_date = returned.cohort_date
        and cohorts.game_id = returned.game_id

),

final as (

    select
        -- keys
        cohort_date,
        game_id,

        -- players
        cast(cohort_size as {{ type_integer() }}) as cohort_size,
        {% for n in [1, 7, 30] -%}
        cast(retained_d{{ n }} as {{ type_integer() }}) as retained_d{{ n }},
        {% endfor %}

        -- rates
        {% for n in [1, 7, 30] -%}
        cast(case when retained_d{{ n }} is not null then {{ round_ratio('retained_d' ~ n, 'cohort_size', 0, 4) }} end
            as {{ type_ratio() }}) as retention_d{{ n }}{{ ',' if not loop.last }}
        {% endfor %}

    from observed

)

select * from final
