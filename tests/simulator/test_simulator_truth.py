"""Ground truth on a tiny hand-made data set; every expected number is worked out by hand below."""
from __future__ import annotations

import csv
import random
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from simulator.truth import compute_truth

D = Decimal
_ids = iter(range(1, 1000))


def ev(name: str, ts: str, player: str, session: str, game: str = "g1", **params: object) -> dict:
    event = {
        "event_id": f"00000000-0000-4000-8000-{next(_ids):012d}",
        "event_name": name,
        "event_timestamp": ts,
        "game_id": game,
        "player_id": player,
        "session_id": session,
        "platform": "ios",
    }
    if params:
        event["params"] = params
    return event


# alice plays at +09:00: her first session is on the local date 2026-01-02 but the UTC date 2026-01-01
ALICE_S1 = [
    ev("session_start", "2026-01-02T08:30:00.000+09:00", "alice", "s1"),
    ev("level_start", "2026-01-02T08:31:00.000+09:00", "alice", "s1", level=1),
    ev("level_fail", "2026-01-02T08:35:00.000+09:00", "alice", "s1", level=1, duration_s=D("240.0")),
    ev("level_start", "2026-01-02T08:36:00.000+09:00", "alice", "s1", level=1),
    ev("level_complete", "2026-01-02T08:40:00.000+09:00", "alice", "s1", level=1, duration_s=D("240.0")),
    ev("session_end", "2026-01-02T08:45:00.500+09:00", "alice", "s1", duration_s=D("900.5")),
]
# bob plays at -05:00; his session starts on 2026-01-01 UTC and ends on 2026-01-02 UTC
BOB_LEVEL_START = ev("level_start", "2026-01-01T18:55:00.000-05:00", "bob", "s2", level=1)
BOB_PURCHASE = ev(
    "purchase", "2026-01-01T19:00:00.000-05:00", "bob", "s2",
    transaction_id="tx-b1", sku="g1.gems", price=D("4.99"), currency="USD", quantity=2,
)
BOB_S2 = [
    ev("session_start", "2026-01-01T18:50:00.000-05:00", "bob", "s2"),
    BOB_LEVEL_START,
    BOB_LEVEL_START,  # the same event delivered twice
    ev("ad_impression", "2026-01-01T18:56:00.000-05:00", "bob", "s2", ad_network="admob", placement="x", revenue_usd=D("0.005000")),
    BOB_PURCHASE,
    ev("level_complete", "2026-01-01T19:05:00.000-05:00", "bob", "s2", level=1, duration_s=D("600")),
    ev("session_end", "2026-01-01T19:10:00.000-05:00", "bob", "s2", duration_s=D("1200")),
]
# the store notifies bob's client again two days later: new event_id, same transaction_id
BOB_PURCHASE_AGAIN = dict(BOB_PURCHASE, event_id="00000000-0000-4000-8000-000000000900", event_timestamp="2026-01-03T05:00:00.000-05:00")
# a Saturday purchase in yen: no FX row that day, Friday's rate applies
ALICE_S3 = [
    ev("session_start", "2026-01-03T20:00:00.000+09:00", "alice", "s3"),
    ev("purchase", "2026-01-03T20:05:00.000+09:00", "alice", "s3", transaction_id="tx-a1", sku="g1.gems", price=D("480.00"), currency="JPY", quantity=1),
    ev("ad_impression", "2026-01-03T20:06:00.000+09:00", "alice", "s3", ad_network="admob", placement="x", revenue_usd=D("0.004321")),
    ev("session_end", "2026-01-03T20:10:00.000+09:00", "alice", "s3", duration_s=D("600.000")),
]
BOB_S4 = [ev("session_start", "2026-01-08T09:00:00.000-05:00", "bob", "s4")]
# another game: a euro purchase (quantity left out: 1) on the Saturday
CAROL = [
    ev("session_start", "2026-01-03T11:58:00.000+01:00", "carol", "c1", game="g2"),
    ev("purchase", "2026-01-03T12:00:00.000+01:00", "carol", "c1", game="g2", transaction_id="tx-c1", sku="g2.pass", price=D("1.99"), currency="EUR"),
]
# a test account: everything it sends is ignored
TESTER = [
    ev("session_start", "2026-01-01T12:00:00Z", "tester", "t1"),
    ev("level_start", "2026-01-01T12:01:00Z", "tester", "t1", level=1),
    ev("purchase", "2026-01-01T12:02:00Z", "tester", "t1", transaction_id="tx-t1", sku="g1.gems", price=D("99.99"), currency="USD", quantity=1),
]
EVENTS = ALICE_S1 + BOB_S2 + [BOB_PURCHASE_AGAIN] + ALICE_S3 + BOB_S4 + CAROL + TESTER

