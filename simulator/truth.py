"""Ground truth of every KPI, computed straight from the generated events (never from a warehouse).

Definitions (``compute_truth`` applies them itself, so it gives the same answer on the delivered
stream with or without its duplicates):

* An event counts only when it is valid, once per ``event_id`` (repeats of an ``event_id`` are
  dropped), and its player is not a test account (``is_test_account`` of the player, matched on
  ``game_id`` and ``player_id``). Dates are the UTC dates of ``event_timestamp``. Everything is
  per ``game_id``. Money is ``Decimal`` built from the JSON text, never binary floats; rounding is
  half away from zero (``ROUND_HALF_UP``).

``daily_kpis``: one row per (activity_date, game_id) with dau > 0.

* ``dau``: distinct players with any event that day.
* ``new_players``: players whose first event ever in that game is that day (their cohort date).
* ``mau``: distinct players with any event in the 30 days ending that day (day-29 .. day).
* ``sessions``: distinct ``session_id`` of that day's ``session_start`` events.
* ``avg_session_length_s``: mean ``params.duration_s`` of that day's ``session_end`` events,
  rounded to 2 decimals; None when there is none.
* ``revenue_usd``: purchases counted once per ``transaction_id`` (the first by event_timestamp,
  then event_id, gives the day and the amount): ``price * quantity`` (quantity defaults to 1)
  converted with that day's FX rate of the currency, or the latest earlier rate when that day has
  none; USD is 1. Summed per day, then rounded to 2 decimals.
* ``payers``: distinct players with a counted purchase that day.
* ``ad_revenue_usd``: sum of ``params.revenue_usd`` of that day's ``ad_impression`` events,
  rounded to 2 decimals.
* ``arpdau``: round((revenue_usd + ad_revenue_usd) / dau, 4), from the two rounded sums.
* ``arppu``: round(revenue_usd / payers, 4); None when payers = 0.

``retention``: one row per (cohort_date, game_id).

* ``cohort_size``: players whose cohort date it is.
* ``retained_d1``, ``retained_d7``, ``retained_d30``: cohort players with any event exactly 1, 7,
  30 days after the cohort date; ``retention_dN`` = round(retained_dN / cohort_size, 4). When
  cohort_date + N is after the last activity date of the whole data set (all games), retained_dN
  and retention_dN are None: not yet observable.

``level_funnel``: one row per (game_id, level) seen in any level event.

* ``players_started`` / ``players_completed``: distinct players with a ``level_start`` /
  ``level_complete`` of that level.
* ``attempts`` / ``fails``: number of ``level_start`` / ``level_fail`` events of that level.
* ``completion_rate``: round(players_completed / players_started, 4); None when nobody started.

Each table is written as CSV in the truth folder (``daily_kpis.csv``, ``retention.csv``,
``level_funnel.csv``); None is an empty cell.
"""
from __future__ import annotations

import bisect
import csv
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from simulator.contract import (
    AD_IMPRESSION,
    LEVEL_COMPLETE,
    LEVEL_FAIL,
    LEVEL_START,
    PURCHASE,
    SESSION_END,
    SESSION_START,
)
from simulator.timefmt import parse_timestamp

USD = "USD"
MAU_WINDOW_DAYS = 30
RETENTION_DAYS: tuple[int, ...] = (1, 7, 30)
DAILY_KPI_COLUMNS: tuple[str, ...] = (
    "activity_date", "game_id", "dau", "new_players", "mau", "sessions", "avg_session_length_s",
    "revenue_usd", "payers", "ad_revenue_usd", "arpdau", "arppu",
)
RETENTION_COLUMNS: tuple[str, ...] = (
    "cohort_date", "game_id", "cohort_size", "retained_d1", "retained_d7", "retained_d30",
    "retention_d1", "retention_d7", "retention_d30",
)
LEVEL_FUNNEL_COLUMNS: tuple[str, ...] = (
    "game_id", "level", "players_started", "players_completed", "attempts", "fails", "completion_rate",
)
# each ground-truth table (GroundTruth's field, its CSV file's name) with its columns, in the order of
# the gold mart's dbt contract that the tests hold it to
TRUTH_COLUMNS: dict[str, tuple[str, ...]] = {
    "daily_kpis": DAILY_KPI_COLUMNS, "retention": RETENTION_COLUMNS, "level_funnel": LEVEL_FUNNEL_COLUMNS,
}


