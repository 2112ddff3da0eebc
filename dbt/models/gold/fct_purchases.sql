{{
    config(
        materialized='incremental',
        unique_key=['game_id', 'transaction_id'],
        incremental_strategy=keyed_strategy(),
        on_schema_change='fail',
        partition_by=date_partition('purchase_date'),
        cluster_by=clustering(['game_id', 'currency']),
    )
}}
-- depends_on: {{ ref('int_fx_rates__effective') }}
-- One row per purchase (game_id, transaction_id), in USD. A purchase sent twice with a new event_id
-- counts once: the first by event_timestamp, then event_id, gives its day and its amount.
-- Incremental: a run recomputes every transaction that has a newly arrived event, and every
-- transaction whose FX rate changed since it was converted (a day's rate that came after its
-- purchases, or a corrected rate), from all of that transaction's events in silver.
with

purchases as (

    select * from {{ ref('int_purchases__converted') }}

),

{% if is_incremental() %}
rates as (

    select * from {{ ref('int_fx_rates__effective') }}

),

arrived as (

    select distinct game_id, transaction_id
    from purchases
    where {{ arrival_window('ingested_at', watermark_column='last_ingested_at') }}

),

repriced as (

    select current_rows.game_id, current_rows.transaction_id
    from {{ this }} as current_rows
    left join rates
        on current_rows.currency = rates.currency
        and current_rows.purchase_date >= rates.valid_from
        and (rates.valid_to is null or current_rows.purchase_date < rates.valid_to)
    where current_rows.usd_per_unit is distinct from rates.usd_per_unit

),

touched as (

    select * from arrived
    union distinct
    select * from repriced

),

candidates as (

    select purchases.*
    from purchases
    inner join touched
        on purchases.game_id = touched.game_id
        and purchases.transaction_id = touched.transaction_id

),
{% else %}
candidates as (

    select * from purchases

),
{% endif %}

first_purchase as (

    select
        *,
        count(*) over (partition by game_id, transaction_id) as purchase_events,
        max(ingested_at) over (partition by game_id, transaction_id) as last_ingested_at
    from candidates
    where true  -- BigQuery wants a WHERE next to QUALIFY
    qualify row_number() over (
        partition by game_id, transaction_id order by event_timestamp, event_id
    ) = 1

),

final as (

    select
        -- ids
        game_id,
        transaction_id,
        event_id,
        player_id,
        session_id,
        sku,

        -- money
        currency,
        price,
        quantity,
        amount_local,
        usd_per_unit,
        fx_rate_date,
        amount_usd,

        -- lineage
        purchase_events,

        -- timestamps
        event_timestamp as purchased_at,
        event_date as purchase_date,
        last_ingested_at

    from first_purchase

)

select * from final
