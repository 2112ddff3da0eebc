"""The sizes and names of the production streaming set-up, in one place: the deploy commands are
built from them and the tests hold the function's measured memory to them."""
from __future__ import annotations

from typing import Final

FUNCTION_NAME: Final = "ingest-game-events"
ENTRY_POINT: Final = "handle_pubsub"
RUNTIME: Final = "python311"
SERVICE_ACCOUNT_ID: Final = "game-events-ingest"  # <id>@<project>.iam.gserviceaccount.com

TOPIC: Final = "game-events"
DEAD_LETTER_TOPIC: Final = "game-events-dead-letter"
DEAD_LETTER_SUBSCRIPTION: Final = "game-events-dead-letter-pull"

# One instance: one CPU, one gunicorn worker. Handling a 10 MB message (the Pub/Sub maximum) adds
# about 165 MB to a worker that idles at about 120 MB (tests/ingestion/streaming/test_bad_inputs.py
# measures it), so CONCURRENCY maximum-size messages at once still fit in MEMORY_MB.
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
