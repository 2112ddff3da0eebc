"""Failure notifications from the flows' ``on_failure`` / ``on_crashed`` hooks, sent through a
Prefect notification block (Slack webhook or a custom webhook) registered by ``blocks/register.py``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect.blocks.core import Block
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.settings import PREFECT_UI_URL

from flows.dbt import DbtFailure
from common.settings import OrchestrationSettings


@dataclass(frozen=True)
class FailureReport:
    flow_name: str
    run_name: str
    state: str
    run_url: str | None
    failed_steps: list[str]
    dbt_failures: list[str]
    message: str

    @property
    def subject(self) -> str:
        return f"{self.flow_name} / {self.run_name}: {self.state}"

    @property
    def body(self) -> str:
        lines = [f"Flow run {self.run_name} of {self.flow_name} ended {self.state}."]
        if self.run_url:
            lines.append(f"Run: {self.run_url}")
        if self.failed_steps:
            lines.append("Failed step(s): " + ", ".join(self.failed_steps))
        if self.dbt_failures:
            lines.append("Failing dbt models/tests:")
            lines += [f"- {name}" for name in self.dbt_failures]
        lines.append(f"Message: {self.message}")
        return "\n".join(lines)


def run_url(flow_run_id: Any) -> str | None:
    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


def dbt_failures_of(state: Any) -> list[str]:
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # the result may not be retrievable (crashed runs)
        return []
    return list(exc.failures) if isinstance(exc, DbtFailure) else []


def failed_task_names(flow_run_id: Any) -> list[str]:
    """The failed steps of the run, as the Prefect API recorded them."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED]))),
        )
    return sorted({run.name for run in runs})


def failure_report(flow: Any, flow_run: FlowRun, state: Any) -> FailureReport:
    return FailureReport(
        flow_name=flow.name,
        run_name=flow_run.name,
        state=state.name or str(state.type),
        run_url=run_url(flow_run.id),
        failed_steps=failed_task_names(flow_run.id),
        dbt_failures=dbt_failures_of(state),
        message=state.message or "",
    )


def block_name(flow_run: FlowRun) -> str:
    return (flow_run.parameters or {}).get("notify_block") or OrchestrationSettings().notify_block


def notify_failure(flow: Any, flow_run: FlowRun, state: Any) -> None:
    """Flow hook: tell people a run failed or crashed, with its link, the failing step and, for dbt,
    the failing models and tests."""
    report = failure_report(flow, flow_run, state)
    Block.load(block_name(flow_run)).notify(body=report.body, subject=report.subject)
