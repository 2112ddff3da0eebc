"""The load's row counts: Beam counters in namespace ``ga_batch`` that the readers increment (rows
read, loaded, rejected, and ``rejected.<kind>`` for each rejection kind), and the counts a finished
job reports from them, whichever runner ran it (the in-process runner's result, Dataflow's job
metrics)."""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from apache_beam.metrics import Metrics

NAMESPACE = "ga_batch"
ROWS_READ = "rows_read"
ROWS_LOADED = "rows_loaded"
ROWS_REJECTED = "rows_rejected"
REJECTED_PREFIX = "rejected."  # rejected.<kind>: rows rejected for that kind of reason


@functools.cache
def counter(name: str) -> Any:
    # a counter object resolves the running step's metrics container on each inc
    return Metrics.counter(NAMESPACE, name)


def count(name: str, rows: int = 1) -> None:
    if rows:
        counter(name).inc(rows)


def count_rejected(kind: str, rows: int = 1) -> None:
    count(ROWS_REJECTED, rows)
    count(REJECTED_PREFIX + kind, rows)


@dataclass(frozen=True)
class RowCounts:
    """A finished load's row counts; ``rejection_reasons``: rejection kind -> rows."""

    rows_read: int
    rows_loaded: int
    rows_rejected: int
    rejection_reasons: dict[str, int] = field(default_factory=dict)


def row_counts(totals: Mapping[str, int]) -> RowCounts:
    """The counts from the load's counter totals by name (a counter never incremented is not
    reported: it is zero)."""
    return RowCounts(
        rows_read=totals.get(ROWS_READ, 0),
        rows_loaded=totals.get(ROWS_LOADED, 0),
        rows_rejected=totals.get(ROWS_REJECTED, 0),
        rejection_reasons={name.removeprefix(REJECTED_PREFIX): rows for name, rows in sorted(totals.items())
                           if name.startswith(REJECTED_PREFIX) and rows},
    )
