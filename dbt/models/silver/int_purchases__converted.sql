-- Every purchase event in USD: price x quantity (1 when absent) at the rate effective on the UTC
-- date of the event. Exact decimals throughout; rounding happens only in the marts.
with

events as (

    select * from {{ ref('stg_telemetry__game_events') }}
    where event_name = 'purchase'

),

rates as (

    select * from {{ ref('int_fx_rates__effective') }}

),

converted as (

    select
        -- ids
        events.event_id,
        events.game_id,
        events.transaction_id,
        events.player_id,
        events.session_id,
        events.sku,

        -- purchase
        events.currency,
        events.price,
        coalesce(events.quantity, 1) as quantity,
        {{ exact_product(['events.price', 'coalesce(events.quantity, 1)']) }} as amount_local,
        rates.usd_per_unit,
        rates.valid_from as fx_rate_date,
        {{ exact_product(['events.price', 'coalesce(events.quantity, 1)', 'rates.usd_per_unit']) }} as amount_usd,

        -- timestamps
        events.event_timestamp,
        events.event_date,
        events.ingested_at

    from events
    left join rates
        on events.currency = rates.currency
        and events.event_date >= rates.valid_from
        and (rates.valid_to is null or events.event_date < rates.valid_to)

)

select * from converted
