"""The batch load's pipeline options: the Flex Template's parameters
(:data:`ingestion.batch.parameters.PARAMETERS`), parsed into a validated :class:`LoadSpec`."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import date, datetime, timezone

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from ingestion.batch.database_reader import DatabaseRead
from ingestion.batch.parameters import PARAMETERS, REQUIRED, Sink
from ingestion.batch.postgres_connection import CloudSql
from ingestion.batch.sources import BatchSource, check_window, get_source


class BatchLoadOptions(PipelineOptions):
    """One batch load: which source, which window, where from, where to."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        for parameter in PARAMETERS:
            parser.add_argument(f"--{parameter.name}", default=parameter.default, type=parameter.type,
                                choices=parameter.choices or None, help=parameter.help_text)


@dataclass(frozen=True)
class LoadSpec:
    """A validated batch load."""

    source: BatchSource
    start: date
    end: date
    sink: Sink
    loaded_at: datetime
    exports_location: str | None = None
    database: DatabaseRead | None = None
    landing_dir: str | None = None
    bigquery_project: str | None = None
    bigquery_dataset: str | None = None
    temp_location: str | None = None

    @property
    def reads_database(self) -> bool:
        return self.database is not None and self.source.database is not None


def parse_day(option: str, text: str | None, default: date) -> date:
    if text is None or text == "":
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--{option} {text!r} is not a date (expected YYYY-MM-DD)") from None


def parse_loaded_at(text: str | None) -> datetime:
    if not text:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError(f"--loaded_at {text!r} is not an ISO-8601 timestamp with a UTC offset")
    return moment.astimezone(timezone.utc)


def load_spec(options: PipelineOptions) -> LoadSpec:
    """The load the options describe; raises ValueError naming the option that is wrong or missing."""
    load = options.view_as(BatchLoadOptions)
    cloud = options.view_as(GoogleCloudOptions)
    for name in sorted(REQUIRED):
        if getattr(load, name) in (None, ""):
            raise ValueError(f"--{name} is required")
    source = get_source(load.source)
    start = parse_day("start", load.start, date.min)
    end = parse_day("end", load.end, date.max)
    check_window(start, end)
    if load.read_ranges < 1:
        raise ValueError(f"--read_ranges must be at least 1, got {load.read_ranges}")
    database = None
    if load.cloudsql_instance and source.database is not None:
        if not load.cloudsql_database or not load.cloudsql_user:
            raise ValueError("--cloudsql_instance needs --cloudsql_database and --cloudsql_user")
        cloud_sql = CloudSql(load.cloudsql_instance, load.cloudsql_database, load.cloudsql_user, load.cloudsql_ip_type)
        database = DatabaseRead(cloud_sql.target(), load.postgres_schema, load.read_ranges)
    elif not load.exports_location:
        needs = "--exports_location" if source.database is None else "--cloudsql_instance or --exports_location"
        raise ValueError(f"source {source.name} needs {needs}")
    if load.sink == "bigquery" and not load.bigquery_dataset:
        raise ValueError("--sink bigquery needs --bigquery_dataset")
    if load.sink == "local" and not load.landing_dir:
        raise ValueError("--sink local needs --landing_dir")
    project = load.bigquery_project or cloud.project
    if load.sink == "bigquery" and not project:
        raise ValueError("--sink bigquery needs --bigquery_project (or the job's --project)")
    return LoadSpec(
        source=source,
        start=start,
        end=end,
        sink=load.sink,
        loaded_at=parse_loaded_at(load.loaded_at),
        exports_location=load.exports_location,
        database=database,
        landing_dir=load.landing_dir,
        bigquery_project=project,
        bigquery_dataset=load.bigquery_dataset,
        temp_location=cloud.temp_location,
    )
