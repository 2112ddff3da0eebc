"""Orchestration overhead: the pipeline flow's dbt build + dbt test (through Prefect, against a real
local Prefect server) against a plain `dbt build` from the CLI, on the same dbt project and data:
the dbt benchmark's bronze (benchmarks/dbt_benchmark.py, 10 million events over 30 days). Each run
builds the warehouse from empty; both do the same nodes (everything but the unit tests, which run
in CI), the flow as its build step plus its quality-gate step.

    .venv/bin/python benchmarks/orchestration_benchmark.py [--events 10000000] [--repeats 3]

Prints each run's wall time and peak memory (the whole process tree: Python process plus dbt),
then the medians and the ratios flow / CLI. Targets: at most 1.15x wall time, at most 1.5x peak memory.
"""
from __future__ import annotations

import argparse
import os
import shutil
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
from flows.dbt import dbt_session
from flows.parameters import PipelineParameters
from flows.pipeline import dbt_build, dbt_test
from common.settings import OrchestrationSettings
run_dir = Path(sys.argv[1])

@flow(name="benchmark-dbt-steps")
def steps():  # the dbt steps of game-analytics-pipeline, as it runs them
    params = PipelineParameters(freshness=False)
    with dbt_session(OrchestrationSettings()):
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


def prepare(data_dir: Path, events: int, days: int) -> None:
    """The dbt benchmark's bronze in data_dir/landing."""
    import duckdb
    from datetime import datetime, timedelta, timezone

    from dbt_benchmark import START, generate_events, write_bronze

    end = datetime(START.year, START.month, START.day, tzinfo=timezone.utc) + timedelta(days=days)
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        generate_events(con, events, days)
        write_bronze(con, data_dir / "landing", days, end, end)


def empty_warehouse(data_dir: Path) -> None:
    for path in data_dir.glob("warehouse.duckdb*"):
        path.unlink()


def against_cli(script: str, label: str, *, warm_parse_cache: bool) -> int:
    """Run ``script`` (a flow doing a dbt build, given its run folder as argv[1]) and a plain
    `dbt build` from the CLI, each from an empty warehouse, alternately, against a real local
    Prefect server; print every round and the medians' ratios."""
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    from deployments.local.services import prefect_server

    work = Path(tempfile.mkdtemp(prefix="ga-bench-orch-"))
    data_dir = work / "data"
    prepare(data_dir, args.events, args.days)
    env = dict(os.environ, GA_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT), PREFECT_HOME=str(work / "prefect-client"))
    dbt = str(Path(sys.executable).with_name("dbt"))
    cli = [dbt, "build", "--exclude-resource-type", "unit_test", "--project-dir", "dbt", "--profiles-dir", "dbt",
           "--target", "local", "--target-path", str(work / "cli-target")]
    if warm_parse_cache:
        # the flow's dbt steps start from a parse state, as they do in the image, which ships one
        subprocess.run([dbt, "parse", *cli[4:]], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        parse_cache = data_dir / "dbt-runs" / "parse-cache" / "local"  # where the flow's dbt steps look first
        parse_cache.mkdir(parents=True)
        shutil.copyfile(work / "cli-target" / "partial_parse.msgpack", parse_cache / "partial_parse.msgpack")
    results: dict[str, list[tuple[float, float]]] = {"cli": [], label: []}
    with prefect_server(work / "prefect-server") as api:
        env["PREFECT_API_URL"] = api
        for i in range(args.repeats):
            empty_warehouse(data_dir)
            results["cli"].append(measure(cli, env, ROOT))
            empty_warehouse(data_dir)
            results[label].append(measure([sys.executable, "-c", script, str(work / f"{label}-{i}")], env, ROOT))
            for name in results:
                wall, mem = results[name][-1]
                print(f"run {i + 1} {name:>6}: {wall:6.1f} s  peak {mem:7.0f} MiB", flush=True)
    cli_wall, cli_mem = (statistics.median(x[k] for x in results["cli"]) for k in (0, 1))
    wall, mem = (statistics.median(x[k] for x in results[label]) for k in (0, 1))
    print(f"baseline  plain `dbt build` CLI : {cli_wall:6.1f} s, peak {cli_mem:6.0f} MiB")
    print(f"{label:<9} through Prefect       : {wall:6.1f} s, peak {mem:6.0f} MiB")
    print(f"ratio     wall {wall / cli_wall:.2f}x, peak memory {mem / cli_mem:.2f}x")
    return 0


def main() -> int:
    print("targets: wall <= 1.15x, peak memory <= 1.5x")
    return against_cli(FLOW_SCRIPT, "flow", warm_parse_cache=True)


if __name__ == "__main__":
    raise SystemExit(main())
