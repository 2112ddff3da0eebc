"""The orchestration's side of the set-up: the GKE Autopilot cluster with Workload Identity, the
Prefect worker (Helm, pinned chart) and its Role, and Prefect Cloud's blocks, automations, queue and
production deployments."""
from __future__ import annotations

import json
import shlex
import sys
from typing import Final

from deployments.gcp.target import GIT_COMMIT, WEBHOOK_SECRET, Target, gcloud
from common.settings import REPO_ROOT
from deployments.streaming.deploy import Step

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
PREFECT_ACCOUNT: Final = "{prefect_account_id}"
PREFECT_WORKSPACE: Final = "{prefect_workspace_id}"
_API_URL_PART = (
    "import re; from prefect.settings import PREFECT_API_URL; "
    "m = re.search(r'/accounts/([^/]+)/workspaces/([^/]+)', PREFECT_API_URL.value() or ''); print(m[{}] if m else '')"
)


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


def cluster_steps(t: Target) -> list[Step]:
    """The cluster, its namespaces, the flow runs' identity and the worker's permissions."""
    # Workload Identity is on from the start
    ksa_member = f"serviceAccount:{t.project}.svc.id.goog[{FLOWS_NAMESPACE}/{FLOWS_KSA}]"
    out = [
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
              f"iam.gke.io/gcp-service-account={t.flows_account}")),
        Step("... which lets it (and nothing else)",
             gcloud(t, "iam", "service-accounts", "add-iam-policy-binding", t.flows_account, f"--member={ksa_member}",
                    "--role=roles/iam.workloadIdentityUser")),
        kubectl_apply("the worker's Role in the flow runs' namespace (Secrets by name)", worker_role(t)),
        kubectl_apply("... bound to the worker's service account", worker_role_binding()),
        Step("the worker's Prefect API key (read from PREFECT_API_KEY)",
             ("kubectl", "create", "secret", "generic", API_KEY_SECRET, f"--namespace={WORKER_NAMESPACE}",
              "--from-file=key=/dev/stdin"),
             exists=("kubectl", "get", "secret", API_KEY_SECRET, f"--namespace={WORKER_NAMESPACE}"),
             stdin_env="PREFECT_API_KEY"),
    ]
    return out


def prefect_steps(t: Target) -> list[Step]:
    """Prefect Cloud: alerts, the worker, the queue, the deployments."""
    py = sys.executable
    deploy_env = [f"{k}={v}" for k, v in t.deploy_env().items()]
    return [
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


def prefect_lookups() -> dict[str, tuple[str, ...]]:
    """The Prefect Cloud account and workspace the CLI is logged in to (from its API URL)."""
    return {
        PREFECT_ACCOUNT: (sys.executable, "-c", _API_URL_PART.format(1)),
        PREFECT_WORKSPACE: (sys.executable, "-c", _API_URL_PART.format(2)),
    }
