"""Stage the Cloud Function's source folder: only the modules the function imports, the contract,
a root ``main.py`` exposing the entry point, and a requirements file pinned from the repository's
``requirements.txt`` (the function's dependencies and theirs, nothing else).

    .venv/bin/python -m deployments.streaming.build [--out build/streaming-function]
"""
from __future__ import annotations

import argparse
import re
import shutil
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Final

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deployments.streaming.config import ENTRY_POINT

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DEFAULT_OUT: Final = REPO_ROOT / "build" / "streaming-function"

# What ingestion/streaming/main.py imports, transitively, and nothing more (no simulator, no Beam).
FUNCTION_FILES: Final = (
    "ingestion/__init__.py",
    "ingestion/streaming/settings.py",
    "ingestion/landing.py",
    "ingestion/events.py",
    "ingestion/sinks.py",
    "ingestion/contract/__init__.py",
    "ingestion/contract/game_event.v1.schema.json",
    "ingestion/streaming/__init__.py",
    "ingestion/streaming/handler.py",
    "ingestion/streaming/main.py",
)
# The function's direct dependencies; their own are added from the installed metadata.
FUNCTION_PACKAGES: Final = (
    "functions-framework",
    "google-cloud-bigquery",
    "msgspec",
    "orjson",
    "pyarrow",  # the bronze schemas are Arrow schemas; the local sink writes Parquet
    "pydantic-settings",
)

ROOT_MAIN: Final = f'''"""Cloud Function source root. The function lives in ingestion/streaming/main.py."""
from ingestion.streaming.main import {ENTRY_POINT}

__all__ = ["{ENTRY_POINT}"]
'''

_PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)")


def read_pins(requirements: str) -> dict[str, str]:
    """``name==version`` lines of a requirements file, by canonical name."""
    pins: dict[str, str] = {}
    for line in requirements.splitlines():
        match = _PIN.match(line)
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def dependency_closure(roots: Iterable[str], requires: Mapping[str, list[str]] | None = None) -> set[str]:
    """The canonical names of ``roots`` and everything they require (no extras) on this Python.
    ``requires`` maps a name to its requirement strings; by default the installed metadata."""

    def needs(name: str) -> list[str]:
        if requires is not None:
            return requires.get(name, [])
        return metadata.requires(name) or []

    seen: set[str] = set()
    todo = [canonicalize_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in needs(name):
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def function_requirements(pins: Mapping[str, str], names: Iterable[str]) -> str:
    missing = sorted(n for n in names if n not in pins)
    if missing:
        raise ValueError(f"requirements.txt: no == pin for {', '.join(missing)}, which the function needs")
    return "".join(f"{name}=={pins[name]}\n" for name in sorted(names))


def stage(out: Path = DEFAULT_OUT, repo: Path = REPO_ROOT) -> Path:
    """(Re)create ``out`` as the function's source folder and return it."""
    if out.exists():
        shutil.rmtree(out)
    for rel in FUNCTION_FILES:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, target)
    (out / "main.py").write_text(ROOT_MAIN)
    pins = read_pins((repo / "requirements.txt").read_text())
    (out / "requirements.txt").write_text(function_requirements(pins, dependency_closure(FUNCTION_PACKAGES)))
    (out / ".gcloudignore").write_text("__pycache__/\n*.pyc\n")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    out = stage(args.out)
    print(f"staged the function in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
