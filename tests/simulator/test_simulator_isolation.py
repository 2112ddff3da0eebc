"""The simulator is a stand-in for the game clients and the studio's systems: production code never
imports it and no production image ships it. Only the local twins (`deployments/local/`), the tests
and the benchmarks use it."""

import re
from pathlib import Path

from tests.test_layout import imports

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_PACKAGES = ("ingestion", "flows", "blocks", "common", "deployments")
MAY_IMPORT_SIMULATOR = (REPO_ROOT / "deployments" / "local",)
IMAGES = ("deployments/dataflow/Dockerfile", "deployments/flow-image/Dockerfile")


def imports_simulator(path: Path) -> bool:
    return any(name == "simulator" or name.startswith("simulator.") for name in imports(path))


def production_files() -> list[Path]:
    return [
        path
        for package in PRODUCTION_PACKAGES
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if not any(path.is_relative_to(allowed) for allowed in MAY_IMPORT_SIMULATOR)
    ]


def test_no_production_module_imports_the_simulator() -> None:
    files = production_files()
    assert {path.relative_to(REPO_ROOT).parts[0] for path in files} >= {"ingestion", "flows", "blocks", "deployments"}
    offenders = [str(path.relative_to(REPO_ROOT)) for path in files if imports_simulator(path)]
    assert offenders == [], f"production modules import the simulator: {offenders}"


def test_the_import_scan_sees_the_local_twins_use_of_the_simulator() -> None:
    """The scan finds a real use where one is allowed, so an empty result above means no use."""
    assert imports_simulator(REPO_ROOT / "deployments" / "local" / "run_local.py")


def copied_sources(dockerfile: str) -> list[str]:
    """The build-context paths of a Dockerfile's COPY instructions (not those from another stage)."""
    sources = []
    for line in re.findall(r"^COPY\s+(.+)$", dockerfile, re.MULTILINE):
        words = line.split()
        if any(word.startswith("--from") for word in words):
            continue
        sources += [word for word in words[:-1] if not word.startswith("--")]
    return sources


def test_no_production_image_copies_the_simulator() -> None:
    simulator = REPO_ROOT / "simulator"
    assert (simulator / "__init__.py").is_file()
    for image in IMAGES:
        sources = copied_sources((REPO_ROOT / image).read_text())
        assert sources, image
        shipped = [source for source in sources
                   if simulator.is_relative_to((REPO_ROOT / source).resolve())
                   or (REPO_ROOT / source).resolve().is_relative_to(simulator)]
        assert shipped == [], f"{image} copies the simulator through {shipped}"
