"""Batch load throughput: players from PostgreSQL into local bronze, through the Beam pipeline
(parallel key-range reads, vectorised typing and validation, staged Parquet, promotion) against a
baseline in the same run that copies the same rows with no Beam and no validation
(``COPY ... TO STDOUT`` in CSV → pyarrow typed CSV reader → Parquet).

    .venv/bin/python benchmarks/batch_benchmark.py --rows 1000000 [--ranges 4]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.csv as pa_csv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from deployments.local.postgres import postgres_server  # noqa: E402
from ingestion.batch.launch import run_local  # noqa: E402
from ingestion.batch.sources import PLAYERS, TIMESTAMP  # noqa: E402
from common.settings import BatchSettings  # noqa: E402
from simulator.operational_db import create_tables  # noqa: E402

FILL = """
insert into players (player_id, game_id, created_at, country, acquisition_channel, is_test_account, updated_at)
select 'p_' || substr(md5(i::text), 1, 16),
       (array['tiny-tycoon', 'dragon-idle'])[1 + i %% 2],
       timestamptz '2024-01-01 00:00:00+00' + (i %% 86400) * interval '37 seconds',
       (array['DE', 'FR', 'US', 'BR', 'JP', null])[1 + i %% 6],
       (array['organic', 'paid_social', 'cross_promo'])[1 + i %% 3],
       i %% 50 = 0,
       timestamptz '2024-02-01 00:00:00+00' + (i %% 3600) * interval '1 second'
from generate_series(1, %s) as i
"""


def fill(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn) as connection:
        create_tables(connection)
        connection.execute(FILL, (rows,))
        connection.execute("analyze players")


def baseline(dsn: str, out: Path) -> int:
    """The same rows to Parquet with the fastest plain path: one COPY, Arrow's CSV reader, Parquet."""
    names = list(PLAYERS.column_names)
    chunks: list[bytes] = []
    with psycopg.connect(dsn) as connection:
        connection.execute("set timezone = 'UTC'")
        with connection.cursor().copy(f"copy (select {', '.join(names)} from players) to stdout with (format csv)") as copy:
            for data in copy:
                chunks.append(bytes(data))
    table = pa_csv.read_csv(
        pa.py_buffer(b"".join(chunks)),
        read_options=pa_csv.ReadOptions(column_names=names),
        convert_options=pa_csv.ConvertOptions(
            column_types={c.name: (TIMESTAMP if c.type == TIMESTAMP else c.type) for c in PLAYERS.columns},
            true_values=["t"], false_values=["f"], strings_can_be_null=True,
        ),
    )
    pq.write_table(table, out, compression="zstd")
    return table.num_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ranges", type=int, default=4, help="parallel key ranges of the pipeline's read")
    args = parser.parse_args(argv)

    with postgres_server() as dsn, tempfile.TemporaryDirectory(prefix="ga-batch-bench-") as tmp:
        t0 = time.monotonic()
        fill(dsn, args.rows)
        print(f"filled {args.rows:,} players in {time.monotonic() - t0:.1f} s")

        t0 = time.monotonic()
        base_rows = baseline(dsn, Path(tmp) / "baseline.parquet")
        base_s = time.monotonic() - t0

        settings = BatchSettings(data_dir=Path(tmp) / "data", postgres_dsn=dsn, read_ranges=args.ranges)
        t0 = time.monotonic()
        result = run_local("players", date.today(), date.today(), settings)
        beam_s = time.monotonic() - t0

    assert base_rows == args.rows and result.rows_loaded == args.rows, (base_rows, result)
    base_rate, beam_rate = base_rows / base_s, result.rows_loaded / beam_s
    print(f"baseline  COPY -> pyarrow -> Parquet (no Beam):   {base_rows:>10,} rows {base_s:7.2f} s {base_rate:>12,.0f} rows/s")
    print(f"pipeline  Beam FnApiRunner, {args.ranges} key ranges, validated: {result.rows_loaded:>10,} rows "
          f"{beam_s:7.2f} s {beam_rate:>12,.0f} rows/s")
    print(f"ratio pipeline/baseline: {beam_rate / base_rate:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
