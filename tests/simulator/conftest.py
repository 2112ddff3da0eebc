from __future__ import annotations

from datetime import date

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from simulator import Simulation, SimulationConfig, simulate
from simulator.contract import load_schema
from tests.conftest import SMALL

@pytest.fixture(scope="session")
def small_config() -> SimulationConfig:
    return SMALL


@pytest.fixture(scope="session")
def default_sim() -> Simulation:
    return simulate(SimulationConfig())


@pytest.fixture(scope="session")
def validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema(), format_checker=FormatChecker())
