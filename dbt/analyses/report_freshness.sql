-- The newest event arrival (bronze ingested_at) the gold marts were built from: the marts' freshness,
-- reported by the flow after each build (flows/assets.py).
select max(ingested_at) as newest_arrival
from {{ ref('stg_telemetry__game_events') }}
