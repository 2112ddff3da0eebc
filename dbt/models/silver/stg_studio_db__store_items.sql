-- The store catalogue, one row per item of a game (game_id, sku): the newest edit, then the newest
-- load, wins. Games may sell items under the same sku.
with

source as (

    select * from {{ source('studio_db', 'store_items') }}

),

renamed as (

    select
        -- ids
        game_id,
        sku,

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

    {{ deduplicate('renamed', 'game_id, sku', 'updated_at desc, loaded_at desc') }}

)

select * from deduplicated
