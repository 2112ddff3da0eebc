"""The GKE Autopilot path, offline: for each production deployment, the Kubernetes Job that the
prefect-kubernetes worker would submit, rendered by prefect-kubernetes' own code from the work
pool's base job template and the deployment's job variables (templated the way `prefect deploy`
templates them), is a valid `batch/v1` Job that GKE Autopilot admits as intended.

Autopilot ranges checked (general-purpose compute class, GKE docs "Resource requests in Autopilot"),
conservatively where GKE versions differ:
- CPU: 0.5 to 28 vCPU (the extended-duration minimum of safe-to-evict=false pods, and the smallest
  maximum across versions), in 0.25 vCPU steps;
- memory: 1 to 6.5 GiB per requested vCPU (Autopilot raises or rejects requests outside that ratio);
- ephemeral storage: 10 MiB to 10 GiB;
- limits equal to requests (what Autopilot enforces without bursting).
"""
from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from decimal import Decimal
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, V1Job
from prefect.client.schemas.objects import Flow, FlowRun
from prefect.client.schemas.responses import DeploymentResponse
from prefect.utilities.templating import apply_values
from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

from deployments.gcp import setup
from tests.deployments.test_prefect_yaml import GKE_TEMPLATE, PRODUCTION, deployments

IMAGE = "europe-west1-docker.pkg.dev/ga-prod/game-analytics/flows:0123456789ab"
# the environment the set-up's last step runs `prefect deploy` with (deployments/gcp/setup.py)
DEPLOY_ENV = {**setup.Target.example().deploy_env(), "PWD": "/src/game-analytics"}
WORKLOAD_IDENTITY_KSA = "game-analytics-flows"

GIB = Decimal(2**30)
SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "m": Decimal("0.001")}


def quantity(value: str) -> Decimal:
    """A Kubernetes resource quantity as a number (CPU in cores, bytes otherwise)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T|m)?", str(value))
    assert match, f"not a Kubernetes quantity: {value!r}"
    number, suffix = match.groups()
    return Decimal(number) * Decimal(SUFFIXES.get(suffix, 1))


def templated_job_variables(name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The job variables stored on the deployment: env placeholders resolved first, then the
    build steps' outputs, as in `prefect deploy`."""
    for key, value in DEPLOY_ENV.items():
        monkeypatch.setenv(key, value)
    import os

    config = apply_values(deployments()[name], dict(os.environ), remove_notset=False)
    config = apply_values(config, {"build-image": {"image": IMAGE, "image_name": IMAGE.split(":")[0],
                                                   "tag": IMAGE.split(":")[1]}})
    return config["work_pool"]["job_variables"]


class _NoApi:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"rendering the job called the Prefect API ({name})")


NO_API: Any = _NoApi()


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def without_misplaced_pod_fields(manifest: dict) -> dict:
    """prefect-kubernetes requires `parallelism` and `completions` in the pod spec, where Kubernetes
    ignores them (they are Job spec fields, 1 by default); they are the only fields the Kubernetes
    models do not know."""
    pod_spec = manifest["spec"]["template"]["spec"]
    assert pod_spec.pop("parallelism") == 1 and pod_spec.pop("completions") == 1
    return manifest


async def render_job(job_variables: dict[str, Any], deployment_name: str) -> tuple[KubernetesWorkerJobConfiguration, dict, V1Job]:
    template = json.loads(GKE_TEMPLATE.read_text())
    # no Prefect API here: the template holds no block or variable references to resolve
    configuration = await KubernetesWorkerJobConfiguration.from_template_and_values(template, job_variables,
                                                                                   client=NO_API)
    flow = Flow(id=uuid.uuid4(), name="game-analytics-pipeline")
    deployment = DeploymentResponse(id=uuid.uuid4(), name=deployment_name, flow_id=flow.id)
    flow_run = FlowRun(id=uuid.uuid4(), name="tidy-otter", flow_id=flow.id, deployment_id=deployment.id)
    configuration.prepare_for_flow_run(flow_run=flow_run, deployment=deployment, flow=flow)
    manifest = configuration.job_manifest
    async with ApiClient() as api:
        job = api._ApiClient__deserialize(manifest, "V1Job")  # the client's own deserializer
        round_trip = api.sanitize_for_serialization(job)
    return configuration, manifest, job, round_trip


@pytest.mark.parametrize("name", PRODUCTION)
def test_the_rendered_job_is_what_gke_autopilot_admits(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    job_variables = templated_job_variables(name, monkeypatch)
    configuration, manifest, job, round_trip = asyncio.run(render_job(job_variables, name))

    # a valid Job: nothing in the manifest is unknown to the Kubernetes models (a misspelt field
    # would be dropped by the deserializer and missing from the round trip)
    assert isinstance(job, V1Job) and job.api_version == "batch/v1" and job.kind == "Job"
    assert as_json(round_trip) == without_misplaced_pod_fields(as_json(manifest))

    pod = job.spec.template
    (container,) = pod.spec.containers
    assert container.image == IMAGE
    assert container.args[:3] == ["prefect", "flow-run", "execute"]
    assert pod.spec.restart_policy == "Never"

    # Prefect retries, not Kubernetes; an evicted run is rescheduled by Prefect
    assert job.spec.backoff_limit == 0
    env = {e.name: e.value for e in container.env}
    assert env["PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR"] == "reschedule"
    assert job.spec.ttl_seconds_after_finished and job.spec.ttl_seconds_after_finished > 0
    # a pod that never starts is failed by Kubernetes, and the observer marks the run Crashed
    assert job.spec.active_deadline_seconds and job.spec.active_deadline_seconds >= 3600

    # protected from autoscaler scale-down evictions
    assert pod.metadata.annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"

    # Workload Identity: the bound Kubernetes service account, no key file anywhere
    assert pod.spec.service_account_name == WORKLOAD_IDENTITY_KSA
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in env
    assert not pod.spec.volumes

    # the production environment, with the deploy-time values filled in
    assert env["GA_TARGET"] == "bigquery"
    assert env["GA_GCP_PROJECT"] == DEPLOY_ENV["GA_GCP_PROJECT"] and env["GA_DATAFLOW_TEMPLATE_PATH"].startswith("gs://")
    assert env["GA_DATAFLOW_SDK_IMAGE"] == DEPLOY_ENV["GA_DATAFLOW_SDK_IMAGE"]
    assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) >= 30
    assert all(value not in (None, "") and "{{" not in value for value in env.values()), env

    # GKE Autopilot resource rules (see the module docstring)
    requests, limits = container.resources.requests, container.resources.limits
    assert set(requests) == {"cpu", "memory", "ephemeral-storage"}
    assert limits == requests
    cpu, memory, storage = (quantity(requests[k]) for k in ("cpu", "memory", "ephemeral-storage"))
    assert Decimal("0.5") <= cpu <= 28 and (cpu / Decimal("0.25")) % 1 == 0, cpu
    assert cpu * GIB <= memory <= cpu * Decimal("6.5") * GIB, (cpu, memory)
    assert 10 * 2**20 <= storage <= 10 * GIB, storage