@dataclass(frozen=True)
class GroundTruth:
    daily_kpis: list[dict]
    retention: list[dict]
    level_funnel: list[dict]

    def write(self, truth_dir: Path) -> None:
        truth_dir.mkdir(parents=True, exist_ok=True)
        for name, columns in TRUTH_COLUMNS.items():
            write_csv(truth_dir / f"{name}.csv", columns, getattr(self, name))


@dataclass(frozen=True)
class Counted:
    """One event that counts."""

    event_id: str
    event_name: str
    game_id: str
    player_id: str
    session_id: str
    moment: datetime  # UTC
    day: date  # UTC date
    params: dict


def cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict], fmt: Callable[[object], str] = cell) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([fmt(row[column]) for column in columns])


def decimal(value: object) -> Decimal:
    """An exact Decimal from a JSON number (already a Decimal, an int, or a float's shortest text)."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def round_half_up(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)


def ratio(numerator: Decimal | int, denominator: Decimal | int, places: int = 4) -> Decimal | None:
    if not denominator:
        return None
    return round_half_up(Decimal(numerator) / Decimal(denominator), places)


def is_true(value: object) -> bool:
    return value is True or str(value).strip().lower() == "true"


def as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def counted_events(valid_events: Iterable[dict], players: list[dict]) -> list[Counted]:
    """Valid events, once per event_id, without the test accounts' events."""
    test_accounts = {(p["game_id"], p["player_id"]) for p in players if is_true(p["is_test_account"])}
    seen: set[str] = set()
    counted: list[Counted] = []
    for event in valid_events:
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        if (event["game_id"], event["player_id"]) in test_accounts:
            continue
        moment = parse_timestamp(event["event_timestamp"])
        counted.append(
            Counted(
                event_id=event["event_id"],
                event_name=event["event_name"],
                game_id=event["game_id"],
                player_id=event["player_id"],
                session_id=event["session_id"],
                moment=moment,
                day=moment.date(),
                params=event.get("params") or {},
            )
        )
    return counted


class FxTable:
    """USD per unit of a currency on a day: that day's rate or the latest earlier one."""

    def __init__(self, rows: Iterable[dict]) -> None:
        by_currency: dict[str, list[tuple[date, Decimal]]] = defaultdict(list)
        for row in rows:
            by_currency[row["currency"]].append((as_date(row["date"]), decimal(row["usd_per_unit"])))
        self._dates = {c: [d for d, _ in sorted(pairs)] for c, pairs in by_currency.items()}
        self._rates = {c: [r for _, r in sorted(pairs)] for c, pairs in by_currency.items()}

    def usd_per_unit(self, currency: str, day: date) -> Decimal:
        if currency == USD:
            return Decimal(1)
        index = bisect.bisect_right(self._dates.get(currency, []), day) - 1
        if index < 0:
            raise LookupError(f"no FX rate for {currency} on or before {day}")
        return self._rates[currency][index]


def first_purchases(events: list[Counted]) -> list[Counted]:
    """One purchase per (game_id, transaction_id): the first by event_timestamp, then event_id."""
    first: dict[tuple[str, str], Counted] = {}
    for event in events:
        if event.event_name != PURCHASE:
            continue
        key = (event.game_id, event.params["transaction_id"])
        kept = first.get(key)
        if kept is None or (event.moment, event.event_id) < (kept.moment, kept.event_id):
            first[key] = event
    return list(first.values())


def purchase_usd(event: Counted, fx: FxTable) -> Decimal:
    params = event.params
    amount = decimal(params["price"]) * decimal(params.get("quantity", 1))
    return amount * fx.usd_per_unit(params["currency"], event.day)


def cohort_dates(events: list[Counted]) -> dict[tuple[str, str], date]:
    """(game_id, player_id) -> UTC date of the player's first event in that game."""
    first: dict[tuple[str, str], date] = {}
    for event in events:
        key = (event.game_id, event.player_id)
        if key not in first or event.day < first[key]:
            first[key] = event.day
    return first


