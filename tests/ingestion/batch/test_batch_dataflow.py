"""Dataflow through Google's client, checked at the API boundary: a fake client records the real
request objects it receives; nothing leaves the machine."""
from __future__ import annotations

import re
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from google.cloud.dataflow_v1beta3 import (
    GetJobRequest,
    Job,
    JobState,
    LaunchFlexTemplateRequest,
    LaunchFlexTemplateResponse,
    UpdateJobRequest,
)

from ingestion.batch.dataflow import (
    JOB_NAME,
    OUTCOMES,
    DataflowJobs,
    Outcome,
    console_url,
    job_name,
    label_value,
    outcome,
)
from ingestion.batch.launch import LoadResult, launch
from ingestion.batch.sources import SourceFileMissing
from ingestion.settings import Settings

TEMPLATE = "gs://studio-dataflow/templates/batch-load.json"


class FakeDataflow:
    """Google's FlexTemplatesServiceClient and JobsV1Beta3Client, as far as we call them."""

    def __init__(self, state: JobState = JobState.JOB_STATE_RUNNING) -> None:
        self.requests: list[object] = []
        self.state = state

    def launch_flex_template(self, request: LaunchFlexTemplateRequest) -> LaunchFlexTemplateResponse:
        self.requests.append(request)
        return LaunchFlexTemplateResponse(job=Job(id="2024-01-06_03_00_00-123456789", name=request.launch_parameter.job_name))

    def get_job(self, request: GetJobRequest) -> Job:
        self.requests.append(request)
        return Job(id=request.job_id, current_state=self.state)

    def update_job(self, request: UpdateJobRequest) -> Job:
        self.requests.append(request)
        return Job(id=request.job_id, current_state=JobState.JOB_STATE_CANCELLING)


@pytest.fixture
def production(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        target="bigquery",
        gcp_project="studio-analytics",
        gcp_region="europe-west1",
        bq_dataset_prefix="game_analytics",
        postgres_dsn="host=10.1.2.3 dbname=studio user=ingest",
        dataflow_template_path=TEMPLATE,
        dataflow_sdk_image="europe-west1-docker.pkg.dev/studio-analytics/dataflow/batch-load:abc123",
        dataflow_temp_location="gs://studio-dataflow/tmp",
        dataflow_service_account="ingest@studio-analytics.iam.gserviceaccount.com",
        dataflow_max_workers=6,
        read_ranges=16,
    )


def test_launch_on_dataflow_sends_the_flex_template_request_and_returns_the_job_id(production: Settings):
    fake = FakeDataflow()

    result = launch("players", date(2024, 1, 1), date(2024, 1, 5), production, run_id="9F1C-Run_01",
                    templates=fake)

    assert result == LoadResult("players", "DataflowRunner", "2024-01-06_03_00_00-123456789", rows_read=None, rows_loaded=None, rows_rejected=None)
    [request] = fake.requests
    assert isinstance(request, LaunchFlexTemplateRequest)
    assert (request.project_id, request.location) == ("studio-analytics", "europe-west1")
    parameter = request.launch_parameter
    assert JOB_NAME.match(parameter.job_name) and parameter.job_name.startswith("ga-players-")
    assert parameter.container_spec_gcs_path == TEMPLATE
    assert dict(parameter.parameters) == {
        "source": "players",
        "start": "2024-01-01",
        "end": "2024-01-05",
        "sink": "bigquery",
        "bigquery_project": "studio-analytics",
        "bigquery_dataset": "game_analytics_bronze",
        "postgres_dsn": "host=10.1.2.3 dbname=studio user=ingest",
        "postgres_schema": "public",
        "read_ranges": "16",
    }
    environment = parameter.environment
    assert dict(environment.additional_user_labels) == {"app": "game-analytics", "source": "players",
                                                        "run_id": "9f1c-run_01"}
    assert environment.temp_location == "gs://studio-dataflow/tmp"
    assert environment.service_account_email == "ingest@studio-analytics.iam.gserviceaccount.com"
    assert environment.max_workers == 6
    assert environment.sdk_container_image == production.dataflow_sdk_image


def test_job_names_are_unique_and_valid():
    now = datetime(2024, 1, 6, 3, 0, 5, tzinfo=timezone.utc)
    names = {job_name("store_items", now) for _ in range(50)}
    assert len(names) == 50
    assert all(JOB_NAME.match(name) and name.startswith("ga-store-items-20240106-030005-") for name in names)
    assert label_value("Run/ID 7" + "x" * 80) == "run-id-7" + "x" * 55


def test_fx_rates_launch_reads_the_exports_bucket_and_checks_the_files_first(production: Settings, tmp_path: Path):
    fake = FakeDataflow()
    exports = tmp_path / "bucket"
    settings = production.model_copy(update={"exports_url": str(exports)})

    with pytest.raises(SourceFileMissing, match=re.escape(f"export folder not found: {exports / 'fx_rates'}")):
        launch("fx_rates", date(2024, 1, 1), date(2024, 1, 5), settings, templates=fake)
    assert fake.requests == []

    (exports / "fx_rates").mkdir(parents=True)
    launch("fx_rates", date(2024, 1, 1), date(2024, 1, 5), settings, templates=fake)
    [request] = fake.requests
    assert request.launch_parameter.parameters["exports_location"] == str(exports)
    assert "postgres_dsn" not in request.launch_parameter.parameters


def test_launch_on_dataflow_names_missing_settings(production: Settings):
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


def test_module_functions_take_the_settings_project_and_region(production: Settings):
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
