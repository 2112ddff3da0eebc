"""One writer at a time, for real: flow runs in separate processes race for the warehouse on a real
Prefect server (its global concurrency limit `warehouse`); one waits, their hold times never
overlap, and a run waiting for its retry keeps the warehouse."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from common.settings import REPO_ROOT


def start_holder(prefect_api: str, record: Path, go: Path, hold_s: float, fail_first: bool = False) -> subprocess.Popen:
    env = dict(os.environ, PREFECT_API_URL=prefect_api, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen([sys.executable, "-m", "tests.flows.warehouse_holder", str(record), str(go), str(hold_s),
                             *(["fail-first"] if fail_first else [])], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def race(prefect_api: str, tmp_path: Path, hold_s: float, fail_first: tuple[bool, bool]) -> list[dict]:
    go = tmp_path / "go"
    records = [tmp_path / "a.json", tmp_path / "b.json"]
    procs = [start_holder(prefect_api, r, go, hold_s, f) for r, f in zip(records, fail_first)]
    deadline = time.monotonic() + 120
    while not all(Path(str(r) + ".ready").exists() for r in records):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [p.communicate()[0][-3000:] for p in procs]
        time.sleep(0.05)
    go.write_text("go")
    for p in procs:
        output, _ = p.communicate(timeout=180)
        assert p.returncode == 0, output[-3000:]
    return sorted((json.loads(r.read_text()) for r in records), key=lambda t: t["got"])


def test_two_runs_racing_for_the_warehouse_one_waits_and_they_never_overlap(prefect_api: str, tmp_path: Path) -> None:
    first, second = race(prefect_api, tmp_path, hold_s=3, fail_first=(False, False))
    assert abs(first["asked"] - second["asked"]) < 1  # they asked together
    assert second["asked"] < first["released"] <= second["got"]  # the second waited for the first to finish


def test_a_run_waiting_for_its_retry_keeps_the_warehouse(prefect_api: str, tmp_path: Path) -> None:
    first, second = race(prefect_api, tmp_path, hold_s=3, fail_first=(True, True))
    assert len(first["attempts"]) == 2 and len(second["attempts"]) == 2  # each failed once, retried once
    assert second["asked"] < first["attempts"][1] and first["released"] <= second["got"]
    with get_client(sync_client=True) as client:  # the run never left Running: no AwaitingRetry
        for run in (first, second):
            states = client.read_flow_run_states(run["flow_run"])
            assert [s.name for s in states] == ["Pending", "Running", "Completed"], [s.name for s in states]
