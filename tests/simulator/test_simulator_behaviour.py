"""Believable play and consistent reference data, on the default configuration."""
from __future__ import annotations

import csv
from collections import Counter, defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from simulator import Simulation, SimulationConfig
from simulator.contract import EVENT_NAMES
from simulator.timefmt import parse_timestamp

DEFAULT = SimulationConfig()


def decimals(value: Decimal) -> int:
    return max(0, -value.as_tuple().exponent)  # type: ignore[operator]


def test_every_event_name_is_played(default_sim: Simulation) -> None:
    assert {e["event_name"] for e in default_sim.valid_events} == set(EVENT_NAMES)


def test_timestamps_carry_local_offsets_and_dates_shift_in_utc(default_sim: Simulation) -> None:
    offsets = Counter(e["event_timestamp"][23:] for e in default_sim.valid_events)
    assert {"Z", "+09:00", "-05:00", "+05:30", "-03:00"} <= set(offsets)
    shifted = [e for e in default_sim.valid_events if parse_timestamp(e["event_timestamp"]).date().isoformat() != e["event_timestamp"][:10]]
    assert len(shifted) > 0.05 * len(default_sim.valid_events)
    assert any(e["event_timestamp"].endswith("+09:00") and parse_timestamp(e["event_timestamp"]).date().isoformat() < e["event_timestamp"][:10] for e in shifted)


def test_some_sessions_cross_utc_midnight(default_sim: Simulation) -> None:
    days: dict[str, set[date]] = defaultdict(set)
    for e in default_sim.valid_events:
        days[e["session_id"]].add(parse_timestamp(e["event_timestamp"]).date())
    assert sum(1 for d in days.values() if len(d) > 1) >= 10


def test_sessions_and_levels_are_well_formed(default_sim: Simulation) -> None:
    by_session: dict[str, list[dict]] = defaultdict(list)
    for e in {e["event_id"]: e for e in default_sim.valid_events}.values():
        by_session[e["session_id"]].append(e)
    for events in by_session.values():
        events.sort(key=lambda e: parse_timestamp(e["event_timestamp"]))
        assert events[0]["event_name"] == "session_start"
        start = parse_timestamp(events[0]["event_timestamp"])
        open_level = None
        for e in events:
            if e["event_name"] == "level_start":
                assert open_level is None
                open_level = e["params"]["level"]
            elif e["event_name"] in ("level_complete", "level_fail"):
                assert e["params"]["level"] == open_level
                open_level = None
            elif e["event_name"] == "session_end":
                assert parse_timestamp(e["event_timestamp"]) - start == timedelta(seconds=float(e["params"]["duration_s"]))


def test_harder_levels_fail_more(default_sim: Simulation) -> None:
    rows = default_sim.truth.level_funnel
    def fail_share(low: int, high: int) -> float:
        picked = [r for r in rows if low <= r["level"] <= high]
        return sum(r["fails"] for r in picked) / sum(r["attempts"] for r in picked)
    assert fail_share(1, 3) < fail_share(4, 8) < fail_share(11, 19)


def test_retention_decays_and_installs_spread_over_the_span(default_sim: Simulation) -> None:
    rows = [r for r in default_sim.truth.retention if r["retained_d7"] is not None]
    size = sum(r["cohort_size"] for r in rows)
    d1 = sum(r["retained_d1"] for r in rows) / size
    d7 = sum(r["retained_d7"] for r in rows) / size
    d30_rows = [r for r in default_sim.truth.retention if r["retained_d30"] is not None]
    d30 = sum(r["retained_d30"] for r in d30_rows) / sum(r["cohort_size"] for r in d30_rows)
    assert 0.2 < d1 < 0.6 and 0.05 < d7 < d1 and 0 < d30 < d7
    cohort_days = {r["cohort_date"] for r in default_sim.truth.retention}
    assert len(cohort_days) >= DEFAULT.days - 2
    first, last = min(cohort_days), max(cohort_days)
    assert first == DEFAULT.start_date and last >= DEFAULT.start_date + timedelta(days=DEFAULT.days - 2)


