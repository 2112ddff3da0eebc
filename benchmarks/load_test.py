"""Load test of the streaming path, reconciled exactly.

    .venv/bin/python benchmarks/load_test.py [--rate 10000] [--duration 300] [--workers 3] [--threads 8]

The Pub/Sub emulator pushes to the function served by functions-framework (``--workers`` gunicorn
workers, as production runs several instances), which writes the local bronze. A publisher paces
messages of 1 to 500 events (uniform) at ``--rate`` events/s for ``--duration`` seconds; 1% of the
events are invalid (an unknown platform) and 2% of the messages (only valid events) are published a
second time, as a client retrying its publish would. Then it waits for every message, compacts
the landing area, builds silver with dbt and reconciles: every valid event once in silver, every
invalid one once in the rejected table, nothing dead-lettered.

Prints the throughput achieved (events landed per second while publishing, and until the last one
landed), p50/p99 push latency (publish to ingest time of each message), peak memory of each worker,
landing files written and after compaction, the reconciliation counts, and the CPU seconds of the
emulator, the workers and the publisher (where the time goes).
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from deployments.local.pubsub import local_streaming_stack, read_dead_letters, wait_for_delivery  # noqa: E402
from ingestion.streaming import compaction  # noqa: E402
from ingestion.bronze import compact_local_bronze, ensure_local_bronze  # noqa: E402
from common.settings import OrchestrationSettings  # noqa: E402
from simulator import SimulationConfig, simulate  # noqa: E402
from simulator.deliver import publisher_client  # noqa: E402
from simulator.messages import encode  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Published:
    ids: dict[str, datetime] = field(default_factory=dict)  # server message id -> publish time (client)
    valid: set[str] = field(default_factory=set)  # event ids
    invalid: set[tuple[str, int]] = field(default_factory=set)  # (server message id, event index)
    events: int = 0
    resent: int = 0
    seconds: float = 0.0


def templates() -> list[dict]:
    """Valid events of every kind from a small simulation, re-dated to now."""
    config = replace(SimulationConfig(), days=2, players_per_game=20, duplicate_rate=0, invalid_rate=0, malformed_rate=0)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [dict(orjson.loads(encode(e)), event_timestamp=now) for e in simulate(config).valid_events[:2000]]


def message(pool: list[dict], size: int, rng: random.Random) -> tuple[bytes, list[str], list[int]]:
    """A batch of ``size`` events: (data, valid event ids, indexes of the invalid ones)."""
    events, valid, invalid = [], [], []
    for i in range(size):
        e = dict(rng.choice(pool), event_id=str(uuid.uuid4()))
        if rng.random() < 0.01:
            e["platform"] = "switch"
            invalid.append(i)
        else:
            valid.append(e["event_id"])
        events.append(e)
    return orjson.dumps({"events": events}), valid, invalid


def publish(project: str, topic: str, host: str, rate: float, duration: float, seed: int = 7) -> Published:
    """Pace messages at ``rate`` events/s; publish futures are resolved in a side thread."""
    rng = random.Random(seed)
    pool = templates()
    out = Published()
    publisher = publisher_client(host)
    topic_path = publisher.topic_path(project, topic)
    lock = threading.Lock()

    def record(future, valid: list[str], invalid: list[int], sent: datetime) -> None:
        server_id = future.result(timeout=120)
        with lock:
            out.ids[server_id] = sent
            out.invalid.update((server_id, i) for i in invalid)

    start = time.monotonic()
    try:
        while (elapsed := time.monotonic() - start) < duration:
            if out.events > rate * elapsed:
                time.sleep(0.002)
                continue
            data, valid, invalid = message(pool, rng.randint(1, 500), rng)
            copies = 2 if not invalid and rng.random() < 0.02 else 1
            for _ in range(copies):
                future = publisher.publish(topic_path, data, game_id="load")
                future.add_done_callback(lambda f, v=valid, i=invalid, t=datetime.now(UTC): record(f, v, i, t))
            out.valid.update(valid)
            out.events += (len(valid) + len(invalid)) * copies
            out.resent += copies - 1
        out.seconds = time.monotonic() - start
    finally:
        publisher.stop()  # flushes, and waits for every future
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
        except OSError:
            continue
    return total


def processes_with(marker: bytes) -> dict[int, int]:
    """pid -> parent pid of the processes whose environment holds ``marker``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    return found


