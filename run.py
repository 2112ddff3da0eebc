#!/usr/bin/env python3
"""The platform's two entry points, with nothing but Python 3.11 and git on the machine:

    python3 run.py pipeline   # the whole local pipeline on its embedded defaults, then a KPI summary
    python3 run.py test       # the whole test suite (starts every service the tests need)

Each one first makes sure `.venv` exists and matches requirements.txt (it is rebuilt when the
file changes), then runs inside it. Extra arguments go to the job (`python3 run.py test -k dau`).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements.txt"
STAMP = VENV / "requirements.sha256"
PYTHON = VENV / "bin" / "python"

COMMANDS = {
    "pipeline": ["-m", "deployments.local.run_local"],
    "test": ["-m", "pytest"],
}


def _digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()


def ensure_venv() -> None:
    """Create or refresh .venv when it is missing or requirements.txt changed since it was built."""
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text().strip() == _digest():
        return
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"Python 3.11 is required to build .venv (this is {sys.version.split()[0]}).")
    print(f"Setting up {VENV} from {REQUIREMENTS.name} (first run or requirements changed)...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(REQUIREMENTS)],
        check=True,
    )
    STAMP.write_text(_digest())


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        return 2
    ensure_venv()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([str(PYTHON), *COMMANDS[argv[0]], *argv[1:]], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
