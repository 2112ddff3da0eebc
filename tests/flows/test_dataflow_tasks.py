"""The batch-ingestion task on its production path (target=bigquery): Dataflow is faked only at its
API boundary (the Flex Template launch, list_jobs, get_job, update_job, get_job_metrics), and the
real request objects the task sends are checked. Runs against the real Prefect server."""
from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest
from google.api_core.exceptions import AlreadyExists, ServiceUnavailable
from google.cloud import dataflow_v1beta3 as df
from prefect import flow

import flows.batch
from flows.batch import DataflowJobFailed
from flows.parameters import PipelineParameters
from flows.pipeline import ingest_batch
from tests.gcp_keys import save_credentials_block


def counter(name: str, value: int, tentative: bool = False) -> df.MetricUpdate:
    context = {"namespace": "ga_batch", "step": "s2"} | ({"tentative": "true"} if tentative else {})
    return df.MetricUpdate(name=df.MetricStructuredName(origin="user", name=name, context=context), scalar=value)


class FakeDataflow:
    """Google's Dataflow API as the clients see it; records every request. Jobs are listed as the
    service lists them: summaries (id, name, state) without labels.

    ``launch_errors``: launches refused with a 503; ``lost_responses``: launches that create the
    job but whose response never arrives (the caller sees a 503)."""

    def __init__(self, launch_errors: int = 0, states: list[df.JobState] | None = None, lost_responses: int = 0,
                 metrics: list[df.MetricUpdate] | None = None) -> None:
        self.launch_errors = launch_errors
        self.lost_responses = lost_responses
        self.states = list(states or [df.JobState.JOB_STATE_DONE])
        self.metrics = metrics if metrics is not None else [
            counter("rows_read", 40), counter("rows_read", 41, tentative=True), counter("rows_loaded", 38),
            counter("rows_rejected", 2), counter("rejected.invalid_value", 2)]
        self.jobs: list[df.Job] = []
        self.launches: list[df.LaunchFlexTemplateRequest] = []
        self.lists: list[df.ListJobsRequest] = []
        self.gets: list[df.GetJobRequest] = []
        self.updates: list[df.UpdateJobRequest] = []
        self.metric_requests: list[df.GetJobMetricsRequest] = []

    def templates_client(self, *args, **kwargs) -> "FakeDataflow":
        return self

    def launch_flex_template(self, request: df.LaunchFlexTemplateRequest) -> df.LaunchFlexTemplateResponse:
        assert isinstance(request, df.LaunchFlexTemplateRequest)
        self.launches.append(request)
        if self.launch_errors:
            self.launch_errors -= 1
            raise ServiceUnavailable("backend unavailable")
        name = request.launch_parameter.job_name
        if any(job.name == name and job.current_state == df.JobState.JOB_STATE_RUNNING for job in self.jobs):
            raise AlreadyExists(f"There is already an active job named {name}")
        job = df.Job(id=f"2026-11-26_job{len(self.jobs) + 1}", name=name, current_state=df.JobState.JOB_STATE_RUNNING,
                     labels=request.launch_parameter.environment.additional_user_labels)
        self.jobs.append(job)
        if self.lost_responses:
            self.lost_responses -= 1
            raise ServiceUnavailable("connection reset before the response")
        return df.LaunchFlexTemplateResponse(job=job)

    def list_jobs(self, request: df.ListJobsRequest) -> list[df.Job]:
        assert isinstance(request, df.ListJobsRequest) and request.filter == df.ListJobsRequest.Filter.ACTIVE
        self.lists.append(request)
        return [df.Job(id=job.id, name=job.name, current_state=job.current_state) for job in self.jobs
                if job.current_state == df.JobState.JOB_STATE_RUNNING]

    def get_job(self, request: df.GetJobRequest) -> df.Job:
        assert isinstance(request, df.GetJobRequest)
        self.gets.append(request)
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return df.Job(id=request.job_id, current_state=state)

    def update_job(self, request: df.UpdateJobRequest) -> df.Job:
        assert isinstance(request, df.UpdateJobRequest)
        self.updates.append(request)
        for job in self.jobs:
            if job.id == request.job_id:
                job.current_state = df.JobState.JOB_STATE_CANCELLING
        return df.Job(id=request.job_id, requested_state=request.job.requested_state)

    def get_job_metrics(self, request: df.GetJobMetricsRequest) -> df.JobMetrics:
        assert isinstance(request, df.GetJobMetricsRequest)
        self.metric_requests.append(request)
        return df.JobMetrics(metrics=self.metrics)


