"""Why the flows do not run dbt with prefect-dbt's `PrefectDbtRunner`: its `dbt build` (a Prefect task
per node, asset events, against a real local Prefect server) against the same plain `dbt build`
from the CLI, on the dbt benchmark's bronze, each from an empty warehouse; wall time and peak
memory of the whole process tree (orchestration_benchmark.measure), median of the rounds.

    .venv/bin/python benchmarks/prefect_dbt_runner_benchmark.py [--events 10000000] [--repeats 3]

The flows' own dbt steps are measured against the same baseline by orchestration_benchmark.py
(target <= 1.15x wall).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from orchestration_benchmark import empty_warehouse, measure, prepare  # noqa: E402

RUNNER_SCRIPT = """
import sys
from pathlib import Path
from prefect import flow
from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

@flow(name="benchmark-prefect-dbt-runner")
def build():
    settings = PrefectDbtSettings(project_dir=Path("dbt"), profiles_dir=Path("dbt"), target_path=Path(sys.argv[1]))
    PrefectDbtRunner(settings=settings).invoke(["build", "--exclude-resource-type", "unit_test", "--target", "local"])

build()
"""


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    from deployments.local.services import prefect_server

    work = Path(tempfile.mkdtemp(prefix="ga-bench-pdbt-"))
    data_dir = work / "data"
    prepare(data_dir, args.events, args.days)
    env = dict(os.environ, GA_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT), PREFECT_HOME=str(work / "prefect-client"))
    dbt = str(Path(sys.executable).with_name("dbt"))
    cli = [dbt, "build", "--exclude-resource-type", "unit_test", "--project-dir", "dbt", "--profiles-dir", "dbt",
           "--target", "local", "--target-path", str(work / "cli-target")]
    results: dict[str, list[tuple[float, float]]] = {"cli": [], "runner": []}
    with prefect_server(work / "prefect-server") as api:
        env["PREFECT_API_URL"] = api
        for i in range(args.repeats):
            empty_warehouse(data_dir)
            results["cli"].append(measure(cli, env, ROOT))
            empty_warehouse(data_dir)
            results["runner"].append(measure([sys.executable, "-c", RUNNER_SCRIPT, str(work / f"runner-{i}")], env, ROOT))
            for name in results:
                wall, mem = results[name][-1]
                print(f"run {i + 1} {name:>6}: {wall:6.1f} s  peak {mem:7.0f} MiB", flush=True)
    cli_wall, cli_mem = (statistics.median(x[k] for x in results["cli"]) for k in (0, 1))
    run_wall, run_mem = (statistics.median(x[k] for x in results["runner"]) for k in (0, 1))
    print(f"baseline  plain `dbt build` CLI      : {cli_wall:6.1f} s, peak {cli_mem:6.0f} MiB")
    print(f"PrefectDbtRunner dbt build in a flow : {run_wall:6.1f} s, peak {run_mem:6.0f} MiB")
    print(f"ratio     wall {run_wall / cli_wall:.2f}x, peak memory {run_mem / cli_mem:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
