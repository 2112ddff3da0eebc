from __future__ import annotations

import pytest
from prefect.blocks.core import Block
from prefect.blocks.notifications import SlackWebhook

from blocks.register import register
from deployments.local.stack import AlertPrinter as Receiver


def test_blocks_are_registered_idempotently_from_the_environment_and_deliver(prefect_api: str) -> None:
    receiver = Receiver()
    env = {"GA_ALERT_WEBHOOK_URL": receiver.url, "GA_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x"}
    assert register(env) == ["slack-webhook/game-analytics-alerts", "custom-webhook/game-analytics-alerts"]
    assert register(env) == ["slack-webhook/game-analytics-alerts", "custom-webhook/game-analytics-alerts"]  # again: overwritten
    assert isinstance(Block.load("slack-webhook/game-analytics-alerts"), SlackWebhook)
    Block.load("custom-webhook/game-analytics-alerts").notify(body="dbt build failed: test.x", subject="run failed")
    assert receiver.alerts == [{"subject": "run failed", "body": "dbt build failed: test.x", "source": "game-analytics-alerts"}]
    receiver.close()


def test_nothing_configured_registers_nothing(prefect_api: str) -> None:
    assert register({}) == []


def test_secret_manager_references_are_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    from google.cloud import secretmanager

    from blocks.register import secret_value

    class FakeSecrets:
        def access_secret_version(self, name: str):
            assert isinstance(name, str)
            self.name = name
            return secretmanager.AccessSecretVersionResponse(payload=secretmanager.SecretPayload(data=b"https://hooks.example/x"))

    fake = FakeSecrets()
    monkeypatch.setattr(secretmanager, "SecretManagerServiceClient", lambda: fake)
    assert secret_value("sm://projects/studio/secrets/alerts-webhook") == "https://hooks.example/x"
    assert fake.name == "projects/studio/secrets/alerts-webhook/versions/latest"
    assert secret_value("https://plain") == "https://plain"