def test_purchases_use_several_currencies_and_known_skus(default_sim: Simulation) -> None:
    skus = {(i["game_id"], i["sku"]) for i in default_sim.store_items}
    purchases = [e for e in default_sim.valid_events if e["event_name"] == "purchase"]
    assert {"USD", "EUR", "GBP", "JPY", "BRL"} <= {p["params"]["currency"] for p in purchases}
    assert all((p["game_id"], p["params"]["sku"]) in skus for p in purchases)
    assert all(decimals(p["params"]["price"]) <= 2 and p["params"]["price"] > 0 for p in purchases)
    quantities = Counter(p["params"].get("quantity", 1) for p in purchases)
    assert quantities[1] > 0.8 * len(purchases) and len(quantities) > 1


def test_ad_revenue_has_at_most_six_decimals(default_sim: Simulation) -> None:
    revenue = [e["params"]["revenue_usd"] for e in default_sim.valid_events if e["event_name"] == "ad_impression"]
    assert all(isinstance(r, Decimal) and decimals(r) <= 6 and r > 0 for r in revenue)


def test_test_accounts_play_and_are_excluded_from_the_truth(default_sim: Simulation) -> None:
    tests = {(p["game_id"], p["player_id"]) for p in default_sim.players if p["is_test_account"]}
    assert len(tests) == 2 * round(DEFAULT.test_account_share * DEFAULT.players_per_game)
    assert {(e["game_id"], e["player_id"]) for e in default_sim.valid_events} >= tests
    real = len(default_sim.players) - len(tests)
    new_players = sum(r["new_players"] for r in default_sim.truth.daily_kpis)
    assert new_players == real


def test_fx_rates_are_weekday_only_over_the_span(default_sim: Simulation) -> None:
    days = sorted({r["date"] for r in default_sim.fx_rates})
    assert all(d.weekday() < 5 for d in days)
    assert days[0] <= DEFAULT.start_date - timedelta(days=5)
    assert days[-1] >= DEFAULT.start_date + timedelta(days=DEFAULT.days - 3)
    assert days[-1] <= DEFAULT.start_date + timedelta(days=DEFAULT.days - 1)
    assert {r["currency"] for r in default_sim.fx_rates} >= {"EUR", "GBP", "JPY", "BRL"}
    assert "USD" not in {r["currency"] for r in default_sim.fx_rates}
    assert all(decimals(r["usd_per_unit"]) == 6 for r in default_sim.fx_rates)


def test_exports_are_written_as_extracts(default_sim: Simulation, tmp_path: Path) -> None:
    (tmp_path / "fx_rates").mkdir()
    (tmp_path / "fx_rates" / "fx_rates_1999-01-01.csv").write_text("stale")
    default_sim.write_exports(tmp_path)
    with (tmp_path / "players.csv").open() as handle:
        players = list(csv.DictReader(handle))
    assert len(players) == len(default_sim.players)
    assert list(players[0]) == ["player_id", "game_id", "created_at", "country", "acquisition_channel", "is_test_account", "updated_at"]
    assert {p["is_test_account"] for p in players} == {"true", "false"}
    assert all(p["created_at"].endswith("Z") and p["updated_at"] >= p["created_at"] for p in players)
    with (tmp_path / "store_items.csv").open() as handle:
        items = list(csv.DictReader(handle))
    assert list(items[0]) == ["sku", "game_id", "item_name", "item_type", "list_price_usd", "updated_at"]
    assert len(items) == len(default_sim.store_items) and all(i["updated_at"].endswith("Z") for i in items)
    files = sorted(p.name for p in (tmp_path / "fx_rates").iterdir())
    assert files == [f"fx_rates_{d.isoformat()}.csv" for d in sorted({r["date"] for r in default_sim.fx_rates})]
    first = (tmp_path / "fx_rates" / files[0]).read_text().splitlines()
    assert first[0] == "date,currency,usd_per_unit" and len(first) == 5


def test_players_first_event_is_at_creation(default_sim: Simulation) -> None:
    first: dict[tuple[str, str], str] = {}
    for e in default_sim.valid_events:
        key = (e["game_id"], e["player_id"])
        moment = parse_timestamp(e["event_timestamp"]).isoformat()
        first[key] = min(first.get(key, moment), moment)
    for p in default_sim.players:
        assert first[(p["game_id"], p["player_id"])][:19] == p["created_at"].isoformat()[:19]
