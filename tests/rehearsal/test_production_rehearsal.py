"""The production rehearsal: the production adapters, for real, against API emulators.

A small simulation arrives in two halves (by publish time). Each half: its messages go through the
Cloud Function's handler with ``GA_SINK=bigquery`` (the project's BigQuerySink, streaming inserts
into the BigQuery emulator); the batch sources are loaded by the Beam pipeline, ``fx_rates`` read
from the Cloud Storage emulator through ``gs://`` as on Dataflow; then ``dbt build`` runs on the
BigQuery adapter against the emulator (the second build incremental). Every cell of the three
marts then equals the simulator's ground truth, by value.

Beam's BigQuery IO has no endpoint override (and stages its loads through GCS), so the batch
pipeline runs with its local sink, and what it produced (the bronze Parquet files) is loaded into
the emulator here with google-cloud-bigquery load jobs built from ingestion/batch/bigquery.py's
definitions (schema, partitioning, the rows as BigQuery's JSON load format takes them).
"""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.cloud import bigquery

from deployments.streaming.deploy import SCHEMA_DIR
from ingestion.batch.bigquery import bronze_destination, rejected_destination
from ingestion.batch.launch import check_export_files, run_local
from ingestion.batch.main import main as batch_main
from ingestion.batch.local_sink import rejected_file
from ingestion.batch.rejected import REJECTED_SCHEMA, REJECTED_TABLE
from ingestion.batch.sources import BATCH_SOURCES, SourceFile
from common.settings import OrchestrationSettings
from ingestion.streaming.settings import FunctionSettings
from simulator import Simulation, simulate
from ingestion.streaming.sinks import BigQuerySink, sink_from_settings
from ingestion.streaming.handler import handle_message
from tests.conftest import SMALL
from tests.dbt import warehouse
from tests.rehearsal.conftest import (
    EXPORTS_BUCKET,
    PROJECT,
    Emulators,
    no_google_credentials,
    upload_folder,
    write_as_the_sink,
)

# small (two games, five days) with every fault frequent enough to be seen
REHEARSAL = replace(SMALL, seed=23, start_date=date(2026, 2, 2), days=5, players_per_game=10)
PREFIX = "game_analytics"
BRONZE = f"{PREFIX}_bronze"
GOLD = f"{PREFIX}_gold"
EXPORTS_URL = f"gs://{EXPORTS_BUCKET}/exports"


def create_streaming_tables(client: bigquery.Client) -> None:
    """The bronze dataset and the function's two tables, as deployments/streaming/deploy.py
    creates them (same schema files, partitioning and clustering)."""
    client.create_dataset(bigquery.Dataset(f"{PROJECT}.{BRONZE}"), exists_ok=True)
    for table, partition_column, clustering in (
        ("game_events", "event_timestamp", ["game_id", "event_name"]),
        ("game_events_rejected", "ingested_at", ["error_type"]),
    ):
        schema = [bigquery.SchemaField.from_api_repr(field)
                  for field in json.loads((SCHEMA_DIR / f"{table}.json").read_text())]
        definition = bigquery.Table(f"{PROJECT}.{BRONZE}.{table}", schema=schema)
        definition.time_partitioning = bigquery.TimePartitioning(type_="DAY", field=partition_column)
        definition.clustering_fields = clustering
        client.create_table(definition, exists_ok=True)


def stream(messages: Sequence[Any]) -> tuple[int, int]:
    """Each message through the function's handler with the sink the settings choose
    (GA_SINK=bigquery), delivered at its publish time; returns the rows the handler stored
    (valid events, rejections)."""
    sink = sink_from_settings(FunctionSettings())
    assert isinstance(sink, BigQuerySink) and sink.dataset == BRONZE
    valid = rejected = 0
    for message in messages:
        result = handle_message(message.data, message.attributes, message.message_id, message.publish_time, sink,
                                now=message.publish_time, emit=lambda _line: None)
        valid, rejected = valid + result.valid, rejected + result.rejected
    return valid, rejected


