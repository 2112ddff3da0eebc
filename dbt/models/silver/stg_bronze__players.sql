with

source as (

    select * from {{ source('bronze', 'players') }}

),

renamed as (

    select
        -- ids
        player_id,
        game_id,

        -- attributes
        country,
        acquisition_channel,
        is_test_account,

        -- timestamps
        created_at,
        updated_at,
        _loaded_at as loaded_at

    from source

),

deduplicated as (

    select *
    from renamed
    qualify row_number() over (partition by game_id, player_id order by updated_at desc, loaded_at desc) = 1

)

select * from deduplicated
