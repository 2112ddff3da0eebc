"""The main job (`python3 run.py pipeline` runs `deployments.local.run_local`) on a small
simulation, each run in its own process as the command runs it: once through the Pub/Sub emulator
(emulator -> push -> function server -> flow -> marts) and once through its fallback without the
emulator (push requests POSTed to the function server); both runs' marts equal the ground truth,
every cell."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.settings import REPO_ROOT, OrchestrationSettings
from simulator import SimulationConfig, simulate
from tests.conftest import requires_pubsub_emulator
from tests.dbt import warehouse

# small, yet with a day-7 return observable and every fault the simulator injects
ARGS = {"seed": 21, "days": 9, "players_per_game": 12}
# a studio whose games share one account system: player ids, skus and order numbers repeat per game
SHARED_IDS = {**ARGS, "shared_ids": True}

# the job's Prefect server port (4200) may be taken on a shared machine: any free port serves the test
MAIN = (
    "import sys; from deployments.local import run_local; "
    "run_local.PREFECT_PORT = None; sys.exit(run_local.main(sys.argv[1:]))"
)


def run_main(data_dir: Path, path: str | None = None, args: dict = ARGS) -> str:
    """The job's output; its data stays in data_dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GA_", "PREFECT_API", "PUBSUB_EMULATOR"))}
    env["GA_DATA_DIR"] = str(data_dir)
    if path is not None:
        env["PATH"] = path
    argv = [f"--{name.replace('_', '-')}" + ("" if value is True else f"={value}") for name, value in args.items()]
    done = subprocess.run([sys.executable, "-c", MAIN, *argv], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def assert_marts_equal_the_ground_truth(data_dir: Path, args: dict = ARGS) -> None:
    sim = simulate(SimulationConfig(**args))
    for mart in warehouse.MARTS:
        want = warehouse.truth_rows(sim, mart)
        assert want, f"the ground truth has no {mart} rows"
        got = warehouse.mart_rows(OrchestrationSettings(data_dir=data_dir).warehouse_path, mart)
        assert warehouse.differences(got, want) == [], mart


def test_the_main_job_without_the_emulator_posts_to_the_function(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # a Cloud SDK without its pubsub-emulator component first on PATH: the job's own check
    # (deployments.local.pubsub_emulator.emulator_unavailable_reason) finds the emulator missing
    sdk = tmp_path_factory.mktemp("cloud-sdk")
    (sdk / "platform").mkdir()
    (sdk / "bin").mkdir()
    gcloud = sdk / "bin" / "gcloud"
    gcloud.write_text("#!/bin/sh\nexit 1\n")
    gcloud.chmod(0o755)
    out = run_main(data_dir, path=f"{sdk / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert f"Pub/Sub emulator unavailable (the Pub/Sub emulator is not installed in {sdk}" in out
    assert "Streamed them through the Cloud Function at http://127.0.0.1:" in out
    assert not (data_dir / "logs" / "pubsub-emulator.log").exists()
    assert (data_dir / "logs" / "function.log").stat().st_size > 0
    assert_marts_equal_the_ground_truth(data_dir)


@requires_pubsub_emulator()
def test_the_main_job_streams_through_the_emulator_and_the_function(data_dir: Path) -> None:
    # ids shared across games, through Pub/Sub, the function, the batch loads and the flow
    out = run_main(data_dir, args=SHARED_IDS)
    assert "Published them to the Pub/Sub emulator; pushed to the Cloud Function" in out
    assert "unavailable" not in out
    assert (data_dir / "logs" / "pubsub-emulator.log").stat().st_size > 0
    assert_marts_equal_the_ground_truth(data_dir, SHARED_IDS)
