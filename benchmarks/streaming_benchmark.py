"""Events per second through the streaming function, against a no-validation baseline.

    .venv/bin/python benchmarks/streaming_benchmark.py [--messages 40] [--rounds 5] [--http-messages 200]

One run prints, for messages of 500 events (the simulator's events, so every event name and its
params occur):

* handler: ``handle_message`` (contract validation, rows, one Parquet file per message) into the
  local sink;
* baseline: ``orjson.loads`` of the same data, the same columns built from the parsed dicts with no
  validation, written as the same Parquet file by the same landing-area writer;
* their ratio (paired: both alternate within each round, best round of each);
* HTTP: raw Pub/Sub push requests to the function served by functions-framework on loopback
  (4 client threads), which adds the framework's request parsing and base64.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ingestion.streaming import landing  # noqa: E402
from simulator import SimulationConfig, simulate  # noqa: E402
from simulator.messages import encode  # noqa: E402
from ingestion.streaming.handler import handle_message  # noqa: E402
from ingestion.streaming.rows import GAME_EVENTS, GAME_EVENTS_SCHEMA  # noqa: E402
from ingestion.streaming.sinks import LocalSink  # noqa: E402
from ingestion.streaming.sinks.local import landing_file_name  # noqa: E402

EVENTS_PER_MESSAGE = 500
PUBLISH = datetime(2026, 3, 1, tzinfo=UTC)
Message = tuple[str, bytes]


def messages(count: int) -> list[Message]:
    """``count`` messages of 500 valid events taken from a simulation."""
    config = replace(SimulationConfig(), days=30, players_per_game=120, duplicate_rate=0, invalid_rate=0, malformed_rate=0)
    events = [encode(e) for e in simulate(config).valid_events]
    needed = count * EVENTS_PER_MESSAGE
    if len(events) < needed:
        events = (events * (needed // len(events) + 1))
    out = []
    for n in range(count):
        chunk = events[n * EVENTS_PER_MESSAGE : (n + 1) * EVENTS_PER_MESSAGE]
        out.append((f"bench-{n}", b'{"events":[' + b",".join(chunk) + b"]}"))
    return out


def noop(_: bytes) -> None:
    pass


def through_handler(batch: Sequence[Message], landing_dir: Path) -> None:
    sink = LocalSink(landing_dir)
    for message_id, data in batch:
        handle_message(data, {"game_id": "g"}, message_id, PUBLISH, sink, emit=noop)


def _json_or_none(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def baseline_table(data: bytes, message_id: str, ingested_at: datetime) -> pa.Table:
    """The game_events rows of a message, parsed with orjson and not validated at all."""
    events = orjson.loads(data)["events"]
    n = len(events)
    columns = {
        "event_id": [e["event_id"] for e in events],
        "event_name": [e["event_name"] for e in events],
        "event_timestamp": [datetime.fromisoformat(e["event_timestamp"]) for e in events],
        "game_id": [e["game_id"] for e in events],
        "player_id": [e["player_id"] for e in events],
        "session_id": [e["session_id"] for e in events],
        "platform": [e["platform"] for e in events],
        "app_version": [e.get("app_version") for e in events],
        "country": [e.get("country") for e in events],
        "schema_version": [e.get("schema_version", 1) for e in events],
        "params": [_json_or_none(e.get("params")) for e in events],
        "payload": [orjson.dumps(e).decode() for e in events],
        "message_id": [message_id] * n,
        "publish_time": [PUBLISH] * n,
        "ingested_at": [ingested_at] * n,
    }
    return pa.Table.from_arrays([pa.array(columns[f.name], type=f.type) for f in GAME_EVENTS_SCHEMA], schema=GAME_EVENTS_SCHEMA)


def through_baseline(batch: Sequence[Message], landing_dir: Path) -> None:
    for message_id, data in batch:
        now = datetime.now(UTC)
        folder = landing_dir / GAME_EVENTS / f"{now:%Y-%m-%d}"
        landing.write_table(baseline_table(data, message_id, now), folder, landing_file_name(message_id))


def timed(run: Callable[[Sequence[Message], Path], None], batch: Sequence[Message], root: Path) -> float:
    target = root / uuid.uuid4().hex
    started = time.perf_counter()
    run(batch, target)
    return time.perf_counter() - started


def over_http(batch: Sequence[Message], data_dir: Path, threads: int = 4) -> float:
    import requests

    from deployments.local.services import function_server

    bodies = [
        json.dumps({"message": {"data": base64.b64encode(data).decode(), "messageId": mid, "publishTime": PUBLISH.isoformat()},
                    "subscription": "projects/p/subscriptions/bench"}).encode()
        for mid, data in batch
    ]
    with function_server(data_dir) as url, requests.Session() as session:
        endpoint = f"{url}/projects/p/topics/game-events"
        post = lambda body: session.post(endpoint, data=body, headers={"Content-Type": "application/json"}, timeout=60)  # noqa: E731
        post(bodies[0]).raise_for_status()  # warm-up
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            for response in pool.map(post, bodies):
                response.raise_for_status()
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=40, help="messages of 500 events per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--http-messages", type=int, default=200)
    args = p.parse_args(argv)

    batch = messages(max(args.messages, args.http_messages))
    rounds = batch[: args.messages]
    events = len(rounds) * EVENTS_PER_MESSAGE
    with tempfile.TemporaryDirectory(prefix="ga-bench-") as tmp:
        root = Path(tmp)
        timed(through_handler, rounds[:2], root)  # warm-up: imports, contract, first files
        timed(through_baseline, rounds[:2], root)
        handler_s, baseline_s = [], []
        for _ in range(args.rounds):
            handler_s.append(timed(through_handler, rounds, root))
            baseline_s.append(timed(through_baseline, rounds, root))
        http_s = over_http(batch[: args.http_messages], root / "http")
    handler = events / min(handler_s)
    baseline = events / min(baseline_s)
    http = args.http_messages * EVENTS_PER_MESSAGE / http_s
    print(f"messages of {EVENTS_PER_MESSAGE} events, {len(rounds)} per round, best of {args.rounds} rounds")
    print(f"  baseline (orjson parse, no validation, same Parquet writer): {baseline:>9,.0f} events/s")
    print(f"  handler  (contract validation + rows + local sink):          {handler:>9,.0f} events/s")
    print(f"  ratio handler / baseline:                                     {handler / baseline:>9.2f}x")
    print(f"  over HTTP (functions-framework, {args.http_messages} push requests, 4 threads):   {http:>9,.0f} events/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
