"""The production sink: bronze tables in BigQuery, written with batch file loads.

Each table gets ONE load job per run (Beam's FILE_LOADS into one fixed destination, never a
destination per row, which Beam loads through a temporary table and a copy per destination). Each
run replaces what it owns, as the local sink does, so a rerun leaves bronze exactly as one run does:

- a snapshot source (players, store_items) replaces its whole table (``WRITE_TRUNCATE``); a
  snapshot without a valid row empties it (Beam starts no load for no rows: a load of no rows is
  started instead);
- a daily source (fx_rates, partitioned by its ``date``) replaces the export dates it reads: a
  query deletes their rows, then one ``WRITE_APPEND`` load adds the run's rows. Each export date
  read costs its partition two modifications per run (the delete and the load); the table, two
  operations per run whatever the window;
- rejected rows go to one table, ``batch_rejected``, for every source: the table of the local
  sink and of dbt's ``bronze.batch_rejected`` source, with the same columns (``REJECTED_SCHEMA``).
  A query deletes the source's earlier rejections (a daily source's: of the export files it
  reads), then one ``WRITE_APPEND`` load adds the run's.

A job that fails between a delete and its load leaves those rows out until the rerun that its
failure calls for. Rows carry the same lineage columns as the local bronze files: ``_source`` and
``_loaded_at``.
"""
from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.gcp.bigquery import WriteToBigQuery
from google.cloud import bigquery

from ingestion.batch.rejected import REJECTED_SCHEMA, REJECTED_TABLE
from ingestion.batch.sources import EXPORT_DATE, BatchSource, DailyFiles, SourceFile


def bigquery_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_string(arrow_type):
        return "STRING"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    if pa.types.is_date32(arrow_type):
        return "DATE"
    if pa.types.is_integer(arrow_type):
        return "INT64"
    if pa.types.is_decimal(arrow_type):
        if arrow_type.precision - arrow_type.scale <= 29 and arrow_type.scale <= 9:
            return "NUMERIC"
        return "BIGNUMERIC"
    raise ValueError(f"no BigQuery type for Arrow type {arrow_type}")


def schema_fields(schema: pa.Schema) -> list[bigquery.SchemaField]:
    return [
        bigquery.SchemaField(field.name, bigquery_type(field.type), mode="NULLABLE" if field.nullable else "REQUIRED")
        for field in schema
    ]


def is_daily(source: BatchSource) -> bool:
    return source.database is None and isinstance(source.layout, DailyFiles)


def table_spec(project: str, dataset: str, table: str) -> str:
    """``project:dataset.table``, as WriteToBigQuery takes it."""
    return f"{project}:{dataset}.{table}"


# ---------------------------------------------------------------------------------------------
# what each table of a run is, in google-cloud-bigquery's types: one definition for the Beam write
# (translated to WriteToBigQuery's arguments) and for the jobs this module starts itself


@dataclass(frozen=True)
class Destination:
    """A bronze table a run writes: how its rows are loaded, and which rows the run replaces when
    it does not replace the whole table (``clear``: a WHERE condition and its parameters)."""

    table: str
    load: bigquery.LoadJobConfig
    clear: tuple[str, tuple[bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter, ...]] | None = None


def load_config(schema: pa.Schema, disposition: str, **table_options: Any) -> bigquery.LoadJobConfig:
    return bigquery.LoadJobConfig(
        schema=schema_fields(schema),
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        write_disposition=disposition,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        **table_options,
    )


def bronze_destination(source: BatchSource, files: Sequence[SourceFile] = ()) -> Destination:
    if not is_daily(source):
        return Destination(source.name, load_config(source.schema, bigquery.WriteDisposition.WRITE_TRUNCATE))
    days = sorted({file.export_date for file in files if file.export_date is not None})
    by_day = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field=EXPORT_DATE)
    return Destination(
        source.name,
        load_config(source.schema, bigquery.WriteDisposition.WRITE_APPEND, time_partitioning=by_day),
        (f"{EXPORT_DATE} in unnest(@export_dates)", (bigquery.ArrayQueryParameter("export_dates", "DATE", days),)),
    )


def rejected_destination(source: BatchSource, files: Sequence[SourceFile] = ()) -> Destination:
    config = load_config(REJECTED_SCHEMA, bigquery.WriteDisposition.WRITE_APPEND, clustering_fields=["source"])
    condition = "source = @source"
    parameters: tuple[Any, ...] = (bigquery.ScalarQueryParameter("source", "STRING", source.name),)
    if is_daily(source):
        condition += " and _source in unnest(@export_files)"
        parameters += (bigquery.ArrayQueryParameter("export_files", "STRING", sorted(f.path for f in files)),)
    return Destination(REJECTED_TABLE, config, (condition, parameters))


