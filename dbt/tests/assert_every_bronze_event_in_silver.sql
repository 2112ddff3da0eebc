{{ config(tags=['quality_gate']) }}
-- Reconciliation: every distinct valid event that landed in bronze is in silver, and silver holds
-- nothing bronze does not (silver's uniqueness is a build test of stg_telemetry__game_events). Hourly:
-- the events that arrived in the reconciled hours, looked up in silver from their earliest date.
with
{{ reconcile_window() }}

bronze as (

    select distinct event_id
    from {{ source('telemetry', 'game_events') }}
    where {{ reconciled('ingested_at', 'arrival') }}

),

silver as (

    select event_id, ingested_at
    from {{ ref('stg_telemetry__game_events') }}
    where {{ reconciled('event_date', 'date') }}

)

select
    coalesce(bronze.event_id, silver.event_id) as event_id,
    case when silver.event_id is null then 'missing from silver' else 'not in bronze' end as problem
from bronze
full outer join silver on bronze.event_id = silver.event_id
where silver.event_id is null
    or (bronze.event_id is null and {{ reconciled('silver.ingested_at', 'arrival') }})
