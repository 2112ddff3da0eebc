"""The platform's Prefect automations, as code, applied idempotently against whichever Prefect API
is configured (Prefect Cloud or a self-hosted server):

    python -m blocks.automations [--block custom-webhook/game-analytics-alerts]

- **game-analytics: run failed or crashed**: a flow run of a game-analytics flow ends Failed or
  Crashed -> a notification with the run's link and its state message. It also covers the runs
  whose own failure hook never ran (a pod killed for memory, a lost node).
- **game-analytics: run late**: a scheduled run is still not started 15 minutes after it was
  declared Late (the server declares a run Late 15 s after its scheduled time by default) -> a
  notification. A run waiting behind another build (concurrency limit 1) is late too.
- **game-analytics: crash zombie runs**: a running flow run stops sending heartbeats (its
  process or pod died without reporting) -> its state is set to Crashed, which in turn triggers
  the first automation. The runs send a heartbeat every PREFECT_FLOWS_HEARTBEAT_FREQUENCY
  seconds (60 in prefect.yaml); five minutes of silence tolerates four missed heartbeats.

Notifications go through the block named by ``--block`` or the GA_NOTIFY_BLOCK setting (the one
the flows' hooks use, registered by ``python -m blocks.register``), looked up by name. Each
automation is found by its name: updated in place when it exists (duplicates removed), created
otherwise.
"""
from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from uuid import UUID

from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

from common.settings import OrchestrationSettings

# the flows whose runs these automations watch (flow names, as the flow-run events relate them)
FLOWS = ("game-analytics-pipeline", "game-analytics-backfill")

FAILED = "game-analytics: run failed or crashed"
LATE = "game-analytics: run late"
ZOMBIE = "game-analytics: crash zombie runs"

LATE_AFTER = timedelta(minutes=15)
HEARTBEAT_SILENCE = timedelta(minutes=5)

# Jinja templates rendered by the Prefect API when the automation fires; the subject prefix
# [automation] tells these messages from the flows' own failure hooks
FAILED_SUBJECT = "[automation] {{ flow.name }} / {{ flow_run.name }}: {{ flow_run.state.name }}"
FAILED_BODY = """\
Automation alert: flow run {{ flow_run.name }} of {{ flow.name }} ended {{ flow_run.state.name }}.
{% if deployment %}Deployment: {{ deployment.name }}
{% endif %}Run: {{ flow_run|ui_url }}
State message: {{ flow_run.state.message }}"""

LATE_SUBJECT = "[automation] {{ flow.name }} / {{ flow_run.name }}: not started, late"
LATE_BODY = """\
Automation alert: flow run {{ flow_run.name }} of {{ flow.name }} was scheduled for \
{{ flow_run.expected_start_time }} and has not started {late_minutes} minutes after being marked Late \
(state now: {{ flow_run.state.name }}). Is a worker polling the work pool, or is an earlier build still running?
{% if deployment %}Deployment: {{ deployment.name }}
{% endif %}Run: {{ flow_run|ui_url }}"""


def watched_flow_runs() -> dict[str, object]:
    """Event filter shared by the automations: flow runs of the platform's flows."""
    return {
        "match": ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
        "match_related": ResourceSpecification(
            {"prefect.resource.role": "flow", "prefect.resource.name": list(FLOWS)}
        ),
    }


def failed_or_crashed(block_document_id: UUID) -> Automation:
    return Automation(
        name=FAILED,
        description="Notify when a game-analytics flow run ends Failed or Crashed, with its link and state message.",
        enabled=True,
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            for_each={"prefect.resource.id"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
            **watched_flow_runs(),
        ),
        actions=[SendNotification(block_document_id=block_document_id, subject=FAILED_SUBJECT, body=FAILED_BODY)],
    )


def late_run(block_document_id: UUID, after: timedelta = LATE_AFTER) -> Automation:
    # a run that leaves Late (picked up, started, cancelled or ended) emits one of these events
    started_or_settled = {f"prefect.flow-run.{state}" for state in (
        "Pending", "Running", "Completed", "Failed", "Crashed", "Cancelling", "Cancelled", "Paused", "Suspended")}
    return Automation(
        name=LATE,
        description=f"Notify when a scheduled game-analytics flow run has not started {after} after being marked Late.",
        enabled=True,
        trigger=EventTrigger(
            after={"prefect.flow-run.Late"},
            expect=started_or_settled,
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=after,
            **watched_flow_runs(),
        ),
        actions=[SendNotification(
            block_document_id=block_document_id, subject=LATE_SUBJECT,
            body=LATE_BODY.replace("{late_minutes}", str(int(after.total_seconds() // 60))),
        )],
    )


def zombie_runs(silence: timedelta = HEARTBEAT_SILENCE) -> Automation:
    """Prefect's documented zombie-run detection: after each heartbeat, expect another event of the
    same flow run (heartbeat or state change) within ``silence``; else mark the run Crashed."""
    return Automation(
        name=ZOMBIE,
        description=f"Mark a game-analytics flow run Crashed when it sends no heartbeat for {silence}.",
        enabled=True,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=silence,
            **watched_flow_runs(),
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"Flow run marked as crashed: no heartbeat for {int(silence.total_seconds())} s.",
        )],
    )


def notification_block_id(reference: str) -> UUID:
    """The id of a saved notification block, from its "<block-type-slug>/<name>" reference."""
    slug, _, name = reference.partition("/")
    if not slug or not name:
        raise ValueError(f"notification block: expected '<block-type-slug>/<name>', got {reference!r}")
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(name=name, block_type_slug=slug)
    if document.id is None:
        raise ValueError(f"notification block {reference!r} has no id")
    return document.id


def automations(block_document_id: UUID) -> list[Automation]:
    # the data's own freshness promise lives beside the flow events it watches (blocks/freshness.py)
    from blocks.freshness import stale_marts

    return [failed_or_crashed(block_document_id), late_run(block_document_id), zombie_runs(),
            stale_marts(block_document_id)]


def apply(wanted: list[Automation]) -> list[tuple[str, str]]:
    """Create or update each automation by name, removing duplicates of that name; return
    (name, "created" | "updated") pairs."""
    done = []
    with get_client(sync_client=True) as client:
        for automation in wanted:
            existing = client.read_automations_by_name(automation.name)
            if existing:
                keep, *extra = existing
                automation.id = keep.id
                automation.update()
                for duplicate in extra:
                    client.delete_automation(duplicate.id)
                done.append((automation.name, "updated"))
            else:
                automation.create()
                done.append((automation.name, "created"))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blocks.automations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--block", default=None,
                        help="notification block '<type-slug>/<name>' (default: the GA_NOTIFY_BLOCK setting)")
    args = parser.parse_args(argv)
    reference = args.block or OrchestrationSettings().notify_block
    try:
        block_id = notification_block_id(reference)
    except Exception as exc:  # noqa: BLE001 - the message names the block to register
        print(f"Notification block {reference!r} not found ({exc}); register it first: python -m blocks.register",
              file=sys.stderr)
        return 1
    for name, outcome in apply(automations(block_id)):
        print(f"{outcome} automation {name!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
