-- When each FX rate applies: from its date until the next rate of the currency (exclusive), so a
-- day without a rate (a weekend, a holiday) uses the latest earlier one. USD is always 1.
with

rates as (

    select * from {{ ref('stg_finance_exports__fx_rates') }}

),

ranges as (

    select
        currency,
        rate_date as valid_from,
        lead(rate_date) over (partition by currency order by rate_date) as valid_to,
        usd_per_unit
    from rates

),

usd as (

    select
        'USD' as currency,
        cast('1900-01-01' as date) as valid_from,
        cast(null as date) as valid_to,
        cast(1 as {{ type_measure() }}) as usd_per_unit

),

final as (

    select * from ranges where currency != 'USD'
    union all
    select * from usd

)

select * from final
