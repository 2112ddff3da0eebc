"""Replaying dead-lettered messages on the real Pub/Sub emulator: every valid event reaches silver
once and every rejection once, however often a message is replayed."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from deployments.local.pubsub import admin_clients, create_topics, topology
from deployments.local.pubsub_emulator import pubsub_emulator
from ingestion.bronze import ensure_local_bronze
from common.settings import OrchestrationSettings
from ingestion.streaming.sinks import LocalSink
from ingestion.streaming import replay
from tests.conftest import requires_pubsub_emulator
from tests.dbt.warehouse import dbt
from tests.ingestion.streaming.test_bad_inputs import event


@requires_pubsub_emulator()
def test_replay_moves_dead_letters_through_the_function_idempotently(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    top = topology("local")
    with pubsub_emulator(tmp_path) as host:
        create_topics(host, top)
        publisher, subscriber = admin_clients(host)
        first_published = "2026-06-01T12:00:00.250Z"
        messages = [json.dumps({"events": [event(1), event(2, platform="switch"), event(3)]}).encode(),
                    json.dumps(event(4)).encode()]
        for data in messages:  # as Pub/Sub forwards a message it gave up on
            publisher.publish(top.dead_letter_topic_path, data, game_id="space_miner", **{
                replay.SOURCE_PUBLISH_TIME: first_published, "CloudPubSubDeadLetterSourceDeliveryCount": "20"}).result()

        sink = LocalSink(tmp_path / "landing")
        quiet = lambda _line: None  # noqa: E731
        # stored, then the replay dies before acknowledging: the messages come back
        crashed = replay.replay(subscriber, top.dead_letter_subscription_path, sink, ack=False, emit=quiet)
        assert (crashed.replayed, crashed.valid, crashed.rejected) == (2, 3, 1)

        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
        monkeypatch.setenv("GA_LANDING_DIR", str(tmp_path / "landing"))
        assert replay.main(["--project", "local"]) == 0
        assert replay.main(["--project", "local"]) == 0  # nothing left: acknowledged
        remaining = subscriber.pull(request={"subscription": top.dead_letter_subscription_path, "max_messages": 10,
                                             "return_immediately": True}, timeout=10)
        assert not remaining.received_messages
        subscriber.close()

    landing = tmp_path / "landing"
    bronze = duckdb.sql(f"select count(*), min(publish_time) from read_parquet('{landing}/game_events/**/*.parquet')").fetchall()
    assert bronze[0][0] == 6  # each valid event twice in bronze: replayed twice
    assert bronze[0][1].isoformat() == "2026-06-01T12:00:00.250000+00:00"  # the first publish time, kept

    settings = OrchestrationSettings(data_dir=tmp_path)
    ensure_local_bronze(settings.landing_dir)
    dbt(settings, "run", "--select", "stg_telemetry__game_events", "stg_telemetry__game_events_rejected")
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        silver = con.sql("select event_id from silver.stg_telemetry__game_events order by 1").fetchall()
        rejected = con.sql("select event_index, error_type from silver.stg_telemetry__game_events_rejected").fetchall()
    assert silver == [(event(i)["event_id"],) for i in (1, 3, 4)]
    assert rejected == [(1, "schema_violation")]
