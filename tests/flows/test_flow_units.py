"""The small pure pieces the flows are made of."""
from __future__ import annotations

import json
from datetime import date
from itertools import islice
from pathlib import Path

import pytest
from google.api_core.exceptions import BadRequest, ServiceUnavailable, TooManyRequests

from flows.backfill import windows
from flows.batch import poll_delays
from flows.dbt import DbtFailure, LogLine, parse_log_line
from flows.dbt_runs import resumable
from flows.parameters import PipelineParameters
from flows.report import summary_markdown
from flows.dbt import NodeResult
from flows.retries import is_transient
from ingestion.batch.launch import LoadResult


def test_windows_cover_the_range_without_gaps_or_overlaps() -> None:
    assert windows(date(2026, 1, 1), date(2026, 1, 10), 4) == [
        (date(2026, 1, 1), date(2026, 1, 4)), (date(2026, 1, 5), date(2026, 1, 8)), (date(2026, 1, 9), date(2026, 1, 10))]
    assert windows(date(2026, 1, 1), date(2026, 1, 1), 7) == [(date(2026, 1, 1), date(2026, 1, 1))]
    with pytest.raises(ValueError, match="window_days"):
        windows(date(2026, 1, 1), date(2026, 1, 2), 0)
    with pytest.raises(ValueError, match="after end"):
        windows(date(2026, 1, 2), date(2026, 1, 1), 1)


def test_polling_backs_off_up_to_a_cap() -> None:
    assert list(islice(poll_delays(first_s=4, factor=2, max_s=20), 5)) == [4, 8, 16, 20, 20]


def test_only_transient_errors_are_retried() -> None:
    assert is_transient(ServiceUnavailable("503")) and is_transient(TooManyRequests("quota"))
    assert is_transient(ConnectionResetError())
    wrapped = RuntimeError("launch failed")
    wrapped.__cause__ = ServiceUnavailable("503")
    assert is_transient(wrapped)
    assert not is_transient(BadRequest("bad template parameter"))
    assert not is_transient(DbtFailure("build", ["test.game_analytics.x"]))
    assert not is_transient(ValueError("bad row"))


def test_a_failing_data_test_or_a_failed_dataflow_job_is_never_retried_a_warehouse_hiccup_is() -> None:
    from flows.batch import DataflowJobFailed

    def failure(*nodes: tuple[str, str, str]) -> DbtFailure:
        results = [NodeResult(uid, uid.split(".")[0], status, message, None) for uid, status, message in nodes]
        return DbtFailure("build", [n.unique_id for n in results], nodes=results)

    hiccup = ("model.game_analytics.fct_sessions", "error", "Database Error: 503 Service Unavailable: backendError")
    assert is_transient(failure(hiccup))
    assert is_transient(failure(("model.game_analytics.x", "error", 'IO Error: Could not set lock on file "w.duckdb"')))
    assert not is_transient(failure(hiccup, ("test.game_analytics.unique_x", "fail", "Got 3 results, configured to fail if != 0")))
    assert not is_transient(failure(("model.game_analytics.x", "error", "Syntax error: Unexpected keyword")))
    assert not is_transient(failure())  # no node reported: nothing says it was transient
    try:
        try:
            raise ServiceUnavailable("503 while polling")
        except ServiceUnavailable:
            raise DataflowJobFailed("Dataflow job 2026-x ended JOB_STATE_FAILED")
    except DataflowJobFailed as failed:
        assert not is_transient(failed)  # a retry would relaunch the whole job on the same input


def test_parameters_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="start"):
        PipelineParameters(start=date(2026, 2, 1), end=date(2026, 1, 1))
    with pytest.raises(ValueError, match="start_date"):
        PipelineParameters(vars={"start_date": "2026-01-01"})
    with pytest.raises(ValueError, match="dbt_timeout_s"):
        PipelineParameters(dbt_timeout_s=0)
    with pytest.raises(ValueError, match="unknown_option"):
        PipelineParameters(unknown_option=1)
    assert PipelineParameters(end=date(2026, 1, 5)).window(date(2026, 3, 1)) == (date(2015, 1, 1), date(2026, 1, 5))


def test_dbt_structured_log_lines_report_node_outcomes() -> None:
    line = json.dumps({"info": {"name": "LogTestResult", "msg": "1 of 2 FAIL 3 not_null_x", "level": "error"},
                       "data": {"node_info": {"unique_id": "test.game_analytics.not_null_x", "node_status": "fail"}}})
    parsed = parse_log_line(line)
    assert parsed == LogLine("1 of 2 FAIL 3 not_null_x", "error", {"unique_id": "test.game_analytics.not_null_x", "node_status": "fail"})
    assert parse_log_line("plain text").node is None
    assert parse_log_line(json.dumps({"info": {"name": "MainReportVersion", "msg": "Running"}, "data": {}})).node is None