def daily_kpis(events: list[Counted], fx: FxTable) -> list[dict]:
    active: dict[tuple[str, date], set[str]] = defaultdict(set)
    sessions: dict[tuple[str, date], set[str]] = defaultdict(set)
    durations: dict[tuple[str, date], list[Decimal]] = defaultdict(list)
    ad_revenue: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
    for event in events:
        key = (event.game_id, event.day)
        active[key].add(event.player_id)
        if event.event_name == SESSION_START:
            sessions[key].add(event.session_id)
        elif event.event_name == SESSION_END:
            durations[key].append(decimal(event.params["duration_s"]))
        elif event.event_name == AD_IMPRESSION:
            ad_revenue[key] += decimal(event.params["revenue_usd"])
    revenue: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
    payers: dict[tuple[str, date], set[str]] = defaultdict(set)
    for purchase in first_purchases(events):
        key = (purchase.game_id, purchase.day)
        revenue[key] += purchase_usd(purchase, fx)
        payers[key].add(purchase.player_id)
    new_players: dict[tuple[str, date], int] = defaultdict(int)
    for (game_id, _), day in cohort_dates(events).items():
        new_players[(game_id, day)] += 1
    rows: list[dict] = []
    for game_id, day in sorted(active, key=lambda key: (key[1], key[0])):
        key = (game_id, day)
        dau = len(active[key])
        day_revenue = round_half_up(revenue[key], 2)
        day_ads = round_half_up(ad_revenue[key], 2)
        window = (active.get((game_id, day - timedelta(days=back)), set()) for back in range(MAU_WINDOW_DAYS))
        rows.append(
            {
                "activity_date": day,
                "game_id": game_id,
                "dau": dau,
                "new_players": new_players[key],
                "mau": len(set().union(*window)),
                "sessions": len(sessions[key]),
                "avg_session_length_s": ratio(sum(durations[key], Decimal(0)), len(durations[key]), 2),
                "revenue_usd": day_revenue,
                "payers": len(payers[key]),
                "ad_revenue_usd": day_ads,
                "arpdau": ratio(day_revenue + day_ads, dau),
                "arppu": ratio(day_revenue, len(payers[key])),
            }
        )
    return rows


def retention(events: list[Counted]) -> list[dict]:
    if not events:
        return []
    last_day = max(event.day for event in events)
    active_days: dict[tuple[str, str], set[date]] = defaultdict(set)
    for event in events:
        active_days[(event.game_id, event.player_id)].add(event.day)
    cohorts: dict[tuple[date, str], list[str]] = defaultdict(list)
    for (game_id, player_id), day in cohort_dates(events).items():
        cohorts[(day, game_id)].append(player_id)
    rows: list[dict] = []
    for cohort_day, game_id in sorted(cohorts):
        members = cohorts[(cohort_day, game_id)]
        row: dict = {"cohort_date": cohort_day, "game_id": game_id, "cohort_size": len(members)}
        for n in RETENTION_DAYS:
            target = cohort_day + timedelta(days=n)
            retained = None
            if target <= last_day:
                retained = sum(1 for player in members if target in active_days[(game_id, player)])
            row[f"retained_d{n}"] = retained
        for n in RETENTION_DAYS:
            retained = row[f"retained_d{n}"]
            row[f"retention_d{n}"] = None if retained is None else ratio(retained, len(members))
        rows.append(row)
    return rows


def level_funnel(events: list[Counted]) -> list[dict]:
    started: dict[tuple[str, int], set[str]] = defaultdict(set)
    completed: dict[tuple[str, int], set[str]] = defaultdict(set)
    attempts: dict[tuple[str, int], int] = defaultdict(int)
    fails: dict[tuple[str, int], int] = defaultdict(int)
    levels: set[tuple[str, int]] = set()
    for event in events:
        if event.event_name not in (LEVEL_START, LEVEL_COMPLETE, LEVEL_FAIL):
            continue
        key = (event.game_id, int(event.params["level"]))
        levels.add(key)
        if event.event_name == LEVEL_START:
            started[key].add(event.player_id)
            attempts[key] += 1
        elif event.event_name == LEVEL_COMPLETE:
            completed[key].add(event.player_id)
        else:
            fails[key] += 1
    return [
        {
            "game_id": game_id,
            "level": level,
            "players_started": len(started[(game_id, level)]),
            "players_completed": len(completed[(game_id, level)]),
            "attempts": attempts[(game_id, level)],
            "fails": fails[(game_id, level)],
            "completion_rate": ratio(len(completed[(game_id, level)]), len(started[(game_id, level)])),
        }
        for game_id, level in sorted(levels)
    ]


def compute_truth(valid_events: Iterable[dict], players: list[dict], fx_rates: list[dict]) -> GroundTruth:
    """Every KPI by the definitions above."""
    events = counted_events(valid_events, players)
    return GroundTruth(
        daily_kpis=daily_kpis(events, FxTable(fx_rates)),
        retention=retention(events),
        level_funnel=level_funnel(events),
    )
