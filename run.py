#!/usr/bin/env python3
"""The platform's two entry points, with nothing but Python 3.11 and git on the machine:

    python3 run.py pipeline   # the whole local pipeline on its embedded defaults, then a KPI summary
    python3 run.py test       # the whole test suite (starts every service the tests need)

Each one first makes sure `.venv` exists and matches requirements.txt, and `.venv-emulators` (the
BigQuery and GCS emulators of the production rehearsal, kept apart because their pins clash with
the project's) matches deployments/local/emulators-requirements.txt; each is rebuilt when its file
changes. Then the job runs inside `.venv`. Extra arguments go to the job (`python3 run.py test -k dau`).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements.txt"
PYTHON = VENV / "bin" / "python"
EMULATOR_VENV = ROOT / ".venv-emulators"
EMULATOR_REQUIREMENTS = ROOT / "deployments" / "local" / "emulators-requirements.txt"

COMMANDS = {
    "pipeline": ["-m", "deployments.local.run_local"],
    "test": ["-m", "pytest"],
}


def _digest(requirements: Path) -> str:
    return hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()


def _ensure(env: Path, requirements: Path) -> None:
    """Create or refresh the virtualenv ``env`` when it is missing or ``requirements`` changed since
    it was built."""
    python = env / "bin" / "python"
    stamp = env / "requirements.sha256"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == _digest(requirements):
        return
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"Python 3.11 is required to build {env.name} (this is {sys.version.split()[0]}).")
    print(f"Setting up {env} from {requirements.name} (first run or requirements changed)...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(requirements)],
        check=True,
    )
    stamp.write_text(_digest(requirements))


def ensure_venv() -> None:
    _ensure(VENV, REQUIREMENTS)


def ensure_emulator_venv() -> None:
    _ensure(EMULATOR_VENV, EMULATOR_REQUIREMENTS)


def ensure_browser() -> None:
    """The KPI report's test opens the report in a real headless browser: Debian's Chromium,
    installed with apt when missing and this is root (as in CI); otherwise that test says how."""
    if shutil.which("chromium") or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    print("Installing Debian's chromium for the KPI report's browser test...", flush=True)
    apt = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=apt)
    subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, env=apt)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        return 2
    ensure_venv()
    ensure_emulator_venv()
    if argv[0] == "test":
        ensure_browser()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([str(PYTHON), *COMMANDS[argv[0]], *argv[1:]], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
