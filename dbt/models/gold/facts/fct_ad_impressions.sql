{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy=new_keys_strategy(),
        on_schema_change='fail',
        partition_by=date_partition('impression_date'),
        incremental_predicates=merge_pruning('impression_date'),
        cluster_by=clustering(['game_id', 'ad_network']),
    )
}}
-- One row per ad impression, with the revenue the ad network reported in USD.
with

ad_events as (

    select * from {{ ref('stg_telemetry__game_events') }}
    where event_name = 'ad_impression'

),

{% if is_incremental() %}
arrived as (

    select *
    from ad_events
    where {{ arrival_window('ingested_at') }}

),

new_events as (

    {{ new_keys_only('arrived', 'event_id', 'impression_date', batch_date='event_date') }}

),
{% else %}
new_events as (

    select * from ad_events

),
{% endif %}

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
