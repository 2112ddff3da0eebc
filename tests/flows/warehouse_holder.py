"""A flow run that holds the warehouse as the pipeline does (warehouse_lease, with_retries), for the
tests that race two of them in two processes against a real Prefect server. It records, in a JSON
file, when it asked for the warehouse, when it got it and when it gave it up.

    python -m tests.flows.warehouse_holder <record.json> <go-file> <hold-s> [fail-first]
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from google.api_core.exceptions import ServiceUnavailable
from prefect import flow
from prefect.runtime import flow_run

from flows.warehouse import warehouse_lease, with_retries


@flow(name="warehouse-holder")
def warehouse_holder(record: str, go: str, hold_s: float, fail_first: bool = False) -> None:
    out = Path(record)
    times: dict = {"flow_run": str(flow_run.get_id()), "attempts": []}
    Path(record + ".ready").write_text("ready")
    while not Path(go).exists():  # both runs ask for the warehouse at the same moment
        time.sleep(0.01)
    times["asked"] = time.time()
    with warehouse_lease():
        times["got"] = time.time()

        def attempt() -> None:
            times["attempts"].append(time.time())
            out.write_text(json.dumps(times))  # the test sees the first attempt's failure
            time.sleep(hold_s)
            if fail_first and len(times["attempts"]) == 1:
                raise ServiceUnavailable("the warehouse's API is briefly unavailable")

        with_retries(attempt, retries=1, delay_s=hold_s)
        times["released"] = time.time()
    out.write_text(json.dumps(times))


if __name__ == "__main__":
    warehouse_holder(sys.argv[1], sys.argv[2], float(sys.argv[3]), len(sys.argv) > 4)
