"""Register every Prefect block the flows need, idempotently (``overwrite=True``), against whichever
Prefect API is configured (Prefect Cloud or a self-hosted server):

    python -m blocks.register

Webhook URLs are secrets: they are read from the environment or from Google Secret Manager (through
prefect-gcp's ``GcpSecret``), never from the repository, and stored only in the blocks' secret
fields (``SlackWebhook.url`` is a SecretStr; the custom webhook's URL lives in its ``secrets``):

- GA_SLACK_WEBHOOK_URL, or GA_SLACK_WEBHOOK_SECRET (a Secret Manager secret name in GA_GCP_PROJECT)
                        -> SlackWebhook      "slack-webhook/game-analytics-alerts"
- GA_ALERT_WEBHOOK_URL, or GA_ALERT_WEBHOOK_SECRET
                        -> Custom Webhook    "custom-webhook/game-analytics-alerts" (JSON body with
                           subject and body; for any HTTP receiver: Google Chat, Teams, PagerDuty...)
- GA_GCP_PROJECT        -> GcpCredentials    "gcp-credentials/game-analytics", holding no key: the
                           flows use Application Default Credentials (Workload Identity on GKE).
                           Point the flows at it with GA_GCP_CREDENTIALS_BLOCK=game-analytics.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

from prefect.blocks.core import Block
from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

ALERTS = "game-analytics-alerts"
GCP_CREDENTIALS = "game-analytics"


def slack_block(url: str) -> Block:
    return SlackWebhook(url=url)


def webhook_block(url: str) -> Block:
    # the URL is a template filled from the secret field when a notification is sent
    return CustomWebhookNotificationBlock(
        name=ALERTS, url="{{webhook_url}}", secrets={"webhook_url": url},
        json_data={"subject": "{{subject}}", "body": "{{body}}", "source": "{{name}}"},
    )


# the URL's variable, the Secret Manager variable, the block builder, the block document name
BLOCKS: list[tuple[str, str, Callable[[str], Block], str]] = [
    ("GA_SLACK_WEBHOOK_URL", "GA_SLACK_WEBHOOK_SECRET", slack_block, ALERTS),
    ("GA_ALERT_WEBHOOK_URL", "GA_ALERT_WEBHOOK_SECRET", webhook_block, ALERTS),
]


def gcp_credentials(project: str | None) -> Any:
    """A GcpCredentials block with no key: Application Default Credentials."""
    from prefect_gcp import GcpCredentials

    return GcpCredentials(project=project)


def read_secret(name: str, env: dict[str, str]) -> str:
    """The latest version of a Secret Manager secret (``name`` or ``name/versions/N``), read with
    prefect-gcp's GcpSecret."""
    from prefect_gcp.secret_manager import GcpSecret

    secret_name, _, version = name.partition("/versions/")
    secret = GcpSecret(gcp_credentials=gcp_credentials(env.get("GA_GCP_PROJECT")), secret_name=secret_name,
                       secret_version=version or "latest")
    return secret.read_secret().decode("utf-8").strip()


def register(env: dict[str, str] | None = None) -> list[str]:
    """Save each block whose secret is configured; return their references ``<type-slug>/<name>``."""
    env = dict(os.environ if env is None else env)
    saved = []
    for url_variable, secret_variable, build, name in BLOCKS:
        url = env.get(url_variable) or (read_secret(env[secret_variable], env) if env.get(secret_variable) else None)
        if url:
            block = build(url)
            block.save(name, overwrite=True)
            saved.append(f"{block.get_block_type_slug()}/{name}")
    if env.get("GA_GCP_PROJECT"):
        block = gcp_credentials(env["GA_GCP_PROJECT"])
        block.save(GCP_CREDENTIALS, overwrite=True)
        saved.append(f"{block.get_block_type_slug()}/{GCP_CREDENTIALS}")
    return saved


def main() -> int:
    saved = register()
    if not saved:
        names = " or ".join(v for url, secret, *_ in BLOCKS for v in (url, secret))
        print(f"No block configured: set {names} (see blocks/register.py).", file=sys.stderr)
        return 1
    for ref in saved:
        print(f"saved block {ref}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
