"""The worker's Helm values, offline, against the pinned prefect-worker chart (its schema and
templates are copied in deployments/gke/prefect-worker-chart/): the values pass the chart's schema;
the worker container gets, from them, the settings the platform relies on; and prefect-kubernetes'
own code, run with those settings, gives a flow run's Job an API key from a Secret that exists in
the Job's own namespace. Helm itself and a Kubernetes API server are not available here: the
template logic is mirrored below and each mirrored line is checked to be in the pinned template."""
from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes_asyncio.client.exceptions import ApiException
from prefect.client.schemas.objects import Flow, FlowRun
from prefect.client.schemas.responses import DeploymentResponse
from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL, temporary_settings
from prefect_kubernetes import worker as k8s_worker
from prefect_kubernetes.settings import KubernetesSettings
from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

from deployments.gcp import gke, setup
from tests.deployments.test_prefect_yaml import GKE_TEMPLATE
from common.settings import REPO_ROOT

GKE = REPO_ROOT / "deployments" / "gke"
CHART = GKE / "prefect-worker-chart"
VALUES = GKE / "worker-values.yaml"
RELEASE_NAMESPACE = gke.WORKER_NAMESPACE
JOB_NAMESPACE = "game-analytics"
API_KEY = "pnu_0123456789abcdef"


def merge(base: Any, override: Any) -> Any:
    """Helm's merge of a values file over the chart's defaults (maps deep, anything else replaced)."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base.get(key), value) if key in base else value
        return out
    return copy.deepcopy(override)


def values(path: Path = VALUES) -> dict[str, Any]:
    """The values Helm renders with: the chart's defaults, the values file, the set-up's --set flags."""
    merged = merge(yaml.safe_load((CHART / "values.yaml").read_text()), yaml.safe_load(path.read_text()))
    cloud = merged["worker"]["cloudApiConfig"]
    cloud["accountId"], cloud["workspaceId"] = str(uuid.uuid4()), str(uuid.uuid4())
    merged["worker"]["config"]["baseJobTemplate"]["configuration"] = GKE_TEMPLATE.read_text()
    return merged


def template(name: str) -> str:
    return re.sub(r"\s+", " ", (CHART / name).read_text())


def assert_in_template(name: str, snippet: str) -> None:
    assert re.sub(r"\s+", " ", snippet).strip() in template(name), f"{name} no longer has: {snippet}"


def worker_env(v: dict[str, Any]) -> dict[str, str]:
    """The worker container's environment variables that decide where flow runs find the API key and
    which namespaces the observer watches (templates/deployment.yaml)."""
    w = v["worker"]
    env: dict[str, str] = {}
    assert_in_template("deployment.yaml", """{{- if not .Values.worker.config.observerClusterWide }}
        - name: PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES
          {{- if .Values.worker.config.jobNamespace }}
          value: {{ .Values.worker.config.jobNamespace }}
          {{- else }}
          value: {{ include "common.names.namespace" . | quote }}""")
    if not w["config"]["observerClusterWide"]:
        env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"] = w["config"]["jobNamespace"] or RELEASE_NAMESPACE
    assert w["apiConfig"] == "cloud"
    assert_in_template("deployment.yaml", """{{- if eq (default "secretRef" .Values.worker.cloudApiConfig.jobApiKeyPropagation) "secretRef" }}
        - name: PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_NAME
          value: {{ .Values.worker.cloudApiConfig.apiKeySecret.name }}
        - name: PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_KEY
          value: {{ .Values.worker.cloudApiConfig.apiKeySecret.key }}
        {{- else if eq .Values.worker.cloudApiConfig.jobApiKeyPropagation "autoSecret" }}
        - name: PREFECT_INTEGRATIONS_KUBERNETES_WORKER_CREATE_SECRET_FOR_API_KEY
          value: "true" """)
    propagation = w["cloudApiConfig"].get("jobApiKeyPropagation") or "secretRef"
    if propagation == "secretRef":
        env["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_NAME"] = w["cloudApiConfig"]["apiKeySecret"]["name"]
        env["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_KEY"] = w["cloudApiConfig"]["apiKeySecret"]["key"]
    elif propagation == "autoSecret":
        env["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_CREATE_SECRET_FOR_API_KEY"] = "true"
    # extraEnvVars come last and, in a container, a later entry of the same name wins
    assert_in_template("deployment.yaml", """{{- if .Values.worker.extraEnvVars }}
        {{- include "common.tplvalues.render" (dict "value" .Values.worker.extraEnvVars "context" $) | nindent 12 }}""")
    for entry in w.get("extraEnvVars") or []:
        env[entry["name"]] = entry["value"]
    return env


def test_the_values_pass_the_pinned_charts_schema_and_set_what_the_platform_relies_on() -> None:
    """Valid for the pinned chart, and every value the platform relies on is set in the file, not
    left to a chart default that another chart version may change."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(values())
    own = yaml.safe_load(VALUES.read_text())
    relied_on = {
        ("worker", "image", "prefectTag"): "3.9.1-python3.11-kubernetes",
        ("worker", "cloudApiConfig", "jobApiKeyPropagation"): "autoSecret",
        ("worker", "config", "jobNamespace"): JOB_NAMESPACE,
        ("worker", "config", "workPool"): gke.WORK_POOL,
        ("role", "create"): False,
        ("rolebinding", "create"): False,
        ("serviceAccount", "name"): gke.WORKER_RELEASE,
    }
    for path, expected in relied_on.items():
        node: Any = own
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        assert node == expected, f"worker-values.yaml: {'.'.join(path)} is {node!r}, not {expected!r}"
    assert f"--version={gke.WORKER_CHART_VERSION}" in " ".join(gke.helm_install(setup.Target.example()).command)
    assert gke.WORKER_CHART_VERSION in (CHART / "README.md").read_text()