def started_with(marker: bytes) -> list[int]:
    """The processes whose command line mentions ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def descendants(root: int) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == root:
                    yield int(entry.name)
                    yield from descendants(int(entry.name))
            except OSError:
                continue


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values or [0.0])[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--duration", type=float, default=300)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="load-test-"))
    settings = OrchestrationSettings(data_dir=data_dir)
    env = {"WORKERS": str(args.workers), "THREADS": str(args.threads)}
    print(f"load test: {args.rate:.0f} events/s for {args.duration:.0f} s, {args.workers} workers x {args.threads} threads, "
          f"data in {data_dir}", flush=True)

    with local_streaming_stack(data_dir, function_env=env) as stream:
        function = processes_with(f"GA_LANDING_DIR={settings.landing_dir}".encode())
        workers = [pid for pid, parent in function.items() if parent in function]
        emulator = [pid for pid in started_with(str(data_dir).encode()) if pid not in function]
        emulator += [child for pid in emulator for child in descendants(pid)]
        cpu0 = (cpu_seconds(emulator), cpu_seconds(workers), cpu_seconds([os.getpid()]))
        started = time.monotonic()
        sent = publish(stream.project, stream.topic, stream.emulator_host, args.rate, args.duration)
        report = wait_for_delivery(stream, sent.ids, timeout_s=max(300.0, args.duration * 2))
        drained = time.monotonic() - started
        cpu1 = (cpu_seconds(emulator), cpu_seconds(workers), cpu_seconds([os.getpid()]))
        dead = read_dead_letters(stream.emulator_host, stream.dead_letter_subscription_path)
        peaks = {pid: peak_rss_mb(pid) for pid in workers}

    landing_dir = settings.landing_dir
    tables = ("game_events", "game_events_rejected")
    written = sum(len(list((landing_dir / t).rglob("*.parquet"))) for t in tables)
    compact_local_bronze(landing_dir)
    after = sum(len(compaction.snapshot(landing_dir / t)) for t in tables)

    latencies = [r[0] for r in duckdb.sql(
        f"select epoch(min(ingested_at) - min(publish_time)) from (select message_id, ingested_at, publish_time from "
        f"{compaction.scan_sql(landing_dir / 'game_events')} union all select message_id, ingested_at, publish_time from "
        f"{compaction.scan_sql(landing_dir / 'game_events_rejected')}) group by message_id").fetchall()]

    ensure_local_bronze(landing_dir)
    dbt_env = dict(os.environ, GA_DATA_DIR=str(data_dir), GA_TARGET="local")
    subprocess.run([str(Path(sys.executable).with_name("dbt")), "run", "--select", "stg_telemetry__game_events",
                    "stg_telemetry__game_events_rejected", "--project-dir", "dbt", "--profiles-dir", "dbt", "--target", "local",
                    "--target-path", str(data_dir / "dbt-target")], cwd=REPO, env=dbt_env, check=True, capture_output=True)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        silver = con.sql("select event_id, count(*) over (partition by event_id) from silver.stg_telemetry__game_events").fetchall()
        rejected = con.sql("select message_id, event_index from silver.stg_telemetry__game_events_rejected").fetchall()
    silver_ids = {r[0] for r in silver}
    exact = (silver_ids == sent.valid and len(silver) == len(sent.valid) and set(rejected) == sent.invalid
             and len(rejected) == len(sent.invalid) and not dead and report.complete)

    landed_events = duckdb.sql(f"select count(*) from {compaction.scan_sql(landing_dir / 'game_events')}").fetchall()[0][0]
    print(f"published: {len(sent.ids)} messages ({sent.resent} published twice), {sent.events} events in {sent.seconds:.1f} s: "
          f"{sent.events / sent.seconds:.0f} events/s offered")
    print(f"landed: {landed_events} valid rows; every message landed {drained:.1f} s after the start: "
          f"{sent.events / drained:.0f} events/s sustained end to end")
    print(f"push latency (publish -> ingest): p50 {percentile(latencies, 50):.2f} s, p99 {percentile(latencies, 99):.2f} s")
    print("peak memory per worker: " + ", ".join(f"{p:.0f} MB" for p in sorted(peaks.values())))
    print(f"landing files: {written} written, {after} after compaction")
    print(f"reconciliation: silver {len(silver)} events for {len(sent.valid)} valid published "
          f"({len(silver_ids - sent.valid)} unknown, {len(sent.valid - silver_ids)} missing); rejected {len(rejected)} for "
          f"{len(sent.invalid)} invalid published; {len(dead)} dead-lettered; {len(report.missing)} never landed: "
          f"{'EXACT' if exact else 'NOT EXACT'}")
    print(f"CPU seconds while publishing and draining ({drained:.0f} s wall, 2 cores): emulator {cpu1[0] - cpu0[0]:.0f}, "
          f"function workers {cpu1[1] - cpu0[1]:.0f}, publisher {cpu1[2] - cpu0[2]:.0f}")
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
