"""What each production deployment promises, as Prefect deployment SLAs (a Prefect Cloud feature:
a self-hosted server has no SLA API, and `prefect deploy` refuses an `sla:` key there, so the local
twins declare none). They are defined once, here, and applied to the deployments of a Cloud
workspace after `prefect deploy`:

    python -m blocks.slas

The data's own freshness (marts no older than GA_MART_MAX_AGE_HOURS) is an automation on the
events the flow reports (blocks/freshness.py), which works on either server.
"""
from __future__ import annotations

import sys
from datetime import timedelta

from prefect._experimental.sla.objects import FrequencySla, LatenessSla, SlaTypes, TimeToCompletionSla

FLOW = "game-analytics-pipeline"

SLAS: dict[str, list[SlaTypes]] = {
    "hourly": [
        TimeToCompletionSla(name="hourly run completes within 30 minutes", duration=1800, severity="high"),
        FrequencySla(name="an hourly run completes at least every 2 hours", stale_after=timedelta(hours=2),
                     severity="high"),
        LatenessSla(name="hourly run starts within 15 minutes", within=timedelta(minutes=15), severity="moderate"),
    ],
    "daily": [
        TimeToCompletionSla(name="daily run completes within 3 hours", duration=3 * 3600, severity="high"),
        FrequencySla(name="a daily run completes at least every 26 hours", stale_after=timedelta(hours=26),
                     severity="high"),
    ],
    "backfill": [
        TimeToCompletionSla(name="backfill completes within 12 hours", duration=12 * 3600, severity="moderate"),
    ],
}
FLOWS = {"hourly": FLOW, "daily": FLOW, "backfill": "game-analytics-backfill"}


def main() -> int:
    from prefect.client.base import ServerType
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        if client.server_type != ServerType.CLOUD:
            print("Deployment SLAs need Prefect Cloud; this API is a self-hosted server.", file=sys.stderr)
            return 1
        for deployment, slas in SLAS.items():
            found = client.read_deployment_by_name(f"{FLOWS[deployment]}/{deployment}")
            result = client.apply_slas_for_deployment(found.id, slas)
            print(f"{deployment}: created {result.created}, updated {result.updated}, deleted {result.deleted}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
