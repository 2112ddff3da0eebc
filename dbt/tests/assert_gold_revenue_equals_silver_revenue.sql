{{ config(tags=['quality_gate'], store_failures=true) }}
-- Reconciliation: each game-day's revenue_usd in the mart equals the revenue computed again from
-- silver's purchase events (first event per transaction, test accounts left out, rounded to
-- cents), and the same for ad revenue. Kept as a table of failures for the investigation.
with

players as (

    select game_id, player_id, is_test_account from {{ ref('stg_bronze__players') }}

),

counted as (

    select purchases.*
    from {{ ref('int_purchases__converted') }} as purchases
    left join players
        on purchases.game_id = players.game_id
        and purchases.player_id = players.player_id
    where not coalesce(players.is_test_account, false)

),

first_events as (

    select *
    from counted
    where true
    qualify row_number() over (partition by game_id, transaction_id order by event_timestamp, event_id) = 1

),

silver_revenue as (

    select event_date as activity_date, game_id, {{ round_half_up('sum(amount_usd)', 2) }} as revenue_usd
    from first_events
    group by event_date, game_id

),

silver_ads as (

    select events.event_date as activity_date, events.game_id, {{ round_half_up('sum(events.ad_revenue_usd)', 2) }} as ad_revenue_usd
    from {{ ref('stg_bronze__game_events') }} as events
    left join players
        on events.game_id = players.game_id
        and events.player_id = players.player_id
    where events.event_name = 'ad_impression' and not coalesce(players.is_test_account, false)
    group by events.event_date, events.game_id

),

gold as (

    select activity_date, game_id, revenue_usd, ad_revenue_usd from {{ ref('mart_daily_kpis') }}

)

select
    coalesce(gold.activity_date, silver_revenue.activity_date, silver_ads.activity_date) as activity_date,
    coalesce(gold.game_id, silver_revenue.game_id, silver_ads.game_id) as game_id,
    gold.revenue_usd as gold_revenue_usd,
    silver_revenue.revenue_usd as silver_revenue_usd,
    gold.ad_revenue_usd as gold_ad_revenue_usd,
    silver_ads.ad_revenue_usd as silver_ad_revenue_usd
from gold
full outer join silver_revenue
    on gold.activity_date = silver_revenue.activity_date and gold.game_id = silver_revenue.game_id
full outer join silver_ads
    on coalesce(gold.activity_date, silver_revenue.activity_date) = silver_ads.activity_date
    and coalesce(gold.game_id, silver_revenue.game_id) = silver_ads.game_id
where coalesce(gold.revenue_usd, 0) != coalesce(silver_revenue.revenue_usd, 0)
    or coalesce(gold.ad_revenue_usd, 0) != coalesce(silver_ads.ad_revenue_usd, 0)
    or (gold.game_id is null and (silver_revenue.revenue_usd != 0 or silver_ads.ad_revenue_usd != 0))