def landed(paths: Sequence[Path], schema: pa.Schema) -> list[dict[str, Any]]:
    """The rows of some bronze Parquet files."""
    tables = [pq.read_table(path, schema=schema) for path in paths if path.exists()]
    return [row for table in tables for row in table.to_pylist()]


def load_batch_bronze(client: bigquery.Client, settings: OrchestrationSettings, source_name: str, files: Sequence[SourceFile]) -> None:
    """What the local Beam load of ``files`` produced (its bronze files, and its rejected rows),
    written into the emulator's bronze as the BigQuery sink writes it."""
    source = BATCH_SOURCES[source_name]
    bronze_files = sorted({file.bronze_file for file in files})
    valid = landed([settings.landing_dir / source_name / name for name in bronze_files], source.schema)
    rejected = landed([settings.landing_dir / REJECTED_TABLE / rejected_file(source, name) for name in bronze_files],
                      REJECTED_SCHEMA)
    for destination, rows in ((bronze_destination(source, files), valid), (rejected_destination(source, files), rejected)):
        write_as_the_sink(client, f"{PROJECT}.{BRONZE}.{destination.table}", destination, rows)


def dbt_on_emulator(settings: OrchestrationSettings, emulators: Emulators, *args: str) -> dict[str, str]:
    """dbt on the bigquery adapter (profile output bigquery_emulator) against the emulator; raises
    with its log on failure; returns node -> status."""
    env = dict(os.environ, BIGQUERY_EMULATOR_HOST=emulators.bigquery_host, GA_GCP_PROJECT=PROJECT,
               GA_BQ_DATASET_PREFIX=PREFIX, GA_DATA_DIR=str(settings.data_dir))
    target = settings.data_dir / "dbt-target"
    cmd = [str(warehouse.DBT), *args, "--project-dir", str(warehouse.DBT_DIR), "--profiles-dir",
           str(warehouse.DBT_DIR), "--target", "bigquery_emulator", "--target-path", str(target)]
    proc = subprocess.run(cmd, env=env, cwd=warehouse.DBT_DIR, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"dbt {' '.join(args)} on the emulator failed ({proc.returncode}):\n"
                             f"{proc.stdout[-8000:]}\n{proc.stderr[-2000:]}")
    results = json.loads((target / "run_results.json").read_text())["results"]
    return {r["unique_id"]: r["status"] for r in results}


def value(cell: str) -> Any:
    """A cell compared by value: numbers as exact decimals (NUMERIC comes back with its scale)."""
    try:
        return Decimal(cell).normalize()
    except InvalidOperation:
        return cell


def by_value(rows: dict[tuple[str, ...], dict[str, str]]) -> dict[tuple[str, ...], dict[str, Any]]:
    return {key: {column: value(cell) for column, cell in row.items()} for key, row in rows.items()}


def emulator_mart(client: bigquery.Client, mart: str) -> dict[tuple[str, ...], dict[str, str]]:
    key, columns = warehouse.MARTS[mart]
    rows = client.query(f"select {', '.join(columns)} from `{PROJECT}.{GOLD}.{mart}`").result()
    return {tuple(warehouse.text(r[k]) for k in key): {c: warehouse.text(r[c]) for c in columns} for r in rows}


