"""The flows' Google clients take their credentials from the prefect-gcp GcpCredentials block:
a batch load on Dataflow, run as a flow against the real Prefect server, builds both Dataflow
clients with the block's service account (faked only at Google's API)."""
from __future__ import annotations

from google.cloud import dataflow_v1beta3 as df
from google.oauth2.service_account import Credentials

from tests.flows.test_dataflow_tasks import FakeDataflow, dataflow, run_ingest  # noqa: F401 - the fixture


class RecordingDataflow(FakeDataflow):
    def __init__(self) -> None:
        super().__init__(states=[df.JobState.JOB_STATE_DONE])
        self.credentials: list[object] = []

    def templates_client(self, *args, **kwargs) -> "RecordingDataflow":
        self.credentials.append(kwargs.get("credentials"))
        return self


def test_a_flow_takes_google_credentials_from_the_gcp_credentials_block(dataflow) -> None:  # noqa: F811
    fake = dataflow(RecordingDataflow())
    state = run_ingest()
    assert state.is_completed(), state.message
    assert len(fake.credentials) >= 2  # the launch and the job's watcher
    for creds in fake.credentials:
        assert isinstance(creds, Credentials)
        assert creds.service_account_email == "flows@studio-analytics.iam.gserviceaccount.com"


def test_without_a_block_the_clients_use_application_default_credentials(monkeypatch) -> None:
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    from flows import gcp
    from common.settings import OrchestrationSettings

    adc = AnonymousCredentials()
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (adc, "studio-analytics"))
    gcp._credentials_block.cache_clear()
    block = gcp.credentials_block(OrchestrationSettings(gcp_project="studio-analytics", gcp_credentials_block=None))
    assert block.service_account_info is None and block.service_account_file is None
    assert gcp.credentials(OrchestrationSettings(gcp_project="studio-analytics")) is adc
    gcp._credentials_block.cache_clear()
