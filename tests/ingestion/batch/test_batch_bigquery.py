"""The BigQuery branch of the batch load at the client boundary. Beam's BigQuery IO reaches only
Google (no endpoint override; it stages its loads in GCS), so the pipeline is constructed with the
BigQuery sink, never run, and the arguments of its real WriteToBigQuery transforms are checked,
with the google-cloud-bigquery jobs the sink starts itself (request types included). The same jobs
run against the BigQuery emulator in tests/rehearsal/test_bigquery_sink.py."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import apache_beam as beam
import pyarrow as pa
import yaml
from apache_beam.io.gcp.bigquery import BigQueryDisposition, WriteToBigQuery
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor
from google.cloud import bigquery

from ingestion.batch.bigquery import (
    batch_rows,
    bronze_destination,
    clear_rows,
    empty_when_no_row,
    rejected_destination,
)
from ingestion.batch.launch import local_runner
from ingestion.batch.load import build_load
from ingestion.batch.options import load_spec
from ingestion.batch.rejected import REJECTED_SCHEMA, REJECTED_TABLE
from ingestion.batch.sources import BATCH_SOURCES, FX_RATES, PLAYERS, SourceFile, daily_bronze_file
from common.settings import REPO_ROOT

LOADED_AT = "2024-01-06T03:00:00Z"
EXPORTS = "gs://studio-exports/daily"
FX_FILES = [
    SourceFile(f"{EXPORTS}/fx_rates/fx_rates_{day.isoformat()}.csv", daily_bronze_file(day), export_date=day)
    for day in (date(2024, 1, 5), date(2024, 1, 8))
]


class _Graph(PipelineVisitor):
    def __init__(self) -> None:
        self.writes: dict[str, WriteToBigQuery] = {}
        self.labels: set[str] = set()

    def enter_composite_transform(self, node) -> None:
        self.labels.add(node.full_label)
        if isinstance(node.transform, WriteToBigQuery):
            self.writes[node.full_label] = node.transform

    def visit_transform(self, node) -> None:
        self.labels.add(node.full_label)


def construct(argv: list[str], files: list[SourceFile]) -> _Graph:
    options = PipelineOptions(argv + ["--sink", "bigquery", "--bigquery_project", "studio-analytics",
                                      "--bigquery_dataset", "game_analytics_bronze", "--loaded_at", LOADED_AT,
                                      "--temp_location", "gs://studio-dataflow/tmp"])
    pipeline = beam.Pipeline(runner=local_runner(), options=options)
    build_load(pipeline, load_spec(options), files=files, staging_dir=None)
    graph = _Graph()
    pipeline.visit(graph)
    return graph


def table_of(write: WriteToBigQuery) -> str:
    """The one destination of a write; a callable (a destination per row) would make Beam load
    each destination into a temporary table and copy it."""
    assert not callable(write.table_reference)
    reference = write.table_reference
    return f"{reference.projectId}:{reference.datasetId}.{reference.tableId}"


class FakeClient:
    """google-cloud-bigquery's Client at the boundary: records each call, every job succeeds."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def _job(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((name, args, kwargs))
        return type("Job", (), {"result": lambda self: None})()

    def create_table(self, *args: Any, **kwargs: Any) -> Any:
        return self._job("create_table", *args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        return self._job("query", *args, **kwargs)

    def load_table_from_file(self, *args: Any, **kwargs: Any) -> Any:
        return self._job("load_table_from_file", *args, **kwargs)


def test_a_snapshot_source_is_one_truncating_load_of_its_table():
    graph = construct(["--source", "players", "--cloudsql_instance", "studio-analytics:europe-west1:studio-db", "--cloudsql_database", "studio", "--cloudsql_user", "ga-dataflow@studio-analytics.iam.gserviceaccount.com"], [])

    assert sorted(graph.writes) == ["LoadBronze", "LoadRejected"]
    bronze = graph.writes["LoadBronze"]
    assert table_of(bronze) == "studio-analytics:game_analytics_bronze.players"
    assert bronze.method == WriteToBigQuery.Method.FILE_LOADS
    assert bronze.write_disposition == BigQueryDisposition.WRITE_TRUNCATE
    assert bronze.create_disposition == BigQueryDisposition.CREATE_IF_NEEDED
    assert bronze.custom_gcs_temp_location == "gs://studio-dataflow/tmp"
    assert bronze.additional_bq_parameters == {}
    assert [f["name"] for f in bronze.schema["fields"]] == [
        "player_id", "game_id", "created_at", "country", "acquisition_channel", "is_test_account", "updated_at",
        "_source", "_loaded_at",
    ]
    assert bronze.schema["fields"][-1] == {"name": "_loaded_at", "type": "TIMESTAMP", "mode": "REQUIRED"}
    # a run without a valid row still empties the table (Beam starts no load for no rows)
    assert {"LoadBronzeCount", "LoadBronzeEmptyWhenNoRow"} <= graph.labels


def test_an_empty_snapshot_empties_its_table_with_a_load_of_no_rows():
    client = FakeClient()
    destination = bronze_destination(PLAYERS)

    empty_when_no_row(3, lambda: client, "studio-analytics.game_analytics_bronze.players", destination)
    assert client.calls == []

    empty_when_no_row(0, lambda: client, "studio-analytics.game_analytics_bronze.players", destination)
    [(name, (data, table_id), kwargs)] = client.calls
    assert (name, data.read(), table_id) == ("load_table_from_file", b"", "studio-analytics.game_analytics_bronze.players")
    assert kwargs["size"] == 0  # a multipart upload: no resumable session for no bytes
    config = kwargs["job_config"]
    assert isinstance(config, bigquery.LoadJobConfig)
    assert config.write_disposition == bigquery.WriteDisposition.WRITE_TRUNCATE
    assert config.create_disposition == bigquery.CreateDisposition.CREATE_IF_NEEDED
    assert config.source_format == bigquery.SourceFormat.NEWLINE_DELIMITED_JSON
    assert [field.name for field in config.schema] == list(PLAYERS.schema.names)


def test_a_daily_source_is_one_load_into_the_partitioned_table_after_deleting_the_dates_it_reads():
    graph = construct(["--source", "fx_rates", "--exports_location", EXPORTS,
                       "--start", "2024-01-01", "--end", "2024-01-10"], FX_FILES)
    bronze = graph.writes["LoadBronze"]

    assert table_of(bronze) == "studio-analytics:game_analytics_bronze.fx_rates"  # no $YYYYMMDD destinations
    assert bronze.write_disposition == BigQueryDisposition.WRITE_APPEND
    assert bronze.additional_bq_parameters == {"timePartitioning": {"type": "DAY", "field": "date"}}
    assert {f["name"]: f["type"] for f in bronze.schema["fields"]} == {
        "date": "DATE", "currency": "STRING", "usd_per_unit": "NUMERIC", "_source": "STRING", "_loaded_at": "TIMESTAMP"
    }
    assert {"LoadBronzeClear", "LoadBronzeAfterClear"} <= graph.labels

    client = FakeClient()
    clear_rows(client, "studio-analytics.game_analytics_bronze.fx_rates", bronze_destination(FX_RATES, FX_FILES))
    (create, (table,), create_kwargs), (query, (sql,), query_kwargs) = client.calls
    assert create == "create_table" and create_kwargs == {"exists_ok": True}
    assert isinstance(table, bigquery.Table) and table.time_partitioning.field == "date"
    assert (query, sql) == ("query", "delete from `studio-analytics.game_analytics_bronze.fx_rates` "
                                     "where date in unnest(@export_dates)")
    config = query_kwargs["job_config"]
    assert isinstance(config, bigquery.QueryJobConfig)
    assert [p.to_api_repr() for p in config.query_parameters] == [
        bigquery.ArrayQueryParameter("export_dates", "DATE", [date(2024, 1, 5), date(2024, 1, 8)]).to_api_repr()
    ]


def test_each_run_replaces_the_source_s_rejections_in_the_one_batch_rejected_table():
    for argv, files, condition, parameters in (
        (["--source", "players", "--cloudsql_instance", "studio-analytics:europe-west1:studio-db", "--cloudsql_database", "studio", "--cloudsql_user", "ga-dataflow@studio-analytics.iam.gserviceaccount.com"], [],
         "source = @source", [bigquery.ScalarQueryParameter("source", "STRING", "players")]),
        (["--source", "fx_rates", "--exports_location", EXPORTS, "--start", "2024-01-01", "--end", "2024-01-10"],
         FX_FILES, "source = @source and _source in unnest(@export_files)",
         [bigquery.ScalarQueryParameter("source", "STRING", "fx_rates"),
          bigquery.ArrayQueryParameter("export_files", "STRING", [f.path for f in FX_FILES])]),
    ):
        rejected = construct(argv, files).writes["LoadRejected"]
        assert table_of(rejected) == "studio-analytics:game_analytics_bronze.batch_rejected"
        assert rejected.write_disposition == BigQueryDisposition.WRITE_APPEND
        assert rejected.additional_bq_parameters == {"clustering": {"fields": ["source"]}}

        client = FakeClient()
        source = BATCH_SOURCES[argv[1]]
        clear_rows(client, "studio-analytics.game_analytics_bronze.batch_rejected", rejected_destination(source, files))
        _, (query, (sql,), kwargs) = client.calls
        assert sql == f"delete from `studio-analytics.game_analytics_bronze.batch_rejected` where {condition}"
        assert [p.to_api_repr() for p in kwargs["job_config"].query_parameters] == [p.to_api_repr() for p in parameters]


def test_batch_rejected_is_one_table_for_both_sinks_and_dbt():
    """The rejected rows of every source: one table name and one set of columns, written by the
    local sink (landing/batch_rejected) and the BigQuery sink, read by dbt's sources over bronze."""
    sources = yaml.safe_load((REPO_ROOT / "dbt" / "models" / "silver" / "_bronze__sources.yml").read_text())
    dbt_tables = {t["name"]: t for source in sources["sources"] for t in source["tables"]}
    project = yaml.safe_load((REPO_ROOT / "dbt" / "dbt_project.yml").read_text())

    assert REJECTED_TABLE in dbt_tables and REJECTED_TABLE in project["vars"]["bronze_tables"]
    assert dbt_tables[REJECTED_TABLE]["loaded_at_field"] in REJECTED_SCHEMA.names
    for source in BATCH_SOURCES.values():
        assert bronze_destination(source).table == source.name and source.name in dbt_tables
        rejected = rejected_destination(source)
        assert rejected.table == REJECTED_TABLE
        assert [(f.name, f.field_type, f.mode) for f in rejected.load.schema] == [
            ("source", "STRING", "REQUIRED"), ("reason", "STRING", "REQUIRED"), ("raw", "STRING", "REQUIRED"),
            ("_source", "STRING", "REQUIRED"), ("_line", "INT64", "REQUIRED"), ("_loaded_at", "TIMESTAMP", "REQUIRED"),
        ]
        assert [f.name for f in rejected.load.schema] == REJECTED_SCHEMA.names


def test_bigquery_rows_are_json_ready():
    loaded_at = datetime(2024, 1, 6, 3, tzinfo=timezone.utc)
    batch = pa.RecordBatch.from_pylist(
        [{"date": date(2024, 1, 5), "currency": "EUR", "usd_per_unit": Decimal("1.0943"),
          "_source": "gs://b/fx_rates/fx_rates_2024-01-05.csv", "_loaded_at": loaded_at}],
        schema=FX_RATES.schema,
    )
    assert list(batch_rows(batch)) == [{
        "date": "2024-01-05", "currency": "EUR", "usd_per_unit": "1.094300000",
        "_source": "gs://b/fx_rates/fx_rates_2024-01-05.csv", "_loaded_at": "2024-01-06T03:00:00+00:00",
    }]
