"""The function's folder deploys as it is: a copy of it alone, served by functions-framework in a
directory outside the repository with nothing of the project importable, stores a Pub/Sub push's
events; its requirements pin exactly what its modules import, as the repository pins them."""
from __future__ import annotations

import ast
import base64
import fnmatch
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from importlib import metadata
from pathlib import Path

import pyarrow.parquet as pq
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from common.settings import REPO_ROOT
from deployments.local.services import background, free_port
from deployments.streaming import config, deploy
from tests.ingestion.streaming.test_bad_inputs import event

FOLDER = REPO_ROOT / deploy.FUNCTION_SOURCE


def uploaded_files(folder: Path = FOLDER) -> list[Path]:
    """The files ``gcloud functions deploy --source`` uploads: the folder less what its
    ``.gcloudignore`` names (a name pattern, or a folder when it ends with ``/``)."""
    patterns = [p.strip() for p in (folder / ".gcloudignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]

    def ignored(path: Path) -> bool:
        rel = path.relative_to(folder)
        for pattern in patterns:
            if pattern.endswith("/") and pattern.rstrip("/") in rel.parts[:-1]:
                return True
            if fnmatch.fnmatch(rel.name, pattern) or fnmatch.fnmatch(str(rel), pattern):
                return True
        return False

    return sorted(p for p in folder.rglob("*") if p.is_file() and not ignored(p))


def pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            out[canonicalize_name(req.name)] = f"{spec.operator}{spec.version}"
    return out


def imported_modules(files: list[Path]) -> set[str]:
    """Every absolute import of the modules (top level or inside a function), outside the stdlib."""
    names = set()
    for path in files:
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
                names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.split(".")[0] not in sys.stdlib_module_names}


packages_distributions = functools.cache(metadata.packages_distributions)


@functools.cache
def files_of(top_level: str) -> dict[Path, str]:
    """The Python files of the distributions that provide a top-level name, and which provides each."""
    out = {}
    for name in packages_distributions()[top_level]:
        dist = metadata.distribution(name)
        out.update({Path(dist.locate_file(f)).resolve(): canonicalize_name(name) for f in dist.files or () if f.suffix == ".py"})
    return out


def owner(module: str) -> str:
    """The installed distribution a module (or, for ``from x import name``, its package) comes from."""
    files = files_of(module.split(".")[0])
    name = module
    while name:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and Path(spec.origin).resolve() in files:
            return files[Path(spec.origin).resolve()]
        name = name.rpartition(".")[0]
    raise AssertionError(f"no installed distribution provides {module!r}")


def dependency_closure(roots: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def test_requirements_pin_what_the_function_imports_as_the_repository_does() -> None:
    direct = {owner(m) for m in imported_modules(uploaded_files())}
    assert {"functions-framework", "google-cloud-bigquery", "msgspec", "orjson", "pyarrow", "pydantic-settings"} <= direct
    function = pins((FOLDER / "requirements.txt").read_text())
    repository = pins((REPO_ROOT / "requirements.txt").read_text())
    assert set(function) == dependency_closure(direct), "requirements.txt: not the closure of what the function imports"
    assert {name: repository.get(name) for name in function} == function, "pinned unlike the repository"
    assert not set(function) & {"apache-beam", "prefect", "dbt-core", "duckdb", "google-cloud-pubsub"}


def test_the_folder_alone_serves_a_push_and_lands_its_rows(tmp_path: Path) -> None:
    source = tmp_path / "source"
    for path in uploaded_files():
        target = source / path.relative_to(FOLDER)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    landing = tmp_path / "landing"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("GA_")}
    env.update(GA_SINK="local", GA_LANDING_DIR=str(landing))
    reachable = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print([m for m in ('ingestion', 'common', 'deployments', "
         "'flows') if u.find_spec(m)])"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert reachable.stdout.strip() == "[]", "the project is importable outside the repository"

    port = free_port()
    cmd = [str(Path(sys.executable).with_name("functions-framework")), "--source", str(source / "main.py"),
           "--target", config.ENTRY_POINT, "--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    data = json.dumps({"events": [event(1), event(2), {"event_id": "broken"}]}).encode()
    body = {"message": {"data": base64.b64encode(data).decode(), "messageId": "m-1",
                        "publishTime": event(1)["event_timestamp"]}, "subscription": "projects/p/subscriptions/s"}
    with background(cmd, env=env, log=tmp_path / "function.log", ready_url=url, timeout_s=60, cwd=tmp_path):
        request = urllib.request.Request(f"{url}/projects/p/topics/{config.TOPIC}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200

    stored = {table: pq.read_table([p for p in (landing / table).rglob("*.parquet")]).to_pylist()
              for table in ("game_events", "game_events_rejected")}
    assert sorted(r["event_id"] for r in stored["game_events"]) == sorted([event(1)["event_id"], event(2)["event_id"]])
    assert [(r["event_index"], r["error_type"]) for r in stored["game_events_rejected"]] == [(2, "schema_violation")]
    assert "Traceback" not in (tmp_path / "function.log").read_text()
