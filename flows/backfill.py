"""The `game-analytics-backfill` flow: a date range split into windows, each one a run of the
pipeline with its own start and end, one after another (the warehouse takes one build at a time),
with its progress shown as a Prefect progress artifact."""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from pydantic import create_model

from flows.notify import notify_failure
from flows.parameters import PipelineParameters, declared_by
from flows.pipeline import game_analytics_pipeline

# the pipeline's parameters a backfill passes on to each window's run, as the pipeline declares them
PASSED_ON = ("target", "sources", "select", "vars", "notify_block")
BackfillParameters = create_model(
    "BackfillParameters",
    start=(date, ...),
    end=(date, ...),
    window_days=(int, 7),
    **{name: (PipelineParameters.model_fields[name].annotation, PipelineParameters.model_fields[name])
       for name in PASSED_ON},
)


def windows(start: date, end: date, days: int) -> list[tuple[date, date]]:
    """[start, end] cut into consecutive inclusive windows of at most ``days`` days."""
    if days < 1:
        raise ValueError(f"window_days must be at least 1, got {days}")
    if start > end:
        raise ValueError(f"start ({start}) is after end ({end})")
    out = []
    while start <= end:
        last = min(start + timedelta(days=days - 1), end)
        out.append((start, last))
        start = last + timedelta(days=1)
    return out


# a failed window notifies through its own pipeline run; the backfill itself reports only a crash
@flow(name="game-analytics-backfill", log_prints=True, on_crashed=[notify_failure])
@declared_by(BackfillParameters)
def game_analytics_backfill(**parameters: Any) -> list[tuple[date, date]]:
    """Rebuild [start, end] window by window; a failed window stops the backfill (and says which).
    Its parameters: BackfillParameters."""
    params = BackfillParameters(**parameters)
    todo = windows(params.start, params.end, params.window_days)
    progress = create_progress_artifact(progress=0.0, key="backfill-progress",
                                        description=f"Backfill {params.start} to {params.end} in {len(todo)} windows")
    for done, (window_start, window_end) in enumerate(todo, start=1):
        print(f"window {done}/{len(todo)}: {window_start} to {window_end}")
        game_analytics_pipeline.with_options(flow_run_name=f"backfill-{window_start}-{window_end}")(
            **{name: getattr(params, name) for name in PASSED_ON}, start=window_start, end=window_end,
            freshness=False)
        update_progress_artifact(progress, progress=100.0 * done / len(todo))
    return todo
