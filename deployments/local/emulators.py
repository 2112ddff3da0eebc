"""The Google Cloud API emulators of the production rehearsal, started on loopback like the other
local services: bqemulator for BigQuery (REST API) and gcp-storage-emulator for Cloud Storage.

Both run from their own virtualenv, `.venv-emulators` (run.py builds it from
deployments/local/emulators-requirements.txt), and are reached by the production clients through
the endpoints the client libraries honour: ``BIGQUERY_EMULATOR_HOST`` (dbt-bigquery and
google-cloud-bigquery) and ``STORAGE_EMULATOR_HOST`` (google-cloud-storage, hence Beam's ``gs://``
file system). Each context manager yields that endpoint and always stops its emulator."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from deployments.local.services import background, free_port
from common.settings import REPO_ROOT

EMULATOR_VENV = REPO_ROOT / ".venv-emulators"
EMULATOR_PYTHON = EMULATOR_VENV / "bin" / "python"
BQEMULATOR_LAUNCH = Path(__file__).with_name("bqemulator_launch.py")


def emulators_unavailable_reason() -> str | None:
    """Why the emulators cannot start here, or None (run.py builds their virtualenv)."""
    if not EMULATOR_PYTHON.exists():
        return f"{EMULATOR_VENV} is missing: `python3 run.py test` builds it (run.ensure_emulator_venv)"
    return None


def _environment() -> dict[str, str]:
    # the emulators' own interpreter and packages only: nothing of the project's venv leaks in
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{EMULATOR_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@contextmanager
def bigquery_emulator(home: Path, project: str, timeout_s: float = 90) -> Iterator[str]:
    """bqemulator (in memory) with the project's fixes (bqemulator_launch.py); yields its REST
    endpoint ``http://127.0.0.1:PORT``, the value of ``BIGQUERY_EMULATOR_HOST``."""
    rest = free_port()
    grpc = free_port()
    while grpc == rest:
        grpc = free_port()
    cmd = [str(EMULATOR_PYTHON), str(BQEMULATOR_LAUNCH), "--rest-host", "127.0.0.1", "--rest-port", str(rest),
           "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc), "--ephemeral", "--project", project,
           "--log-level", "warning"]
    url = f"http://127.0.0.1:{rest}"
    with background(cmd, env=_environment(), log=home / "bqemulator.log", ready_url=f"{url}/healthz",
                    timeout_s=timeout_s):
        yield url


@contextmanager
def gcs_emulator(home: Path, timeout_s: float = 60) -> Iterator[str]:
    """gcp-storage-emulator (in memory); yields ``http://127.0.0.1:PORT``, the value of
    ``STORAGE_EMULATOR_HOST``."""
    port = free_port()
    cmd = [str(EMULATOR_VENV / "bin" / "gcp-storage-emulator"), "start", "--host", "127.0.0.1",
           "--port", str(port), "--in-memory", "--quiet"]
    url = f"http://127.0.0.1:{port}"
    with background(cmd, env=_environment(), log=home / "gcs-emulator.log", ready_url=url, timeout_s=timeout_s):
        yield url
