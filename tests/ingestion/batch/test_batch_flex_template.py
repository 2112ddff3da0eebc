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

from deployments.dataflow import metadata
from ingestion.batch import main as entry_point
from ingestion.batch.flex_template import flex_parameters
from ingestion.batch.options import BatchLoadOptions, load_spec
from ingestion.batch.parameters import REQUIRED
from common.settings import REPO_ROOT, BatchSettings

DATAFLOW = REPO_ROOT / "deployments" / "dataflow"
LOADED_AT = "2024-01-06T03:00:00Z"


def option_arguments() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    BatchLoadOptions._add_argparse_args(parser)
    return {action.dest: action for action in parser._actions if action.dest != "help"}


def test_metadata_json_is_generated_from_the_parameters():
    assert (DATAFLOW / "metadata.json").read_text() == metadata.render(), (
        "deployments/dataflow/metadata.json is stale: run .venv/bin/python -m deployments.dataflow.metadata")


def test_metadata_parameters_are_exactly_the_pipeline_options():
    """Names and their order, required-ness, help and accepted values: the file gcloud builds the
    template from against the parser the pipeline reads its options with."""
    parameters = {p["name"]: p for p in json.loads((DATAFLOW / "metadata.json").read_text())["parameters"]}
    arguments = option_arguments()

    assert list(parameters) == list(arguments)
    assert {name: not p["isOptional"] for name, p in parameters.items()} == {
        name: name in REQUIRED for name in arguments
    }
    for name, parameter in parameters.items():
        action = arguments[name]
        assert parameter["label"] and parameter["helpText"] == action.help, name
        if action.default is not None:
            assert parameter["helpText"].endswith(f"Default: {action.default}."), name
        for regex in parameter.get("regexes", []):
            re.compile(regex)
        if action.choices:
            assert parameter["regexes"] == [f"^({'|'.join(action.choices)})$"], name


def test_the_pipeline_takes_its_defaults_from_the_settings():
    """A load started without --read_ranges, --postgres_schema or --cloudsql_ip_type reads the
    database as the settings' defaults say, like an in-process load."""
    spec = load_spec(PipelineOptions(["--source", "players", "--sink", "local", "--landing_dir", "x", *CLOUD_SQL]))
    defaults = {name: field.default for name, field in BatchSettings.model_fields.items()}
    assert spec.database is not None
    assert (spec.database.ranges, spec.database.schema) == (defaults["read_ranges"], defaults["postgres_schema"])
    assert spec.database.dsn.endswith(f"&ip_type={defaults['cloudsql_ip_type']}")


def test_the_parameters_accept_what_the_settings_accept():
    from typing import get_args

    from ingestion.batch.postgres_connection import IP_TYPES

    assert get_args(BatchSettings.model_fields["cloudsql_ip_type"].annotation) == IP_TYPES


def test_the_launch_parameters_are_read_back_as_the_load_the_settings_describe():
    settings = BatchSettings(gcp_project="studio-analytics", target="bigquery", read_ranges=7, postgres_schema="studio",
                        cloudsql_instance="studio-analytics:europe-west1:studio-db", cloudsql_database="studio",
                        cloudsql_ip_type="psc",
                        dataflow_service_account="ga-dataflow@studio-analytics.iam.gserviceaccount.com")
    parameters = flex_parameters("players", date(2024, 1, 1), date(2024, 1, 5), settings)

    spec = load_spec(PipelineOptions([f"--{name}={value}" for name, value in parameters.items()]))

    assert (spec.source.name, spec.start, spec.end, spec.sink) == ("players", date(2024, 1, 1), date(2024, 1, 5),
                                                                    "bigquery")
    assert (spec.bigquery_project, spec.bigquery_dataset) == ("studio-analytics", settings.bronze_dataset())
    assert spec.database is not None and (spec.database.ranges, spec.database.schema) == (7, "studio")
    assert spec.database.dsn.endswith("&ip_type=psc")


