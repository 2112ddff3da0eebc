-- The store catalogue, one row per sku (the newest edit, then the newest load, wins).
with

source as (

    select * from {{ source('bronze', 'store_items') }}

),

renamed as (

    select
        -- ids
        sku,
        game_id,

        -- attributes
        item_name,
        item_type,

        -- numerics
        list_price_usd,

        -- timestamps
        updated_at,
        _loaded_at as loaded_at,
        _source as loaded_from

    from source

),

deduplicated as (

    select *
    from renamed
    where true  -- BigQuery wants a WHERE next to QUALIFY
    qualify row_number() over (partition by sku order by updated_at desc, loaded_at desc) = 1

)

select * from deduplicated
