"""Google Cloud access for the flows, through prefect-gcp: every Google client the flows build takes
its credentials from one `GcpCredentials` block (`GA_GCP_CREDENTIALS_BLOCK`, registered by
blocks/register.py). A block without a key means Application Default Credentials, which on GKE is
the worker pod's Workload Identity. `ingestion/` never imports Prefect: the flows hand the clients
(or their credentials) to its functions.

prefect-gcp is imported only here and only when a Google client is needed: it imports the Google
client libraries, whose memory and start-up a local run does not need."""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from common.settings import OrchestrationSettings

if TYPE_CHECKING:
    from prefect_gcp import GcpCredentials


@lru_cache(maxsize=4)
def _credentials_block(name: str | None, project: str | None) -> "GcpCredentials":
    from prefect_gcp import GcpCredentials

    if name:
        block = GcpCredentials.load(name)
        return block if block.project or not project else block.model_copy(update={"project": project})
    return GcpCredentials(project=project)  # no key: Application Default Credentials


def credentials_block(settings: OrchestrationSettings) -> "GcpCredentials":
    """The flows' `GcpCredentials` block (loaded once per process), or, with no block configured,
    one that holds no key (Application Default Credentials)."""
    return _credentials_block(settings.gcp_credentials_block, settings.gcp_project)


def credentials(settings: OrchestrationSettings) -> Any:
    """google.auth credentials from the block."""
    return credentials_block(settings).get_credentials_from_service_account()


def templates_client(settings: OrchestrationSettings) -> Any:
    """Dataflow's Flex Templates client (the batch load's launch)."""
    from google.cloud.dataflow_v1beta3 import FlexTemplatesServiceClient

    return FlexTemplatesServiceClient(credentials=credentials(settings))


def jobs_client(settings: OrchestrationSettings) -> Any:
    """Dataflow's jobs client (watching and cancelling the batch load's job)."""
    from google.cloud.dataflow_v1beta3 import JobsV1Beta3Client

    return JobsV1Beta3Client(credentials=credentials(settings))


def metrics_client(settings: OrchestrationSettings) -> Any:
    """Dataflow's metrics client (a finished load's row counts)."""
    from google.cloud.dataflow_v1beta3 import MetricsV1Beta3Client

    return MetricsV1Beta3Client(credentials=credentials(settings))


def storage_client(settings: OrchestrationSettings) -> Any:
    """A Cloud Storage client (publishing the KPI report and dbt docs)."""
    return credentials_block(settings).get_cloud_storage_client()