PLAYERS = [
    {"player_id": "alice", "game_id": "g1", "is_test_account": False},
    {"player_id": "bob", "game_id": "g1", "is_test_account": False},
    {"player_id": "tester", "game_id": "g1", "is_test_account": True},
    {"player_id": "carol", "game_id": "g2", "is_test_account": False},
]
FX = [
    {"date": date(2026, 1, 2), "currency": "JPY", "usd_per_unit": D("0.006400")},  # Friday
    {"date": date(2026, 1, 5), "currency": "JPY", "usd_per_unit": D("0.006500")},  # Monday
    {"date": date(2026, 1, 2), "currency": "EUR", "usd_per_unit": D("1.100000")},
]


def kpi(day: str, game: str, dau: int, new: int, mau: int, sessions: int, avg: str | None, revenue: str, payers: int, ads: str, arpdau: str, arppu: str | None) -> dict:
    return {
        "activity_date": date.fromisoformat(day), "game_id": game, "dau": dau, "new_players": new, "mau": mau,
        "sessions": sessions, "avg_session_length_s": None if avg is None else D(avg), "revenue_usd": D(revenue),
        "payers": payers, "ad_revenue_usd": D(ads), "arpdau": D(arpdau), "arppu": None if arppu is None else D(arppu),
    }


EXPECTED_DAILY = [
    # alice and bob; sessions s1 and s2; alice's 900.5 s session ended that day; ad 0.005 rounds half up to 0.01
    kpi("2026-01-01", "g1", 2, 2, 2, 2, "900.50", "0.00", 0, "0.01", "0.0050", None),
    # bob only (his session crossed midnight): no session_start, his 1200 s session_end, 2 x 4.99 USD
    kpi("2026-01-02", "g1", 1, 0, 2, 0, "1200.00", "9.98", 1, "0.00", "9.9800", "9.9800"),
    # alice (480 JPY x Friday's 0.0064 = 3.072) and bob (the repeated transaction counts on 01-02 only)
    kpi("2026-01-03", "g1", 2, 0, 2, 1, "600.00", "3.07", 1, "0.00", "1.5350", "3.0700"),
    # carol: 1.99 EUR x 1.1 = 2.189
    kpi("2026-01-03", "g2", 1, 1, 1, 1, None, "2.19", 1, "0.00", "2.1900", "2.1900"),
    # bob comes back a week after his install; alice still counts in the 30-day window
    kpi("2026-01-08", "g1", 1, 0, 2, 1, None, "0.00", 0, "0.00", "0.0000", None),
]
EXPECTED_RETENTION = [
    # the last activity date is 2026-01-08, so day 30 is not observable yet
    {"cohort_date": date(2026, 1, 1), "game_id": "g1", "cohort_size": 2, "retained_d1": 1, "retained_d7": 1, "retained_d30": None,
     "retention_d1": D("0.5000"), "retention_d7": D("0.5000"), "retention_d30": None},
    {"cohort_date": date(2026, 1, 3), "game_id": "g2", "cohort_size": 1, "retained_d1": 0, "retained_d7": None, "retained_d30": None,
     "retention_d1": D("0.0000"), "retention_d7": None, "retention_d30": None},
]
EXPECTED_FUNNEL = [
    {"game_id": "g1", "level": 1, "players_started": 2, "players_completed": 2, "attempts": 3, "fails": 1, "completion_rate": D("1.0000")},
]


