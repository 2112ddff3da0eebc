"""dbt's tables as Prefect assets: after a dbt command, every model, seed and snapshot it built
becomes an asset materialization event with its upstream assets (models, seeds and the bronze
sources it reads), keyed as prefect-dbt keys them (`duckdb://warehouse/gold/mart_daily_kpis`,
`bigquery://<project>/<dataset>/<table>`), so Prefect's Assets view shows the lineage bronze →
silver → gold and each table's last materialization.

dbt runs in the flow run's own dbt session (flows/dbt.py), not in prefect-dbt's runner; what this
module takes from prefect-dbt is its manifest reading (`ManifestParser`), its asset keys and
properties (`create_asset_for_node`) and its lineage walk (`get_upstream_assets_for_node`, through
ephemeral models)."""
from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect.context import AssetContext
from prefect.events import emit_event

# dbt statuses of a node that wrote its table
MATERIALIZED = frozenset({"success"})
MATERIALIZED_BY = "dbt"


def preload() -> threading.Thread:
    """Import prefect-dbt (it imports dbt, which is slow to import) in the background, while dbt builds
    in its own process, so that emitting the assets afterwards costs only the events."""
    def load() -> None:
        import prefect_dbt.core._artifacts  # noqa: F401

    thread = threading.Thread(target=load, name="prefect-dbt-import", daemon=True)
    thread.start()
    return thread


def node_results(target_path: Path) -> list[dict[str, Any]]:
    """The results dbt left in a target folder (run_results.json), none when it wrote none."""
    path = target_path / "run_results.json"
    return json.loads(path.read_text())["results"] if path.exists() else []


def finished_at(result: dict[str, Any]) -> datetime | None:
    timing = [t for t in result.get("timing") or [] if t.get("completed_at")]
    return datetime.fromisoformat(timing[-1]["completed_at"].replace("Z", "+00:00")) if timing else None


def dbt_asset_events(target_path: Path) -> list[dict[str, Any]]:
    """The asset materialization events for the nodes a dbt command in `target_path` built, from
    its manifest.json and run_results.json (each: resource, related, occurred)."""
    from prefect_dbt.core._artifacts import ASSET_NODE_TYPES, create_asset_for_node, get_upstream_assets_for_node
    from prefect_dbt.core._manifest import ManifestParser

    results = [r for r in node_results(target_path) if r.get("status") in MATERIALIZED]
    if not results:
        return []
    manifest = ManifestParser(target_path / "manifest.json")
    nodes, adapter = manifest.all_nodes, manifest.adapter_type or "dbt"
    events = []
    for result in results:
        node = nodes.get(result["unique_id"])
        if node is None or node.resource_type not in ASSET_NODE_TYPES or node.materialization == "ephemeral" \
                or not node.relation_name:
            continue
        upstream = get_upstream_assets_for_node(node, nodes, adapter)
        related = [AssetContext.asset_as_related(a) for a in upstream]
        related.append(AssetContext.related_materialized_by(MATERIALIZED_BY))
        events.append({
            "resource": AssetContext.asset_as_resource(create_asset_for_node(node, adapter)),
            "related": related,
            "occurred": finished_at(result),
            "payload": {"dbt_unique_id": node.unique_id, "materialized": node.materialization,
                        "rows_affected": (result.get("adapter_response") or {}).get("rows_affected")},
            "upstream": upstream,
        })
    return events


def materialize_dbt_assets(target_path: Path) -> list[str]:
    """Emit, related to the current flow and task run, one `prefect.asset.materialization.succeeded`
    event per table the dbt command in `target_path` built (and `prefect.asset.referenced` for the
    upstream assets, as Prefect's own materializing tasks do); return the materialized keys.
    A failure here is logged, never raised: the build's outcome stays the step's outcome."""
    from prefect.logging import get_logger

    try:
        events = dbt_asset_events(target_path)
    except Exception as error:  # noqa: BLE001 - the assets are a view of the build, not part of it
        get_logger("flows.assets").warning("no dbt asset events for %s: %r", target_path, error)
        return []
    referenced: dict[str, Any] = {}
    for event in events:
        for asset in event["upstream"]:
            referenced.setdefault(asset.key, asset)
    for asset in referenced.values():
        emit_event(event="prefect.asset.referenced", resource=AssetContext.asset_as_resource(asset))
    for event in events:
        emit_event(event="prefect.asset.materialization.succeeded", resource=event["resource"],
                   related=event["related"], occurred=event["occurred"], payload=event["payload"])
    return [e["resource"]["prefect.resource.id"] for e in events]


# the marts' freshness, as events the freshness automation (blocks/freshness.py) listens to
MART_FRESH = "ga.marts.fresh"
MART_STALE = "ga.marts.stale"


def mart_resource(target: str) -> dict[str, str]:
    return {"prefect.resource.id": f"ga.marts.{target}", "prefect.resource.name": f"gold KPI marts ({target})"}


def report_mart_freshness(newest_arrival: datetime | None, target: str, max_age_hours: float,
                          now: datetime | None = None) -> str:
    """Emit whether the marts just built are fresh: their newest event arrival (what reached bronze
    and was built into gold) no older than max_age_hours. Returns the event's name."""
    from datetime import timezone

    now = now or datetime.now(timezone.utc)
    if newest_arrival is not None and newest_arrival.tzinfo is None:
        newest_arrival = newest_arrival.replace(tzinfo=timezone.utc)
    age_s = None if newest_arrival is None else (now - newest_arrival).total_seconds()
    name = MART_FRESH if age_s is not None and age_s <= max_age_hours * 3600 else MART_STALE
    emit_event(event=name, resource=mart_resource(target),
               payload={"newest_arrival": newest_arrival.isoformat() if newest_arrival else None,
                        "age_seconds": age_s, "max_age_seconds": max_age_hours * 3600})
    return name
