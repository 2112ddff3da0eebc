"""Why the flows do not run dbt with prefect-dbt's `PrefectDbtRunner`: its `dbt build` (a Prefect task
per node, asset events, against a real local Prefect server) against the same plain `dbt build`
from the CLI, on the dbt benchmark's bronze, each from an empty warehouse; wall time and peak
memory of the whole process tree (orchestration_benchmark.measure), median of the rounds.

    .venv/bin/python benchmarks/prefect_dbt_runner_benchmark.py [--events 10000000] [--repeats 3]

The flows' own dbt steps are measured against the same baseline by orchestration_benchmark.py
(target <= 1.15x wall).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from orchestration_benchmark import against_cli  # noqa: E402

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
    return against_cli(RUNNER_SCRIPT, "runner", warm_parse_cache=False)


if __name__ == "__main__":
    raise SystemExit(main())