def test_the_pool_template_holds_the_autopilot_rules_whatever_a_deployment_sets() -> None:
    """backoffLimit, limits and the eviction annotation are fixed in the template, not variables."""
    template = json.loads(GKE_TEMPLATE.read_text())
    variables = template["variables"]["properties"]
    assert not {"backoff_limit", "cpu_limit", "memory_limit"} & set(variables)
    assert variables["service_account_name"]["default"] == WORKLOAD_IDENTITY_KSA
    assert variables["active_deadline_seconds"]["minimum"] >= 600
    configuration, manifest, job, _ = asyncio.run(render_job({"image": IMAGE}, "defaults"))
    (container,) = job.spec.template.spec.containers
    assert container.resources.limits == container.resources.requests
    assert job.spec.backoff_limit == 0
    assert job.spec.active_deadline_seconds == variables["active_deadline_seconds"]["default"]


def test_every_job_configuration_field_is_one_prefect_kubernetes_reads() -> None:
    """prefect-kubernetes 0.8.0 no longer watches pods itself: `pod_watch_timeout_seconds`,
    `job_watch_timeout_seconds` and `stream_output` are accepted and ignored. A field of the pool's
    job configuration must be read somewhere in the worker, its observer or Prefect's base worker."""
    import prefect.workers.base
    import prefect_kubernetes.observer
    import prefect_kubernetes.worker

    modules = (prefect_kubernetes.worker, prefect_kubernetes.observer, prefect.workers.base)
    source = "".join(Path(m.__file__).read_text() for m in modules)
    template = json.loads(GKE_TEMPLATE.read_text())
    unread = [key for key in template["job_configuration"] if not re.search(rf"\.{key}\b", source)]
    assert not unread, f"job configuration fields prefect-kubernetes ignores: {unread}"


def test_a_pod_that_never_starts_fails_at_the_deadline_and_the_run_is_crashed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flow-run pod stuck in Pending (a missing Secret or image, no node) holds its run Pending, which
    no automation reports. At the Job's activeDeadlineSeconds Kubernetes deletes the pod, counts it
    failed and marks the Job Failed (reason DeadlineExceeded); the worker's observer, given that Job
    event, marks the run Crashed (and the failure automation reports it)."""
    import logging
    from types import SimpleNamespace

    import anyio
    from prefect.states import Pending
    from prefect_kubernetes import observer

    job_variables = templated_job_variables("hourly", monkeypatch)
    _, manifest, job, _ = asyncio.run(render_job(job_variables, "hourly"))
    assert job.spec.active_deadline_seconds
    labels = manifest["metadata"]["labels"]
    flow_run = FlowRun(id=uuid.UUID(labels["prefect.io/flow-run-id"]), name="tidy-otter", flow_id=uuid.uuid4(),
                       state=Pending())
    proposed: list[Any] = []

    class Orchestration:  # the Prefect API at its boundary
        async def read_flow_run(self, flow_run_id: uuid.UUID) -> FlowRun:
            assert flow_run_id == flow_run.id
            return flow_run

    async def propose_state(client: Any, state: Any, flow_run_id: uuid.UUID) -> Any:
        proposed.append((flow_run_id, state))
        return state

    async def no_other_jobs(*args: Any, **kwargs: Any) -> list:  # the Kubernetes API: this Job only
        return []

    async def no_logs(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(observer, "orchestration_client", Orchestration())
    monkeypatch.setattr(observer, "propose_state", propose_state)
    monkeypatch.setattr(observer, "_get_k8s_jobs", no_other_jobs)
    monkeypatch.setattr(observer, "_fetch_crashed_pod_logs", no_logs)
    # the observer waits 30 s for a replacement Job of a Pending run; none comes here
    monkeypatch.setattr(observer, "anyio", SimpleNamespace(move_on_after=lambda s: anyio.move_on_after(0.2), sleep=anyio.sleep))

    deadline_exceeded = {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}
    asyncio.run(observer._mark_flow_run_as_crashed(
        event={"type": "MODIFIED", "object": manifest}, name="hourly-abc12", labels=labels, status=deadline_exceeded,
        logger=logging.getLogger("observer"), spec=manifest["spec"], uid="job-uid", namespace=manifest["metadata"]["namespace"]))
    ((run_id, state),) = proposed
    assert run_id == flow_run.id and state.is_crashed()
