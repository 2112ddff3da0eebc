"""The Google Cloud project the set-up builds, and the names of what it creates in it: accounts,
buckets, datasets, the registry and images, and the settings the production deployments read."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from common import bronze
from common.settings import PlatformSettings
from deployments.streaming import deploy

_DEFAULTS = PlatformSettings.model_fields  # the platform's defaults, stated once there

FLOWS_ACCOUNT_ID: Final = "ga-flows"
DATAFLOW_ACCOUNT_ID: Final = "ga-dataflow"
# Secret Manager; blocks/register.py reads it (GcpSecret) on the machine running the set-up and keeps the
# URL in the Prefect block: the flow runs never read the secret
WEBHOOK_SECRET: Final = "ga-slack-webhook"
GIT_COMMIT: Final = "{git_commit}"  # looked up when the set-up runs (lookups)


@dataclass(frozen=True)
class Target:
    project: str
    region: str = _DEFAULTS["gcp_region"].default
    dataset_prefix: str = _DEFAULTS["bq_dataset_prefix"].default
    bq_location: str = _DEFAULTS["bq_location"].default
    cluster: str = "game-analytics"
    dataflow_secrets: tuple[str, ...] = field(default=())  # Secret Manager secrets the workers may read
    # the studio's operational database (players, store_items): a Cloud SQL for PostgreSQL
    # instance "project:region:instance" and its database, reached with IAM database authentication
    cloudsql_instance: str | None = None  # default: PROJECT:REGION:studio
    cloudsql_database: str = "studio"

    @classmethod
    def example(cls) -> Target:
        return cls(project="my-project")

    def account(self, account_id: str) -> str:
        return f"{account_id}@{self.project}.iam.gserviceaccount.com"

    @property
    def flows_account(self) -> str:
        return self.account(FLOWS_ACCOUNT_ID)

    @property
    def dataflow_account(self) -> str:
        return self.account(DATAFLOW_ACCOUNT_ID)

    def dataset(self, layer: str) -> str:
        return bronze.dataset(self.dataset_prefix, layer)

    @property
    def dataflow_bucket(self) -> str:  # temp and staging files of the Dataflow jobs
        return f"{self.project}-dataflow"

    @property
    def templates_bucket(self) -> str:  # the Flex Template spec: written by this set-up only
        return f"{self.project}-dataflow-templates"

    @property
    def reports_bucket(self) -> str:  # each run's KPI report and the dbt docs
        return f"{self.project}-reports"

    @property
    def exports_bucket(self) -> str:  # the studio's daily exports (fx_rates)
        return f"{self.project}-exports"

    @property
    def registry(self) -> str:
        return f"{self.region}-docker.pkg.dev/{self.project}/game-analytics"

    @property
    def dataflow_image(self) -> str:
        return f"{self.registry}/batch-load:{GIT_COMMIT}"

    @property
    def template_path(self) -> str:
        return f"gs://{self.templates_bucket}/batch-load.json"

    def streaming(self) -> deploy.Target:
        return deploy.Target(self.project, self.region, self.dataset_prefix, self.bq_location)

    def deploy_env(self) -> dict[str, str]:
        """What `prefect deploy` reads into the production deployments' job variables (prefect.yaml)."""
        return {
            "GA_IMAGE_REPOSITORY": f"{self.registry}/flows",
            "GA_GCP_PROJECT": self.project,
            "GA_GCP_REGION": self.region,
            "GA_BQ_DATASET_PREFIX": self.dataset_prefix,
            "GA_BQ_LOCATION": self.bq_location,
            "GA_EXPORTS_URL": f"gs://{self.exports_bucket}/daily",
            "GA_REPORTS_URL": f"gs://{self.reports_bucket}/reports",
            "GA_DATAFLOW_TEMPLATE_PATH": self.template_path,
            "GA_DATAFLOW_SDK_IMAGE": self.dataflow_image,
            "GA_DATAFLOW_TEMP_LOCATION": f"gs://{self.dataflow_bucket}/tmp",
            "GA_DATAFLOW_SERVICE_ACCOUNT": self.dataflow_account,
            "GA_CLOUDSQL_INSTANCE": self.cloudsql_instance or f"{self.project}:{self.region}:studio",
            "GA_CLOUDSQL_DATABASE": self.cloudsql_database,
        }


def gcloud(t: Target, *args: str) -> tuple[str, ...]:
    return ("gcloud", *args, f"--project={t.project}", "--quiet")
