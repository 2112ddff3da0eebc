"""The whole platform in a Google Cloud project, in one ordered, idempotent, re-runnable command:

    .venv/bin/python -m deployments.gcp.setup --project P [--region europe-west1] [--dry-run]

``--dry-run`` prints every gcloud / bq / docker / kubectl / helm / prefect command in order and runs
nothing. A step whose resource exists is skipped; grants and settings are re-applied (they are
idempotent), so after a change the command is simply run again. Before a real run: ``gcloud auth
login``, ``prefect cloud login`` (the workspace the flows run in), Docker, Helm, kubectl, and
``PREFECT_API_KEY`` set to the worker's API key (a Prefect Cloud service account's key); on the
first run also ``GA_SLACK_WEBHOOK_URL``, which goes to Secret Manager. Both are read on stdin by
the commands that store them and never printed.

In order: APIs; service accounts; buckets; datasets; Artifact Registry; the flows' and the Dataflow
workers' grants (least privilege: README.md, "Security", lists every role and why); the streaming
path (``deployments.streaming.deploy``: Pub/Sub, bronze tables, the function, dead letters and
their alert); the batch load's image and Flex Template; the GKE Autopilot cluster, namespaces,
Workload Identity, the worker's Role; Prefect blocks and automations; the worker (Helm, pinned
chart) with the pool's base job template; the `warehouse` queue; ``prefect deploy``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass, field
from typing import Final

from common import bronze
from common.settings import REPO_ROOT
from deployments.streaming import deploy
from deployments.streaming.deploy import Step, dataset_step

# pinned prefect-worker chart: its schema and templates are in deployments/gke/prefect-worker-chart/
WORKER_CHART_VERSION: Final = "2026.8.18172642"
WORKER_RELEASE: Final = "prefect-worker"
WORKER_NAMESPACE: Final = "prefect"
FLOWS_NAMESPACE: Final = "game-analytics"
FLOWS_KSA: Final = "game-analytics-flows"
WORK_POOL: Final = "gke-autopilot"
WORK_QUEUE: Final = "warehouse"
WORKER_VALUES: Final = "deployments/gke/worker-values.yaml"
BASE_JOB_TEMPLATE: Final = "deployments/gke/base-job-template.json"
API_KEY_SECRET: Final = "prefect-api-key"  # in WORKER_NAMESPACE, key `key` (worker-values.yaml)
# Secret Manager; blocks/register.py reads it (GcpSecret) on the machine running the set-up and keeps the
# URL in the Prefect block: the flow runs never read the secret
WEBHOOK_SECRET: Final = "ga-slack-webhook"
AUDIT_DATASET_DAYS: Final = 30  # stored test failures (dbt store_failures) expire after this

FLOWS_ACCOUNT_ID: Final = "ga-flows"
DATAFLOW_ACCOUNT_ID: Final = "ga-dataflow"
APIS: Final = (
    *deploy.APIS,
    "container.googleapis.com",
    "dataflow.googleapis.com",
    "compute.googleapis.com",
    "storage.googleapis.com",
    "secretmanager.googleapis.com",
    "sqladmin.googleapis.com",
    "iamcredentials.googleapis.com",
)
GIT_COMMIT: Final = "{git_commit}"
PREFECT_ACCOUNT: Final = "{prefect_account_id}"
PREFECT_WORKSPACE: Final = "{prefect_workspace_id}"
_API_URL_PART = (
    "import re; from prefect.settings import PREFECT_API_URL; "
    "m = re.search(r'/accounts/([^/]+)/workspaces/([^/]+)', PREFECT_API_URL.value() or ''); print(m[{}] if m else '')"
)


@dataclass(frozen=True)
class Target:
    project: str
    region: str = "europe-west1"
    dataset_prefix: str = "game_analytics"
    bq_location: str = "EU"
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


def member(email: str) -> str:
    return f"--member=serviceAccount:{email}"


def project_grant(t: Target, email: str, role: str, why: str) -> Step:
    return Step(why, gcloud(t, "projects", "add-iam-policy-binding", t.project, member(email), f"--role={role}",
                            "--condition=None"))


def bucket_grant(t: Target, bucket: str, email: str, role: str, why: str) -> Step:
    return Step(why, gcloud(t, "storage", "buckets", "add-iam-policy-binding", f"gs://{bucket}", member(email),
                            f"--role={role}"))


def dataset_grant(t: Target, dataset: str, email: str, role: str, why: str) -> Step:
    return Step(why, ("bq", "add-iam-policy-binding", member(email), f"--role={role}", f"{t.project}:{dataset}"))


def kubectl_apply(name: str, manifest: dict) -> Step:
    return Step(name, ("kubectl", "apply", "-f", "-"), stdin=json.dumps(manifest, indent=2))


def worker_api_key_secret() -> str:
    """The Secret the worker keeps the API key in, in the flow runs' namespace: prefect-kubernetes
    names it `prefect-<worker name>-api-key` (jobApiKeyPropagation: autoSecret)."""
    import yaml

    values = yaml.safe_load((REPO_ROOT / WORKER_VALUES).read_text())
    return f"prefect-{values['worker']['config']['name']}-api-key"


def worker_role(t: Target) -> dict:
    """The worker's permissions in the flow runs' namespace: the chart's own Role, except Secrets,
    which it reads and updates by name only (Kubernetes cannot restrict `create` by name)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": WORKER_RELEASE, "namespace": FLOWS_NAMESPACE},
        "rules": [
            {"apiGroups": [""], "resources": ["events", "pods", "pods/log", "pods/status"],
             "verbs": ["get", "watch", "list"]},
            {"apiGroups": ["batch"], "resources": ["jobs"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [worker_api_key_secret()],
             "verbs": ["get", "update", "delete"]},
        ],
    }


