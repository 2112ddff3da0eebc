"""The batch load's parameters, stated once: the pipeline's options parser
(:class:`ingestion.batch.options.BatchLoadOptions`) is built from them, and the Flex Template's
metadata (``deployments/dataflow/metadata.json``, the file ``gcloud dataflow flex-template build``
reads) is generated from them by ``python -m deployments.dataflow.metadata``. A parameter that has a
setting takes its default from :class:`common.settings.BatchSettings`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from ingestion.batch.postgres_connection import IP_TYPES
from ingestion.batch.sources import BATCH_SOURCES
from common.settings import BatchSettings

Sink = Literal["bigquery", "local"]
SINKS: tuple[str, ...] = get_args(Sink)
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


def setting_default(name: str) -> Any:
    return BatchSettings.model_fields[name].default


@dataclass(frozen=True)
class Parameter:
    """One parameter: its name (``--name`` on the command line), what a person sees (label, help),
    and what it accepts. ``required`` is checked by ``load_spec``, not by the parser: Beam parses
    every imported PipelineOptions subclass whenever any pipeline's options are read, so a required
    flag would break every other pipeline in the process."""

    name: str
    label: str
    help: str
    regex: str | None = None  # the Flex Template checks a launch's values against it
    required: bool = False
    default: str | int | None = None
    choices: tuple[str, ...] = ()
    type: type = str

    @property
    def help_text(self) -> str:
        return self.help if self.default is None else f"{self.help} Default: {self.default}."

    @property
    def regexes(self) -> list[str]:
        if self.choices:
            return [f"^({'|'.join(self.choices)})$"]
        return [self.regex] if self.regex else []


PARAMETERS: tuple[Parameter, ...] = (
    Parameter("source", "Batch source", f"The batch source to load: one of {', '.join(BATCH_SOURCES)}.",
              required=True, choices=tuple(BATCH_SOURCES)),
    Parameter("start", "First export date", "First export date to load (YYYY-MM-DD); daily sources only.",
              regex=DATE),
    Parameter("end", "Last export date", "Last export date to load (YYYY-MM-DD), inclusive; daily sources only.",
              regex=DATE),
    Parameter("exports_location", "Exports location",
              "Folder or gs:// prefix holding the export files (fx_rates/, and the players/store_items extracts "
              "when no database is given); on Dataflow a gs:// prefix, e.g. gs://studio-exports/daily.",
              regex=r"^gs://[a-z0-9][-_.a-z0-9]*[a-z0-9](/.*)?$"),
    Parameter("cloudsql_instance", "Cloud SQL instance",
              "Connection name (project:region:instance) of the operational database's Cloud SQL for PostgreSQL "
              "instance; players and store_items are read from it when given. The workers connect with the Cloud "
              "SQL Python Connector and IAM database authentication: no password exists.",
              regex=r"^[a-z][-a-z0-9.:]*[a-z0-9]:[a-z]+-[a-z]+[0-9]+:[a-z][-a-z0-9]{0,97}$"),
    Parameter("cloudsql_database", "Cloud SQL database", "The database on the Cloud SQL instance, e.g. studio.",
              regex=r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$"),
    Parameter("cloudsql_user", "IAM database user",
              "The IAM database user: the workers' service account email (a database role created with gcloud "
              "sql users create --type=cloud_iam_service_account).",
              regex=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[a-z][-a-z0-9.]*\.iam(\.gserviceaccount\.com)?$"),
    Parameter("cloudsql_ip_type", "Cloud SQL IP type",
              "How the workers reach the instance: private (VPC), public or psc.",
              default=setting_default("cloudsql_ip_type"), choices=IP_TYPES),
    Parameter("postgres_schema", "Database schema", "Schema of the operational tables.",
              regex=r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$", default=setting_default("postgres_schema")),
    Parameter("read_ranges", "Parallel key ranges",
              "Key ranges a database table is split into and read in parallel.",
              regex=r"^[1-9][0-9]{0,2}$", default=setting_default("read_ranges"), type=int),
    Parameter("sink", "Sink", "Where bronze is written: bigquery (file loads) or local (Parquet; not on Dataflow).",
              default="bigquery", choices=SINKS),
    Parameter("bigquery_project", "BigQuery project",
              "Project of the bronze dataset; the job's project when not given.",
              regex=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$"),
    Parameter("bigquery_dataset", "BigQuery bronze dataset",
              "The bronze dataset, e.g. game_analytics_bronze. Required with the bigquery sink.",
              regex=r"^[A-Za-z0-9_]{1,1024}$"),
    Parameter("landing_dir", "Local landing folder", "The local landing area (sink local only; not used on Dataflow)."),
    Parameter("loaded_at", "Load timestamp",
              "The rows' _loaded_at, ISO-8601 with offset (e.g. 2024-01-06T03:00:00Z); now when not given.",
              regex=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"),
)
REQUIRED: frozenset[str] = frozenset(parameter.name for parameter in PARAMETERS if parameter.required)
