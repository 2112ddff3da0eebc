-- The latest known state of each player (the export is a snapshot; the newest load wins).
with

source as (

    select * from {{ source('studio_db', 'players') }}

),

renamed as (

    select
        -- ids
        player_id,
        game_id,

        -- attributes
        country,
        acquisition_channel,
        coalesce(is_test_account, false) as is_test_account,

        -- timestamps
        created_at,
        updated_at,
        _loaded_at as loaded_at,
        _source as loaded_from

    from source

),

deduplicated as (

    {{ deduplicate('renamed', 'game_id, player_id', 'updated_at desc, loaded_at desc') }}

)

select * from deduplicated
