{{ config(tags=['quality_gate']) }}
-- Reconciliation: every fact row finds its player in dim_player and its date in dim_date (the same
-- relationships are build tests per column; this is the gate's single answer across all facts).
-- Hourly: the fact rows dated on the event dates the reconciled hours' arrivals carry.
with
{{ reconcile_window() }}

fact_keys as (

    select * from (
        select 'fct_player_activity_daily' as fact, game_id, player_id, activity_date as fact_date
        from {{ ref('fct_player_activity_daily') }}
        union all
        select 'fct_sessions', game_id, player_id, activity_date from {{ ref('fct_sessions') }}
        union all
        select 'fct_purchases', game_id, player_id, purchase_date from {{ ref('fct_purchases') }}
        union all
        select 'fct_level_attempts', game_id, player_id, event_date from {{ ref('fct_level_attempts') }}
        union all
        select 'fct_ad_impressions', game_id, player_id, impression_date from {{ ref('fct_ad_impressions') }}
    ) as fact_rows
    where {{ reconciled('fact_date', 'date') }}

)

select fact_keys.fact, fact_keys.game_id, fact_keys.player_id, fact_keys.fact_date
from fact_keys
left join {{ ref('dim_player') }} as players
    on fact_keys.game_id = players.game_id
    and fact_keys.player_id = players.player_id
left join {{ ref('dim_date') }} as dates
    on fact_keys.fact_date = dates.date_day
where players.player_id is null
    or (fact_keys.fact_date is not null and dates.date_day is null)
