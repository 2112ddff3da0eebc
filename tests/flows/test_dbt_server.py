"""The dbt server relies on dbt-core's internals: the release it was written against is the one the
platform pins and installs, so an upgrade of the pin cannot go by without a look at the server."""
from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

from flows.dbt_server import DBT_CORE_VERSION

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"


def test_the_servers_dbt_core_version_is_the_pinned_one() -> None:
    pins = re.findall(r"^dbt-core==(\S+)\s*$", REQUIREMENTS.read_text(), flags=re.M)
    assert pins == [DBT_CORE_VERSION]


def test_the_installed_dbt_core_is_the_servers() -> None:
    assert version("dbt-core") == DBT_CORE_VERSION
