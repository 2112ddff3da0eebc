{{ config(**date_partitioned_incremental('event_id', 'event_date', ['game_id', 'event_name'], adds_new_keys_only=true)) }}
-- Valid game events, typed, one row per event_id: the first delivery of each event is kept.
-- The raw params and payload stay in bronze; silver carries the parameters as typed columns.
-- Incremental by arrival: a run reads what landed since the last run (see arrival_window) and adds
-- the events whose event_id is not in silver yet. A repeat has the same event_timestamp as its
-- first delivery, so the event_id lookup only needs silver's rows from the batch's dates on.
with

source as (

    select * from {{ source('telemetry', 'game_events') }}
    where 1 = 1
    {% if is_incremental() %}
        and {{ arrival_window('ingested_at', event_date_column=utc_date('event_timestamp')) }}
    {% endif %}
    {{ dev_date_limit(utc_date('event_timestamp')) }}

),

arrived as (

    {{ new_keys_only('source', 'event_id', 'event_date', batch_date=utc_date('event_timestamp')) }}

),

-- a redelivered message or a resent event keeps its event_id: keep its first delivery. Only the
-- few repeated event_ids need the window; every other event is its own first delivery, so the
-- window sorts the repeats, not every row.
repeated as (

    select event_id
    from arrived
    group by event_id
    having count(*) > 1

),

first_delivery as (

    select arrived.*
    from arrived
    left join repeated on arrived.event_id = repeated.event_id
    where repeated.event_id is null

    union all

    select *
    from (
        select arrived.*
        from arrived
        inner join repeated on arrived.event_id = repeated.event_id
    ) as repeats
    where true  -- BigQuery wants a WHERE next to QUALIFY
    qualify row_number() over (partition by event_id order by ingested_at, message_id) = 1

),

renamed as (

    select
        -- ids
        event_id,
        game_id,
        player_id,
        session_id,
        message_id,

        -- event
        event_name,
        platform,
        app_version,
        country,
        schema_version,

        -- params, typed; each read only for the events that carry it (one JSON parse per
        -- parameter and event, not per parameter and row)
        {{ event_param("event_name in ('level_start', 'level_complete', 'level_fail')", 'level', type_integer()) }} as level,
        {{ event_param("event_name in ('session_end', 'level_start', 'level_complete', 'level_fail')", 'duration_s', type_measure()) }} as duration_s,
        {{ event_param("event_name = 'purchase'", 'transaction_id') }} as transaction_id,
        {{ event_param("event_name = 'purchase'", 'sku') }} as sku,
        {{ event_param("event_name = 'purchase'", 'price', type_measure()) }} as price,
        {{ event_param("event_name = 'purchase'", 'currency') }} as currency,
        {{ event_param("event_name = 'purchase'", 'quantity', type_integer()) }} as quantity,
        {{ event_param("event_name = 'ad_impression'", 'ad_network') }} as ad_network,
        {{ event_param("event_name = 'ad_impression'", 'placement') }} as ad_placement,
        {{ event_param("event_name = 'ad_impression'", 'revenue_usd', type_measure()) }} as ad_revenue_usd,

        -- timestamps
        event_timestamp,
        {{ utc_date('event_timestamp') }} as event_date,
        publish_time,
        ingested_at

    from first_delivery

)

select * from renamed
