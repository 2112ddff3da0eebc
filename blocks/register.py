"""Register every Prefect block the flows need, idempotently (``overwrite=True``), against whichever
Prefect API is configured (Prefect Cloud or a self-hosted server):

    python -m blocks.register

Secrets come from the environment or from Google Secret Manager (a value ``sm://projects/P/secrets/S``
is read from there), never from the repository:

- GA_SLACK_WEBHOOK_URL  -> SlackWebhook      "slack-webhook/game-analytics-alerts"
- GA_ALERT_WEBHOOK_URL  -> Custom Webhook    "custom-webhook/game-analytics-alerts" (JSON body with
                           subject and body; for any HTTP receiver: Google Chat, Teams, PagerDuty...)
"""
from __future__ import annotations

import os
import sys
from typing import Callable

from prefect.blocks.core import Block
from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

ALERTS = "game-analytics-alerts"


def secret_value(value: str) -> str:
    """A literal value, or the latest version of a Secret Manager secret for ``sm://...``."""
    if not value.startswith("sm://"):
        return value
    from google.cloud import secretmanager

    name = value.removeprefix("sm://")
    name = name if "/versions/" in name else f"{name}/versions/latest"
    response = secretmanager.SecretManagerServiceClient().access_secret_version(name=name)
    return response.payload.data.decode("utf-8")


def slack_block(url: str) -> Block:
    return SlackWebhook(url=url)


def webhook_block(url: str) -> Block:
    return CustomWebhookNotificationBlock(
        name=ALERTS, url=url, json_data={"subject": "{{subject}}", "body": "{{body}}", "source": "{{name}}"}
    )


# environment variable -> (block builder, document name)
BLOCKS: dict[str, tuple[Callable[[str], Block], str]] = {
    "GA_SLACK_WEBHOOK_URL": (slack_block, ALERTS),
    "GA_ALERT_WEBHOOK_URL": (webhook_block, ALERTS),
}


def register(env: dict[str, str] | None = None) -> list[str]:
    """Save each block whose secret is configured; return their references ``<type-slug>/<name>``."""
    env = dict(os.environ if env is None else env)
    saved = []
    for variable, (build, name) in BLOCKS.items():
        if env.get(variable):
            block = build(secret_value(env[variable]))
            block.save(name, overwrite=True)
            saved.append(f"{block.get_block_type_slug()}/{name}")
    return saved


def main() -> int:
    saved = register()
    if not saved:
        print("No block configured: set " + " or ".join(BLOCKS) + " (see blocks/register.py).", file=sys.stderr)
        return 1
    for ref in saved:
        print(f"saved block {ref}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