# ---------------------------------------------------------------------------------------------
# the jobs this module starts itself (from a worker, through google-cloud-bigquery)


def clear_rows(client: bigquery.Client, table_id: str, destination: Destination) -> None:
    """Create the table if needed (as its load would), then delete the rows the run replaces."""
    assert destination.clear is not None
    condition, parameters = destination.clear
    table = bigquery.Table(table_id, schema=destination.load.schema)
    table.time_partitioning = destination.load.time_partitioning
    table.clustering_fields = destination.load.clustering_fields
    client.create_table(table, exists_ok=True)
    config = bigquery.QueryJobConfig(query_parameters=list(parameters))
    client.query(f"delete from `{table_id}` where {condition}", job_config=config).result()


def empty_table(client: bigquery.Client, table_id: str, destination: Destination) -> None:
    """The load of a run without a row: no rows, with the destination's own (truncating) config."""
    client.load_table_from_file(io.BytesIO(b""), table_id, size=0, job_config=destination.load).result()


def empty_when_no_row(rows: int, client: Callable[[], bigquery.Client], table_id: str, destination: Destination) -> None:
    """A table the run replaces whole gets emptied when the run has no row for it."""
    if rows == 0:
        empty_table(client(), table_id, destination)


ClientFactory = Callable[[str], bigquery.Client]


def default_client(project: str) -> bigquery.Client:
    return bigquery.Client(project=project)


# ---------------------------------------------------------------------------------------------
# rows


def json_value(value: Any) -> Any:
    """A value as BigQuery's JSON load format takes it (exact decimals as text)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def json_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: json_value(value) for name, value in row.items()}


def batch_rows(batch: pa.RecordBatch) -> Iterator[dict[str, Any]]:
    for row in batch.to_pylist():
        yield json_row(row)


# ---------------------------------------------------------------------------------------------
# the Beam graph


def write_to_bigquery(spec: str, config: bigquery.LoadJobConfig, temp_location: str | None) -> WriteToBigQuery:
    """WriteToBigQuery with the load ``config``'s schema, dispositions and table options."""
    additional: dict[str, Any] = {}
    if config.time_partitioning is not None:
        additional["timePartitioning"] = config.time_partitioning.to_api_repr()
    if config.clustering_fields:
        additional["clustering"] = {"fields": list(config.clustering_fields)}
    return WriteToBigQuery(
        table=spec,
        schema={"fields": [field.to_api_repr() for field in config.schema]},
        method=WriteToBigQuery.Method.FILE_LOADS,
        write_disposition=config.write_disposition,
        create_disposition=config.create_disposition,
        additional_bq_parameters=additional,
        custom_gcs_temp_location=temp_location,
    )


def write_destination(
    label: str,
    rows: beam.PCollection,
    destination: Destination,
    project: str,
    dataset: str,
    temp_location: str | None,
    client_factory: ClientFactory,
) -> None:
    """Rows → the destination, replacing what the run owns there (see the module's docstring)."""
    table_id = f"{project}.{dataset}.{destination.table}"
    client = functools.partial(client_factory, project)
    if destination.clear is not None:
        cleared = (
            rows.pipeline
            | f"{label}Start" >> beam.Create([None])
            | f"{label}Clear" >> beam.Map(lambda _: clear_rows(client(), table_id, destination))
        )
        # every row waits for the delete
        rows = rows | f"{label}AfterClear" >> beam.Map(lambda row, _: row, beam.pvalue.AsSingleton(cleared))
    else:
        _ = (
            rows
            | f"{label}Count" >> beam.combiners.Count.Globally()
            | f"{label}EmptyWhenNoRow" >> beam.Map(empty_when_no_row, client, table_id, destination)
        )
    _ = rows | label >> write_to_bigquery(table_spec(project, dataset, destination.table), destination.load,
                                          temp_location)


def write_bronze_to_bigquery(
    source: BatchSource,
    valid: beam.PCollection,
    rejected: beam.PCollection,
    files: Sequence[SourceFile],
    project: str,
    dataset: str,
    temp_location: str | None = None,
    client_factory: ClientFactory = default_client,
) -> None:
    """(bronze file, record batch) and (bronze file, rejected row) of a load of ``files`` (none for
    a database read) → BigQuery."""
    rows = valid | "BronzeRows" >> beam.FlatMap(lambda element: batch_rows(element[1]))
    write_destination("LoadBronze", rows, bronze_destination(source, files), project, dataset, temp_location,
                      client_factory)
    rejected_rows = rejected | "RejectedRows" >> beam.Map(lambda element: json_row(element[1]))
    write_destination("LoadRejected", rejected_rows, rejected_destination(source, files), project, dataset,
                      temp_location, client_factory)
