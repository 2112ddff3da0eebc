"""The production deployment as code, checked offline: the BigQuery tables match the sink's Arrow
schemas, and the deploy commands carry the settings the platform relies on."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest

from deployments.streaming import config, deploy
from ingestion.streaming.rows import GAME_EVENTS_REJECTED_SCHEMA, GAME_EVENTS_SCHEMA

BQ_TYPES = {pa.string(): "STRING", pa.int64(): "INTEGER", pa.timestamp("us", tz="UTC"): "TIMESTAMP"}


@pytest.mark.parametrize(("table", "schema"), [("game_events", GAME_EVENTS_SCHEMA), ("game_events_rejected", GAME_EVENTS_REJECTED_SCHEMA)])
def test_bigquery_schemas_match_the_sink_column_for_column(table: str, schema: pa.Schema) -> None:
    fields = json.loads((deploy.SCHEMA_DIR / f"{table}.json").read_text())
    assert [f["name"] for f in fields] == schema.names
    for bq, arrow in zip(fields, schema):
        assert bq["type"] == BQ_TYPES[arrow.type], arrow.name
        assert bq["mode"] == ("NULLABLE" if arrow.nullable else "REQUIRED"), arrow.name
        assert bq.get("description"), f"{table}.{arrow.name}: no description"


# ---------------------------------------------------------------------------------------------
# Deploy commands
# ---------------------------------------------------------------------------------------------

TARGET = deploy.Target("proj", "europe-west1", "game_analytics", "EU")


def step(name: str) -> tuple[str, ...]:
    (found,) = [s.command for s in deploy.steps(TARGET) if s.name == name]
    return found


def test_function_deploy_command() -> None:
    command = step("deploy the function")
    assert command[:4] == ("gcloud", "functions", "deploy", config.FUNCTION_NAME)
    for flag in (
        "--gen2", "--runtime=python311", "--trigger-topic=game-events", "--retry", "--entry-point=handle_pubsub",
        f"--memory={config.MEMORY_MB}Mi", f"--concurrency={config.CONCURRENCY}", "--cpu=1",
        f"--min-instances={config.MIN_INSTANCES}", f"--max-instances={config.MAX_INSTANCES}",
        "--service-account=game-events-ingest@proj.iam.gserviceaccount.com", "--no-allow-unauthenticated",
        "--set-env-vars=GA_SINK=bigquery,GA_GCP_PROJECT=proj,GA_BRONZE_DATASET=game_analytics_bronze",
        "--source=ingestion/streaming",
    ):
        assert flag in command, flag


def test_tables_are_partitioned_and_clustered() -> None:
    events = step("table game_events")
    assert {"--time_partitioning_field=event_timestamp", "--clustering_fields=game_id,event_name"} <= set(events)
    assert events[-1] == "proj:game_analytics_bronze.game_events"
    rejected = step("table game_events_rejected")
    assert "--time_partitioning_field=ingested_at" in rejected


def test_ingest_account_may_insert_into_the_two_tables_and_nothing_else() -> None:
    """Custom roles with exactly the permissions of a streaming insert (not dataEditor, which reads
    every raw payload and deletes tables): the table ones on the two tables, the dataset one on bronze."""
    grants = [s.command for s in deploy.steps(TARGET) if "game-events-ingest@" in " ".join(s.command) and "iam-policy-binding" in " ".join(s.command)]
    assert all(g[:2] == ("bq", "add-iam-policy-binding") for g in grants)
    assert sorted((g[3], g[-1]) for g in grants) == [
        ("--role=projects/proj/roles/gaDatasetGet", "proj:game_analytics_bronze"),
        ("--role=projects/proj/roles/gaStreamingInsert", "proj:game_analytics_bronze.game_events"),
        ("--role=projects/proj/roles/gaStreamingInsert", "proj:game_analytics_bronze.game_events_rejected"),
    ]
    updates = {s.command[4]: s.command[6] for s in deploy.steps(TARGET) if s.command[:4] == ("gcloud", "iam", "roles", "update")}
    assert updates == {"gaStreamingInsert": "--permissions=bigquery.tables.get,bigquery.tables.updateData",
                       "gaDatasetGet": "--permissions=bigquery.datasets.get"}


def test_dead_letters_and_rejections_have_retention() -> None:
    sub = step("dead-letter pull subscription")
    assert f"--message-retention-duration={config.DEAD_LETTER_RETENTION_DAYS}d" in sub and config.DEAD_LETTER_RETENTION_DAYS >= 31
    assert "--message-retention-duration=31d" in step("dead-letter subscription keeps messages the maximum time")
    expiration = f"--time_partitioning_expiration={config.REJECTED_RETENTION_DAYS * 86400}"
    assert expiration in step("table game_events_rejected")
    assert expiration in step("rejected events are deleted after their retention (raw payloads may hold personal data)")


def test_dead_lettering_is_configured_with_its_iam() -> None:
    update = step("trigger subscription: dead-lettering and retry backoff")
    assert f"--max-delivery-attempts={config.MAX_DELIVERY_ATTEMPTS}" in update
    assert "--dead-letter-topic=game-events-dead-letter" in update
    names = [s.name for s in deploy.steps(TARGET)]
    assert names.index("deploy the function") < names.index("trigger subscription: dead-lettering and retry backoff")
    agent_roles = {
        arg for s in deploy.steps(TARGET) if any("gcp-sa-pubsub" in a for a in s.command) for arg in s.command if arg.startswith("--role=")
    }
    assert {"--role=roles/pubsub.publisher", "--role=roles/pubsub.subscriber"} <= agent_roles


def test_dry_run_prints_every_command_and_runs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dry run ran a command")

    deploy.run(TARGET, dry_run=True, execute=refuse)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert out.count("\ngcloud functions deploy ") == 1
    assert "{project_number} = $(gcloud projects describe proj" in out
