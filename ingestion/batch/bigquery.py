"""The production sink: bronze tables in BigQuery, written with batch file loads.

Each load replaces what it owns, so a rerun leaves bronze exactly as one run does:

- a snapshot source (players, store_items) truncates its whole table (``WRITE_TRUNCATE``);
- a daily source (fx_rates) truncates the date partition of each export file it loads
  (``fx_rates$YYYYMMDD``; the table is partitioned by its ``date`` column);
- rejected rows go to ``batch_rejected_<source>``, replaced the same way (whole table, or the
  export date's partition of ``_export_date``), because one shared table could not be replaced
  source by source.

Rows carry the same lineage columns as the local bronze files: ``_source`` and ``_loaded_at``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.gcp.bigquery import BigQueryDisposition, WriteToBigQuery

from ingestion.batch.sources import BatchSource, DailyFiles, export_date

REJECTED_PREFIX = "batch_rejected_"
EXPORT_DATE = "_export_date"  # the partition column of a daily source's rejected rows


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


def table_schema(schema: pa.Schema) -> dict[str, Any]:
    """A BigQuery table schema (the JSON form WriteToBigQuery takes) for an Arrow schema."""
    return {
        "fields": [
            {"name": field.name, "type": bigquery_type(field.type), "mode": "NULLABLE" if field.nullable else "REQUIRED"}
            for field in schema
        ]
    }


def is_daily(source: BatchSource) -> bool:
    return source.database is None and isinstance(source.layout, DailyFiles)


def table_spec(project: str, dataset: str, table: str, day: date | None = None) -> str:
    """``project:dataset.table``, or its partition ``project:dataset.table$YYYYMMDD``."""
    spec = f"{project}:{dataset}.{table}"
    return spec if day is None else f"{spec}${day:%Y%m%d}"


def valid_destination(source: BatchSource, project: str, dataset: str) -> Callable[[Mapping[str, Any]], str]:
    """The table (snapshot) or partition (daily: the row's ``date``) a bronze row replaces."""
    if not is_daily(source):
        return lambda row: table_spec(project, dataset, source.name)
    return lambda row: table_spec(project, dataset, source.name, date.fromisoformat(row["date"]))


def rejected_destination(source: BatchSource, project: str, dataset: str) -> Callable[[Mapping[str, Any]], str]:
    table = REJECTED_PREFIX + source.name
    if not is_daily(source):
        return lambda row: table_spec(project, dataset, table)
    return lambda row: table_spec(project, dataset, table, date.fromisoformat(row[EXPORT_DATE]))


def json_value(value: Any) -> Any:
    """A value as BigQuery's JSON load format takes it (exact decimals as text)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def batch_rows(batch: pa.RecordBatch) -> Iterator[dict[str, Any]]:
    for row in batch.to_pylist():
        yield {name: json_value(value) for name, value in row.items()}


def rejected_row(source: BatchSource, row: Mapping[str, Any]) -> dict[str, Any]:
    out = {name: json_value(value) for name, value in row.items()}
    if is_daily(source):
        assert isinstance(source.layout, DailyFiles)
        day = export_date(row["_source"], source.layout.prefix)
        if day is None:
            raise ValueError(f"rejected row of {row['_source']!r} has no export date in its file name")
        out[EXPORT_DATE] = day.isoformat()
    return out


def rejected_schema(source: BatchSource, schema: pa.Schema) -> pa.Schema:
    if is_daily(source):
        return schema.append(pa.field(EXPORT_DATE, pa.date32(), nullable=False))
    return schema


def partitioning(source: BatchSource, column: str) -> dict[str, Any]:
    """Load-job parameters: daily sources' tables are partitioned by day on ``column``."""
    if not is_daily(source):
        return {}
    return {"timePartitioning": {"type": "DAY", "field": column}}


def write_to_bigquery(
    table: Callable[[Mapping[str, Any]], str], schema: pa.Schema, additional: dict[str, Any], temp_location: str | None
) -> WriteToBigQuery:
    return WriteToBigQuery(
        table=table,
        schema=table_schema(schema),
        method=WriteToBigQuery.Method.FILE_LOADS,
        write_disposition=BigQueryDisposition.WRITE_TRUNCATE,
        create_disposition=BigQueryDisposition.CREATE_IF_NEEDED,
        additional_bq_parameters=additional,
        custom_gcs_temp_location=temp_location,
    )


def write_bronze_to_bigquery(
    source: BatchSource,
    valid: beam.PCollection,
    rejected: beam.PCollection,
    rejected_schema_: pa.Schema,
    project: str,
    dataset: str,
    temp_location: str | None = None,
) -> None:
    """(bronze file, record batch) and (bronze file, rejected row) → BigQuery file loads."""
    rows = valid | "BronzeRows" >> beam.FlatMap(lambda element: batch_rows(element[1]))
    _ = rows | "LoadBronze" >> write_to_bigquery(
        valid_destination(source, project, dataset), source.schema, partitioning(source, "date"), temp_location
    )
    rejected_rows = rejected | "RejectedRows" >> beam.Map(lambda element: rejected_row(source, element[1]))
    _ = rejected_rows | "LoadRejected" >> write_to_bigquery(
        rejected_destination(source, project, dataset),
        rejected_schema(source, rejected_schema_),
        partitioning(source, EXPORT_DATE),
        temp_location,
    )