def worker_role_binding() -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": WORKER_RELEASE, "namespace": FLOWS_NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": WORKER_RELEASE},
        "subjects": [{"kind": "ServiceAccount", "name": WORKER_RELEASE, "namespace": WORKER_NAMESPACE}],
    }


def helm_install(t: Target) -> Step:
    return Step(
        "the worker (Helm, pinned chart; the pool's base job template comes from these values only)",
        ("helm", "upgrade", "--install", WORKER_RELEASE, "prefect/prefect-worker",
         f"--version={WORKER_CHART_VERSION}", f"--namespace={WORKER_NAMESPACE}", f"--values={WORKER_VALUES}",
         f"--set-file=worker.config.baseJobTemplate.configuration={BASE_JOB_TEMPLATE}",
         f"--set=worker.cloudApiConfig.accountId={PREFECT_ACCOUNT}",
         f"--set=worker.cloudApiConfig.workspaceId={PREFECT_WORKSPACE}", "--wait"),
        needs=(PREFECT_ACCOUNT, PREFECT_WORKSPACE),
    )


def steps(t: Target) -> list[Step]:
    """Every step, in order (pure: builds the commands only)."""
    flows, dataflow = t.flows_account, t.dataflow_account
    bronze, silver, gold, audit = (t.dataset(x) for x in ("bronze", "silver", "gold", "dbt_test__audit"))
    out: list[Step] = [Step("enable APIs", gcloud(t, "services", "enable", *APIS))]

    # identities
    for account_id, what in ((FLOWS_ACCOUNT_ID, "flow runs (dbt on BigQuery, Dataflow launches)"),
                             (DATAFLOW_ACCOUNT_ID, "Dataflow workers of the batch loads")):
        out.append(Step(f"service account {account_id}",
                        gcloud(t, "iam", "service-accounts", "create", account_id, f"--display-name=game-analytics {what}"),
                        exists=gcloud(t, "iam", "service-accounts", "describe", t.account(account_id))))

    # storage: private buckets, uniform access, never public
    for bucket in (t.dataflow_bucket, t.templates_bucket, t.exports_bucket, t.reports_bucket):
        out.append(Step(f"bucket {bucket}",
                        gcloud(t, "storage", "buckets", "create", f"gs://{bucket}", f"--location={t.region}",
                               "--uniform-bucket-level-access", "--public-access-prevention"),
                        exists=gcloud(t, "storage", "buckets", "describe", f"gs://{bucket}")))

    # datasets: dbt only writes into datasets that exist (it never needs bigquery.datasets.create)
    out += [
        dataset_step(t.project, bronze, t.bq_location, deploy.BRONZE_DESCRIPTION),
        dataset_step(t.project, silver, t.bq_location, "Silver: cleaned, deduplicated, conformed (dbt)"),
        dataset_step(t.project, gold, t.bq_location, "Gold: dimensions, facts and marts (dbt)"),
        dataset_step(t.project, audit, t.bq_location, "Rows of failing dbt tests (store_failures), kept 30 days",
                     f"--default_table_expiration={AUDIT_DATASET_DAYS * 86400}"),
    ]

    out.append(Step("Artifact Registry repository game-analytics (flow and batch-load images)",
                    gcloud(t, "artifacts", "repositories", "create", "game-analytics", "--repository-format=docker",
                           f"--location={t.region}"),
                    exists=gcloud(t, "artifacts", "repositories", "describe", "game-analytics", f"--location={t.region}")))
    out.append(Step("the alert webhook's URL, in Secret Manager (read from GA_SLACK_WEBHOOK_URL the first time)",
                    gcloud(t, "secrets", "create", WEBHOOK_SECRET, "--replication-policy=automatic", "--data-file=-"),
                    exists=gcloud(t, "secrets", "describe", WEBHOOK_SECRET), stdin_env="GA_SLACK_WEBHOOK_URL"))

    # the flow runs' account
    out += [
        project_grant(t, flows, "roles/bigquery.jobUser", "flows: run BigQuery jobs (no data access by itself)"),
        dataset_grant(t, bronze, flows, "roles/bigquery.dataViewer", "flows: read bronze"),
        dataset_grant(t, silver, flows, "roles/bigquery.dataEditor", "flows: write silver"),
        dataset_grant(t, gold, flows, "roles/bigquery.dataEditor", "flows: write gold"),
        dataset_grant(t, audit, flows, "roles/bigquery.dataEditor", "flows: store failing test rows"),
        project_grant(t, flows, "roles/dataflow.developer", "flows: launch, watch and cancel Dataflow jobs"),
        Step("flows: launch Dataflow jobs that run as the workers' account (actAs; no other way to choose it)",
             gcloud(t, "iam", "service-accounts", "add-iam-policy-binding", dataflow, member(flows),
                    "--role=roles/iam.serviceAccountUser")),
        bucket_grant(t, t.templates_bucket, flows, "roles/storage.objectViewer", "flows: read the Flex Template spec, never write it"),
        bucket_grant(t, t.exports_bucket, flows, "roles/storage.objectViewer", "flows: list and read the daily exports"),
        bucket_grant(t, t.reports_bucket, flows, "roles/storage.objectUser", "flows: publish the KPI report and dbt docs"),
    ]
    # the Dataflow workers' account
    out += [
        project_grant(t, dataflow, "roles/dataflow.worker", "workers: run Dataflow work items"),
        project_grant(t, dataflow, "roles/bigquery.jobUser", "workers: run the BigQuery load jobs of the batch loads"),
        dataset_grant(t, bronze, dataflow, "roles/bigquery.dataEditor", "workers: write the batch tables of bronze"),
        bucket_grant(t, t.dataflow_bucket, dataflow, "roles/storage.objectAdmin", "workers: temp and staging files"),
        bucket_grant(t, t.exports_bucket, dataflow, "roles/storage.objectViewer", "workers: read the daily exports"),
        Step("workers: pull the batch-load image",
             gcloud(t, "artifacts", "repositories", "add-iam-policy-binding", "game-analytics", f"--location={t.region}",
                    member(dataflow), "--role=roles/artifactregistry.reader")),
        project_grant(t, dataflow, "roles/cloudsql.client", "workers: connect to Cloud SQL (Cloud SQL Python Connector)"),
        project_grant(t, dataflow, "roles/cloudsql.instanceUser", "workers: log in to Cloud SQL with IAM database authentication"),
    ]
    for secret in t.dataflow_secrets:
        out.append(Step(f"workers: read secret {secret}",
                        gcloud(t, "secrets", "add-iam-policy-binding", secret, member(dataflow),
                               "--role=roles/secretmanager.secretAccessor")))

    # the streaming path (its own service accounts, tables, function, dead letters and alert)
    seen = {s.command for s in out}
    out += [s for s in deploy.steps(t.streaming(), enable_apis=False) if s.command not in seen]

    # the batch load: one image, the Flex Template launcher and the workers' SDK container
    out += [
        Step("Docker may push to the registry", ("gcloud", "auth", "configure-docker", f"{t.region}-docker.pkg.dev", "--quiet")),
        Step("build the batch-load image",
             ("docker", "build", "--platform=linux/amd64", "-f", "deployments/dataflow/Dockerfile", "-t", t.dataflow_image, "."),
             exists=gcloud(t, "artifacts", "docker", "images", "describe", t.dataflow_image), needs=(GIT_COMMIT,)),
        Step("push the batch-load image", ("docker", "push", t.dataflow_image),
             exists=gcloud(t, "artifacts", "docker", "images", "describe", t.dataflow_image), needs=(GIT_COMMIT,)),
        Step("the Flex Template spec",
             gcloud(t, "dataflow", "flex-template", "build", t.template_path, f"--image={t.dataflow_image}",
                    "--sdk-language=PYTHON", "--metadata-file=deployments/dataflow/metadata.json"),
             needs=(GIT_COMMIT,)),
    ]

    # GKE Autopilot (Workload Identity is on from the start)
    ksa_member = f"serviceAccount:{t.project}.svc.id.goog[{FLOWS_NAMESPACE}/{FLOWS_KSA}]"
    out += [
        Step("GKE Autopilot cluster", gcloud(t, "container", "clusters", "create-auto", t.cluster, f"--region={t.region}"),
             exists=gcloud(t, "container", "clusters", "describe", t.cluster, f"--region={t.region}")),
        Step("kubectl talks to the cluster",
             gcloud(t, "container", "clusters", "get-credentials", t.cluster, f"--region={t.region}")),
    ]
    for namespace in (FLOWS_NAMESPACE, WORKER_NAMESPACE):
        out.append(Step(f"namespace {namespace}", ("kubectl", "create", "namespace", namespace),
                        exists=("kubectl", "get", "namespace", namespace)))
    out += [
        Step("the flow runs' Kubernetes service account",
             ("kubectl", "create", "serviceaccount", FLOWS_KSA, f"--namespace={FLOWS_NAMESPACE}"),
             exists=("kubectl", "get", "serviceaccount", FLOWS_KSA, f"--namespace={FLOWS_NAMESPACE}")),
        Step("... acts as the flows' Google account (Workload Identity)",
             ("kubectl", "annotate", "--overwrite", "serviceaccount", FLOWS_KSA, f"--namespace={FLOWS_NAMESPACE}",
              f"iam.gke.io/gcp-service-account={flows}")),
        Step("... which lets it (and nothing else)",
             gcloud(t, "iam", "service-accounts", "add-iam-policy-binding", flows, f"--member={ksa_member}",
                    "--role=roles/iam.workloadIdentityUser")),
        kubectl_apply("the worker's Role in the flow runs' namespace (Secrets by name)", worker_role(t)),
        kubectl_apply("... bound to the worker's service account", worker_role_binding()),
        Step("the worker's Prefect API key (read from PREFECT_API_KEY)",
             ("kubectl", "create", "secret", "generic", API_KEY_SECRET, f"--namespace={WORKER_NAMESPACE}",
              "--from-file=key=/dev/stdin"),
             exists=("kubectl", "get", "secret", API_KEY_SECRET, f"--namespace={WORKER_NAMESPACE}"),
             stdin_env="PREFECT_API_KEY"),
    ]

    # Prefect Cloud: alerts, the worker, the queue, the deployments
    py = sys.executable
    deploy_env = [f"{k}={v}" for k, v in t.deploy_env().items()]
    out += [
        Step("alert block (webhook URL from Secret Manager)",
             ("env", f"GA_GCP_PROJECT={t.project}", f"GA_SLACK_WEBHOOK_SECRET={WEBHOOK_SECRET}", py, "-m", "blocks.register")),
        Step("automations (failed, crashed, late and zombie runs, stale marts)", (py, "-m", "blocks.automations")),
        Step("Helm knows the Prefect charts",
             ("helm", "repo", "add", "--force-update", "prefect", "https://prefecthq.github.io/prefect-helm")),
        helm_install(t),
        Step("wait until the worker has created its pool (from the values' template)",
             ("sh", "-c", f"for i in $(seq 60); do {shlex.quote(py)} -m prefect work-pool inspect {WORK_POOL} "
                          f">/dev/null 2>&1 && exit 0; sleep 5; done; echo 'no work pool {WORK_POOL}' >&2; exit 1")),
        Step("the one-build-at-a-time queue",
             (py, "-m", "prefect", "work-queue", "create", WORK_QUEUE, f"--pool={WORK_POOL}", "--limit=1"),
             exists=(py, "-m", "prefect", "work-queue", "inspect", WORK_QUEUE, f"--pool={WORK_POOL}")),
        Step("the production deployments (builds and pushes the flow image)",
             ("env", *deploy_env, py, "-m", "prefect", "deploy", "-n", "hourly", "-n", "daily", "-n", "backfill"),
             needs=(GIT_COMMIT,)),
        Step("the production deployments' SLAs", (py, "-m", "blocks.slas")),
    ]
    return out


