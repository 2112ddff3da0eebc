"""Dataflow through Google's client, checked at the API boundary: a fake client records the real
request objects it receives; nothing leaves the machine."""
from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from google.api_core.exceptions import AlreadyExists, DeadlineExceeded
from google.cloud.dataflow_v1beta3 import (
    GetJobMetricsRequest,
    GetJobRequest,
    Job,
    JobMetrics,
    JobState,
    LaunchFlexTemplateRequest,
    LaunchFlexTemplateResponse,
    ListJobsRequest,
    MetricStructuredName,
    MetricUpdate,
    UpdateJobRequest,
)

from ingestion.batch.dataflow import (
    OUTCOMES,
    DataflowJobs,
    Outcome,
    cancel_run_jobs,
    console_url,
    job_counts,
    outcome,
)
from ingestion.batch.flex_template import JOB_NAME, job_name, label_value
from ingestion.batch.launch import DataflowLaunch, launch
from ingestion.batch.metrics import RowCounts
from ingestion.batch.sources import SourceFileMissing
from common.settings import BatchSettings

TEMPLATE = "gs://studio-dataflow/templates/batch-load.json"


class FakeDataflow:
    """Google's FlexTemplatesServiceClient and JobsV1Beta3Client, as far as we call them. Like the
    service, ``list_jobs`` returns job summaries: id, name and state, never labels."""

    def __init__(self, state: JobState = JobState.JOB_STATE_RUNNING, lost_responses: int = 0) -> None:
        self.requests: list[object] = []
        self.state = state
        self.jobs: list[Job] = []  # every job the service holds, with its labels
        self.lost_responses = lost_responses

    def launch_flex_template(self, request: LaunchFlexTemplateRequest) -> LaunchFlexTemplateResponse:
        self.requests.append(request)
        name = request.launch_parameter.job_name
        if any(job.name == name and outcome(job.current_state) == Outcome.RUNNING for job in self.jobs):
            raise AlreadyExists(f"There is already an active job named {name}")
        job = Job(id=f"2024-01-06_03_00_00-12345678{len(self.jobs)}", name=name, current_state=self.state,
                  labels=request.launch_parameter.environment.additional_user_labels)
        self.jobs.append(job)
        if self.lost_responses:  # the job was created, the caller never hears of it
            self.lost_responses -= 1
            raise DeadlineExceeded("deadline exceeded")
        return LaunchFlexTemplateResponse(job=job)

    def list_jobs(self, request: ListJobsRequest) -> list[Job]:
        self.requests.append(request)
        return [Job(id=job.id, name=job.name, current_state=job.current_state) for job in self.jobs
                if request.filter != ListJobsRequest.Filter.ACTIVE or outcome(job.current_state) == Outcome.RUNNING]

    def get_job(self, request: GetJobRequest) -> Job:
        self.requests.append(request)
        return Job(id=request.job_id, current_state=self.state)

    def update_job(self, request: UpdateJobRequest) -> Job:
        self.requests.append(request)
        return Job(id=request.job_id, current_state=JobState.JOB_STATE_CANCELLING)


@pytest.fixture
def production(tmp_path: Path) -> BatchSettings:
    return BatchSettings(
        data_dir=tmp_path / "data",
        target="bigquery",
        gcp_project="studio-analytics",
        gcp_region="europe-west1",
        bq_dataset_prefix="game_analytics",
        cloudsql_instance="studio-analytics:europe-west1:studio-db",
        cloudsql_database="studio",
        dataflow_template_path=TEMPLATE,
        dataflow_sdk_image="europe-west1-docker.pkg.dev/studio-analytics/dataflow/batch-load:abc123",
        dataflow_temp_location="gs://studio-dataflow/tmp",
        dataflow_service_account="ga-dataflow@studio-analytics.iam.gserviceaccount.com",
        dataflow_max_workers=6,
        read_ranges=16,
    )