@pytest.fixture
def dataflow(monkeypatch: pytest.MonkeyPatch, prefect_api: str):
    def install(fake: FakeDataflow) -> FakeDataflow:
        monkeypatch.setattr(df, "FlexTemplatesServiceClient", fake.templates_client)
        monkeypatch.setattr(df, "JobsV1Beta3Client", fake.templates_client)
        monkeypatch.setattr(df, "MetricsV1Beta3Client", fake.templates_client)
        return fake

    for name, value in {"GA_GCP_PROJECT": "studio-analytics", "GA_GCP_REGION": "europe-west1",
                        "GA_DATAFLOW_TEMPLATE_PATH": "gs://studio-dataflow/templates/batch-load.json",
                        "GA_DATAFLOW_TEMP_LOCATION": "gs://studio-dataflow/tmp",
                        "GA_DATAFLOW_SDK_IMAGE": "europe-west1-docker.pkg.dev/studio-analytics/dataflow/batch-load:1",
                        "GA_DATAFLOW_SERVICE_ACCOUNT": "ga-dataflow@studio-analytics.iam.gserviceaccount.com",
                        "GA_CLOUDSQL_INSTANCE": "studio-analytics:europe-west1:studio-db",
                        "GA_CLOUDSQL_DATABASE": "studio",
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
    assert result.job_id == "2026-11-26_job1" and result.runner == "DataflowRunner"
    assert (result.rows_loaded, result.rows_rejected) == (38, 2)  # the job's committed counters
    [metrics] = fake.metric_requests
    assert (metrics.project_id, metrics.location, metrics.job_id) == ("studio-analytics", "europe-west1", "2026-11-26_job1")
    assert len(fake.launches) == 2  # the 503, then the launch that went through
    launch = fake.launches[-1]
    assert launch.project_id == "studio-analytics" and launch.location == "europe-west1"
    assert launch.launch_parameter.container_spec_gcs_path == "gs://studio-dataflow/templates/batch-load.json"
    assert launch.launch_parameter.parameters["source"] == "players"
    assert launch.launch_parameter.parameters["start"] == "2026-01-01"
    labels = launch.launch_parameter.environment.additional_user_labels
    assert labels["run_id"] == str(state.state_details.flow_run_id) and labels["source"] == "players"
    run = str(state.state_details.flow_run_id)
    assert launch.launch_parameter.job_name == f"ga-{run}-players-20260101-20260131"
    assert fake.launches[0].launch_parameter.job_name == launch.launch_parameter.job_name  # one name per window
    assert [g.job_id for g in fake.gets] == ["2026-11-26_job1"] * 4
    assert not fake.updates  # nothing cancelled


def test_a_launch_retried_after_its_response_was_lost_follows_the_first_job(dataflow) -> None:
    fake = dataflow(FakeDataflow(lost_responses=1))
    state = run_ingest()
    assert state.is_completed(), state.message
    assert len(fake.jobs) == 1 and state.result().job_id == fake.jobs[0].id  # no second job for the window
    assert len(fake.launches) == 1  # the retry found the job before launching
    assert len(fake.lists) == 4  # each attempt: the ended runs' jobs, then this load's job


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

    from flows.batch import cancel_dataflow_jobs
    from flows.pipeline import game_analytics_pipeline

    assert cancel_dataflow_jobs in game_analytics_pipeline.on_cancellation_hooks
    assert cancel_dataflow_jobs in game_analytics_pipeline.on_crashed_hooks
    fake = dataflow(FakeDataflow())
    fake.jobs = [df.Job(id="mine", name="ga-0b8eff38-run-players-20260101-20260131",
                        current_state=df.JobState.JOB_STATE_RUNNING, labels={"run_id": "0b8eff38-run"}),
                 df.Job(id="other", name="ga-1c9e-run-players-20260101-20260131",
                        current_state=df.JobState.JOB_STATE_RUNNING, labels={"run_id": "1c9e-run"})]
    cancel_dataflow_jobs(None, SimpleNamespace(id="0B8EFF38-run", parameters={"target": "bigquery"}), None)
    assert [(u.job_id, u.job.requested_state) for u in fake.updates] == [("mine", df.JobState.JOB_STATE_CANCELLED)]
    cancel_dataflow_jobs(None, SimpleNamespace(id="1c9e-run", parameters={"target": "local"}), None)
    assert len(fake.updates) == 1  # a local run launched no Dataflow job


def test_a_run_first_cancels_the_jobs_of_runs_that_ended_without_cancelling_them(dataflow) -> None:
    """On Kubernetes no hook runs for a pod that is OOM-killed or evicted; the observer only marks
    its run Crashed. The next run on Dataflow cancels such a run's jobs before launching."""
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Crashed, Running

    @flow(name="earlier-run")
    def earlier() -> None: ...

    fake = dataflow(FakeDataflow())
    with get_client(sync_client=True) as client:
        crashed = client.create_flow_run(earlier, state=Crashed(message="pod OOMKilled"))
        completed = client.create_flow_run(earlier, state=Completed())
        running = client.create_flow_run(earlier, state=Running())
    unknown = uuid.uuid4()  # a run of another environment sharing the project
    window = "players-20260101-20260131"
    for job_id, run_id in (("crashed-1", crashed.id), ("crashed-2", crashed.id), ("completed", completed.id),
                           ("running", running.id), ("unknown", unknown)):
        fake.jobs.append(df.Job(id=job_id, name=f"ga-{run_id}-{window}", current_state=df.JobState.JOB_STATE_RUNNING))

    state = run_ingest()

    assert state.is_completed(), state.message
    cancelled = [u.job_id for u in fake.updates]
    assert sorted(cancelled) == ["completed", "crashed-1", "crashed-2"]
    assert all(u.job.requested_state == df.JobState.JOB_STATE_CANCELLED for u in fake.updates)
    assert len(fake.launches) == 1  # and then its own job


# ---------------------------------------------------------------------------------------------
# a real flow run, cancelled through the API or killed, on a real Prefect server


@pytest.fixture(scope="module")
def served(prefect_api: str, tmp_path_factory: pytest.TempPathFactory):
    """``tests/flows/dataflow_run.py`` served by a Prefect runner in its own process (the runner
    starts each flow run in a child process, as the process work pool's worker does)."""
    import json
    import os
    import subprocess
    import sys
    import time

    from prefect.client.orchestration import get_client

    from deployments.local.services import stop
    from common.settings import REPO_ROOT

    tmp_path = tmp_path_factory.mktemp("served")
    state = tmp_path / "dataflow.json"
    env = dict(os.environ, PREFECT_API_URL=prefect_api, PREFECT_RUNNER_POLL_FREQUENCY="1",
               PYTHONPATH=str(REPO_ROOT), GA_TEST_DATAFLOW_STATE=str(state), GA_DATA_DIR=str(tmp_path / "data"),
               GA_GCP_PROJECT="studio-analytics", GA_GCP_REGION="europe-west1",
               GA_DATAFLOW_TEMPLATE_PATH="gs://studio-dataflow/templates/batch-load.json",
               GA_DATAFLOW_SDK_IMAGE="europe-west1-docker.pkg.dev/studio-analytics/dataflow/batch-load:1",
               GA_DATAFLOW_SERVICE_ACCOUNT="ga-dataflow@studio-analytics.iam.gserviceaccount.com",
               GA_CLOUDSQL_INSTANCE="studio-analytics:europe-west1:studio-db", GA_CLOUDSQL_DATABASE="studio",
               # the flows build every Google client with the credentials of this block
               GA_GCP_CREDENTIALS_BLOCK=save_credentials_block())
    log = open(tmp_path / "runner.log", "ab")
    runner = subprocess.Popen([sys.executable, "-m", "tests.flows.dataflow_run"], env=env, cwd=REPO_ROOT,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = get_client(sync_client=True)

    def wait_for(what: str, check, timeout_s: float = 90):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if runner.poll() is not None:
                raise RuntimeError(f"the runner exited with {runner.returncode}; see {tmp_path / 'runner.log'}")
            found = check()
            if found:
                return found
            time.sleep(0.5)
        raise TimeoutError(f"{what} within {timeout_s} s; see {tmp_path / 'runner.log'}")

    def requests() -> list[dict]:
        path = state.with_suffix(".requests")
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def start_run():
        for suffix in (".json", ".requests", ".pid"):  # one run at a time: the fake starts empty
            state.with_suffix(suffix).unlink(missing_ok=True)

        def deployment():
            try:
                return client.read_deployment_by_name("dataflow-watch/hooks")
            except Exception:  # not served yet
                return None

        run = client.create_flow_run_from_deployment(wait_for("the deployment is served", deployment).id)
        wait_for("the flow run launches its job and polls it",
                 lambda: [r for r in requests() if r["type"] == "GetJobRequest"] and state.with_suffix(".pid").exists())
        return run

    with client:
        try:
            yield SimpleNamespace(client=client, start_run=start_run, requests=requests, wait_for=wait_for,
                                  pid=lambda: int(state.with_suffix(".pid").read_text()))
        finally:
            stop(runner)
            log.close()


def cancels_of(requests: list[dict]) -> list[dict]:
    return [r for r in requests if r["type"] == "UpdateJobRequest"]


def the_runs_job_cancel(served, run_id) -> dict:
    """The one cancel request the run's job received (checked to be the right one)."""
    import time

    requests = served.requests()
    [launch] = [r["request"] for r in requests if r["type"] == "LaunchFlexTemplateRequest"]
    assert launch["launchParameter"]["jobName"] == f"ga-{run_id}-players-20260101-20260131"
    [cancel] = served.wait_for("the job is cancelled", lambda: cancels_of(served.requests()))
    time.sleep(3)  # and no second one: the hook skips a job already cancelling
    assert cancels_of(served.requests()) == [cancel]
    assert cancel["request"]["jobId"] == "job-1"
    assert cancel["request"]["job"]["requestedState"] == int(df.JobState.JOB_STATE_CANCELLED)
    assert (cancel["request"]["projectId"], cancel["request"]["location"]) == ("studio-analytics", "europe-west1")
    return cancel


def test_a_flow_run_cancelled_through_the_api_cancels_its_dataflow_job(served) -> None:
    from prefect.states import Cancelling

    run = served.start_run()
    served.client.set_flow_run_state(run.id, Cancelling(message="cancelled by an operator"), force=True)

    # the runner stops the run's process with SIGTERM: its watching task cancels the job on its
    # way out (when the process is gone first, the runner's cancellation hook does)
    the_runs_job_cancel(served, run.id)
    final = served.wait_for("the run ends cancelled", lambda: (s := served.client.read_flow_run(run.id).state)
                            and s.is_cancelled() and s)
    assert final.is_cancelled()


def test_a_flow_run_whose_process_is_killed_cancels_its_dataflow_job(served) -> None:
    import os
    import signal

    run = served.start_run()
    flow_process = served.pid()
    os.kill(flow_process, signal.SIGKILL)  # no handler, no hook can run in that process

    cancel = the_runs_job_cancel(served, run.id)
    assert cancel["pid"] != flow_process  # the runner's crash hook, from the job's name
    final = served.wait_for("the run is marked crashed", lambda: (s := served.client.read_flow_run(run.id).state)
                            and s.is_crashed() and s)
    assert final.is_crashed()
