"""The main job (`python3 run.py pipeline` runs `deployments.local.run_local.main`) on a small
simulation: once through the Pub/Sub emulator (emulator -> push -> function server -> flow ->
marts) and once through its fallback without the emulator (push requests POSTed to the function
server); both runs' marts equal the ground truth, every cell."""
from __future__ import annotations

from pathlib import Path

import pytest

from deployments.local import run_local
from ingestion.settings import Settings
from ingestion.simulator import SimulationConfig, simulate
from tests.conftest import requires_pubsub_emulator
from tests.dbt import warehouse

# small, yet with a day-7 return observable and every fault the simulator injects
ARGS = {"seed": 21, "days": 9, "players_per_game": 12}


def run_main(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # the job's fixed port 4200 may be taken on a shared machine: any free port serves the test
    monkeypatch.setattr(run_local, "PREFECT_PORT", None)
    # main sets GA_POSTGRES_DSN for its flow; registering it here restores the test process afterwards
    monkeypatch.setenv("GA_POSTGRES_DSN", "")
    monkeypatch.setenv("GA_DATA_DIR", str(data_dir))
    argv = [f"--{name.replace('_', '-')}={value}" for name, value in ARGS.items()]
    assert run_local.main(argv) == 0
    return Settings()


def assert_marts_equal_the_ground_truth(settings: Settings) -> None:
    sim = simulate(SimulationConfig(**ARGS))
    for mart in warehouse.MARTS:
        want = warehouse.truth_rows(sim, mart)
        assert want, f"the ground truth has no {mart} rows"
        assert warehouse.differences(warehouse.mart_rows(settings.warehouse_path, mart), want) == [], mart


def test_the_main_job_without_the_emulator_posts_to_the_function(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the job asks emulator_unavailable_reason() whether the emulator can start; on a machine
    # without gcloud or Java it answers with the reason, which this stands in for
    monkeypatch.setattr(run_local, "emulator_unavailable_reason", lambda: "gcloud is not installed (test)")
    settings = run_main(data_dir, monkeypatch)
    out = capsys.readouterr().out
    assert "Pub/Sub emulator unavailable (gcloud is not installed (test))" in out
    assert "Streamed them through the Cloud Function at http://127.0.0.1:" in out
    assert not (data_dir / "logs" / "pubsub-emulator.log").exists()
    assert (data_dir / "logs" / "function.log").stat().st_size > 0
    assert_marts_equal_the_ground_truth(settings)


@requires_pubsub_emulator()
def test_the_main_job_streams_through_the_emulator_and_the_function(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = run_main(data_dir, monkeypatch)
    out = capsys.readouterr().out
    assert "Published them to the Pub/Sub emulator; pushed to the Cloud Function" in out
    assert "unavailable" not in out
    assert (data_dir / "logs" / "pubsub-emulator.log").exists()
    assert_marts_equal_the_ground_truth(settings)