def test_the_observer_watches_the_flow_runs_namespace() -> None:
    env = worker_env(values())
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"] == JOB_NAMESPACE
    template_namespace = json.loads(GKE_TEMPLATE.read_text())["variables"]["properties"]["namespace"]["default"]
    assert template_namespace == JOB_NAMESPACE


def test_the_base_job_template_comes_from_the_values_and_is_synced_at_every_start() -> None:
    """The chart's init container overwrites the pool's template with the values' one at every worker
    start: the values (with the committed file) are the one source, and the set-up never writes the
    template another way."""
    assert_in_template("deployment.yaml", "prefect work-pool update $work_pool_name --base-job-template ./baseJobTemplate.json")
    assert_in_template("configmap.yaml", "baseJobTemplate.json: {{ include \"worker.baseJobTemplate\" . }}")
    v = values()
    assert json.loads(v["worker"]["config"]["baseJobTemplate"]["configuration"]) == json.loads(GKE_TEMPLATE.read_text())
    helm = gke.helm_install(setup.Target.example()).command
    assert "--set-file=worker.config.baseJobTemplate.configuration=deployments/gke/base-job-template.json" in helm
    # the pool is created by the worker from the same values; nothing else writes its template
    for step in setup.steps(setup.Target.example()):
        assert not re.search(r"work-pool (create|update)", " ".join(step.command)), step.name


class FakeCluster:
    """The Kubernetes API at the boundary: Secrets and Jobs by (namespace, name), with the real
    client's exception for a missing object. Records every (verb, resource, namespace, name)."""

    def __init__(self, secrets: dict[tuple[str, str], dict[str, str]]) -> None:
        self.secrets = secrets
        self.jobs: list[tuple[str, dict]] = []
        self.calls: list[tuple[str, str, str, str | None]] = []

    def core(self, client: object) -> Any:
        cluster = self

        class Core:
            async def read_namespaced_secret(self, name: str, namespace: str) -> Any:
                cluster.calls.append(("get", "secrets", namespace, name))
                if (namespace, name) not in cluster.secrets:
                    raise ApiException(status=404, reason="Not Found")
                from kubernetes_asyncio.client import V1ObjectMeta, V1Secret
                return V1Secret(metadata=V1ObjectMeta(name=name, namespace=namespace), data=cluster.secrets[(namespace, name)])

            async def replace_namespaced_secret(self, name: str, namespace: str, body: Any) -> Any:
                cluster.calls.append(("update", "secrets", namespace, name))
                cluster.secrets[(namespace, name)] = dict(body.data)
                return body

            async def create_namespaced_secret(self, namespace: str, body: Any) -> Any:
                cluster.calls.append(("create", "secrets", namespace, None))
                cluster.secrets[(namespace, body.metadata.name)] = dict(body.data)
                return body

        return Core()

    def batch(self, client: object) -> Any:
        cluster = self

        class Batch:
            async def create_namespaced_job(self, namespace: str, body: dict) -> dict:
                cluster.calls.append(("create", "jobs", namespace, None))
                cluster.jobs.append((namespace, body))
                return body

        return Batch()