def test_launch_on_dataflow_sends_the_flex_template_request_and_returns_the_job_id(production: BatchSettings):
    fake = FakeDataflow()

    result = launch("players", date(2024, 1, 1), date(2024, 1, 5), production, run_id="9F1C-Run_01",
                    templates=fake, jobs=fake)

    name = "ga-9f1c-run-01-players-20240101-20240105"
    assert result == DataflowLaunch("players", "2024-01-06_03_00_00-123456780", "DataflowRunner")
    lookup, request = fake.requests
    assert isinstance(lookup, ListJobsRequest)  # first: is this run's load of this window already running?
    assert (lookup.project_id, lookup.location) == ("studio-analytics", "europe-west1")
    assert lookup.filter == ListJobsRequest.Filter.ACTIVE
    assert isinstance(request, LaunchFlexTemplateRequest)
    assert (request.project_id, request.location) == ("studio-analytics", "europe-west1")
    parameter = request.launch_parameter
    assert JOB_NAME.match(parameter.job_name) and parameter.job_name == name
    assert parameter.container_spec_gcs_path == TEMPLATE
    assert dict(parameter.parameters) == {
        "source": "players",
        "start": "2024-01-01",
        "end": "2024-01-05",
        "sink": "bigquery",
        "bigquery_project": "studio-analytics",
        "bigquery_dataset": "game_analytics_bronze",
        "cloudsql_instance": "studio-analytics:europe-west1:studio-db",
        "cloudsql_database": "studio",
        "cloudsql_user": "ga-dataflow@studio-analytics.iam.gserviceaccount.com",
        "cloudsql_ip_type": "private",
        "postgres_schema": "public",
        "read_ranges": "16",
    }
    environment = parameter.environment
    assert dict(environment.additional_user_labels) == {"app": "game-analytics", "source": "players",
                                                        "run_id": "9f1c-run_01"}
    assert environment.temp_location == "gs://studio-dataflow/tmp"
    # staged in the set-up's bucket, never in a default bucket Dataflow would create itself
    assert environment.staging_location == "gs://studio-dataflow/staging"
    assert environment.service_account_email == "ga-dataflow@studio-analytics.iam.gserviceaccount.com"
    assert environment.max_workers == 6
    assert environment.sdk_container_image == production.dataflow_sdk_image


def test_job_names_are_one_per_run_source_and_window_and_valid():
    run = "0b8eff38-5c4e-4d0a-9a57-3f1f6c2b9e10"
    name = job_name("store_items", date(2024, 1, 1), date(2024, 1, 6), run)
    assert name == f"ga-{run}-store-items-20240101-20240106" and JOB_NAME.match(name)
    assert job_name("store_items", date(2024, 1, 1), date(2024, 1, 6), run) == name  # a retry: the same job
    others = {job_name("players", date(2024, 1, 1), date(2024, 1, 6), run),
              job_name("store_items", date(2024, 1, 2), date(2024, 1, 6), run),
              job_name("store_items", date(2024, 1, 1), date(2024, 1, 6), "1" + run[1:])}
    assert name not in others and len(others) == 3
    adhoc = {job_name("fx_rates", date(2024, 1, 1), date(2024, 1, 1)) for _ in range(20)}
    assert len(adhoc) == 20 and all(JOB_NAME.match(n) and n.startswith("ga-adhoc-") for n in adhoc)
    assert label_value("Run/ID 7" + "x" * 80) == "run-id-7" + "x" * 55


def test_fx_rates_launch_reads_the_exports_bucket_and_checks_the_files_first(production: BatchSettings, tmp_path: Path):
    fake = FakeDataflow()
    exports = tmp_path / "bucket"
    settings = production.model_copy(update={"exports_url": str(exports)})

    with pytest.raises(SourceFileMissing, match=re.escape(f"export folder not found: {exports / 'fx_rates'}")):
        launch("fx_rates", date(2024, 1, 1), date(2024, 1, 5), settings, templates=fake)
    assert fake.requests == []

    (exports / "fx_rates").mkdir(parents=True)
    launch("fx_rates", date(2024, 1, 1), date(2024, 1, 5), settings, templates=fake, jobs=fake)
    _, request = fake.requests
    assert request.launch_parameter.parameters["exports_location"] == str(exports)
    assert not any(name.startswith("cloudsql") for name in request.launch_parameter.parameters)


