"""The deployments' SLAs: each production deployment declares some, and they are what `prefect
deploy` accepts (its own parser, on the JSON a `sla:` key of prefect.yaml holds)."""
from __future__ import annotations

import json
from uuid import uuid4

import yaml
from prefect.cli.deploy._sla import _initialize_deployment_slas

from blocks.slas import SLAS


def test_every_production_deployment_declares_slas_that_prefect_deploy_accepts() -> None:
    production = {d["name"] for d in yaml.safe_load(open("prefect.yaml"))["deployments"] if not d["name"].endswith("-local")}
    assert production == set(SLAS)
    for name, slas in SLAS.items():
        specs = [json.loads(s.model_dump_json(exclude={"owner_resource"})) for s in slas]
        parsed = _initialize_deployment_slas(uuid4(), specs)
        assert [type(p) for p in parsed] == [type(s) for s in slas] and len({s.name for s in slas}) == len(slas)
    hourly = {type(s).__name__: s for s in SLAS["hourly"]}
    assert hourly["TimeToCompletionSla"].duration == 1800  # an hourly run completes within 30 minutes
