"""The batch-ingestion task on its production path (target=bigquery): Dataflow is faked only at its
API boundary (the Flex Template launch, get_job, update_job), and the real request objects the task
sends are checked. Runs against the real Prefect server."""
from __future__ import annotations

from datetime import date

import pytest
from google.api_core.exceptions import ServiceUnavailable
from google.cloud import dataflow_v1beta3 as df
from prefect import flow

import flows.batch
from flows.batch import DataflowJobFailed
from flows.pipeline import PipelineParameters, ingest_batch
from tests.gcp_keys import save_credentials_block


class FakeDataflow:
    """Google's Dataflow API as the two clients see it; records every request."""

    def __init__(self, launch_errors: int = 0, states: list[df.JobState] | None = None) -> None:
        self.launch_errors = launch_errors
        self.states = list(states or [df.JobState.JOB_STATE_DONE])
        self.launches: list[df.LaunchFlexTemplateRequest] = []
        self.gets: list[df.GetJobRequest] = []
        self.updates: list[df.UpdateJobRequest] = []

    def templates_client(self, *args, **kwargs) -> "FakeDataflow":
        return self

    def launch_flex_template(self, request: df.LaunchFlexTemplateRequest) -> df.LaunchFlexTemplateResponse:
        assert isinstance(request, df.LaunchFlexTemplateRequest)
        self.launches.append(request)
        if self.launch_errors:
            self.launch_errors -= 1
            raise ServiceUnavailable("backend unavailable")
        return df.LaunchFlexTemplateResponse(job=df.Job(id=f"2026-11-26_job{len(self.launches)}"))

    def get_job(self, request: df.GetJobRequest) -> df.Job:
        assert isinstance(request, df.GetJobRequest)
        self.gets.append(request)
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return df.Job(id=request.job_id, current_state=state)

    def list_jobs(self, request: df.ListJobsRequest) -> list[df.Job]:
        assert isinstance(request, df.ListJobsRequest) and request.filter == df.ListJobsRequest.Filter.ACTIVE
        return [df.Job(id="mine", labels={"run_id": "0b8eff38-run"}), df.Job(id="other", labels={"run_id": "x"})]

    def update_job(self, request: df.UpdateJobRequest) -> df.Job:
        assert isinstance(request, df.UpdateJobRequest)
        self.updates.append(request)
        return df.Job(id=request.job_id, requested_state=request.job.requested_state)


@pytest.fixture
def dataflow(monkeypatch: pytest.MonkeyPatch, prefect_api: str):
    def install(fake: FakeDataflow) -> FakeDataflow:
        monkeypatch.setattr(df, "FlexTemplatesServiceClient", fake.templates_client)
        monkeypatch.setattr(df, "JobsV1Beta3Client", fake.templates_client)
        return fake

    for name, value in {"GA_GCP_PROJECT": "studio-analytics", "GA_GCP_REGION": "europe-west1",
                        "GA_DATAFLOW_TEMPLATE_PATH": "gs://studio-dataflow/templates/batch-load.json",
                        "GA_DATAFLOW_TEMP_LOCATION": "gs://studio-dataflow/tmp",
                        "GA_POSTGRES_DSN": "host=10.20.0.5 dbname=studio user=ingest",
                        "GA_GCP_CREDENTIALS_BLOCK": save_credentials_block()}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(flows.batch, "FIRST_POLL_S", 0.05)
    return install


def run_ingest(timeout_seconds: float | None = None, dataflow_timeout_s: int = 600):
    task = ingest_batch.with_options(retry_delay_seconds=0, timeout_seconds=timeout_seconds)
    params = PipelineParameters(target="bigquery", sources=["players"], dataflow_timeout_s=dataflow_timeout_s)

    @flow(name="ingest-on-dataflow")
    def ingest():
        return task("players", date(2026, 1, 1), date(2026, 1, 31), params)

    return ingest(return_state=True)


def test_a_transient_launch_error_is_retried_and_the_job_followed_to_done(dataflow) -> None:
    fake = dataflow(FakeDataflow(launch_errors=1, states=[df.JobState.JOB_STATE_PENDING, df.JobState.JOB_STATE_RUNNING,
                                                          df.JobState.JOB_STATE_RESOURCE_CLEANING_UP,
                                                          df.JobState.JOB_STATE_DONE]))
    state = run_ingest()
    assert state.is_completed(), state.message
    result = state.result()
    assert result.job_id == "2026-11-26_job2" and result.runner == "DataflowRunner"
    assert len(fake.launches) == 2  # the 503, then the launch that went through
    launch = fake.launches[-1]
    assert launch.project_id == "studio-analytics" and launch.location == "europe-west1"
    assert launch.launch_parameter.container_spec_gcs_path == "gs://studio-dataflow/templates/batch-load.json"
    assert launch.launch_parameter.parameters["source"] == "players"
    assert launch.launch_parameter.parameters["start"] == "2026-01-01"
    labels = launch.launch_parameter.environment.additional_user_labels
    assert labels["run_id"] == str(state.state_details.flow_run_id) and labels["source"] == "players"
    assert launch.launch_parameter.job_name != fake.launches[0].launch_parameter.job_name  # unique per launch
    assert [g.job_id for g in fake.gets] == ["2026-11-26_job2"] * 4
    assert not fake.updates  # nothing cancelled


def test_a_job_that_ends_failed_fails_the_task_without_retrying(dataflow) -> None:
    fake = dataflow(FakeDataflow(states=[df.JobState.JOB_STATE_RUNNING, df.JobState.JOB_STATE_FAILED]))
    state = run_ingest()
    assert state.is_failed()
    with pytest.raises(DataflowJobFailed, match="JOB_STATE_FAILED"):
        state.result()
    assert len(fake.launches) == 1  # a failed job is not a transient error
    assert not fake.updates


@pytest.mark.parametrize("timeout", ["task", "job"])
def test_a_timeout_cancels_the_dataflow_job(dataflow, timeout: str) -> None:
    fake = dataflow(FakeDataflow(states=[df.JobState.JOB_STATE_RUNNING]))
    if timeout == "task":  # Prefect's task timeout interrupts the watcher
        state = run_ingest(timeout_seconds=2)
    else:  # the pipeline's own limit on how long a Dataflow job may run
        state = run_ingest(dataflow_timeout_s=1)
    assert state.is_failed()
    assert len(fake.updates) == 1
    cancel = fake.updates[0]
    assert cancel.job_id == "2026-11-26_job1" and cancel.project_id == "studio-analytics"
    assert cancel.location == "europe-west1"
    assert cancel.job.requested_state == df.JobState.JOB_STATE_CANCELLED


def test_a_cancelled_or_crashed_run_cancels_the_jobs_it_launched(dataflow) -> None:
    from types import SimpleNamespace

    from flows.batch import cancel_dataflow_jobs
    from flows.pipeline import game_analytics_pipeline

    assert cancel_dataflow_jobs in game_analytics_pipeline.on_cancellation_hooks
    assert cancel_dataflow_jobs in game_analytics_pipeline.on_crashed_hooks
    fake = dataflow(FakeDataflow())
    cancel_dataflow_jobs(None, SimpleNamespace(id="0B8EFF38-run", parameters={"target": "bigquery"}), None)
    assert [(u.job_id, u.job.requested_state) for u in fake.updates] == [("mine", df.JobState.JOB_STATE_CANCELLED)]
    cancel_dataflow_jobs(None, SimpleNamespace(id="0b8eff38-run", parameters={"target": "local"}), None)
    assert len(fake.updates) == 1  # a local run launched no Dataflow job