@pytest.fixture(scope="module")
def rehearsal(emulators: Emulators, tmp_path_factory: pytest.TempPathFactory):
    sim: Simulation = simulate(REHEARSAL)
    with pytest.MonkeyPatch.context() as monkeypatch:
        no_google_credentials(monkeypatch)
        data_dir = tmp_path_factory.mktemp("rehearsal")
        for name, setting in (("GA_DATA_DIR", str(data_dir)), ("GA_SINK", "bigquery"), ("GA_GCP_PROJECT", PROJECT),
                              ("GA_BQ_DATASET_PREFIX", PREFIX), ("GA_BRONZE_DATASET", BRONZE)):
            monkeypatch.setenv(name, setting)
        settings = OrchestrationSettings()
        client = emulators.bigquery

        # the studio's exports: the extracts on disk, the daily FX files in the exports bucket
        sim.write_exports(settings.exports_dir)
        emulators.storage.create_bucket(EXPORTS_BUCKET)
        upload_folder(emulators.storage, settings.exports_dir / "fx_rates", EXPORTS_BUCKET, "exports/fx_rates")
        create_streaming_tables(client)

        messages = sorted(sim.messages, key=lambda m: m.publish_time)
        halfway = messages[0].publish_time + (messages[-1].publish_time - messages[0].publish_time) / 2
        first_day = REHEARSAL.start_date - timedelta(days=30)
        fx_midpoint = REHEARSAL.start_date + timedelta(days=REHEARSAL.days // 2)
        last_day = REHEARSAL.start_date + timedelta(days=REHEARSAL.days + 30)
        builds, stored = [], (0, 0)
        for half, (low, high) in enumerate(((first_day, fx_midpoint), (fx_midpoint + timedelta(days=1), last_day))):
            arrived = [m for m in messages if (m.publish_time < halfway) == (half == 0)]
            stored = tuple(map(sum, zip(stored, stream(arrived))))
            if half == 0:
                for source in ("players", "store_items"):
                    run_local(source, first_day, last_day, settings)
                    files = BATCH_SOURCES[source].layout.files(settings.exports_dir, first_day, last_day)
                    load_batch_bronze(client, settings, source, files)
            # the Dataflow launcher's check of the exports, then the pipeline itself, on gs://
            check_export_files("fx_rates", low, high, EXPORTS_URL)
            batch_main(["--source", "fx_rates", "--start", low.isoformat(), "--end", high.isoformat(),
                        "--exports_location", EXPORTS_URL, "--sink", "local",
                        "--landing_dir", str(settings.landing_dir)])
            load_batch_bronze(client, settings, "fx_rates", BATCH_SOURCES["fx_rates"].layout.files(EXPORTS_URL, low, high))
            builds.append(dbt_on_emulator(settings, emulators, "build"))
        yield sim, settings, client, builds, stored


def test_both_builds_succeed_on_the_bigquery_adapter(rehearsal) -> None:
    _, _, _, builds, _ = rehearsal
    for build in builds:
        failed = {node: status for node, status in build.items() if status not in ("success", "pass")}
        # the simulation's events are months old: the freshness check warns, as it should
        assert failed in ({}, {"test.game_analytics.assert_bronze_events_are_fresh": "warn"})
    assert len(builds[0]) > 90 and builds[0].keys() == builds[1].keys()


@pytest.mark.parametrize("mart", sorted(warehouse.MARTS))
def test_every_mart_cell_equals_the_ground_truth(rehearsal, mart: str) -> None:
    sim, _, client, *_ = rehearsal
    got, want = emulator_mart(client, mart), warehouse.truth_rows(sim, mart)
    assert want, "the ground truth has rows"
    assert warehouse.differences(by_value(got), by_value(want)) == []


def test_the_function_stored_every_valid_event_and_rejection(rehearsal) -> None:
    *_, client, _, (valid, rejected) = rehearsal
    [counts] = client.query(f"""
        select (select count(*) from `{PROJECT}.{BRONZE}.game_events`) as events,
               (select count(*) from `{PROJECT}.{BRONZE}.game_events_rejected`) as rejections""").result()
    assert valid > 0 and rejected > 0
    assert (counts["events"], counts["rejections"]) == (valid, rejected)


def test_fx_rates_came_from_the_bucket(rehearsal) -> None:
    sim, _, client, *_ = rehearsal
    rows = client.query(f"select distinct _source from `{PROJECT}.{BRONZE}.fx_rates`").result()
    sources = {r["_source"] for r in rows}
    assert sources and all(s.startswith(f"{EXPORTS_URL}/fx_rates/fx_rates_") for s in sources)
    [count] = client.query(f"select count(*) as n from `{PROJECT}.{BRONZE}.fx_rates`").result()
    assert count["n"] == len(sim.fx_rates)
