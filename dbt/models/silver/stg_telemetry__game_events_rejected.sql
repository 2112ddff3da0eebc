-- Every message or event the function refused, with its reason, one row per rejection: a message
-- Pub/Sub delivered again is refused again, so the first delivery of each (message, event) is kept.
with

source as (

    select * from {{ source('telemetry', 'game_events_rejected') }}

),

renamed as (

    select
        -- ids
        message_id,
        event_index,
        {{ json_text('attributes', 'game_id') }} as game_id,

        -- rejection
        error_type,
        error_message,
        payload,
        payload_encoding,
        attributes,

        -- timestamps
        publish_time,
        ingested_at,
        {{ utc_date('ingested_at') }} as ingested_date

    from source

),

deduplicated as (

    {{ deduplicate('renamed', 'message_id, coalesce(event_index, -1)', 'ingested_at') }}

)

select * from deduplicated
