"""The dbt server: a long-running process that runs the dbt commands of one flow run with dbt's own
runner (`python -m flows.dbt_server`; flows.dbt.DbtSession starts and talks to it). It is the only
module that touches dbt's internals (the parsed manifest handed from command to command, the macro
template cache, the print-event names of its console log, `gc.freeze` of what the commands share),
so it is the one place to check when dbt-core is upgraded.

The protocol: one command per line on stdin (a JSON list of dbt arguments); the command's
structured log on stdout, one JSON line per event, ended by END_OF_COMMAND and its exit code."""
from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

# the dbt-core release whose internals this module relies on (the pin in requirements.txt)
DBT_CORE_VERSION = "1.11.16"

# the line the server writes after each command: the marker, then the command's exit code
END_OF_COMMAND = "\x1edbt-session-exit "
# the exit code of a command that was interrupted (as a shell reports SIGINT)
INTERRUPTED = 130
# how long dbt has, once interrupted, to cancel its warehouse queries and jobs and end before it is
# killed: below the 30 s a Prefect worker (and Kubernetes) leaves a cancelled run before killing it
STOP_GRACE_S = 20.0


def option(args: Sequence[str], name: str) -> str | None:
    """The value given to a command's option (`--name value`), or None."""
    return args[args.index(name) + 1] if name in args[:-1] else None


def target_dir(args: Sequence[str], project_dir: Path = Path(".")) -> Path:
    """Where a dbt command writes its artifacts: its target path, relative to its project folder
    (`project_dir` when the command names none)."""
    return Path(option(args, "--project-dir") or project_dir) / (option(args, "--target-path") or "target")


# the session command that parses ahead (DbtSession.prepare): the session's own, not dbt's
PREPARE = "session-prepare"
# the options that decide what dbt parses (with the project's files). A session's commands with the
# same ones share one parsed manifest instead of each reading the parse state and writing it back.
PARSE_OPTIONS = ("--project-dir", "--profiles-dir", "--profile", "--target", "--vars")
# the commands that take a parsed manifest (dbt retry, deps, clean, debug parse on their own)
TAKE_A_MANIFEST = {"build", "run", "test", "seed", "snapshot", "compile", "show", "list", "ls", "source",
                   "run-operation", "docs"}
# what a session keeps: the manifests of its last few distinct parse keys
MANIFESTS_KEPT = 4


def parse_key(args: Sequence[str]) -> tuple[Any, ...] | None:
    """What a manifest parsed for this command depends on: the parse options and the size and time
    of every project file (an edited model is parsed again). None: nothing to share (an option
    given as --option=value, or a project folder that is not there)."""
    if any(arg.split("=", 1)[0] in PARSE_OPTIONS for arg in args if "=" in arg and arg.startswith("--")):
        return None
    options = tuple((o, value) for o in PARSE_OPTIONS if (value := option(args, o)) is not None)
    project = Path(dict(options).get("--project-dir", "."))
    if not (project / "dbt_project.yml").is_file():
        return None
    files = []
    for folder, subfolders, names in os.walk(project):
        subfolders[:] = [d for d in subfolders if d not in ("target", "logs", "dbt_packages") and not d.startswith(".")]
        for name in names:
            stat = os.stat(os.path.join(folder, name))
            files.append((folder, name, stat.st_mtime_ns, stat.st_size))
    return options, tuple(sorted(files))


def parse_options(args: Sequence[str]) -> list[str]:
    """The options of a command that a `dbt parse` for it needs (its target path keeps the parse state)."""
    return [part for o in (*PARSE_OPTIONS, "--target-path") if (value := option(args, o)) is not None
            for part in (o, value)]


def serve() -> int:
    """The dbt session process: read one command per line (a JSON list of dbt arguments) from
    stdin, run it with dbt's own runner, and end its output with END_OF_COMMAND and the exit code
    the dbt CLI would have returned (0 success, 1 failed nodes, 2 error). Commands with the same
    parse options share the manifest parsed for the first of them (dbtRunner(manifest=...))."""
    import importlib

    parent = os.getppid()
    interrupted = threading.Event()

    def interrupt(signum: int, frame: Any) -> None:
        interrupted.set()
        raise KeyboardInterrupt  # dbt cancels its adapter's open queries and jobs, and ends the command

    signal.signal(signal.SIGINT, interrupt)

    def end_with_the_flow() -> None:  # the flow process died (killed): its dbt stops too, gracefully
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(STOP_GRACE_S)
        os._exit(3)

    threading.Thread(target=end_with_the_flow, daemon=True).start()

    # dbt and the target's adapter are imported before the first command arrives
    importlib.import_module("dbt.cli.main")
    importlib.import_module({"bigquery": "dbt.adapters.bigquery"}.get(os.environ.get("GA_TARGET", ""), "dbt.adapters.duckdb"))
    manifests: dict[tuple[Any, ...], Any] = {}
    try:
        serve_commands(manifests, interrupted)
    except KeyboardInterrupt:  # interrupted between two commands: nothing to cancel
        interrupted.set()
    return INTERRUPTED if interrupted.is_set() else 0


