-- One row per store item of a game (game_id, sku) of the catalogue.
with

items as (

    select * from {{ ref('stg_studio_db__store_items') }}

),

final as (

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
        updated_at

    from items

)

select * from final
