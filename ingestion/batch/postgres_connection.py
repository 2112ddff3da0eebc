"""Reaching the operational database (PostgreSQL; Cloud SQL in production), and naming it without
a secret.

Connections: in production the Dataflow workers reach Cloud SQL through the Cloud SQL Python
Connector with IAM database authentication (the workers' service account is the database user; no
password exists anywhere); a connection target then reads
``cloudsql://<project:region:instance>/<database>?user=<account>&ip_type=<private|public|psc>``.
Any other target is a libpq DSN, connected directly (the local twin, tests).
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import parse_qs, quote, unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ingestion.batch.sources import DatabaseTable

CONNECT_TIMEOUT_S = 10


class DatabaseUnreachable(ConnectionError):
    """The database cannot be reached or refuses the connection; the message names host and database."""


CLOUDSQL_SCHEME = "cloudsql://"
IpType = Literal["private", "public", "psc"]
IP_TYPES: tuple[str, ...] = get_args(IpType)


@dataclass(frozen=True)
class CloudSql:
    """A Cloud SQL for PostgreSQL database reached with IAM database authentication."""

    instance: str  # the instance connection name, project:region:instance
    database: str
    user: str  # the IAM principal: a service account's email (the connector trims its domain)
    ip_type: IpType = "private"

    def __post_init__(self) -> None:
        if len(self.instance.rsplit(":", 2)) != 3 or not all(self.instance.rsplit(":", 2)):
            raise ValueError(f"Cloud SQL instance {self.instance!r} is not a connection name "
                             "(project:region:instance)")
        if not self.database or not self.user:
            raise ValueError(f"Cloud SQL instance {self.instance}: the database and the IAM user are required")
        if self.ip_type not in IP_TYPES:
            raise ValueError(f"Cloud SQL IP type {self.ip_type!r} is not one of {', '.join(IP_TYPES)}")

    def target(self) -> str:
        """The connection target naming this database (no secret in it: there is none)."""
        return (f"{CLOUDSQL_SCHEME}{self.instance}/{quote(self.database, safe='')}"
                f"?user={quote(self.user, safe='')}&ip_type={self.ip_type}")

    @classmethod
    def parse(cls, target: str) -> CloudSql:
        parts = urlsplit(target)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        return cls(parts.netloc, unquote(parts.path.lstrip("/")), query.get("user", ""),
                   query.get("ip_type", "private"))  # type: ignore[arg-type]


def is_cloud_sql(target: str) -> bool:
    return target.startswith(CLOUDSQL_SCHEME)


_connector: Any = None
_connector_lock = threading.Lock()


def cloud_sql_connector() -> Any:
    """The process's one Cloud SQL connector (its refresh state and key pair are shared by every
    connection of the worker), with IAM database authentication. ``lazy`` refreshes certificates
    only when a connection needs one: no background refresh on idle workers."""
    global _connector
    with _connector_lock:
        if _connector is None:
            from google.cloud.sql.connector import Connector

            _connector = Connector(enable_iam_auth=True, refresh_strategy="lazy")
        return _connector


def connect_cloud_sql(database: CloudSql, **kwargs: object) -> psycopg.Connection:
    try:
        return cloud_sql_connector().connect(
            database.instance, "psycopg", user=database.user, db=database.database,
            enable_iam_auth=True, ip_type=database.ip_type, timeout=CONNECT_TIMEOUT_S, **kwargs,
        )
    except Exception as error:  # the connector raises aiohttp, google.auth and driver errors alike
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DatabaseUnreachable(f"cannot connect to PostgreSQL {describe_dsn(database.target())} as "
                                  f"{database.user} (IAM authentication): {reason}") from error


def describe_dsn(dsn: str) -> str:
    """``database 'x' on host:port`` from a libpq DSN or URI (or ``on Cloud SQL instance p:r:i``
    from a Cloud SQL target), never a password."""
    if is_cloud_sql(dsn):
        database = CloudSql.parse(dsn)
        return f"database {database.database!r} on Cloud SQL instance {database.instance}"
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as error:
        raise ValueError(f"PostgreSQL connection string does not parse: {error}") from None
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    port = parts.get("port") or "5432"
    database = parts.get("dbname") or parts.get("user") or "(default)"
    return f"database {database!r} on {host}:{port}"


def lineage(dsn: str, schema: str, table: str) -> str:
    """The ``_source`` of rows read from ``schema.table``: ``postgresql://host:port/db/schema.table``
    (``cloudsql://project:region:instance/db/schema.table`` on Cloud SQL)."""
    if is_cloud_sql(dsn):
        database = CloudSql.parse(dsn)
        return f"{CLOUDSQL_SCHEME}{database.instance}/{database.database}/{schema}.{table}"
    parts = conninfo_to_dict(dsn)
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    return f"postgresql://{host}:{parts.get('port') or '5432'}/{parts.get('dbname', '')}/{schema}.{table}"


def connect(dsn: str, **kwargs: object) -> psycopg.Connection:
    """A connection to the target: a Cloud SQL target through the connector, a DSN directly."""
    if is_cloud_sql(dsn):
        return connect_cloud_sql(CloudSql.parse(dsn), **kwargs)
    try:
        return psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S, **kwargs)  # type: ignore[arg-type]
    except psycopg.OperationalError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DatabaseUnreachable(f"cannot connect to PostgreSQL {describe_dsn(dsn)}: {reason}") from None


def check_table(dsn: str, schema: str, table: DatabaseTable, columns: Sequence[str]) -> None:
    """Fail before anything runs when the database is unreachable or the table lacks a column."""
    with connect(dsn) as connection:
        found = [
            name for (name,) in connection.execute(
                "select column_name from information_schema.columns "
                "where table_schema = %s and table_name = %s",
                (schema, table.table),
            )
        ]
    if not found:
        raise ValueError(f"table {schema}.{table.table} not found in PostgreSQL {describe_dsn(dsn)}")
    missing = [name for name in columns if name not in found]
    if missing:
        raise ValueError(f"table {schema}.{table.table} lacks column(s) {', '.join(missing)} "
                         f"(found: {', '.join(found)})")