def test_resumable_only_after_a_failed_dbt_run(tmp_path: Path) -> None:
    assert not resumable(tmp_path)
    results = {"results": [{"unique_id": "model.game_analytics.a", "status": "success"}]}
    (tmp_path / "run_results.json").write_text(json.dumps(results))
    assert not resumable(tmp_path)
    results["results"].append({"unique_id": "test.game_analytics.b", "status": "fail"})
    (tmp_path / "run_results.json").write_text(json.dumps(results))
    assert resumable(tmp_path)


def test_the_run_summary_names_failing_and_warning_tests_and_headline_kpis() -> None:
    built = [NodeResult("model.game_analytics.mart_daily_kpis", "model", "success", "OK", 12),
             NodeResult("test.game_analytics.not_null_x", "test", "pass", None, None)]
    tested = [NodeResult("test.game_analytics.rejected_share", "test", "warn", "Got 3 results", None)]
    loads = [LoadResult("players", "DirectRunner", None, rows_read=122, rows_loaded=120, rows_rejected=2, rejection_reasons={"null_key": 2})]
    kpis = [{"activity_date": "2026-01-10", "game_id": "g", "dau": 15}, {"activity_date": "2026-01-09", "game_id": "g", "dau": 9}]
    md = summary_markdown(loads, built, tested, kpis)
    assert "| players | 120 | 2 | DirectRunner |" in md
    assert "| model.game_analytics.mart_daily_kpis | success | 12 |" in md
    assert "warn: `test.game_analytics.rejected_share`" in md
    assert "Headline KPIs, 2026-01-10" in md and "| g | 15 |" in md and "| g | 9 |" not in md


def test_a_new_dbt_target_folder_starts_from_an_earlier_parse(tmp_path: Path) -> None:
    from flows.dbt_runs import PARTIAL_PARSE, seed_partial_parse

    build, test, image = tmp_path / "build", tmp_path / "test", tmp_path / "image"
    image.mkdir()
    (image / PARTIAL_PARSE).write_bytes(b"image state")
    assert seed_partial_parse(build, [build, image]) == image / PARTIAL_PARSE
    (build / PARTIAL_PARSE).write_bytes(b"build state")
    assert seed_partial_parse(test, [build, image]) == build / PARTIAL_PARSE
    assert (test / PARTIAL_PARSE).read_bytes() == b"build state"
    assert seed_partial_parse(test, [image]) is None  # never overwrites its own state
    assert seed_partial_parse(tmp_path / "none", [tmp_path / "missing"]) is None


def test_the_flow_knows_every_batch_source_and_imports_no_pipeline_code() -> None:
    import subprocess
    import sys

    from flows.parameters import SOURCES
    from ingestion.batch.launch import SOURCES as BATCH_SOURCES

    assert SOURCES == BATCH_SOURCES
    # Beam and the Google clients load only in the tasks that run a batch load
    probe = "import sys, flows.pipeline, flows.backfill; print('apache_beam' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_old_dbt_run_folders_are_pruned_and_recent_ones_and_the_parse_state_kept(tmp_path: Path) -> None:
    import os
    import time

    from flows.dbt_runs import prune_dbt_runs
    from common.settings import OrchestrationSettings

    settings = OrchestrationSettings(data_dir=tmp_path, dbt_runs_keep_days=14)
    runs = tmp_path / "dbt-runs"
    now = time.time()
    for name, age_days in (("old-run", 20), ("recent-run", 2), ("parse-cache", 400)):
        (runs / name / "build").mkdir(parents=True)
        os.utime(runs / name, (now - age_days * 86400, now - age_days * 86400))
    assert prune_dbt_runs(settings, now=now) == [runs / "old-run"]
    assert sorted(p.name for p in runs.iterdir()) == ["parse-cache", "recent-run"]
    assert prune_dbt_runs(OrchestrationSettings(data_dir=tmp_path / "nothing-yet")) == []


def test_every_attempt_of_the_pipeline_runs_inside_the_warehouse_lease(monkeypatch) -> None:
    """The race itself is tested on a real server (test_warehouse_lease.py); here: the flow's every
    attempt, retries included, happens while the lease is held."""
    from contextlib import contextmanager

    from google.api_core.exceptions import ServiceUnavailable

    from flows import pipeline, warehouse

    events: list[str] = []

    @contextmanager
    def lease(wait_s=None):
        events.append("acquired")
        yield
        events.append("released")

    def build(params, settings):
        events.append("attempt")
        if events.count("attempt") == 1:
            raise ServiceUnavailable("503")
        return []

    monkeypatch.setattr(pipeline, "warehouse_lease", lease)
    monkeypatch.setattr(pipeline, "build", build)
    monkeypatch.setattr(warehouse, "get_run_logger", lambda: __import__("logging").getLogger("test"))
    monkeypatch.setenv("GA_FLOW_RETRY_DELAY_S", "0")
    assert pipeline.game_analytics_pipeline.fn() == []
    assert events == ["acquired", "attempt", "attempt", "released"]
