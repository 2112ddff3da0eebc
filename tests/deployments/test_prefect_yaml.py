"""prefect.yaml, offline: it loads the way `prefect deploy` loads it, every deployment's job
variables pass its work pool's variable schema, and every deployment's parameters (schedule
parameters included) pass its flow's parameter schema."""
from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import validate
from prefect.workers.process import ProcessWorker

from common.settings import REPO_ROOT

PREFECT_YAML = REPO_ROOT / "prefect.yaml"
GKE_TEMPLATE = REPO_ROOT / "deployments" / "gke" / "base-job-template.json"

PRODUCTION = ("hourly", "daily", "backfill")
LOCAL = tuple(f"{name}-local" for name in PRODUCTION)


def raw_config() -> dict[str, Any]:
    return yaml.safe_load(PREFECT_YAML.read_text())


def deployments() -> dict[str, dict[str, Any]]:
    """The deployments as `prefect deploy` reads them (validated by its own model)."""
    model = PrefectYamlModel.model_validate(raw_config())
    return {d.name: d.model_dump(exclude_unset=True, mode="json") for d in model.deployments}


def pool_template(pool: str) -> dict[str, Any]:
    if pool == "gke-autopilot":
        return json.loads(GKE_TEMPLATE.read_text())
    assert pool == "local", pool
    return ProcessWorker.get_default_base_job_template()


def test_prefect_deploy_reads_every_deployment_and_the_twins_pair_up() -> None:
    found = deployments()
    assert set(found) == set(PRODUCTION) | set(LOCAL)
    for name in PRODUCTION:
        prod, twin = found[name], found[f"{name}-local"]
        assert prod["entrypoint"] == twin["entrypoint"]
        assert prod["work_pool"]["name"] == "gke-autopilot" and twin["work_pool"]["name"] == "local"
        # the same parameters but the target and, for the hourly runs, how the daily exports are
        # chosen: only the local bronze records which export versions it loaded (changed_only)
        window = {"target", "changed_only", "batch_days"} if name == "hourly" else {"target"}
        assert {k: v for k, v in prod["parameters"].items() if k not in window} == \
               {k: v for k, v in twin["parameters"].items() if k not in window}
        if name == "hourly":
            assert prod["parameters"]["batch_days"] == 2 and twin["parameters"]["changed_only"] is True
        assert prod["parameters"]["target"] == "bigquery" and twin["parameters"]["target"] == "local"
        # the same schedules (the twins' are inactive)
        strip = lambda s: {k: v for k, v in s.items() if k != "active"}  # noqa: E731
        assert [strip(s) for s in prod.get("schedules") or []] == [strip(s) for s in twin.get("schedules") or []]


@pytest.mark.parametrize("name", PRODUCTION + LOCAL)
def test_each_deployment_runs_one_at_a_time_with_its_schema_enforced(name: str) -> None:
    d = deployments()[name]
    assert d["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert d["enforce_parameter_schema"] is True
    assert d["work_pool"]["work_queue_name"] == "warehouse"
    assert d["description"] and "game-analytics" in d["tags"]


def test_the_local_twins_need_neither_docker_nor_a_registry() -> None:
    raw = raw_config()
    assert raw["build"] is None and raw["push"] is None  # nothing inherited
    for name in LOCAL:
        d = deployments()[name]
        assert "build" in d and not d["build"] and "push" in d and not d["push"]
        assert d["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}]
    for name in PRODUCTION:
        d = deployments()[name]
        steps = [next(iter(step)) for step in d["build"] + d["push"]]
        assert "prefect_docker.deployments.steps.build_docker_image" in steps
        assert "prefect_docker.deployments.steps.push_docker_image" in steps
        assert d["pull"] == [{"prefect.deployments.steps.set_working_directory":
                              {"directory": "/opt/prefect/game-analytics"}}]


@pytest.mark.parametrize("name", PRODUCTION + LOCAL)
def test_job_variables_pass_the_work_pool_variable_schema(name: str) -> None:
    d = deployments()[name]
    template = pool_template(d["work_pool"]["name"])
    job_variables = d["work_pool"]["job_variables"]
    # the server's own check of a deployment's job variables against its pool
    validate(job_variables, template["variables"], raise_on_error=True, preprocess=True, ignore_required=True)
    unknown = set(job_variables) - set(template["variables"]["properties"])
    assert not unknown, f"{name}: job variables the pool does not define: {unknown}"


@pytest.mark.parametrize("name", PRODUCTION + LOCAL)
def test_parameters_pass_the_flow_parameter_schema(name: str) -> None:
    d = deployments()[name]
    flow = load_flow_from_entrypoint(str(REPO_ROOT / d["entrypoint"]))
    schema = parameter_schema(flow).model_dump_for_openapi()
    runs = [d["parameters"]] + [{**d["parameters"], **(s.get("parameters") or {})} for s in d.get("schedules") or []]
    for params in runs:
        validate(params, schema, raise_on_error=True, preprocess=True, ignore_required=True)
        missing = set(schema.get("required", [])) - set(params)
        # only the backfill asks for something at run time: its window
        assert missing == ({"start", "end"} if name.startswith("backfill") else set()), (name, missing)
