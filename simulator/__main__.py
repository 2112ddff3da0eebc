"""Command line: simulate, write exports, truth and messages, and optionally deliver the messages.

    python -m simulator --seed 7 --days 35 --players-per-game 300 --out DIR \
        [--post URL | --publish projects/P/topics/T]

Without ``--out`` the files go where the settings say (exports_dir, truth_dir, data_dir).
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from simulator.config import SimulationConfig
from simulator.deliver import post_to_function, publish
from simulator.simulation import simulate

_TOPIC = re.compile(r"^projects/([^/]+)/topics/([^/]+)$")
MESSAGES_FILE = "messages.jsonl"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = SimulationConfig()
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--start-date", type=date.fromisoformat, default=defaults.start_date)
    parser.add_argument("--days", type=int, default=defaults.days)
    parser.add_argument("--players-per-game", type=int, default=defaults.players_per_game)
    parser.add_argument("--games", default=",".join(defaults.games), help="comma-separated game ids")
    parser.add_argument("--shared-ids", action="store_true",
                        help="one account system and catalogue for all games: player ids, skus and order numbers repeat across games")
    parser.add_argument("--out", type=Path, default=None, help="folder for exports/, truth/ and messages.jsonl")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--post", metavar="URL", help="POST Pub/Sub push requests to a functions-framework server")
    target.add_argument("--publish", metavar="projects/P/topics/T", help="publish to Pub/Sub (or its emulator)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent POSTs with --post")
    args = parser.parse_args(argv)
    if args.publish and not _TOPIC.match(args.publish):
        parser.error("--publish must look like projects/P/topics/T")
    return args


def output_paths(out: Path | None) -> tuple[Path, Path, Path]:
    """(exports folder, truth folder, messages file)."""
    if out is not None:
        return out / "exports", out / "truth", out / MESSAGES_FILE
    from common.settings import PlatformSettings

    settings = PlatformSettings()
    return settings.exports_dir, settings.truth_dir, settings.data_dir / MESSAGES_FILE


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = SimulationConfig(
        seed=args.seed,
        start_date=args.start_date,
        days=args.days,
        players_per_game=args.players_per_game,
        games=tuple(game.strip() for game in args.games.split(",") if game.strip()),
        shared_ids=args.shared_ids,
    )
    simulation = simulate(config)
    exports_dir, truth_dir, messages_path = output_paths(args.out)
    simulation.write_exports(exports_dir)
    simulation.write_truth(truth_dir)
    simulation.write_messages(messages_path)
    print(
        f"{len(simulation.messages)} messages, {len(simulation.valid_events)} valid and "
        f"{len(simulation.invalid_events)} invalid events; exports in {exports_dir}, truth in {truth_dir}, "
        f"messages in {messages_path}"
    )
    if args.post:
        post_to_function(simulation.messages, args.post, workers=args.workers)
        print(f"posted {len(simulation.messages)} messages to {args.post}")
    if args.publish:
        project, topic = _TOPIC.match(args.publish).groups()  # type: ignore[union-attr]
        ids = publish(simulation.messages, project, topic)
        print(f"published {len(ids)} messages to {args.publish}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