def test_daily_kpis_match_the_hand_computed_rows() -> None:
    assert compute_truth(EVENTS, PLAYERS, FX).daily_kpis == EXPECTED_DAILY


def test_retention_matches_the_hand_computed_rows() -> None:
    assert compute_truth(EVENTS, PLAYERS, FX).retention == EXPECTED_RETENTION


def test_level_funnel_matches_the_hand_computed_rows() -> None:
    assert compute_truth(EVENTS, PLAYERS, FX).level_funnel == EXPECTED_FUNNEL


def test_truth_ignores_duplicates_and_order() -> None:
    unique = list({event["event_id"]: event for event in EVENTS}.values())
    shuffled = EVENTS + unique[:5]
    random.Random(1).shuffle(shuffled)
    assert compute_truth(unique, PLAYERS, FX) == compute_truth(shuffled, PLAYERS, FX) == compute_truth(EVENTS, PLAYERS, FX)


def test_truth_accepts_rows_as_read_from_csv_and_floats() -> None:
    players = [{**p, "is_test_account": "true" if p["is_test_account"] else "false"} for p in PLAYERS]
    fx = [{"date": r["date"].isoformat(), "currency": r["currency"], "usd_per_unit": str(r["usd_per_unit"])} for r in FX]
    floats = [
        {**e, "params": {k: float(v) if isinstance(v, Decimal) else v for k, v in e["params"].items()}} if "params" in e else e
        for e in EVENTS
    ]
    assert compute_truth(floats, players, fx) == compute_truth(EVENTS, PLAYERS, FX)


def test_a_purchase_before_any_fx_rate_is_an_error() -> None:
    early = ev("purchase", "2026-01-01T10:00:00Z", "bob", "s9", transaction_id="tx-z", sku="g1.gems", price=D("1.00"), currency="JPY")
    with pytest.raises(LookupError):
        compute_truth([early], PLAYERS, FX)


def test_truth_csv_files_use_empty_cells_for_none(tmp_path: Path) -> None:
    compute_truth(EVENTS, PLAYERS, FX).write(tmp_path)
    with (tmp_path / "daily_kpis.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0] == {
        "activity_date": "2026-01-01", "game_id": "g1", "dau": "2", "new_players": "2", "mau": "2", "sessions": "2",
        "avg_session_length_s": "900.50", "revenue_usd": "0.00", "payers": "0", "ad_revenue_usd": "0.01",
        "arpdau": "0.0050", "arppu": "",
    }
    retention = (tmp_path / "retention.csv").read_text().splitlines()
    assert retention == [
        "cohort_date,game_id,cohort_size,retained_d1,retained_d7,retained_d30,retention_d1,retention_d7,retention_d30",
        "2026-01-01,g1,2,1,1,,0.5000,0.5000,",
        "2026-01-03,g2,1,0,,,0.0000,,",
    ]
    assert (tmp_path / "level_funnel.csv").read_text().splitlines() == [
        "game_id,level,players_started,players_completed,attempts,fails,completion_rate",
        "g1,1,2,2,3,1,1.0000",
    ]


# ---------------------------------------------------------------------------------------------
# ids shared across games: every key is per game


