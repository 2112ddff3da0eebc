{{ config(tags=['quality_gate'], severity='warn') }}
-- Freshness: the newest valid event reached bronze within var('freshness_warn_hours') of the run.
-- A warning, not an error: a quiet hour or a replayed backfill is not a broken warehouse, and the
-- gate should not stop the flow for it (`dbt source freshness` holds the hard thresholds).
select max(ingested_at) as newest_ingested_at
from {{ source('telemetry', 'game_events') }}
having max(ingested_at) is null
    or max(ingested_at) < {{ hours_before(dbt.current_timestamp(), var('freshness_warn_hours', 26)) }}
