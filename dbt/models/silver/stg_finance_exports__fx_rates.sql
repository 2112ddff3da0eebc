-- Daily FX rates, one row per (rate_date, currency): the newest load of a day wins.
with

source as (

    select * from {{ source('finance_exports', 'fx_rates') }}

),

renamed as (

    select
        -- ids
        date as rate_date,
        currency,

        -- numerics
        usd_per_unit,

        -- timestamps
        _loaded_at as loaded_at,
        _source as loaded_from

    from source

),

deduplicated as (

    {{ deduplicate('renamed', 'rate_date, currency', 'loaded_at desc, loaded_from desc') }}

)

select * from deduplicated
