with

source as (

    select * from {{ source('bronze', 'game_events') }}

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
        params,
        payload,

        -- timestamps
        event_timestamp,
        {{ utc_date('event_timestamp') }} as event_date,
        publish_time,
        ingested_at

    from source

),

deduplicated as (

    -- a redelivered message or a resent event keeps the same event_id: keep its first delivery
    select *
    from renamed
    qualify row_number() over (partition by event_id order by ingested_at, message_id) = 1

)

select * from deduplicated
