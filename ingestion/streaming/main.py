"""Cloud Function entry point: a Pub/Sub message (as a CloudEvent) in, bronze rows out.

Serve locally with::

    PYTHONPATH=. functions-framework --source ingestion/streaming/main.py \\
        --target handle_pubsub --signature-type cloudevent --port 8080

and POST either a CloudEvent or a raw Pub/Sub push body to ``/projects/P/topics/T``.
"""
from __future__ import annotations

from datetime import UTC, datetime

import functions_framework
from cloudevents.http import CloudEvent

from ingestion.streaming.handler import handle_message, process_sink, pubsub_message


@functions_framework.cloud_event
def handle_pubsub(cloud_event: CloudEvent) -> None:
    message = pubsub_message(
        cloud_event.data, cloud_event.get("id"), cloud_event.get("time"), datetime.now(UTC)
    )
    handle_message(
        message.data,
        message.attributes,
        message.message_id,
        message.publish_time,
        process_sink(),
        envelope_error=message.envelope_error,
    )