def test_launch_parameters_are_template_parameters_and_pass_their_regexes():
    metadata = json.loads((DATAFLOW / "metadata.json").read_text())
    regexes = {p["name"]: p.get("regexes", []) for p in metadata["parameters"]}
    for source, settings in (
        ("players", BatchSettings(gcp_project="studio-analytics", target="bigquery", cloudsql_database="studio",
                             cloudsql_instance="studio-analytics:europe-west1:studio-db",
                             dataflow_service_account="ga-dataflow@studio-analytics.iam.gserviceaccount.com")),
        ("fx_rates", BatchSettings(gcp_project="studio-analytics", target="bigquery",
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
    repo_pins = set((REPO_ROOT / "requirements.txt").read_text().split())
    [beam_sdk] = re.findall(r"^ARG BEAM_SDK=apache/beam_python3\.11_sdk:(\S+)$", dockerfile, re.MULTILINE)
    assert "python311-template-launcher-base" in dockerfile and f"apache-beam=={beam_sdk}" in repo_pins
    pinned = (DATAFLOW / "requirements.txt").read_text().split()
    assert all(pin.replace("[gcp]", "") in repo_pins for pin in pinned if "==" in pin)


def test_entry_point_runs_a_local_load(tmp_path: Path, write_export, settings: BatchSettings, read_bronze):
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
        (["--source", "players", "--sink", "local", "--landing_dir", "x"], "players needs --cloudsql_instance or --exports_location"),
        (["--source", "players", "--cloudsql_instance", "p:r:i", "--bigquery_dataset", "d"],
         "--cloudsql_instance needs --cloudsql_database and --cloudsql_user"),
        (["--source", "players", "--cloudsql_instance", "studio-db", "--cloudsql_database", "studio",
          "--cloudsql_user", "u@p.iam"], "'studio-db' is not a connection name (project:region:instance)"),
        (["--source", "fx_rates", "--exports_location", "gs://b/e"], "--sink bigquery needs --bigquery_dataset"),
        (["--source", "fx_rates", "--start", "05/01/2024", "--exports_location", "x"], "--start '05/01/2024' is not a date"),
    ],
)
def test_options_name_what_is_wrong(argv: list[str], message: str):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_spec(PipelineOptions(argv))


CLOUD_SQL = ["--cloudsql_instance", "studio-analytics:europe-west1:studio-db", "--cloudsql_database", "studio",
             "--cloudsql_user", "ga-dataflow@studio-analytics.iam.gserviceaccount.com"]
SECRET = "s3cret-pa55"


def test_no_password_or_dsn_in_the_launch_request_nor_the_beam_options():
    """The operational database travels as names only (instance, database, IAM user): Dataflow
    shows a job's options to anyone with dataflow.jobs.get and Beam logs them."""
    from google.cloud.dataflow_v1beta3 import LaunchFlexTemplateRequest

    from ingestion.batch.flex_template import FlexLaunch, launch_request

    dsn = f"postgresql://ingest:{SECRET}@10.1.2.3:5432/studio?password={SECRET}"
    settings = BatchSettings(gcp_project="studio-analytics", target="bigquery", postgres_dsn=dsn,
                        cloudsql_instance="studio-analytics:europe-west1:studio-db", cloudsql_database="studio",
                        dataflow_service_account="ga-dataflow@studio-analytics.iam.gserviceaccount.com")
    parameters = flex_parameters("players", date(2024, 1, 1), date(2024, 1, 5), settings)
    request = launch_request(FlexLaunch(project="studio-analytics", region="europe-west1",
                                        template_path="gs://t/batch-load.json", job_name="ga-run-players",
                                        parameters=parameters, sdk_container_image="europe-docker.pkg.dev/i:1"))
    sent = LaunchFlexTemplateRequest.to_json(request)
    for forbidden in (SECRET, "password", "postgresql://", "dsn", "10.1.2.3"):
        assert forbidden not in sent.lower(), forbidden
    assert {"cloudsql_instance", "cloudsql_database", "cloudsql_user"} <= set(request.launch_parameter.parameters)

    # what the launcher hands Beam: one --name=value per template parameter
    options = PipelineOptions([f"--{name}={value}" for name, value in parameters.items()])
    shown = options.get_all_options(drop_default=True)
    assert not [key for key in shown if "dsn" in key or "password" in key]
    assert not [key for key, value in shown.items() if SECRET in str(value) or "postgresql://" in str(value)]
    spec = load_spec(options)
    assert spec.database is not None and SECRET not in repr(spec.database)
    assert spec.database.dsn == ("cloudsql://studio-analytics:europe-west1:studio-db/studio"
                                 "?user=ga-dataflow%40studio-analytics.iam.gserviceaccount.com&ip_type=private")


def test_a_dataflow_load_never_sends_the_local_dsn():
    settings = BatchSettings(gcp_project="studio-analytics", target="bigquery", postgres_dsn=f"host=h password={SECRET}")
    with pytest.raises(ValueError, match="GA_CLOUDSQL_INSTANCE"):
        flex_parameters("players", date(2024, 1, 1), date(2024, 1, 5), settings)
    no_user = settings.model_copy(update={"cloudsql_instance": "p:r:i", "cloudsql_database": "studio"})
    with pytest.raises(ValueError, match="GA_CLOUDSQL_USER or GA_DATAFLOW_SERVICE_ACCOUNT"):
        flex_parameters("players", date(2024, 1, 1), date(2024, 1, 5), no_user)


