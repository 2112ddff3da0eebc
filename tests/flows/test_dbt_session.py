"""The dbt session: the dbt commands of a flow run share one real dbt process, a timeout stops it
(interrupted first, so that dbt cancels its queries; killed only after a grace period), and the
next command starts a new one."""
from __future__ import annotations

from pathlib import Path

import pytest

import signal
import subprocess
import sys
import time

from flows.dbt import INTERRUPTED, DbtSession, LogLine, dbt_args, dbt_session, invoke, stop_gracefully
from ingestion.bronze import ensure_local_bronze
from common.settings import OrchestrationSettings

# a query DuckDB needs far longer than the timeout for
ENDLESS = "select count(*) from range(1000000000000) as a(x) where x % 7 = 3"


def show_inline(sql: str, target_path: Path) -> list[str]:
    return dbt_args("show", target="local", target_path=target_path) + ["--inline", sql, "--output", "json"]


def test_commands_share_one_process_and_report_like_the_cli(tmp_path: Path) -> None:
    settings = OrchestrationSettings(data_dir=tmp_path)
    lines: list[LogLine] = []
    with dbt_session(settings) as session:
        assert invoke(show_inline("select 41 + 1 as answer", tmp_path / "t"), settings, lines.append) == 0
        first = session._proc.pid
        assert invoke(dbt_args("ls", target="local", target_path=tmp_path / "t", select=["stg_studio_db__players"]),
                      settings, lines.append) == 0
        assert session._proc.pid == first  # the second command ran in the same dbt process
        assert invoke(show_inline("select * from no_such_table", tmp_path / "t"), settings, lines.append) == 2  # as the CLI
        assert session._proc.pid == first  # a failing command does not end the session
        process = session._proc
    assert process.poll() == 0  # the session process ends with its block
    messages = "\n".join(line.message for line in lines)
    assert '"answer": 42' in messages and "game_analytics.silver.stg_studio_db__players" in messages
    assert "no_such_table" in messages  # the error is in the log, as the CLI prints it


def test_the_log_is_the_console_log_at_level_info_with_secrets_scrubbed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DBT_ENV_SECRET_TOKEN", "s3cr3t-value")
    settings = OrchestrationSettings(data_dir=tmp_path)
    ensure_local_bronze(settings.landing_dir)  # the bronze views the run's start hook creates
    lines: list[LogLine] = []
    with dbt_session(settings):
        assert invoke(show_inline("select 's3cr3t-value' as token, 7 as n", tmp_path / "t"), settings, lines.append) == 0
        assert invoke(dbt_args("run", target="local", target_path=tmp_path / "t", select=["dim_date"]),
                      settings, lines.append) == 0
    messages = "\n".join(line.message for line in lines)
    assert '"n": 7' in messages and '"token": "*****"' in messages and "s3cr3t-value" not in messages
    assert {line.level for line in lines} <= {"info", "warn", "error"}  # no debug events (the SQL sent)
    assert "\x1b[" not in messages  # no colour codes
    results = [line.node for line in lines if line.node]
    assert [(node["node_name"], node["node_status"]) for node in results] == [("dim_date", "success")]


def test_a_timeout_interrupts_dbt_which_cancels_its_query_and_ends_within_the_grace_period(tmp_path: Path) -> None:
    """Killed outright, dbt could not cancel its warehouse queries (BigQuery jobs run on)."""
    lines: list[LogLine] = []
    with DbtSession(OrchestrationSettings(data_dir=tmp_path), grace_s=25) as session:
        assert session.run(show_inline("select 1 as one", tmp_path / "t"), lambda line: None) == 0
        first = session._proc
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="dbt show was stopped after 4 s"):
            session.run(show_inline(ENDLESS, tmp_path / "t"), lines.append, timeout_s=4)
        assert time.monotonic() - started < 4 + 25
        assert first.poll() == INTERRUPTED  # ended by itself, not by SIGKILL (-9)
        assert any("CANCEL query sql_operation.game_analytics.inline_query" in line.message for line in lines)
        assert session.run(show_inline("select 1 as one", tmp_path / "t"), lambda line: None) == 0
        assert session._proc.pid != first.pid


def test_a_process_that_does_not_end_when_interrupted_is_killed_after_the_grace_period() -> None:
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                                 "signal.signal(signal.SIGINT, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline() == "ready\n"
    started = time.monotonic()
    assert stop_gracefully(stubborn, grace_s=2, drain=True) == -signal.SIGKILL
    assert 2 <= time.monotonic() - started < 10