def test_launch_on_dataflow_names_missing_settings(production: BatchSettings):
    fake = FakeDataflow()
    with pytest.raises(ValueError, match="GA_DATAFLOW_TEMPLATE_PATH"):
        launch("players", date(2024, 1, 1), date(2024, 1, 1),
               production.model_copy(update={"dataflow_template_path": None}), templates=fake)
    with pytest.raises(ValueError, match="a Dataflow load of fx_rates needs GA_EXPORTS_URL"):
        launch("fx_rates", date(2024, 1, 1), date(2024, 1, 1), production, templates=fake)
    with pytest.raises(ValueError, match="GA_GCP_PROJECT"):
        launch("players", date(2024, 1, 1), date(2024, 1, 1), production.model_copy(update={"gcp_project": None}),
               templates=fake)
    assert fake.requests == []


def test_launch_refuses_to_run_without_the_sdk_image(production: BatchSettings):
    """Without the image, Dataflow's workers would run Beam's stock image, which has neither the
    pipeline's package nor its libraries: every load would fail on the workers."""
    fake = FakeDataflow()
    for image in (None, ""):
        with pytest.raises(ValueError, match="GA_DATAFLOW_SDK_IMAGE"):
            launch("players", date(2024, 1, 1), date(2024, 1, 1),
                   production.model_copy(update={"dataflow_sdk_image": image}), templates=fake, jobs=fake)
    assert fake.requests == []  # nothing launched, nothing looked up


def test_a_retried_launch_whose_first_response_was_lost_finds_the_first_job(production: BatchSettings):
    fake = FakeDataflow(lost_responses=1)
    window = ("players", date(2024, 1, 1), date(2024, 1, 5))
    with pytest.raises(DeadlineExceeded):  # the job was created; the response never arrived
        launch(*window, production, run_id="run-7", templates=fake, jobs=fake)

    retried = launch(*window, production, run_id="run-7", templates=fake, jobs=fake)

    assert [job.id for job in fake.jobs] == [retried.job_id]  # one job, the first one
    assert sum(isinstance(r, LaunchFlexTemplateRequest) for r in fake.requests) == 1


def test_a_launch_refused_as_already_existing_adopts_the_active_job(production: BatchSettings):
    """The service refuses a second active job of the same name with ALREADY_EXISTS (409): when the
    lookup before the launch missed the job (listed a moment late), the launch adopts it."""

    class ListedLate(FakeDataflow):
        def list_jobs(self, request: ListJobsRequest) -> list[Job]:
            listed = super().list_jobs(request)
            return [] if sum(isinstance(r, ListJobsRequest) for r in self.requests) == 2 else listed

    fake = ListedLate()
    first = launch("players", date(2024, 1, 1), date(2024, 1, 5), production, run_id="run-7", templates=fake, jobs=fake)
    second = launch("players", date(2024, 1, 1), date(2024, 1, 5), production, run_id="run-7", templates=fake,
                    jobs=fake)

    assert second == first and len(fake.jobs) == 1
    assert [type(r).__name__ for r in fake.requests] == [
        "ListJobsRequest", "LaunchFlexTemplateRequest",  # the first launch
        "ListJobsRequest", "LaunchFlexTemplateRequest", "ListJobsRequest",  # missed, 409, found
    ]


