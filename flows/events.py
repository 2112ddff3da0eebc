"""What a flow run's dbt tells Prefect as it runs: its log lines in the task's log, and each node's
outcome as a Prefect event."""
from __future__ import annotations

from prefect import get_run_logger
from prefect.events import emit_event

from flows.dbt import LogLine


def report_dbt_line(line: LogLine) -> None:
    """dbt's log goes to the task's log; each node's outcome also becomes a Prefect event
    (`dbt.node.<status>`, related to this flow and task run), so every model, seed and test is
    visible in the run's event feed and usable by automations."""
    logger = get_run_logger()
    logger.log({"warn": 30, "error": 40}.get(line.level, 20), line.message)
    if line.node and line.node.get("unique_id"):
        emit_event(
            event=f"dbt.node.{line.node.get('node_status', 'unknown')}",
            resource={"prefect.resource.id": f"dbt.{line.node['unique_id']}",
                      "prefect.resource.name": line.node.get("node_name", line.node["unique_id"]),
                      "dbt.resource_type": str(line.node.get("resource_type", ""))},
            payload={"relation": (line.node.get("node_relation") or {}).get("relation_name"),
                     "started_at": line.node.get("node_started_at"),
                     "finished_at": line.node.get("node_finished_at")},
        )
