"""Cloud Function entry point: a Pub/Sub message (as a CloudEvent) in, bronze rows out.

This folder is the function's whole source, deployed as it is. Serve it locally with::

    GA_LANDING_DIR=data/landing functions-framework --source ingestion/streaming/main.py \\
        --target handle_pubsub --signature-type cloudevent --port 8080

and POST either a CloudEvent or a raw Pub/Sub push body to ``/projects/P/topics/T``.
functions-framework loads this file as a package named ``main`` whose path is this folder, so the
relative imports resolve inside the folder, as they do when it is imported as
``ingestion.streaming.main``.
"""
from __future__ import annotations

from datetime import UTC, datetime

import functions_framework
from cloudevents.http import CloudEvent

from .handler import handle_message, process_sink, pubsub_message


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