def test_a_retry_after_its_job_was_told_to_stop_launches_a_new_job_under_a_free_name(production: BatchSettings):
    """The watcher cancels its job when it gives up (a poll that failed, then a task retry): that
    job is still active while it cancels, and holds its name, so the retry neither adopts it nor
    collides with it."""
    fake = FakeDataflow()
    window = ("players", date(2024, 1, 1), date(2024, 1, 5))
    first = launch(*window, production, run_id="run-7", templates=fake, jobs=fake)
    fake.jobs[0].current_state = JobState.JOB_STATE_CANCELLING

    second = launch(*window, production, run_id="run-7", templates=fake, jobs=fake)
    fake.jobs[1].current_state = JobState.JOB_STATE_DRAINING
    third = launch(*window, production, run_id="run-7", templates=fake, jobs=fake)

    assert len({first.job_id, second.job_id, third.job_id}) == 3
    base = "ga-run-7-players-20240101-20240105"
    assert [job.name for job in fake.jobs] == [base, f"{base}-2", f"{base}-3"]


def test_a_run_whose_job_ended_launches_again(production: BatchSettings):
    fake = FakeDataflow(state=JobState.JOB_STATE_FAILED)
    first = launch("players", date(2024, 1, 1), date(2024, 1, 5), production, run_id="run-7", templates=fake, jobs=fake)
    second = launch("players", date(2024, 1, 1), date(2024, 1, 5), production, run_id="run-7", templates=fake,
                    jobs=fake)
    assert first.job_id != second.job_id and len(fake.jobs) == 2


def test_cancelling_a_runs_jobs_finds_them_by_name_in_job_summaries(production: BatchSettings):
    """``list_jobs`` returns summaries without labels; the run's jobs are found by their names."""
    run = "0B8EFF38-5c4e-4d0a-9a57-3f1f6c2b9e10"
    fake = FakeDataflow()
    for source in ("players", "store_items"):
        launch(source, date(2024, 1, 1), date(2024, 1, 5), production, run_id=run, templates=fake, jobs=fake)
    launch("players", date(2024, 1, 1), date(2024, 1, 5), production, run_id="another-run", templates=fake, jobs=fake)
    fake.jobs.append(Job(id="done", name=f"ga-{run.lower()}-fx-rates-20240101-20240105",
                         current_state=JobState.JOB_STATE_DONE))
    fake.requests.clear()

    cancelled = cancel_run_jobs(run, production, client=fake)

    mine = [job.id for job in fake.jobs[:2]]
    assert cancelled == mine
    listed, *updates = fake.requests
    assert isinstance(listed, ListJobsRequest) and listed.filter == ListJobsRequest.Filter.ACTIVE
    assert (listed.project_id, listed.location) == ("studio-analytics", "europe-west1")
    assert [(u.job_id, u.job.requested_state) for u in updates] == [(j, JobState.JOB_STATE_CANCELLED) for j in mine]
    assert all(isinstance(u, UpdateJobRequest) for u in updates)


def counter(name: str, value: int, step: str, tentative: bool = False, namespace: str = "ga_batch",
            origin: str = "user") -> MetricUpdate:
    context = {"namespace": namespace, "step": step}
    if tentative:
        context["tentative"] = "true"
    return MetricUpdate(name=MetricStructuredName(origin=origin, name=name, context=context), scalar=value,
                        cumulative=True)


class FakeMetrics:
    def __init__(self, metrics: JobMetrics) -> None:
        self.metrics = metrics
        self.requests: list[GetJobMetricsRequest] = []

    def get_job_metrics(self, request: GetJobMetricsRequest) -> JobMetrics:
        assert isinstance(request, GetJobMetricsRequest)
        self.requests.append(request)
        return self.metrics


def test_a_finished_jobs_row_counts_are_its_committed_ga_batch_counters(production: BatchSettings):
    metrics = JobMetrics(metrics=[
        counter("rows_read", 1000, "s1"), counter("rows_read", 1003, "s1", tentative=True),  # a retried bundle
        counter("rows_loaded", 600, "s3"), counter("rows_loaded", 370, "s4"),  # summed over steps
        counter("rows_rejected", 30, "s3"),
        counter("rejected.invalid_value", 20, "s3"), counter("rejected.duplicate_key", 10, "s3"),
        counter("rejected.missing_value", 0, "s3"),
        counter("rows_read", 5, "s9", namespace="another"),  # another namespace
        counter("ElementCount", 1000, "s1", origin="dataflow/v1b3"),  # a system metric
    ])
    fake = FakeMetrics(metrics)

    counts = job_counts("job-9", production, client=fake)

    assert counts == RowCounts(rows_read=1000, rows_loaded=970, rows_rejected=30,
                               rejection_reasons={"duplicate_key": 10, "invalid_value": 20})
    [request] = fake.requests
    assert (request.project_id, request.location, request.job_id) == ("studio-analytics", "europe-west1", "job-9")