def submit_flow_run(values_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeCluster, str, dict]:
    """Run prefect-kubernetes' own job creation for one flow run, with the worker's environment as the
    chart gives it from `values_path`, against a cluster holding what the set-up creates."""
    v = values(values_path)
    for key, value in worker_env(v).items():
        monkeypatch.setenv(key, value)
    secret = v["worker"]["cloudApiConfig"]["apiKeySecret"]
    cluster = FakeCluster({(RELEASE_NAMESPACE, secret["name"]): {secret["key"]: base64.b64encode(API_KEY.encode()).decode()}})
    monkeypatch.setattr(k8s_worker, "CoreV1Api", cluster.core)
    monkeypatch.setattr(k8s_worker, "BatchV1Api", cluster.batch)

    async def run() -> None:
        with temporary_settings({PREFECT_API_KEY: API_KEY, PREFECT_API_URL: "https://api.prefect.cloud/api/accounts/a/workspaces/w"}):
            configuration = await KubernetesWorkerJobConfiguration.from_template_and_values(
                json.loads(GKE_TEMPLATE.read_text()), {"image": "flows:1"}, client=None)
            flow = Flow(id=uuid.uuid4(), name="game-analytics-pipeline")
            deployment = DeploymentResponse(id=uuid.uuid4(), name="hourly", flow_id=flow.id)
            flow_run = FlowRun(id=uuid.uuid4(), name="tidy-otter", flow_id=flow.id, deployment_id=deployment.id)
            configuration.prepare_for_flow_run(flow_run=flow_run, deployment=deployment, flow=flow)
            worker = KubernetesWorker(work_pool_name="gke-autopilot", name=v["worker"]["config"]["name"])
            await worker._create_job(configuration, client=object())

    asyncio.run(run())
    (namespace, job), = cluster.jobs
    return cluster, namespace, job


def test_a_flow_run_pod_reads_the_api_key_from_a_secret_in_its_own_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart's default (`secretRef`) makes the pod reference `prefect-api-key`, which exists only in
    the worker's namespace: the pod never starts (CreateContainerConfigError) and the run stays Pending."""
    assert KubernetesSettings().worker.api_key_secret_name is None  # nothing left over from the environment
    cluster, namespace, job = submit_flow_run(VALUES, monkeypatch)
    assert namespace == JOB_NAMESPACE
    (container,) = job["spec"]["template"]["spec"]["containers"]
    refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]]
    api_key = [e for e in container["env"] if e["name"] == "PREFECT_API_KEY"]
    assert api_key and "value" not in api_key[0], "the API key is in the Job spec in plain text"
    assert refs
    for ref in refs:
        assert (namespace, ref["name"]) in cluster.secrets, f"the pod references secret {ref['name']!r}, absent from {namespace}"
        assert ref["key"] in cluster.secrets[(namespace, ref["name"])]
    assert base64.b64decode(cluster.secrets[(namespace, ref["name"])][ref["key"]]).decode() == API_KEY


def test_the_workers_role_allows_exactly_what_it_does_to_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The set-up's Role for the worker in the flow runs' namespace: Secrets only by name (Kubernetes
    cannot restrict `create` by name), and every call the worker makes is allowed by it."""
    cluster, namespace, _ = submit_flow_run(VALUES, monkeypatch)
    role = gke.worker_role(setup.Target.example())
    assert role["metadata"]["namespace"] == namespace
    for verb, resource, ns, name in cluster.calls:
        assert ns == namespace
        assert any(
            resource in rule["resources"] and verb in rule["verbs"]
            and (name in rule.get("resourceNames", [name]) if name else "resourceNames" not in rule)
            for rule in role["rules"]
        ), (verb, resource, name)
    for rule in role["rules"]:
        if "secrets" in rule["resources"]:
            assert rule.get("resourceNames") or rule["verbs"] == ["create"], rule
            assert "list" not in rule["verbs"] and "watch" not in rule["verbs"]
    named = {n for rule in role["rules"] for n in rule.get("resourceNames", [])}
    assert named == {name for verb, resource, _, name in cluster.calls if resource == "secrets" and name}
