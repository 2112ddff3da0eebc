"""Running the dbt project from a flow: pure functions that build a dbt command's arguments and
read its results, and the client of the dbt server (flows.dbt_server), the child process in which
a flow run's dbt commands run one after the other. No SQL here: every query lives in the dbt
project, and nothing here touches dbt's internals."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from flows import dbt_server
from flows.dbt_server import END_OF_COMMAND, INTERRUPTED, PREPARE, STOP_GRACE_S
from common.settings import REPO_ROOT, OrchestrationSettings

DBT_DIR = REPO_ROOT / "dbt"
# tests that gate the warehouse after the build (reconciliations); dbt build leaves them to dbt test
QUALITY_GATE = "tag:quality_gate"
# what the scheduled builds leave out: unit tests check the SQL on fixed inputs, so they run in CI
# (the test suite builds the project with them), not again on every production run
NOT_IN_PRODUCTION = ("unit_test",)
FAILED_STATUSES = ("error", "fail", "runtime error")


class DbtFailure(RuntimeError):
    """dbt ran and some nodes errored or failed; ``failures`` names them, ``nodes`` holds their
    results (status and message)."""

    def __init__(self, command: str, failures: Sequence[str], detail: str = "",
                 nodes: Sequence["NodeResult"] = (), errors: Sequence[str] = ()) -> None:
        self.command = command
        self.failures = list(failures)
        self.nodes = list(nodes)
        self.errors = list(errors)  # dbt's error log lines, when no node says what failed
        names = ", ".join(self.failures) or "no node reported"
        super().__init__(f"dbt {command} failed: {names}{(': ' + detail) if detail else ''}")


# dbt's node selection syntax, one selector per entry: criteria joined by ',' (intersection), each
# [@ or N+]method:value[+N] with no whitespace and nothing starting with '-', so an entry can never
# become another command-line option (--vars, --full-refresh) of the dbt command it is passed to
_CRITERION = r"(?:@|[0-9]*\+)?(?:[a-z_]+(?:\.[a-z_]+)*:)?[A-Za-z0-9_*?][A-Za-z0-9_.*?/-]*(?:\+[0-9]*)?"
SELECTOR_PATTERN = rf"^{_CRITERION}(?:,{_CRITERION})*$"
SELECTOR_MAX_LENGTH = 200


def check_selector(value: str, what: str = "selector") -> str:
    """`value` if it is one dbt selector, else a ValueError naming it."""
    if not isinstance(value, str) or len(value) > SELECTOR_MAX_LENGTH or not re.fullmatch(SELECTOR_PATTERN, value):
        raise ValueError(f"{what}: {value!r} is not a dbt selector ([@|N+]method:value[+N], criteria joined by ',', "
                         f"at most {SELECTOR_MAX_LENGTH} characters, no whitespace, not starting with '-')")
    return value


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
    exclude_resource_types: Sequence[str] = (),
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
        args += ["--select", *(check_selector(s, "select") for s in select)]
    if exclude:
        args += ["--exclude", *(check_selector(s, "exclude") for s in exclude)]
    if exclude_resource_types:
        args += ["--exclude-resource-type", *exclude_resource_types]
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


def dbt_env(settings: OrchestrationSettings, run_id: str | None = None) -> dict[str, str]:
    """The environment of a dbt process: the profile and the bronze macro read the same variables as
    OrchestrationSettings; GA_RUN_ID (the flow run) becomes a label of every BigQuery job (macro query_comment)."""
    return dict(os.environ, GA_DATA_DIR=str(settings.data_dir), GA_TARGET=settings.target, GA_RUN_ID=run_id or "",
                DBT_LOG_LEVEL_FILE=settings.dbt_file_log_level,
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


def stop_gracefully(proc: subprocess.Popen[str], grace_s: float = STOP_GRACE_S, drain: bool = False) -> int:
    """Interrupt dbt (SIGINT: dbt cancels its adapter's open queries and jobs, writes its results
    and ends), and kill it only if it has not ended within grace_s. With drain, its output is
    read and dropped meanwhile, so that a full pipe cannot hold it up."""
    if proc.poll() is None:
        if drain and proc.stdout is not None:
            threading.Thread(target=proc.stdout.read, name="dbt-drain", daemon=True).start()
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


class DbtSession:
    """One dbt process that runs the dbt commands of a flow run one after the other.

    A child process, not dbt's runner inside the flow: a timeout or a cancellation really stops it
    (stop_gracefully: dbt is interrupted, cancels its queries and jobs, and is killed only if it has
    not ended after a grace period; the next command starts a new process), and it holds no
    warehouse connection or global state in the caller. One process for all the steps, not one
    per command: dbt's start-up (its imports, and reading the parse state) is paid once per flow
    run instead of once per step. Each command's structured log is streamed back as it runs."""

    def __init__(self, settings: OrchestrationSettings, run_id: str | None = None, grace_s: float = STOP_GRACE_S) -> None:
        self.settings = settings
        self.run_id = run_id  # the flow run's id, a label of every BigQuery job dbt starts
        self.grace_s = grace_s
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._prepared_log: list[LogLine] = []  # what a prepare logged, for the next command's log

    def __enter__(self) -> "DbtSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> "DbtSession":
        """Start the dbt process now, so that its start-up overlaps whatever the caller does next."""
        with self._lock:
            self._process()
        return self

    def prepare(self, args: list[str]) -> threading.Thread:
        """In the background, have the dbt process parse the project for commands with the parse
        options of `args` and compile dbt's macro templates, so that such a command starts at once
        (the flow prepares its build while the batch loads run). The next command waits for it,
        and its log starts with what the preparation logged."""
        def run() -> None:
            try:
                self.run([PREPARE, *args], on_log=self._prepared_log.append)
            except Exception:  # noqa: BLE001 - nothing prepared: the next command parses itself
                pass

        thread = threading.Thread(target=run, name="dbt-prepare", daemon=True)
        thread.start()
        return thread

    def _process(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "flows.dbt_server"], env=dbt_env(self.settings, self.run_id), cwd=REPO_ROOT,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                bufsize=1, start_new_session=True)
        return self._proc

    def run(self, args: list[str], on_log: Callable[[LogLine], None] = print, timeout_s: float | None = None) -> int:
        """Run one dbt command (its arguments as on the command line); return its exit code."""
        with self._lock:
            for line in self._prepared_log:
                on_log(line)
            self._prepared_log.clear()
            proc = self._process()
            timed_out = threading.Event()

            def stop() -> None:
                timed_out.set()
                stop_gracefully(proc, self.grace_s)  # the command's output is read on below

            timer = threading.Timer(timeout_s, stop) if timeout_s else None
            if timer:
                timer.start()
            code: int | None = None
            try:
                proc.stdin.write(json.dumps(args) + "\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                for line in proc.stdout:  # type: ignore[union-attr]
                    if line.startswith(END_OF_COMMAND):
                        code = int(line[len(END_OF_COMMAND):])
                        break
                    on_log(parse_log_line(line.rstrip()))
            except BrokenPipeError:
                pass  # the process died before it read the command: its exit code says why
            except BaseException:  # the flow run is cancelled or stopped; a command left half read
                # would also mix its output into the next one's
                stop_gracefully(proc, self.grace_s, drain=True)
                self._proc = None
                raise
            finally:
                if timer:
                    timer.cancel()
            if timed_out.is_set() and code in (None, INTERRUPTED):
                self._proc = None
                ended = proc.wait()  # the timer's stop_gracefully ends it within the grace period
                raise TimeoutError(f"dbt {args[0]} was stopped after {timeout_s} s (dbt exit code {ended})")
            if code is None:  # the process ended in the middle of the command
                self._proc = None
                ended = proc.wait()
                on_log(LogLine(f"the dbt process ended with {ended} during `dbt {args[0]}`", "error"))
                code = ended if ended > 0 else 2
            return code

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.stdin.close()  # type: ignore[union-attr]  # the session ends after its last command
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop_gracefully(proc, self.grace_s, drain=True)


# the session the dbt steps of the current flow run share (set by `dbt_session`); none: one
# process per command
_current_session: ContextVar[DbtSession | None] = ContextVar("dbt_session", default=None)


@contextmanager
def dbt_session(settings: OrchestrationSettings, run_id: str | None = None) -> Iterator[DbtSession]:
    """Within this block, every dbt command (run_dbt, show) runs in one shared dbt process, started
    on entering the block."""
    with DbtSession(settings, run_id).start() as session:
        token = _current_session.set(session)
        try:
            yield session
        finally:
            _current_session.reset(token)


def invoke(args: list[str], settings: OrchestrationSettings, on_log: Callable[[LogLine], None] = print,
           timeout_s: float | None = None) -> int:
    """Run one dbt command, streaming its structured log; return its exit code. It runs in the
    current flow run's dbt session, or in a dbt process of its own when there is none."""
    session = _current_session.get()
    if session is not None:
        return session.run(args, on_log, timeout_s)
    with DbtSession(settings) as own:
        return own.run(args, on_log, timeout_s)


def prepare(args: list[str]) -> None:
    """Have the current flow run's dbt session parse ahead for commands like `args` (see
    DbtSession.prepare); without a session, nothing to prepare."""
    session = _current_session.get()
    if session is not None:
        session.prepare(args)


def run_dbt(args: list[str], settings: OrchestrationSettings, on_log: Callable[[LogLine], None] = print,
            timeout_s: float | None = None) -> list[NodeResult]:
    """Run one dbt command; return one result per node, or raise DbtFailure naming the failing ones."""
    errors: list[str] = []

    def log(line: LogLine) -> None:
        if line.level == "error":
            errors.append(line.message)
        on_log(line)

    code = invoke(args, settings, log, timeout_s)
    nodes = read_run_results(target_dir(args))
    if code != 0:
        failed = [n for n in nodes if n.status in FAILED_STATUSES]
        raise DbtFailure(args[0], [n.unique_id for n in failed], "" if failed else f"exit code {code}, see the log above",
                         nodes=failed, errors=[] if failed else [e[:2000] for e in errors[-20:]])
    return nodes


def target_dir(args: Sequence[str]) -> Path:
    """Where a dbt command writes its artifacts: its target path, relative to its project folder."""
    return dbt_server.target_dir(args, DBT_DIR)


def read_run_results(target: Path) -> list[NodeResult]:
    """The node results dbt left in a target folder (`sources.json` for source freshness)."""
    path = next((target / name for name in ("run_results.json", "sources.json") if (target / name).exists()), None)
    if path is None:
        return []
    return [NodeResult(unique_id=r["unique_id"], resource_type=r["unique_id"].split(".", 1)[0], status=r["status"],
                       message=r.get("message"), rows_affected=(r.get("adapter_response") or {}).get("rows_affected"))
            for r in json.loads(path.read_text())["results"]]


def show(node: str, settings: OrchestrationSettings, target: str, limit: int = 100) -> list[dict[str, Any]]:
    """Rows of a model or analysis, read through dbt itself, so it works on either warehouse."""
    lines: list[str] = []
    args = dbt_args("show", target=target, select=[node]) + ["--limit", str(limit), "--output", "json"]
    code = invoke(args, settings, on_log=lambda line: lines.append(line.message))
    preview = next((line for line in lines if line.lstrip().startswith("{") and '"show"' in line), None)
    if code != 0 or preview is None:
        raise DbtFailure("show", [node], "\n".join(lines[-20:]))
    return json.loads(preview)["show"]