def test_a_reader_that_fails_mid_command_leaves_no_output_for_the_next_command(tmp_path: Path) -> None:
    def fail_on_first_line(line: LogLine) -> None:
        raise RuntimeError("the log could not be shipped")

    with DbtSession(OrchestrationSettings(data_dir=tmp_path)) as session:
        with pytest.raises(RuntimeError, match="could not be shipped"):
            session.run(show_inline("select 1 as first_command", tmp_path / "t"), fail_on_first_line)
        lines: list[LogLine] = []
        assert session.run(show_inline("select 2 as second_command", tmp_path / "t"), lines.append) == 0
    messages = "\n".join(line.message for line in lines)
    assert "second_command" in messages and "first_command" not in messages


def test_the_dbt_process_ends_when_the_flow_process_dies(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    # a flow process that starts an endless dbt command, then is killed as a cancelled run's process is
    flow_process = subprocess.Popen([sys.executable, "-c", f"""
import sys
from pathlib import Path
from flows.dbt import DbtSession
from common.settings import OrchestrationSettings
from tests.flows.test_dbt_session import ENDLESS, show_inline
session = DbtSession(OrchestrationSettings(data_dir=Path({str(tmp_path)!r}))).start()
print(session._proc.pid, flush=True)
session.run(show_inline(ENDLESS, Path({str(tmp_path / 't')!r})), lambda line: None)
"""], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    dbt_pid = int(flow_process.stdout.readline())
    time.sleep(8)  # the command is running
    os.kill(flow_process.pid, signal.SIGKILL)
    flow_process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(dbt_pid, 0)
        except ProcessLookupError:
            break
        if open(f"/proc/{dbt_pid}/stat").read().split()[2] == "Z":
            break  # ended, not yet reaped
        time.sleep(0.5)
    else:
        os.kill(dbt_pid, signal.SIGKILL)
        pytest.fail("the dbt process outlived the flow process")


def test_commands_alike_share_one_parse_and_an_edited_project_is_parsed_again(tmp_path: Path) -> None:
    import json
    import shutil

    from flows.dbt import DBT_DIR

    project = tmp_path / "dbt"
    shutil.copytree(DBT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))

    def ls(model: str, dbt_vars: dict | None = None) -> list[str]:
        return ["ls", "--project-dir", str(project), "--profiles-dir", str(project), "--target", "local",
                "--target-path", str(tmp_path / "t"), "--select", model, "--resource-type", "model",
                *(["--vars", json.dumps(dbt_vars)] if dbt_vars else [])]

    with DbtSession(OrchestrationSettings(data_dir=tmp_path)) as session:
        def command(args: list[str], expected_code: int = 0) -> tuple[int, str]:
            """How many times dbt parsed the project for the command (each dbt invocation starts
            with "Running with dbt="; a parse is one more), and its log."""
            lines: list[LogLine] = []
            assert session.run(args, lines.append) == expected_code
            return sum(line.message.startswith("Running with dbt=") for line in lines) - 1, \
                "\n".join(line.message for line in lines)

        assert command(ls("stg_studio_db__players"))[0] == 1
        parses, log = command(ls("stg_studio_db__players"))
        assert parses == 0 and "game_analytics.silver.stg_studio_db__players" in log  # the same options: parsed once
        assert command(ls("stg_studio_db__players", {"dev_days": 3}))[0] == 1  # other vars: parsed for them

        (project / "models" / "silver" / "stg_studio_db__extra.sql").write_text("select 1 as x")
        parses, log = command(ls("stg_studio_db__extra"))
        assert parses == 1 and "game_analytics.silver.stg_studio_db__extra" in log  # a new model: parsed again

        (project / "models" / "silver" / "stg_studio_db__extra.sql").write_text("select * from {{ ref('no_such_model') }}")
        parses, log = command(ls("stg_studio_db__extra"), expected_code=2)  # fails as the CLI does
        assert "no_such_model" in log
        (project / "models" / "silver" / "stg_studio_db__extra.sql").unlink()
        parses, log = command(ls("stg_studio_db__players"))  # the session goes on, and the project is
        assert parses == 0 and "stg_studio_db__players" in log  # as first parsed: that manifest serves again


def test_a_prepared_command_starts_without_parsing_and_reports_the_preparation(tmp_path: Path) -> None:
    with DbtSession(OrchestrationSettings(data_dir=tmp_path)) as session:
        session.prepare(dbt_args("parse", target="local", target_path=tmp_path / "t")).join()
        prepared = [line.message for line in session._prepared_log]
        assert sum(m.startswith("Running with dbt=") for m in prepared) == 1  # it parsed
        lines: list[LogLine] = []
        assert session.run(dbt_args("ls", target="local", target_path=tmp_path / "t", select=["stg_studio_db__players"]),
                           lines.append) == 0
    messages = [line.message for line in lines]
    assert messages[:len(prepared)] == prepared  # the preparation's log comes first
    own = messages[len(prepared):]
    assert sum(m.startswith("Running with dbt=") for m in own) == 1  # the command did not parse again
    assert "game_analytics.silver.stg_studio_db__players" in own
