"""The sizes and names of the production streaming set-up, in one place: the deploy commands are
built from them and the tests hold the function's memory to them."""
from __future__ import annotations

from typing import Final

# the topic names are stated by the function's folder; the deploy commands name them through here
from ingestion.streaming.topics import DEAD_LETTER_SUBSCRIPTION, DEAD_LETTER_TOPIC, TOPIC  # noqa: F401

FUNCTION_NAME: Final = "ingest-game-events"
ENTRY_POINT: Final = "handle_pubsub"
RUNTIME: Final = "python311"
SERVICE_ACCOUNT_ID: Final = "game-events-ingest"  # <id>@<project>.iam.gserviceaccount.com

# One instance: one CPU, one gunicorn worker. CONCURRENCY maximum-size messages (10 MB, the Pub/Sub
# maximum) handled at once must fit in MEMORY_MB with the idle worker: the test of a 10 MB message
# (tests/ingestion/streaming/test_bad_inputs.py) measures both and holds them to it.
MEMORY_MB: Final = 1024
CPU: Final = 1
CONCURRENCY: Final = 4
MIN_INSTANCES: Final = 1  # no cold start on the first events of the day
MAX_INSTANCES: Final = 50  # caps the insertAll rate BigQuery sees
TIMEOUT_S: Final = 60

# Redelivery after a failed push (5xx): backoff from 10 s to 10 min; after MAX_DELIVERY_ATTEMPTS
# (about two and a half hours of failures) the message moves to the dead-letter topic.
MIN_BACKOFF_S: Final = 10
MAX_BACKOFF_S: Final = 600
MAX_DELIVERY_ATTEMPTS: Final = 20
ACK_DEADLINE_S: Final = TIMEOUT_S

# Dead letters wait up to 31 days (the Pub/Sub maximum) to be inspected and replayed; an alert
# policy (dead-letter-alert.json) fires as soon as one is waiting.
DEAD_LETTER_RETENTION_DAYS: Final = 31
# Rejected events keep their raw payload, which may hold personal data: each day's partition of
# game_events_rejected is deleted after this many days (no model reads rejections beyond triage).
REJECTED_RETENTION_DAYS: Final = 30
ALERT_POLICY_FILE: Final = "deployments/streaming/dead-letter-alert.json"

# The ingest account's custom roles: exactly what tabledata.insertAll needs (BigQuery docs, "Use the
# legacy streaming API", required permissions), the table permissions granted on the two tables
# only, the dataset permission on the bronze dataset (a table-level grant cannot carry it).
INSERT_ROLE_ID: Final = "gaStreamingInsert"
INSERT_ROLE_PERMISSIONS: Final = ("bigquery.tables.get", "bigquery.tables.updateData")
DATASET_GET_ROLE_ID: Final = "gaDatasetGet"
DATASET_GET_ROLE_PERMISSIONS: Final = ("bigquery.datasets.get",)
