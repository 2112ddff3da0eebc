"""The production pieces checked offline: the Flex Template files against the pipeline's options,
and the entry point run for real on the local sink. The BigQuery branch: test_batch_bigquery.py."""
from __future__ import annotations

import argparse
import json
import re
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from ingestion.batch import main as entry_point
from ingestion.batch.launch import flex_parameters
from ingestion.batch.options import REQUIRED_OPTIONS, BatchLoadOptions, load_spec
from ingestion.settings import REPO_ROOT, Settings

DATAFLOW = REPO_ROOT / "deployments" / "dataflow"
LOADED_AT = "2024-01-06T03:00:00Z"


def option_arguments() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    BatchLoadOptions._add_argparse_args(parser)
    return {action.dest: action for action in parser._actions if action.dest != "help"}


def test_metadata_parameters_are_exactly_the_pipeline_options():
    metadata = json.loads((DATAFLOW / "metadata.json").read_text())
    parameters = {p["name"]: p for p in metadata["parameters"]}
    arguments = option_arguments()

    assert list(parameters) == list(arguments)
    assert {name: not p["isOptional"] for name, p in parameters.items()} == {
        name: name in REQUIRED_OPTIONS for name in arguments
    }
    for name, parameter in parameters.items():
        assert parameter["label"] and parameter["helpText"], name
        for regex in parameter.get("regexes", []):
            re.compile(regex)
        action = arguments[name]
        if action.choices:
            assert all(re.fullmatch(parameter["regexes"][0], str(c)) for c in action.choices), name


def test_launch_parameters_are_template_parameters_and_pass_their_regexes():
    metadata = json.loads((DATAFLOW / "metadata.json").read_text())
    regexes = {p["name"]: p.get("regexes", []) for p in metadata["parameters"]}
    for source, settings in (
        ("players", Settings(gcp_project="studio-analytics", target="bigquery",
                             postgres_dsn="host=10.1.2.3 dbname=studio user=ingest")),
        ("fx_rates", Settings(gcp_project="studio-analytics", target="bigquery",
                              exports_url="gs://studio-exports/daily")),
    ):
        for name, value in flex_parameters(source, date(2015, 1, 1), date(2024, 1, 5), settings).items():
            assert name in regexes, name
            assert all(re.search(regex, value) for regex in regexes[name]), (name, value)


def test_dockerfile_entry_point_is_the_pipeline():
    dockerfile = (DATAFLOW / "Dockerfile").read_text()
    [py_file] = re.findall(r"^ENV FLEX_TEMPLATE_PYTHON_PY_FILE=(\S+)$", dockerfile, re.MULTILINE)
    assert "COPY ingestion/ /template/ingestion/" in dockerfile
    assert re.search(r"^ENV PYTHONPATH=/template$", dockerfile, re.MULTILINE)
    in_repo = REPO_ROOT / Path(py_file).relative_to("/template")
    assert in_repo == Path(entry_point.__file__)
    assert 'if __name__ == "__main__":' in in_repo.read_text()
    assert "python311-template-launcher-base" in dockerfile and "beam_python3.11_sdk:2.77.0" in dockerfile
    pinned = (DATAFLOW / "requirements.txt").read_text().split()
    repo_pins = set((REPO_ROOT / "requirements.txt").read_text().split())
    assert all(pin.replace("[gcp]", "") in repo_pins for pin in pinned if "==" in pin)


def test_entry_point_runs_a_local_load(tmp_path: Path, write_export, settings: Settings, read_bronze):
    write_export("fx_rates/fx_rates_2024-01-05.csv", "date,currency,usd_per_unit\n2024-01-05,EUR,1.0943\n")

    entry_point.main(["--source", "fx_rates", "--start", "2024-01-05", "--end", "2024-01-05", "--sink", "local",
                      "--exports_location", str(settings.exports_dir), "--landing_dir", str(settings.landing_dir),
                      "--loaded_at", LOADED_AT])

    [row] = read_bronze("fx_rates", exclude=())
    assert row[1] == "EUR" and row[-1] == datetime(2024, 1, 6, 3, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sink", "local"], "--source is required"),
        (["--source", "players", "--sink", "local", "--landing_dir", "x"], "players needs --postgres_dsn or --exports_location"),
        (["--source", "fx_rates", "--exports_location", "gs://b/e"], "--sink bigquery needs --bigquery_dataset"),
        (["--source", "fx_rates", "--start", "05/01/2024", "--exports_location", "x"], "--start '05/01/2024' is not a date"),
    ],
)
def test_options_name_what_is_wrong(argv: list[str], message: str):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_spec(PipelineOptions(argv))


