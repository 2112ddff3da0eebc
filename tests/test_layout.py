"""The README's layout map is true: every folder it names imports only what its row allows, and no
product module grows past the size a reader takes in at once."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("common", "ingestion", "simulator", "flows", "blocks", "deployments", "benchmarks", "tests")
MAX_MODULE_LINES = 350


def layout_map() -> dict[str, tuple[str, ...] | None]:
    """folder -> the project packages it may import (``None``: anything, or not Python), from the README's table
    whose columns are folder, what lives there, may import."""
    readme = (REPO_ROOT / "README.md").read_text()
    rows: dict[str, tuple[str, ...] | None] = {}
    for line in readme.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.fullmatch(r"`[\w/]+/`", cells[0]):
            continue
        may = cells[2]
        rows[cells[0].strip("`")] = None if may.startswith("anything") or may in ("—", "-") else tuple(re.findall(r"`([\w.]+)`", may))
    return rows


def imports(path: Path) -> set[str]:
    """The absolute project modules a file imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {name for name in names if name.split(".")[0] in PROJECT_PACKAGES}


def allowed(name: str, rules: tuple[str, ...]) -> bool:
    return any(name == rule or name.startswith(rule + ".") for rule in rules)


def files_of(folder: str, rows: dict[str, tuple[str, ...] | None]) -> list[Path]:
    """The Python files of ``folder`` that no deeper row of the map claims."""
    deeper = [REPO_ROOT / other for other in rows if other != folder and other.startswith(folder)]
    return [path for path in sorted((REPO_ROOT / folder).rglob("*.py"))
            if not any(path.is_relative_to(d) for d in deeper)]


def test_the_map_names_every_python_package_of_the_product() -> None:
    rows = layout_map()
    for package in ("common", "ingestion", "ingestion/streaming", "ingestion/batch", "simulator", "flows", "blocks",
                    "deployments"):
        assert f"{package}/" in rows, f"README layout map has no row for {package}/"


@pytest.mark.parametrize("folder", sorted(layout_map()))
def test_each_folder_imports_only_what_the_map_allows(folder: str) -> None:
    rows = layout_map()
    rules = rows[folder]
    if rules is None:
        return
    own = folder.rstrip("/").replace("/", ".")
    # a folder that may import nothing of the project also reaches its own modules only relatively
    self_contained = own.startswith("ingestion.streaming")
    offenders = [
        f"{path.relative_to(REPO_ROOT)}: {name}"
        for path in files_of(folder, rows)
        for name in sorted(imports(path))
        if not allowed(name, rules) and (self_contained or not allowed(name, (own,)))
    ]
    assert files_of(folder, rows), f"{folder} has no Python file"
    assert offenders == [], f"{folder} imports what the README's layout map does not allow: {offenders}"


def test_the_import_check_sees_imports() -> None:
    """The scan finds a real import where one exists, so an empty result above means none."""
    assert "flows.pipeline" in imports(REPO_ROOT / "flows" / "backfill.py")


def test_no_product_module_is_longer_than_a_reader_takes_in() -> None:
    long = []
    for folder in ("common", "ingestion", "simulator", "flows", "blocks", "deployments"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            lines = len(path.read_text().splitlines())
            if lines > MAX_MODULE_LINES:
                long.append(f"{path.relative_to(REPO_ROOT)}: {lines}")
    assert long == [], f"modules over {MAX_MODULE_LINES} lines: {long}"
