"""The data's own freshness promise, as an automation, applied with the others by
`python -m blocks.automations`:

- **game-analytics: marts stale**: after each build the pipeline reports its marts' freshness as
  an event on the resource `ga.marts.<target>`: `ga.marts.fresh` when the newest event arrival
  built into gold is at most GA_MART_MAX_AGE_HOURS (2) old, `ga.marts.stale` otherwise
  (flows/assets.py). After any such report, the automation expects a fresh one within those
  hours; when none comes (stale data, failing or stopped builds, no worker) it sends a
  notification through the same block as the other alerts.
"""
from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from prefect.automations import Automation
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

from flows.assets import MART_FRESH, MART_STALE
from common.settings import WarehouseSettings

STALE = "game-analytics: marts stale"

STALE_SUBJECT = "[automation] gold marts stale: {{ event.resource['prefect.resource.name'] }}"
STALE_BODY = """\
Automation alert: no fresh build of {{ event.resource['prefect.resource.name'] }} was reported in the \
last {max_age}. The last report: {{ event.event }} at {{ event.occurred }}, newest event arrival \
{{ event.payload.newest_arrival }} ({{ event.payload.age_seconds }} s old)."""


def stale_marts(block_document_id: UUID, max_age: timedelta | None = None) -> Automation:
    max_age = max_age or timedelta(hours=WarehouseSettings().mart_max_age_hours)
    return Automation(
        name=STALE,
        description=f"Notify when the gold marts have not been reported fresh for {max_age}.",
        enabled=True,
        trigger=EventTrigger(
            after={MART_FRESH, MART_STALE},
            expect={MART_FRESH},
            match=ResourceSpecification({"prefect.resource.id": "ga.marts.*"}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=max_age,
        ),
        actions=[SendNotification(block_document_id=block_document_id, subject=STALE_SUBJECT,
                                  body=STALE_BODY.replace("{max_age}", str(max_age)))],
    )

