"""What a flow run's dbt leaves behind, from one attempt to the next and one run to the next: its
target folder (where a retry finds the failed attempt's results and resumes with `dbt retry`), the
parse state that spares the next command a full parse, and the BigQuery jobs it started."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from flows.dbt import DBT_DIR, read_run_results
from common.settings import OrchestrationSettings


def dbt_run_dir(settings: OrchestrationSettings, run_id: str) -> Path:
    """dbt's target folder for one flow run: a flow retry finds the failed run's results there and
    resumes with `dbt retry`."""
    return settings.data_dir / "dbt-runs" / run_id


def prune_dbt_runs(settings: OrchestrationSettings, now: float | None = None) -> list[Path]:
    """Remove the dbt target folders of flow runs older than settings.dbt_runs_keep_days (a retry
    only ever resumes from its own run's recent folder); the shared parse state stays."""
    cutoff = (now if now is not None else time.time()) - settings.dbt_runs_keep_days * 86400
    runs = settings.data_dir / "dbt-runs"
    old = [p for p in runs.iterdir() if p.is_dir() and p.name != "parse-cache" and p.stat().st_mtime < cutoff] if runs.is_dir() else []
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


def resumable(target_path: Path) -> bool:
    """True when an earlier attempt of this flow run left dbt results with failures to resume from
    (`dbt retry` resumes builds and tests; source freshness is simply checked again)."""
    if not (target_path / "run_results.json").exists():
        return False
    return any(n.status in ("error", "fail", "skipped", "runtime error") for n in read_run_results(target_path))


def parse_cache(settings: OrchestrationSettings) -> Path:
    """Where the latest dbt parse state is kept between flow runs (each run has its own target folder)."""
    return settings.data_dir / "dbt-runs" / "parse-cache" / settings.target


def seed_parse_state(target_path: Path, settings: OrchestrationSettings) -> None:
    """A fresh target folder starts from the build's, the last run's or the project's parse state."""
    seed_partial_parse(target_path, [target_path.parent / "build", parse_cache(settings), DBT_DIR / "target"])


PARTIAL_PARSE = "partial_parse.msgpack"


def seed_partial_parse(target_path: Path, candidates: Sequence[Path]) -> Path | None:
    """Give a fresh target folder the parse state of an earlier one (another step of the same run,
    or the project's own target folder, parsed when the image was built), so dbt parses only what
    changed instead of the whole project. dbt itself checks the state is still valid (same vars,
    profile and files) and parses in full otherwise."""
    if (target_path / PARTIAL_PARSE).exists():
        return None
    source = next((c / PARTIAL_PARSE for c in candidates if (c / PARTIAL_PARSE).exists()), None)
    if source is not None:
        target_path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target_path / PARTIAL_PARSE)
    return source


def save_parse_state(target_path: Path, cache: Path) -> None:
    """Keep the latest parse state where the next run's first dbt command finds it (atomically)."""
    state = target_path / PARTIAL_PARSE
    if state.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".{PARTIAL_PARSE}.{os.getpid()}.tmp"
        shutil.copyfile(state, tmp)
        os.replace(tmp, cache / PARTIAL_PARSE)


# the labels (macro query_comment) that mark a BigQuery job as started by a flow run's dbt
DBT_JOB_LABEL = ("app", "game_analytics_dbt")
RUN_LABEL = "flow_run"


def cancel_bigquery_jobs(settings: OrchestrationSettings, run_id: str | None = None, client: Any = None,
                         wait_s: float = 120.0, poll_s: float = 2.0) -> list[str]:
    """Cancel every BigQuery job a flow run's dbt started that is still pending or running (those of
    `run_id`, or of any flow run when None: called while the run holds the warehouse, any such job
    is an orphan of a stopped run), and wait until they have ended, so that no orphaned MERGE
    writes beside the next build. Returns the cancelled job ids."""
    from google.cloud import bigquery

    client = client or bigquery.Client(project=settings.gcp_project, location=settings.bq_location)
    key, value = DBT_JOB_LABEL
    jobs = [job for state in ("running", "pending") for job in client.list_jobs(state_filter=state)
            if job.labels.get(key) == value and job.labels.get(RUN_LABEL)
            and (run_id is None or job.labels.get(RUN_LABEL) == run_id)]
    for job in jobs:
        client.cancel_job(job.job_id, project=job.project, location=job.location)
    deadline = time.monotonic() + wait_s
    pending = list(jobs)
    while pending:
        pending = [job for job in pending if client.get_job(job.job_id, project=job.project, location=job.location).state != "DONE"]
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"BigQuery jobs {[job.job_id for job in pending]} still run {wait_s} s after their cancellation")
        if pending:
            time.sleep(poll_s)
    return [job.job_id for job in jobs]


def cancel_dbt_jobs(flow: object, flow_run: object, state: object) -> None:
    """Flow hook (cancelled or crashed run): cancel the BigQuery jobs its dbt started (their
    flow_run label), in case dbt could not."""
    parameters = getattr(flow_run, "parameters", None) or {}
    if parameters.get("target", "local") == "bigquery":
        cancelled = cancel_bigquery_jobs(OrchestrationSettings(target="bigquery"), str(getattr(flow_run, "id")))
        if cancelled:
            print(f"cancelled BigQuery jobs {cancelled} of flow run {getattr(flow_run, 'id')}")