def test_counters_never_incremented_are_zero_but_no_metrics_at_all_is_an_error(production: BatchSettings):
    system_only = JobMetrics(metrics=[counter("ElementCount", 0, "s1", origin="dataflow/v1b3")])
    assert job_counts("job-1", production, client=FakeMetrics(system_only)) == RowCounts(0, 0, 0, {})
    with pytest.raises(RuntimeError, match="job-2 reported no metrics"):
        job_counts("job-2", production, client=FakeMetrics(JobMetrics()))


def test_get_job_state_and_cancel_send_the_real_requests():
    fake = FakeDataflow(state=JobState.JOB_STATE_RESOURCE_CLEANING_UP)
    jobs = DataflowJobs(fake, "studio-analytics", "europe-west1")

    assert jobs.get_job_state("job-1") == JobState.JOB_STATE_RESOURCE_CLEANING_UP
    jobs.cancel_job("job-1")

    get, update = fake.requests
    assert isinstance(get, GetJobRequest)
    assert (get.project_id, get.location, get.job_id) == ("studio-analytics", "europe-west1", "job-1")
    assert isinstance(update, UpdateJobRequest)
    assert (update.project_id, update.location, update.job_id) == ("studio-analytics", "europe-west1", "job-1")
    assert update.job.requested_state == JobState.JOB_STATE_CANCELLED
    assert jobs.get_outcome("job-1") == Outcome.RUNNING  # cleaning up is not an end


def test_module_functions_take_the_settings_project_and_region(production: BatchSettings):
    from ingestion.batch import dataflow

    fake = FakeDataflow(state=JobState.JOB_STATE_DONE)
    assert dataflow.get_job_state("job-2", production, client=fake) == JobState.JOB_STATE_DONE
    dataflow.cancel_job("job-2", production, client=fake)
    get, update = fake.requests
    assert (get.project_id, get.location, get.job_id) == ("studio-analytics", "europe-west1", "job-2")
    assert (update.job_id, update.job.requested_state) == ("job-2", JobState.JOB_STATE_CANCELLED)
    assert dataflow.outcome(JobState.JOB_STATE_DONE) == dataflow.SUCCEEDED != dataflow.RUNNING


def test_every_job_state_has_an_outcome():
    assert set(OUTCOMES) == set(JobState)
    assert outcome(JobState.JOB_STATE_DONE) == Outcome.SUCCEEDED
    assert outcome(JobState.JOB_STATE_FAILED) == Outcome.FAILED
    assert {s for s in JobState if outcome(s) == Outcome.CANCELLED} == {
        JobState.JOB_STATE_CANCELLED, JobState.JOB_STATE_DRAINED, JobState.JOB_STATE_UPDATED
    }
    for state in (JobState.JOB_STATE_UNKNOWN, JobState.JOB_STATE_RESOURCE_CLEANING_UP, JobState.JOB_STATE_QUEUED,
                  JobState.JOB_STATE_PENDING, JobState.JOB_STATE_CANCELLING, JobState.JOB_STATE_PAUSED):
        assert outcome(state) == Outcome.RUNNING
    assert outcome(999) == Outcome.RUNNING  # a state newer than this client


def test_console_url():
    assert console_url("studio-analytics", "europe-west1", "2024-01-06_03_00_00-1") == (
        "https://console.cloud.google.com/dataflow/jobs/europe-west1/2024-01-06_03_00_00-1?project=studio-analytics"
    )
