{{ config(**date_partitioned_incremental('event_id', 'impression_date', ['game_id', 'ad_network'], adds_new_keys_only=true)) }}
-- One row per ad impression, with the revenue the ad network reported in USD.
with

ad_events as (

    select * from {{ ref('stg_telemetry__game_events') }}
    where event_name = 'ad_impression'
    {% if is_incremental() %}
        and {{ arrival_window('ingested_at') }}
    {% endif %}

),

new_events as (

    {{ new_keys_only('ad_events', 'event_id', 'impression_date', batch_date='event_date') }}

),

final as (

    select
        -- ids
        event_id,
        game_id,
        player_id,
        session_id,

        -- ad
        ad_network,
        ad_placement,
        ad_revenue_usd as revenue_usd,

        -- timestamps
        event_timestamp as impression_at,
        event_date as impression_date,
        ingested_at

    from new_events

)

select * from final
