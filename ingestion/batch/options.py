"""The batch load's pipeline options: the Flex Template's parameters (``deployments/dataflow/
metadata.json`` lists exactly these), parsed into a validated :class:`LoadSpec`."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Literal

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from ingestion.batch.database_reader import DatabaseRead
from ingestion.batch.postgres_connection import IP_TYPES, CloudSql
from ingestion.batch.sources import BATCH_SOURCES, BatchSource, check_window, get_source

Sink = Literal["local", "bigquery"]
SINKS: tuple[str, ...] = ("bigquery", "local")
DEFAULT_READ_RANGES = 8
# Required parameters. Not argparse's ``required=True``: Beam parses every imported PipelineOptions
# subclass whenever any pipeline's options are read, so a required flag would break every other
# pipeline in the process. load_spec() enforces these instead, naming the missing one.
REQUIRED_OPTIONS: frozenset[str] = frozenset({"source"})


class BatchLoadOptions(PipelineOptions):
    """One batch load: which source, which window, where from, where to."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--source", default=None, choices=sorted(BATCH_SOURCES),
                            help="The batch source to load: players, store_items or fx_rates.")
        parser.add_argument("--start", default=None,
                            help="First export date to load (YYYY-MM-DD); daily sources only.")
        parser.add_argument("--end", default=None,
                            help="Last export date to load (YYYY-MM-DD), inclusive; daily sources only.")
        parser.add_argument("--exports_location", default=None,
                            help="Folder or gs:// prefix holding the export files (fx_rates/, and the "
                                 "players/store_items extracts when no database is given).")
        parser.add_argument("--cloudsql_instance", default=None,
                            help="Connection name (project:region:instance) of the operational "
                                 "database's Cloud SQL instance; players and store_items are read "
                                 "from it when given, with IAM database authentication.")
        parser.add_argument("--cloudsql_database", default=None,
                            help="The database on the Cloud SQL instance.")
        parser.add_argument("--cloudsql_user", default=None,
                            help="The IAM database user: the workers' service account email.")
        parser.add_argument("--cloudsql_ip_type", default="private", choices=IP_TYPES,
                            help="How the workers reach the instance: private, public or psc.")
        parser.add_argument("--postgres_schema", default="public",
                            help="Schema of the operational tables.")
        parser.add_argument("--read_ranges", type=int, default=DEFAULT_READ_RANGES,
                            help="Key ranges a database table is split into and read in parallel.")
        parser.add_argument("--sink", default="bigquery", choices=SINKS,
                            help="Where bronze is written: bigquery (file loads) or local (Parquet).")
        parser.add_argument("--bigquery_project", default=None,
                            help="Project of the bronze dataset; defaults to the job's project.")
        parser.add_argument("--bigquery_dataset", default=None,
                            help="The bronze dataset, e.g. game_analytics_bronze (sink bigquery).")
        parser.add_argument("--landing_dir", default=None,
                            help="The local landing area (sink local).")
        parser.add_argument("--loaded_at", default=None,
                            help="The load's _loaded_at, ISO-8601 with offset; defaults to now.")


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
    for name in sorted(REQUIRED_OPTIONS):
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
