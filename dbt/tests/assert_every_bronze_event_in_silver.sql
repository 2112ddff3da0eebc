{{ config(tags=['quality_gate']) }}
-- Reconciliation: every distinct valid event that landed in bronze is in silver exactly once.
with

bronze as (

    select distinct event_id from {{ source('bronze', 'game_events') }}

),

silver as (

    select event_id from {{ ref('stg_bronze__game_events') }}

)

select bronze.event_id
from bronze
left join silver on bronze.event_id = silver.event_id
where silver.event_id is null
