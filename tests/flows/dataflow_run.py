"""A flow run that launches a Dataflow load and watches it, with the pipeline's own cancellation
and crash hooks, served by a Prefect runner in its own process for the cancel and crash tests.

Google's Dataflow API is the only thing replaced: in every process that imports this module with
``GA_TEST_DATAFLOW_STATE`` set (the runner, which runs the hooks, and the flow run's process, which
launches and polls), the clients are a fake that keeps the jobs in one JSON file and appends every
request it receives, as the real request type's JSON, to a log next to it."""
from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from google.cloud import dataflow_v1beta3 as df
from prefect import flow, task

from flows.batch import ingest_source
from flows.pipeline import game_analytics_pipeline
from common.settings import OrchestrationSettings

STATE_ENV = "GA_TEST_DATAFLOW_STATE"


class FileDataflow:
    """Dataflow's FlexTemplatesService, Jobs and Metrics clients over a JSON file shared by processes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.path = Path(os.environ[STATE_ENV])

    @contextmanager
    def jobs(self) -> Iterator[list[dict]]:
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            jobs = json.loads(self.path.read_text()) if self.path.exists() else []
            yield jobs
            self.path.write_text(json.dumps(jobs))

    def record(self, request: Any) -> None:
        line = json.dumps({"type": type(request).__name__, "pid": os.getpid(),
                           "request": json.loads(type(request).to_json(request))})
        with open(self.path.with_suffix(".requests"), "a") as log:
            log.write(line + "\n")

    def launch_flex_template(self, request: df.LaunchFlexTemplateRequest) -> df.LaunchFlexTemplateResponse:
        self.record(request)
        with self.jobs() as jobs:
            job = {"id": f"job-{len(jobs) + 1}", "name": request.launch_parameter.job_name,
                   "state": int(df.JobState.JOB_STATE_RUNNING)}
            jobs.append(job)
        return df.LaunchFlexTemplateResponse(job=df.Job(id=job["id"], name=job["name"]))

    def list_jobs(self, request: df.ListJobsRequest) -> list[df.Job]:
        self.record(request)
        with self.jobs() as jobs:
            return [df.Job(id=j["id"], name=j["name"], current_state=j["state"]) for j in jobs
                    if j["state"] in (df.JobState.JOB_STATE_RUNNING, df.JobState.JOB_STATE_CANCELLING)]

    def get_job(self, request: df.GetJobRequest) -> df.Job:
        self.record(request)
        with self.jobs() as jobs:
            [job] = [j for j in jobs if j["id"] == request.job_id]
        return df.Job(id=job["id"], name=job["name"], current_state=job["state"])

    def update_job(self, request: df.UpdateJobRequest) -> df.Job:
        self.record(request)
        with self.jobs() as jobs:
            for job in jobs:
                if job["id"] == request.job_id and request.job.requested_state == df.JobState.JOB_STATE_CANCELLED:
                    job["state"] = int(df.JobState.JOB_STATE_CANCELLING)  # as Dataflow: cancelled later
        return df.Job(id=request.job_id)


if os.environ.get(STATE_ENV):
    df.FlexTemplatesServiceClient = FileDataflow  # type: ignore[misc]
    df.JobsV1Beta3Client = FileDataflow  # type: ignore[misc]
    df.MetricsV1Beta3Client = FileDataflow  # type: ignore[misc]


@task
def load_players(target: str) -> None:
    ingest_source("players", date(2026, 1, 1), date(2026, 1, 31), OrchestrationSettings(target=target), timeout_s=3600)


@flow(name="dataflow-watch", on_cancellation=game_analytics_pipeline.on_cancellation_hooks,
      on_crashed=game_analytics_pipeline.on_crashed_hooks)
def watch_dataflow(target: str = "bigquery") -> None:
    Path(os.environ[STATE_ENV]).with_suffix(".pid").write_text(str(os.getpid()))
    load_players(target)


if __name__ == "__main__":
    watch_dataflow.serve(name="hooks", parameters={"target": "bigquery"})
