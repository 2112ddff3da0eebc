"""Services the tests need, started for real on loopback: a Prefect server (SQLite) for the session.
Each test gets its own data folder (landing area, exports, DuckDB warehouse) through GA_DATA_DIR."""
from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Iterator

import pytest

from simulator import Simulation, SimulationConfig, simulate

# small, with every fault made frequent enough to be seen: duplicates, duplicate transactions,
# late events, invalid events and whole broken messages, test accounts
SMALL = SimulationConfig(
    seed=11,
    start_date=date(2026, 1, 1),
    days=12,
    players_per_game=40,
    test_account_share=0.1,
    duplicate_rate=0.05,
    duplicate_transaction_rate=0.3,
    late_rate=0.05,
    invalid_rate=0.03,
    malformed_rate=0.02,
    max_events_per_message=20,
)

# long enough for every KPI rule to bind (D30 retention, the 30-day MAU window), with the ids of a
# studio whose games share one account system and one catalogue (player ids, skus and order numbers
# repeat across games; an account is a test account in one game and a player in another), players
# missing from the players export, days whose revenue and ad revenue end exactly on half a cent, and
# bank holidays without FX exports (2026-02-10 is priced with the rate of 2026-02-06)
LONG = replace(
    SMALL,
    seed=15,
    days=45,
    players_per_game=50,
    unexported_player_share=0.1,
    shared_ids=True,
    fx_holidays=(date(2026, 2, 9), date(2026, 2, 10)),
    half_cent_days=2,
)

# Prefect's client-side home (profiles, local result storage) stays out of the user's ~/.prefect
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="ga-tests-"))
os.environ.setdefault("PREFECT_HOME", str(_SESSION_DIR / "prefect-client"))
os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A real Prefect server for the whole session; every flow run in the tests is recorded there."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.local.services import flush_prefect_telemetry, prefect_server

    with prefect_server(_SESSION_DIR / "prefect-server") as api_url:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield api_url
            flush_prefect_telemetry()


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A real PostgreSQL server (the operational database's local twin) for the session."""
    from deployments.local.postgres import postgres_server

    with postgres_server() as dsn:
        yield dsn


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh local platform folder for one test, seen by OrchestrationSettings, dbt and the function alike."""
    monkeypatch.setenv("GA_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def small_sim() -> Simulation:
    return simulate(SMALL)


@pytest.fixture(scope="session")
def long_sim() -> Simulation:
    return simulate(LONG)


TINY = SimulationConfig(seed=5, start_date=date(2026, 3, 2), days=4, players_per_game=12, games=("tiny_game",))


@pytest.fixture(scope="session")
def tiny_sim() -> Simulation:
    return simulate(TINY)


def land_simulation(sim: Simulation, data_dir: Path) -> None:
    """Put a simulation's events into the local bronze through the function's own handler (in
    process, no server) and write its batch exports: the starting point of flow tests."""
    from common.settings import OrchestrationSettings
    from tests.dbt.warehouse import land_events

    settings = OrchestrationSettings(data_dir=data_dir)
    land_events(sim.messages, settings)
    sim.write_exports(settings.exports_dir)


def requires_pubsub_emulator() -> pytest.MarkDecorator:
    """Skip where the Pub/Sub emulator cannot run (no gcloud component or Java on this machine);
    in CI (CI set), where it must run, fail instead so its tests never go missing quietly."""
    from deployments.local.pubsub_emulator import emulator_unavailable_reason

    reason = emulator_unavailable_reason()
    if reason is not None and os.environ.get("CI"):
        pytest.fail(f"the Pub/Sub emulator is required in CI: {reason}", pytrace=False)
    return pytest.mark.skipif(reason is not None, reason=f"Pub/Sub emulator unavailable: {reason}")
