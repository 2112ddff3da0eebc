"""Fixtures of the dbt tests: a local platform folder with the small simulation's bronze landed
through the production code paths."""
from __future__ import annotations

from pathlib import Path

import pytest

from common.settings import OrchestrationSettings
from simulator import Simulation
from tests.dbt import warehouse


def landed(data_dir: Path, sim: Simulation, monkeypatch: pytest.MonkeyPatch) -> OrchestrationSettings:
    monkeypatch.setenv("GA_DATA_DIR", str(data_dir))
    settings = OrchestrationSettings()
    warehouse.prepare(settings)
    warehouse.land_events(sim.messages, settings)
    warehouse.load_batch(sim, settings)
    return settings


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, long_sim: Simulation) -> OrchestrationSettings:
    """The long simulation's bronze (ids shared across games), then `dbt build` and the quality
    gate, as the flow runs them."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        settings = landed(tmp_path_factory.mktemp("warehouse"), long_sim, monkeypatch)
        warehouse.dbt(settings, "build", "--exclude", "tag:quality_gate")
        warehouse.dbt(settings, "test", "--select", "tag:quality_gate")
        yield settings