def serve_commands(manifests: dict[tuple[Any, ...], Any], interrupted: threading.Event) -> None:
    for line in sys.stdin:
        try:
            result = run_command(json.loads(line), manifests)
            code = 0 if result.success else (2 if result.exception is not None else 1)
        except Exception as error:  # noqa: BLE001 - reported like the CLI reports it, the session goes on
            print(json.dumps({"info": {"msg": f"dbt session: {error!r}", "level": "error"}}))
            code = 2
        except KeyboardInterrupt:  # outside dbt's own handling
            interrupted.set()
        if interrupted.is_set():  # the session ends with the interrupted command
            sys.stdout.write(f"{END_OF_COMMAND}{INTERRUPTED}\n")
            sys.stdout.flush()
            return
        sys.stdout.write(f"{END_OF_COMMAND}{code}\n")
        sys.stdout.flush()


def run_command(args: list[str], manifests: dict[tuple[Any, ...], Any]) -> Any:
    """One command of a session, with the manifest parsed for an earlier command like it, if any
    (``manifests``, by parse key, the most recently used last); `dbt parse` always parses.
    [PREPARE, *args]: parse for commands like `args` unless done, and compile the macro templates."""
    from dbt.cli.main import dbtRunner, dbtRunnerResult

    def runner(manifest: Any = None) -> Any:
        return dbtRunner(manifest=manifest, callbacks=[stream_log])

    # dbt's own console log is off: stream_log writes the same lines
    log = ["--log-level", "none", "--no-use-colors"]
    preparing = args[0] == PREPARE
    args = args[1:] if preparing else args
    key = parse_key(args) if args[0] in (*TAKE_A_MANIFEST, "parse") else None
    if key is None:
        return runner().invoke([*log, *args])

    def remember(manifest: Any) -> None:
        manifests.pop(key, None)
        manifests[key] = manifest
        while len(manifests) > MANIFESTS_KEPT:
            manifests.pop(next(iter(manifests)))

    if args[0] == "parse" and not preparing:
        result = runner().invoke([*log, *args])
        if result.success:
            remember(result.result)
        return result
    manifest = manifests.get(key)
    if manifest is None:  # parsed now, for this command and the next ones like it (the parse
        # writes manifest.json, once, to this command's target folder)
        parsed = runner().invoke([*log, "parse", *parse_options(args)])
        if not parsed.success:
            return parsed  # the command fails as the CLI's would, with parse's errors
        manifest = parsed.result
    remember(manifest)
    if preparing:
        compile_macro_templates(manifest)
        # what the commands share (the manifest, the compiled templates) is kept out of the garbage
        # collector's full passes, which would otherwise walk it a few times in every command
        gc.collect()
        gc.freeze()
        return dbtRunnerResult(success=True)
    # the command's results are written as dbt writes them; the manifest it would write again is
    # the one the parse wrote
    result = runner(manifest=manifest).invoke([*log, *args, "--no-write-json"])
    if hasattr(result.result, "write"):
        if isinstance(getattr(result.result, "args", None), dict):
            # as the CLI records it: `dbt retry` repeats these arguments, and writes its results
            result.result.args["write_json"] = True
        result.result.write(str(results_path(args)))
    return result


# the levels dbt's console log shows at its default level, and the events it never shows
CONSOLE_LEVELS = frozenset({"info", "warn", "error"})
CONSOLE_HIDDEN = frozenset({"CacheAction", "CacheDumpGraph"})
_stdout_lock = threading.Lock()


def stream_log(msg: Any) -> None:
    """A dbt event to the session's output, as one line of dbt's JSON console log at level info.
    dbt's own console logger turns every event into JSON, the many debug ones too, before its level
    filter drops them; here only the lines kept are turned into JSON and written."""
    from dbt_common.events.functions import env_scrubber, msg_to_json
    from dbt_common.events.logger import PRINT_EVENT_NAMES

    info = msg.info
    if info.name in CONSOLE_HIDDEN or (info.level not in CONSOLE_LEVELS and info.name not in PRINT_EVENT_NAMES):
        return
    line = env_scrubber(msg_to_json(msg))
    with _stdout_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()  # streamed as it happens, as dbt's console handler does


def results_path(args: Sequence[str]) -> Path:
    """Where dbt writes a command's results: run_results.json, or sources.json for source freshness."""
    return target_dir(args) / ("sources.json" if args[0] == "source" else "run_results.json")


def compile_macro_templates(manifest: Any) -> None:
    """Compile every macro's Jinja template into dbt's process-wide template cache, as dbt does on
    a macro's first use in a process, so that this work is done while the batch loads run rather
    than inside the first command. Nothing happens if that cache is not where dbt-common keeps it."""
    try:
        from dbt_common.clients.jinja import template_cache
    except ImportError:
        return
    for macro in manifest.macros.values():
        try:
            template_cache.get_node_template(macro)
        except Exception:  # noqa: BLE001 - such a macro fails where it is used, as it would have
            pass


if __name__ == "__main__":
    sys.exit(serve())
