{{ config(**date_partitioned_incremental(['game_id', 'transaction_id'], 'purchase_date', ['game_id', 'currency'], merge_dates='from_earliest')) }}
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

-- the view is read a second time here rather than through purchases: a CTE read twice is
-- materialized in full (DuckDB), before the arrival window or the join could narrow it
arrived as (

    select game_id, transaction_id, min(event_date) as from_date
    from {{ ref('int_purchases__converted') }}
    where {{ arrival_window('ingested_at', watermark_column='last_ingested_at') }}
    group by game_id, transaction_id

),

repriced as (

    select current_rows.game_id, current_rows.transaction_id, current_rows.purchase_date as from_date
    from {{ this }} as current_rows
    left join rates
        on current_rows.currency = rates.currency
        and current_rows.purchase_date >= rates.valid_from
        and (rates.valid_to is null or current_rows.purchase_date < rates.valid_to)
    where current_rows.usd_per_unit is distinct from rates.usd_per_unit

),

-- a touched transaction's events all lie on or after its earliest one: the first purchase held
-- so far (purchase_date) or a newly arrived event, so silver is read from the earliest such date
already_held as (

    select current_rows.game_id, current_rows.transaction_id, current_rows.purchase_date as from_date
    from {{ this }} as current_rows
    inner join arrived
        on current_rows.game_id = arrived.game_id
        and current_rows.transaction_id = arrived.transaction_id

),

touched as (

    select game_id, transaction_id, min(from_date) as from_date
    from (
        select * from arrived
        union all
        select * from repriced
        union all
        select * from already_held
    ) as touched_events
    group by game_id, transaction_id

),

candidates as (

    select purchases.*
    from purchases
    inner join touched
        on purchases.game_id = touched.game_id
        and purchases.transaction_id = touched.transaction_id
    where purchases.event_date >= (select min(from_date) from touched)

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
