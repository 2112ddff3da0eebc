"""Orchestration overhead: the pipeline flow's dbt build + dbt test (through Prefect, against a real
local Prefect server) against a plain `dbt build` from the CLI, on the same dbt project and data.

    .venv/bin/python benchmarks/orchestration_benchmark.py [--players-per-game 1500] [--days 35] [--repeats 2]

Prints each run's wall time and peak memory (the whole process tree: Python process plus dbt),
then the medians and the ratios flow / CLI. Targets: at most 1.15x wall time, at most 1.5x peak memory.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FLOW_SCRIPT = """
import sys
from pathlib import Path
from prefect import flow
from flows.pipeline import PipelineParameters, dbt_build, dbt_test
run_dir = Path(sys.argv[1])

@flow(name="benchmark-dbt-steps")
def steps():
    params = PipelineParameters(freshness=False)
    dbt_build(params, run_dir / "build")
    dbt_test(params, run_dir)

steps()
"""


def measure(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of the whole process tree, sampled every 20 ms."""
    peak = 0
    start = time.perf_counter()
    proc = psutil.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                tree = [proc, *proc.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return elapsed, peak / 2**20


def prepare(data_dir: Path, players: int, days: int) -> None:
    from ingestion.batch.launch import SOURCES, run_local
    from ingestion.bronze import compact_local_bronze, ensure_local_bronze
    from ingestion.settings import Settings
    from ingestion.simulator import SimulationConfig, simulate
    from tests.conftest import land_simulation

    sim = simulate(SimulationConfig(players_per_game=players, days=days))
    land_simulation(sim, data_dir)
    settings = Settings(data_dir=data_dir)
    ensure_local_bronze(settings.landing_dir)
    compact_local_bronze(settings.landing_dir)  # as the flow's prepare-landing step does
    for source in SOURCES:
        run_local(source, sim.config.start_date.replace(year=2015), sim.config.start_date.replace(year=2030), settings)
    print(f"data: {len(sim.valid_events)} events, {players} players per game, {days} days")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--players-per-game", type=int, default=1500)
    p.add_argument("--days", type=int, default=35)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    from deployments.local.services import prefect_server

    work = Path(tempfile.mkdtemp(prefix="ga-bench-orch-"))
    data_dir = work / "data"
    prepare(data_dir, args.players_per_game, args.days)
    env = dict(os.environ, GA_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT), PREFECT_HOME=str(work / "prefect-client"))
    dbt = str(Path(sys.executable).with_name("dbt"))
    cli = [dbt, "build", "--project-dir", "dbt", "--profiles-dir", "dbt", "--target", "local",
           "--target-path", str(work / "cli-target")]
    # warm up both paths once (first parse, Python byte-code caches)
    subprocess.run(cli, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    results: dict[str, list[tuple[float, float]]] = {"cli": [], "flow": []}
    with prefect_server(work / "prefect-server") as api:
        env["PREFECT_API_URL"] = api
        for i in range(args.repeats):
            results["cli"].append(measure(cli, env, ROOT))
            results["flow"].append(measure([sys.executable, "-c", FLOW_SCRIPT, str(work / f"flow-{i}")], env, ROOT))
            for name in results:
                wall, mem = results[name][-1]
                print(f"run {i + 1} {name:>4}: {wall:6.1f} s  peak {mem:7.0f} MiB")
    cli_wall = statistics.median(w for w, _ in results["cli"])
    cli_mem = statistics.median(m for _, m in results["cli"])
    flow_wall = statistics.median(w for w, _ in results["flow"])
    flow_mem = statistics.median(m for _, m in results["flow"])
    print(f"baseline  plain `dbt build` CLI : {cli_wall:6.1f} s, peak {cli_mem:6.0f} MiB")
    print(f"flow      dbt build + dbt test  : {flow_wall:6.1f} s, peak {flow_mem:6.0f} MiB")
    print(f"ratio     wall {flow_wall / cli_wall:.2f}x (target <= 1.15x), peak memory {flow_mem / cli_mem:.2f}x (target <= 1.5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