def lookups(t: Target) -> dict[str, tuple[str, ...]]:
    return {
        **deploy.lookups(t.streaming()),
        GIT_COMMIT: ("git", "rev-parse", "--short=12", "HEAD"),
        PREFECT_ACCOUNT: (sys.executable, "-c", _API_URL_PART.format(1)),
        PREFECT_WORKSPACE: (sys.executable, "-c", _API_URL_PART.format(2)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--project", required=True)
    p.add_argument("--region", default="europe-west1")
    p.add_argument("--dataset-prefix", default="game_analytics")
    p.add_argument("--bq-location", default="EU")
    p.add_argument("--cluster", default="game-analytics")
    p.add_argument("--dataflow-secret", action="append", default=[],
                   help="an existing Secret Manager secret the Dataflow workers may read (repeatable; none by default)")
    p.add_argument("--cloudsql-instance", default=None,
                   help="the operational database's Cloud SQL instance, project:region:instance (default PROJECT:REGION:studio)")
    p.add_argument("--cloudsql-database", default=Target.cloudsql_database)
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    target = Target(args.project, args.region, args.dataset_prefix, args.bq_location, args.cluster,
                    dataflow_secrets=tuple(args.dataflow_secret),
                    cloudsql_instance=args.cloudsql_instance, cloudsql_database=args.cloudsql_database)
    deploy.run_steps(steps(target), lookups(target), args.dry_run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
