{{ config(tags=['quality_gate']) }}
-- Reconciliation: every distinct valid event that landed in bronze is in silver, and silver holds
-- nothing bronze does not (silver's uniqueness is a build test of stg_bronze__game_events).
with

bronze as (

    select distinct event_id from {{ source('bronze', 'game_events') }}

),

silver as (

    select event_id from {{ ref('stg_bronze__game_events') }}

)

select
    coalesce(bronze.event_id, silver.event_id) as event_id,
    case when silver.event_id is null then 'missing from silver' else 'not in bronze' end as problem
from bronze
full outer join silver on bronze.event_id = silver.event_id
where bronze.event_id is null or silver.event_id is null
