from __future__ import annotations

import json

import pytest
from prefect.blocks.core import Block
from prefect.blocks.notifications import SlackWebhook

from blocks.register import ALERTS, register
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


def test_webhook_urls_are_stored_only_in_secret_fields(prefect_api: str) -> None:
    from prefect.client.orchestration import get_client

    url = "https://hooks.example/services/T0/B0/very-secret"
    register({"GA_ALERT_WEBHOOK_URL": url, "GA_SLACK_WEBHOOK_URL": url})
    with get_client(sync_client=True) as client:
        for slug in ("custom-webhook", "slack-webhook"):
            document = client.read_block_document_by_name(ALERTS, slug, include_secrets=False)
            assert url not in json.dumps(document.data), slug  # what the API shows without secrets
            assert url in json.dumps(client.read_block_document_by_name(ALERTS, slug, include_secrets=True).data)


def test_webhook_urls_are_read_from_secret_manager_with_gcp_secret(monkeypatch: pytest.MonkeyPatch, prefect_api: str) -> None:
    import google.auth
    import prefect_gcp.credentials
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    class FakeSecrets:  # Secret Manager at its API boundary, with its real request and response types
        requests: list[secretmanager.AccessSecretVersionRequest] = []

        def __init__(self, credentials=None, **kwargs) -> None:
            assert credentials is not None

        def access_secret_version(self, request: secretmanager.AccessSecretVersionRequest):
            assert isinstance(request, secretmanager.AccessSecretVersionRequest)
            self.requests.append(request)
            return secretmanager.AccessSecretVersionResponse(payload=secretmanager.SecretPayload(data=b"http://127.0.0.1:1/hook\n"))

    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "studio"))
    monkeypatch.setattr(prefect_gcp.credentials, "SecretManagerServiceClient", FakeSecrets)
    saved = register({"GA_ALERT_WEBHOOK_SECRET": "alerts-webhook", "GA_GCP_PROJECT": "studio"})
    assert saved == ["custom-webhook/game-analytics-alerts", "gcp-credentials/game-analytics"]
    assert [r.name for r in FakeSecrets.requests] == ["projects/studio/secrets/alerts-webhook/versions/latest"]
    block = Block.load("custom-webhook/game-analytics-alerts")
    assert block.secrets.get_secret_value() == {"webhook_url": "http://127.0.0.1:1/hook"}