def test_ids_shared_across_games_are_counted_per_game() -> None:
    """One account, p1, plays two games: a test account in g1, a player in g2; both games' stores
    number their first order tx-000001; p9 plays g2 without being in the players export."""
    events = [
        ev("purchase", "2026-01-05T10:00:00.000+00:00", "p1", "s1", game="g1",
           transaction_id="tx-000001", sku="starter_pack", price=D("2.99"), currency="USD", quantity=1),
        ev("purchase", "2026-01-05T11:00:00.000+00:00", "p1", "s2", game="g2",
           transaction_id="tx-000001", sku="starter_pack", price=D("1.99"), currency="USD", quantity=1),
        ev("purchase", "2026-01-05T12:00:00.000+00:00", "p2", "s3", game="g1",
           transaction_id="tx-000002", sku="starter_pack", price=D("2.99"), currency="USD", quantity=1),
        ev("session_start", "2026-01-05T13:00:00.000+00:00", "p9", "s4", game="g2"),
    ]
    players = [
        {"game_id": "g1", "player_id": "p1", "is_test_account": True},
        {"game_id": "g2", "player_id": "p1", "is_test_account": False},
        {"game_id": "g1", "player_id": "p2", "is_test_account": False},
    ]

    truth = compute_truth(events, players, [])

    by_game = {row["game_id"]: row for row in truth.daily_kpis}
    assert {game: (row["dau"], row["new_players"], row["revenue_usd"], row["payers"]) for game, row in by_game.items()} == {
        "g1": (1, 1, D("2.99"), 1),  # p1 is a test account in g1 only; tx-000001 of g1 is theirs
        "g2": (2, 2, D("1.99"), 1),  # p1 plays g2 for real, and p9, unknown to the export, counts
    }


def test_the_shared_ids_simulation_repeats_ids_across_games_and_keys_them_per_game() -> None:
    from simulator import SimulationConfig, simulate

    sim = simulate(SimulationConfig(seed=3, days=6, players_per_game=30, shared_ids=True, unexported_player_share=0.1))

    games_of: dict[str, set[str]] = {}
    for player in sim.players:
        games_of.setdefault(player["player_id"], set()).add(player["game_id"])
    assert any(len(games) == 2 for games in games_of.values())
    assert len({(p["game_id"], p["player_id"]) for p in sim.players}) == len(sim.players)
    skus = {}
    for item in sim.store_items:
        skus.setdefault(item["sku"], set()).add(item["game_id"])
    assert all(games == set(sim.config.games) for games in skus.values())
    orders: dict[str, set[str]] = {}
    for event in sim.valid_events:
        if event["event_name"] == "purchase":
            assert event["params"]["transaction_id"].startswith("tx-")
            orders.setdefault(event["params"]["transaction_id"], set()).add(event["game_id"])
    assert any(len(games) == 2 for games in orders.values())
    exported = {(p["game_id"], p["player_id"]) for p in sim.players}
    playing = {(e["game_id"], e["player_id"]) for e in sim.valid_events}
    assert playing - exported  # players missing from the export still play
    assert len(exported) == 2 * 30 - 2 * 3


def test_half_cent_days_end_both_sums_on_half_a_cent_and_holidays_have_no_rate() -> None:
    from collections import defaultdict

    from simulator import SimulationConfig, simulate
    from simulator.truth import FxTable, counted_events, first_purchases, purchase_usd

    holiday = date(2026, 1, 9)
    sim = simulate(SimulationConfig(seed=3, days=10, players_per_game=20, half_cent_days=2, fx_holidays=(holiday,)))

    assert holiday not in {row["date"] for row in sim.fx_rates}
    events = counted_events(sim.valid_events, sim.players)
    fx = FxTable(sim.fx_rates)
    revenue: dict[tuple, Decimal] = defaultdict(Decimal)
    ads: dict[tuple, Decimal] = defaultdict(Decimal)
    for purchase in first_purchases(events):
        revenue[(purchase.game_id, purchase.day)] += purchase_usd(purchase, fx)
    for event in events:
        if event.event_name == "ad_impression":
            ads[(event.game_id, event.day)] += D(str(event.params["revenue_usd"]))
    half = D("0.005")
    for sums in (revenue, ads):
        assert sorted(game for (game, _), total in sums.items() if total % D("0.01") == half) == [
            "dragon_idle", "dragon_idle", "puzzle_pop", "puzzle_pop"]
