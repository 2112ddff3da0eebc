"""The main job, on the embedded defaults: simulate a few weeks of two games, load the studio's
operational tables into a throwaway PostgreSQL server, stream the events through the Cloud Function
(served by functions-framework) into the local bronze landing area, then run the
`game-analytics-pipeline` flow (Beam batch loads, dbt build and dbt test on DuckDB) against a local
Prefect server, and print the KPIs from gold next to the ground truth.

    python3 run.py pipeline [--seed 7] [--days 35] [--players-per-game 300]
"""
from __future__ import annotations

import argparse
import sys
import os
import shutil
import time
from pathlib import Path

from deployments.local.postgres import postgres_server
from deployments.local.pubsub import local_streaming_stack, wait_for_delivery
from deployments.local.pubsub_emulator import emulator_unavailable_reason
from deployments.local.services import flush_prefect_telemetry, function_server, prefect_server
from common.settings import PlatformSettings
from simulator import Simulation, SimulationConfig, simulate
from simulator.deliver import post_to_function, publish_all
from simulator.operational_db import load_operational_tables

PREFECT_PORT = 4200


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = SimulationConfig()
    p = argparse.ArgumentParser(prog="run.py pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--days", type=int, default=defaults.days)
    p.add_argument("--players-per-game", type=int, default=defaults.players_per_game)
    p.add_argument("--shared-ids", action="store_true", default=defaults.shared_ids,
                   help="one account system across the games: player ids, skus and order numbers repeat per game")
    return p.parse_args(argv)


def reset_run_data(settings: PlatformSettings) -> None:
    """Each main-job run starts from an empty landing area and warehouse; Prefect's history is kept."""
    for path in (settings.landing_dir, settings.exports_dir, settings.truth_dir):
        shutil.rmtree(path, ignore_errors=True)
    settings.warehouse_path.unlink(missing_ok=True)


def stream(sim: Simulation, settings: PlatformSettings) -> None:
    """Every message through the real streaming path: published to the Pub/Sub emulator, pushed to
    the function. Without the emulator, Pub/Sub push requests are POSTed to the function directly."""
    t0 = time.monotonic()
    reason = emulator_unavailable_reason()
    if reason is None:
        with local_streaming_stack(settings.data_dir) as stack:
            ids = publish_all(sim.messages, stack.project, stack.topic, emulator_host=stack.emulator_host)
            report = wait_for_delivery(stack, ids.values(), timeout_s=900)
        if not report.complete:
            raise RuntimeError(f"{len(report.missing)} message(s) not delivered, {report.dead_letters} dead-lettered; "
                               f"see {settings.data_dir / 'logs'}")
        print(f"Published them to the Pub/Sub emulator; pushed to the Cloud Function in {time.monotonic() - t0:.1f} s")
        return
    print(f"Pub/Sub emulator unavailable ({reason}); POSTing Pub/Sub push requests to the function instead")
    with function_server(settings.data_dir) as function_url:
        post_to_function(sim.messages, function_url)
    print(f"Streamed them through the Cloud Function at {function_url} in {time.monotonic() - t0:.1f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = PlatformSettings()
    reset_run_data(settings)
    t0 = time.monotonic()
    sim = simulate(SimulationConfig(seed=args.seed, days=args.days, players_per_game=args.players_per_game,
                                    shared_ids=args.shared_ids))
    sim.write_exports(settings.exports_dir)
    sim.write_truth(settings.truth_dir)
    events = sum(1 for _ in sim.valid_events)
    print(f"Simulated {len(sim.messages)} Pub/Sub messages ({events} valid events, "
          f"{len(sim.invalid_events)} invalid on purpose) in {time.monotonic() - t0:.1f} s")

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.pipeline import game_analytics_pipeline
    from deployments.local.report import MARTS, kpi_report, mart_mismatches

    with postgres_server() as dsn, prefect_server(settings.data_dir / "prefect", port=PREFECT_PORT) as api_url:
        counts = load_operational_tables(dsn, sim)
        # the batch loads read players and store items from the operational database
        os.environ["GA_POSTGRES_DSN"] = dsn
        print(f"Operational database (PostgreSQL): {dsn}, loaded {counts}")
        print(f"Prefect server: {api_url.removesuffix('/api')}")
        stream(sim, settings)
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            game_analytics_pipeline(docs=True)
            flush_prefect_telemetry()
    print()
    print(kpi_report(settings))
    # a mart that differs from the ground truth is a failed run, not a report to skim
    wrong = [mart for mart in MARTS if mart_mismatches(settings, mart)[2]]
    if wrong:
        print(f"FAILED: {', '.join(wrong)} differ from the ground truth", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
