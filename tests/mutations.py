"""The mutation check: named, deliberate bugs in the SQL and the Python, each applied alone to a
scratch copy of the tracked tree, with the tests that must catch it run there. A mutation is
`killed` when its tests fail, `survived` when they pass (the tests miss a wrong product), `error`
when it cannot be judged (a snippet not found exactly as often as expected, tests not collected,
a timeout). The tests first run once on an unmutated copy: a test that fails there proves nothing.

    .venv/bin/python -m tests.mutations [--only NAME ...] [--list]

Exits non-zero when any mutation survives or errors. Run it before landing a change to the marts.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 1200

MART_CELLS = "tests/dbt/test_marts.py::test_every_cell_of_the_mart_equals_the_ground_truth"
DAILY_KPIS = f"{MART_CELLS}[mart_daily_kpis]"
RETENTION = f"{MART_CELLS}[mart_retention]"
SILVER_ONCE = "tests/dbt/test_marts.py::test_silver_holds_each_valid_event_once"
TIME_RULE = "tests/ingestion/streaming/test_events.py::test_time_rule"
MAIN_JOB = "tests/deployments/test_run_local.py"


@dataclass(frozen=True)
class Edit:
    """Replace `old` by `new` in one file; `old` must occur exactly `count` times."""

    path: str
    old: str
    new: str
    count: int = 1


@dataclass(frozen=True)
class Mutation:
    name: str
    bug: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]


MUTATIONS: tuple[Mutation, ...] = (
    # the marts
    Mutation(
        "retention_d7_at_least",
        "D7 retention counts returns 7 or more days after the cohort date",
        (Edit("dbt/models/gold/marts/mart_retention.sql", "when days_after = 7 then", "when days_after >= 7 then"),),
        (RETENTION,),
    ),
    Mutation(
        "retention_d30_is_d29",
        "D30 retention counts returns 29 days after the cohort date",
        (
            Edit("dbt/models/gold/marts/mart_retention.sql", "when days_after = 30 then", "when days_after = 29 then"),
            Edit("dbt/models/gold/marts/mart_retention.sql", "in (1, 7, 30)", "in (1, 7, 29)"),
        ),
        (RETENTION,),
    ),
    Mutation(
        "mau_window_31_days",
        "MAU counts the players active in the 31 days ending that day",
        (Edit("dbt/models/gold/marts/mart_daily_kpis.sql", "30) }}", "31) }}", count=3),),
        (DAILY_KPIS,),
    ),
    Mutation(
        "mau_window_29_days",
        "MAU counts the players active in the 29 days ending that day",
        (Edit("dbt/models/gold/marts/mart_daily_kpis.sql", "30) }}", "29) }}", count=3),),
        (DAILY_KPIS,),
    ),
    Mutation(
        "money_rounds_half_even",
        "money sums round half to even instead of half away from zero",
        (Edit("dbt/macros/cross_warehouse.sql", "    round({{ expr }}, {{ places }})",
              "    round_even({{ expr }}, {{ places }})"),),
        (DAILY_KPIS,),
    ),
    Mutation(
        "test_accounts_by_player_id_only",
        "a test account of one game is left out of every game sharing its player id",
        (Edit("dbt/macros/counted_players.sql", "counted.game_id = test_accounts.game_id", "true"),),
        (DAILY_KPIS,),
    ),
    Mutation(
        "test_accounts_kept_in_purchases",
        "the purchases of test accounts count in revenue",
        (Edit("dbt/models/gold/marts/mart_daily_kpis.sql", "{{ counted_players_only(ref('fct_purchases')) }}",
              "select * from {{ ref('fct_purchases') }}"),),
        (DAILY_KPIS,),
    ),
    Mutation(
        "unexported_player_is_test_account",
        "a player missing from the players export is treated as a test account",
        (Edit("dbt/models/gold/dimensions/dim_player.sql", "coalesce(players.is_test_account, false)",
              "coalesce(players.is_test_account, true)"),),
        (DAILY_KPIS,),
    ),
    # silver and FX
    Mutation(
        "silver_keeps_redeliveries",
        "silver keeps every delivery of a repeated event_id",
        (Edit("dbt/models/silver/stg_telemetry__game_events.sql",
              "order by ingested_at, message_id) = 1", "order by ingested_at, message_id) >= 1"),),
        (SILVER_ONCE,),
    ),
    Mutation(
        "fx_rate_valid_through_next_date",
        "a rate also applies on the date of the next rate (join bound inclusive)",
        (Edit("dbt/models/silver/int_purchases__converted.sql",
              "events.event_date < rates.valid_to", "events.event_date <= rates.valid_to"),),
        (DAILY_KPIS,),
    ),
    Mutation(
        "fx_rate_from_day_after",
        "a rate applies only from the day after its date (join bound exclusive)",
        (Edit("dbt/models/silver/int_purchases__converted.sql",
              "events.event_date >= rates.valid_from", "events.event_date > rates.valid_from"),),
        (DAILY_KPIS,),
    ),
    Mutation(
        "fx_next_rate_used",
        "a day without a rate takes the next later rate instead of the latest earlier one",
        (Edit("dbt/models/silver/int_fx_rates__effective.sql",
              "        rate_date as valid_from,\n        lead(rate_date) over (partition by currency order by rate_date) as valid_to,",
              "        coalesce(lag(rate_date) over (partition by currency order by rate_date), "
              "cast('1900-01-01' as date)) + 1 as valid_from,\n        rate_date + 1 as valid_to,"),),
        (DAILY_KPIS,),
    ),
    # the streaming function's time rule
    Mutation(
        "time_rule_earliest_inclusive",
        "an event timestamped exactly 2015-01-01T00:00:00Z is rejected",
        (Edit("ingestion/streaming/validate.py", "    if when < earliest:", "    if when <= earliest:"),),
        (TIME_RULE,),
    ),
    Mutation(
        "time_rule_earliest_year",
        "events of 2014 are accepted",
        (Edit("ingestion/streaming/events.py", "EARLIEST_EVENT_TIME: Final = datetime(2015, 1, 1",
              "EARLIEST_EVENT_TIME: Final = datetime(2014, 1, 1"),),
        (TIME_RULE,),
    ),
    Mutation(
        "time_rule_ahead_exclusive",
        "an event exactly 24 h after its publish time is rejected",
        (Edit("ingestion/streaming/validate.py", "if when > publish_time + MAX_AHEAD_OF_PUBLISH:",
              "if when >= publish_time + MAX_AHEAD_OF_PUBLISH:"),),
        (TIME_RULE,),
    ),
    Mutation(
        "time_rule_ahead_25_hours",
        "events up to 25 h after their publish time are accepted",
        (Edit("ingestion/streaming/events.py", "MAX_AHEAD_OF_PUBLISH: Final = timedelta(hours=24)",
              "MAX_AHEAD_OF_PUBLISH: Final = timedelta(hours=25)"),),
        (TIME_RULE,),
    ),
    # the main job
    Mutation(
        "main_job_fallback_posts_one_message",
        "without the emulator, the main job streams only its first message",
        (Edit("deployments/local/run_local.py", "post_to_function(sim.messages, function_url)",
              "post_to_function(sim.messages[:1], function_url)"),),
        (f"{MAIN_JOB}::test_the_main_job_without_the_emulator_posts_to_the_function",),
    ),
    Mutation(
        "main_job_publishes_one_message",
        "with the emulator, the main job publishes only its first message",
        (Edit("deployments/local/run_local.py", "publish_all(sim.messages, stack.project",
              "publish_all(sim.messages[:1], stack.project"),),
        (f"{MAIN_JOB}::test_the_main_job_streams_through_the_emulator_and_the_function",),
    ),
)


@dataclass
class Outcome:
    mutation: Mutation
    status: str  # killed | survived | error
    seconds: float
    detail: str = ""


def tracked_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, check=True, capture_output=True).stdout
    return [name for name in out.decode().split("\0") if name]


def scratch_copy(root: Path, files: list[str], into: Path) -> Path:
    """The tracked tree (as it is on disk, uncommitted edits included) with `.venv` linked, not copied.
    Readable by every user: the embedded PostgreSQL server runs as an unprivileged user when the
    tests run as root, and a private temporary folder would hide its own binaries from it."""
    into.chmod(0o755)
    tree = into / "tree"
    for name in files:
        source = root / name
        if not source.is_file():
            continue  # deleted in the work tree
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    (tree / ".venv").symlink_to((root / ".venv").resolve(), target_is_directory=True)
    return tree


def apply(edits: tuple[Edit, ...], tree: Path) -> str | None:
    """Apply every edit, or return why one cannot be applied (nothing is judged then)."""
    for edit in edits:
        path = tree / edit.path
        if not path.is_file():
            return f"{edit.path}: no such file"
        text = path.read_text()
        found = text.count(edit.old)
        if found != edit.count:
            return f"{edit.path}: snippet {edit.old!r} found {found} times, expected {edit.count}"
        path.write_text(text.replace(edit.old, edit.new))
    return None


def run_tests(tree: Path, tests: tuple[str, ...], log: Path) -> tuple[int | None, str]:
    """pytest's exit code (None on timeout) and the last lines of its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GA_", "PREFECT_API"))}
    command = [str(tree / ".venv" / "bin" / "python"), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "--no-header", "-o", "addopts=", *tests]
    with log.open("w") as out:
        try:
            code: int | None = subprocess.run(command, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT,
                                              timeout=TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            code = None
    lines = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", log.read_text()).splitlines() if line.strip()]
    # pytest's summary line, and what caught the mutation: the dbt node that failed in a fixture's
    # build, else the first line of the first failure
    dbt_failure = next((line.split("Failure in ", 1)[1].strip() for line in lines if "Failure in " in line), "")
    first_error = dbt_failure or next((line[1:].strip() for line in lines if line.startswith("E ")), "")
    summary = lines[-1] if lines else ""
    return code, f"{summary}; {first_error[:160]}" if first_error else summary


def judge(code: int | None) -> str:
    # 0: every test passed; 1: a test failed or errored (a fixture's dbt build included); anything
    # else (interrupted, internal error, usage error such as an unknown node id, nothing collected)
    # says nothing about the mutation
    return {0: "survived", 1: "killed"}.get(code, "error") if code is not None else "error"


def run_mutation(mutation: Mutation, root: Path, files: list[str], logs: Path) -> Outcome:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mutation-{mutation.name}-") as scratch:
        tree = scratch_copy(root, files, Path(scratch))
        problem = apply(mutation.edits, tree)
        if problem is not None:
            return Outcome(mutation, "error", time.monotonic() - started, problem)
        code, last = run_tests(tree, mutation.tests, logs / f"{mutation.name}.log")
    status = judge(code)
    detail = last if code is not None else f"timed out after {TIMEOUT_S} s"
    if status == "error" and code is not None:
        detail = f"pytest exit code {code}: {last}"
    return Outcome(mutation, status, time.monotonic() - started, detail)


def baseline(selected: list[Mutation], root: Path, files: list[str], logs: Path) -> tuple[bool, float, str]:
    """Every selected mutation's tests pass on the unmutated tree, in one pytest run."""
    tests = tuple(dict.fromkeys(test for mutation in selected for test in mutation.tests))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutation-baseline-") as scratch:
        tree = scratch_copy(root, files, Path(scratch))
        code, last = run_tests(tree, tests, logs / "baseline.log")
    return code == 0, time.monotonic() - started, last


def table(outcomes: list[Outcome]) -> str:
    rows = [("mutation", "outcome", "time", "tests")]
    rows += [(o.mutation.name, o.status, f"{o.seconds:.0f} s", " ".join(o.mutation.tests)) for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3] for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this mutation (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests, run nothing")
    args = parser.parse_args(argv)

    by_name = {mutation.name: mutation for mutation in MUTATIONS}
    unknown = sorted(set(args.only or ()) - set(by_name))
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(unknown)}; known: {', '.join(by_name)}")
    selected = [by_name[name] for name in args.only] if args.only else list(MUTATIONS)
    if args.list:
        for mutation in selected:
            print(f"{mutation.name}: {mutation.bug}\n    {' '.join(mutation.tests)}")
        return 0

    started = time.monotonic()
    files = tracked_files(ROOT)
    logs = Path(tempfile.mkdtemp(prefix="mutation-logs-"))
    print(f"logs in {logs}", flush=True)
    # a kill means something only where the same tests pass on the same scratch layout unmutated
    passed, seconds, last = baseline(selected, ROOT, files, logs)
    print(f"baseline (unmutated): {'pass' if passed else 'FAIL'} in {seconds:.0f} s: {last}", flush=True)
    if not passed:
        print(f"the tests fail without any mutation, nothing can be judged: see {logs / 'baseline.log'}",
              file=sys.stderr)
        return 2
    outcomes = []
    for mutation in selected:
        outcome = run_mutation(mutation, ROOT, files, logs)
        outcomes.append(outcome)
        print(f"{mutation.name}: {outcome.status.upper()} in {outcome.seconds:.0f} s ({outcome.detail})", flush=True)
    print()
    print(table(outcomes))
    bad = [o for o in outcomes if o.status != "killed"]
    for outcome in bad:
        print(f"{outcome.status.upper()}: {outcome.mutation.name}: {outcome.mutation.bug}; {outcome.detail}")
    killed = len(outcomes) - len(bad)
    print(f"{killed} of {len(outcomes)} killed, {len(bad)} not, in {time.monotonic() - started:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
