"""Running the dbt project from a flow: pure functions that build dbt's arguments, and one thin
call into the dbt CLI. No SQL here: every query lives in the dbt project."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable, Sequence

from ingestion.settings import REPO_ROOT, Settings

DBT_DIR = REPO_ROOT / "dbt"
# tests that gate the warehouse after the build (reconciliations); dbt build leaves them to dbt test
QUALITY_GATE = "tag:quality_gate"
FAILED_STATUSES = ("error", "fail", "runtime error")


class DbtFailure(RuntimeError):
    """dbt ran and some nodes errored or failed; ``failures`` names them."""

    def __init__(self, command: str, failures: Sequence[str], detail: str = "") -> None:
        self.command = command
        self.failures = list(failures)
        names = ", ".join(self.failures) or "no node reported"
        super().__init__(f"dbt {command} failed: {names}{(': ' + detail) if detail else ''}")


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    resource_type: str
    status: str
    message: str | None
    rows_affected: int | None


def dbt_args(
    command: str,
    *,
    target: str,
    select: Sequence[str] = (),
    exclude: Sequence[str] = (),
    full_refresh: bool = False,
    dbt_vars: dict[str, Any] | None = None,
    start: date | None = None,
    end: date | None = None,
    target_path: Path | None = None,
) -> list[str]:
    """The argument list of one dbt invocation; the date window goes to dbt as vars."""
    args = [*command.split(), "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--target", target]
    if target_path is not None:
        args += ["--target-path", str(target_path)]
    if select:
        args += ["--select", *select]
    if exclude:
        args += ["--exclude", *exclude]
    if full_refresh:
        args.append("--full-refresh")
    merged = dict(dbt_vars or {})
    if start is not None:
        merged["start_date"] = start.isoformat()
    if end is not None:
        merged["end_date"] = end.isoformat()
    if merged:
        args += ["--vars", json.dumps(merged, sort_keys=True)]
    return args


def dbt_env(settings: Settings) -> dict[str, str]:
    """The environment of a dbt process: the profile and the bronze macro read the same variables as Settings."""
    return dict(os.environ, GA_DATA_DIR=str(settings.data_dir), GA_TARGET=settings.target,
                GA_BQ_DATASET_PREFIX=settings.bq_dataset_prefix, GA_BQ_LOCATION=settings.bq_location,
                **({"GA_GCP_PROJECT": settings.gcp_project} if settings.gcp_project else {}))


@dataclass(frozen=True)
class LogLine:
    """One line of dbt's structured log: the readable message and, when it reports a node's
    outcome, that node's info (unique_id, node_status, resource_type, ...)."""

    message: str
    level: str = "info"
    node: dict[str, Any] | None = None


# the events in dbt's JSON log that report a node's final outcome
NODE_RESULT_EVENTS = {"LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult",
                      "LogFreshnessResult", "SkippingDetails", "LogNodeNoOpResult", "RunResultError"}


def parse_log_line(line: str) -> LogLine:
    try:
        record = json.loads(line)
        info = record["info"]
    except (ValueError, KeyError, TypeError):
        return LogLine(line)
    data = record.get("data") or {}
    node = data.get("node_info") if info.get("name") in NODE_RESULT_EVENTS else None
    return LogLine(info.get("msg", ""), info.get("level", "info"), node or None)


def invoke(args: list[str], settings: Settings, on_log: Callable[[LogLine], None] = print,
           timeout_s: float | None = None) -> int:
    """Run the dbt CLI as a child process, streaming its structured log; return its exit code.

    A child process, not dbt's in-process runner: a timeout really stops it (the process is
    killed), it holds no warehouse connection or global state in the caller, and it costs what a
    plain ``dbt build`` costs (in-process runners that make a Prefect task per node cost several
    times that on this project's size)."""
    cmd = [str(Path(sys.executable).with_name("dbt")), "--log-format", "json", "--no-use-colors", *args]
    with subprocess.Popen(cmd, env=dbt_env(settings), cwd=DBT_DIR, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True) as proc:
        timer = threading.Timer(timeout_s, proc.kill) if timeout_s else None
        if timer:
            timer.start()
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                on_log(parse_log_line(line.rstrip()))
            code = proc.wait()
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
    if code < 0:
        raise TimeoutError(f"dbt {args[0]} was stopped after {timeout_s} s")
    return code


def run_dbt(args: list[str], settings: Settings, on_log: Callable[[LogLine], None] = print,
            timeout_s: float | None = None) -> list[NodeResult]:
    """Run one dbt command; return one result per node, or raise DbtFailure naming the failing ones."""
    code = invoke(args, settings, on_log, timeout_s)
    nodes = read_run_results(target_dir(args))
    if code != 0:
        failed = [n.unique_id for n in nodes if n.status in FAILED_STATUSES]
        raise DbtFailure(args[0], failed, "" if failed else f"exit code {code}, see the log above")
    return nodes


PARTIAL_PARSE = "partial_parse.msgpack"


def seed_partial_parse(target_path: Path, candidates: Sequence[Path]) -> Path | None:
    """Give a fresh target folder the parse state of an earlier one (another step of the same run,
    or the project's own target folder, parsed when the image was built), so dbt parses only what
    changed instead of the whole project: about 3 s less per dbt command here. dbt itself checks
    the state is still valid (same vars, profile and files) and parses in full otherwise."""
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


def target_dir(args: list[str]) -> Path:
    return Path(args[args.index("--target-path") + 1]) if "--target-path" in args else DBT_DIR / "target"


def read_run_results(target: Path) -> list[NodeResult]:
    """The node results dbt left in a target folder (`sources.json` for source freshness)."""
    path = next((target / name for name in ("run_results.json", "sources.json") if (target / name).exists()), None)
    if path is None:
        return []
    return [
        NodeResult(
            unique_id=r["unique_id"],
            resource_type=r["unique_id"].split(".", 1)[0],
            status=r["status"],
            message=r.get("message"),
            rows_affected=(r.get("adapter_response") or {}).get("rows_affected"),
        )
        for r in json.loads(path.read_text())["results"]
    ]


def show(node: str, settings: Settings, target: str, limit: int = 100) -> list[dict[str, Any]]:
    """Rows of a model or analysis, read through dbt itself, so it works on either warehouse."""
    lines: list[str] = []
    args = dbt_args("show", target=target, select=[node]) + ["--limit", str(limit), "--output", "json"]
    code = invoke(args, settings, on_log=lambda line: lines.append(line.message))
    preview = next((line for line in lines if line.lstrip().startswith("{") and '"show"' in line), None)
    if code != 0 or preview is None:
        raise DbtFailure("show", [node], "\n".join(lines[-20:]))
    return json.loads(preview)["show"]
