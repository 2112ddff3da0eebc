"""How a player plays: when sessions happen and which events each session emits."""
from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from simulator.contract import (
    AD_IMPRESSION,
    LEVEL_COMPLETE,
    LEVEL_FAIL,
    LEVEL_START,
    PURCHASE,
    SESSION_END,
    SESSION_START,
)
from simulator.population import Player, new_uuid
from simulator.timefmt import MS_PER_DAY, MS_PER_H, MS_PER_MIN, MS_PER_S, format_local

TimedEvent = tuple[int, dict]  # (UTC instant in ms, event as sent)

# relative chance of starting a session at each local hour
HOUR_WEIGHTS: tuple[float, ...] = (
    2.0, 1.0, 0.5, 0.3, 0.3, 0.6, 1.5, 3.0, 3.5, 2.5, 2.0, 2.2,
    3.5, 3.0, 2.5, 2.5, 3.0, 3.5, 4.5, 5.5, 6.5, 6.5, 5.0, 3.5,
)
SESSIONS_PER_ACTIVE_DAY: tuple[tuple[int, int], ...] = ((1, 45), (2, 30), (3, 15), (4, 7), (5, 3))
AD_NETWORKS: tuple[str, ...] = ("admob", "applovin", "unity_ads", "ironsource")
AD_PLACEMENTS: tuple[str, ...] = ("interstitial_level_end", "rewarded_continue", "banner_home")
REVENUE_QUANTUM = Decimal("0.000001")
SESSION_END_SENT = 0.96  # the rest of the sessions are killed before session_end is sent
RAGE_QUIT_PER_FAIL = 0.012  # chance, per consecutive fail, that the player gives up the game for good


@dataclass(frozen=True)
class Shop:
    """What a game sells: weighted SKUs and their unit price in every currency."""

    skus: tuple[tuple[str, int, bool], ...]  # (sku, weight, stackable)
    prices: dict[tuple[str, str], Decimal]  # (sku, currency) -> unit price
    order_ids: Iterator[str] | None = None  # the store's own order numbers; None: the app stores' ids

    def transaction_id(self, rng: random.Random, platform: str) -> str:
        return next(self.order_ids) if self.order_ids is not None else transaction_id(rng, platform)


def order_numbers() -> Iterator[str]:
    """A store numbering its orders: tx-000001, tx-000002, ..."""
    return (f"tx-{number:06d}" for number in itertools.count(1))


@dataclass
class PlayerState:
    level: int = 1
    last_end_ms: int = 0
    fails_in_a_row: int = 0
    quit: bool = False  # gave up on a level they could not beat


def seconds(ms: int) -> Decimal:
    """Milliseconds as seconds with exactly 3 decimals."""
    return Decimal(ms).scaleb(-3)


def fail_probability(level: int, skill: float) -> float:
    """Harder levels fail more; every tenth level is a boss level."""
    boss = 0.25 if level % 10 == 0 else 0.0
    return min(0.85, max(0.03, 0.12 + 0.03 * level + boss - skill))


def session_starts(rng: random.Random, player: Player, span_end_ms: int) -> list[int]:
    """UTC start instants of the player's sessions, the first one at install, all before the span ends."""
    offset_ms = player.offset_min * MS_PER_MIN
    first_local_day = (player.install_ms + offset_ms) // MS_PER_DAY
    starts = [player.install_ms]
    for day in range(0, player.lifetime_days + 1):
        local_midnight_utc = (first_local_day + day) * MS_PER_DAY - offset_ms
        if local_midnight_utc >= span_end_ms:
            break
        if day == 0:
            count = rng.choices((0, 1, 2), weights=(55, 30, 15))[0]
        else:
            weekend = 1.15 if (first_local_day + day + 3) % 7 >= 5 else 1.0  # 1970-01-01 was a Thursday
            if rng.random() >= player.engagement * 0.985**day * weekend:
                continue
            count = rng.choices([n for n, _ in SESSIONS_PER_ACTIVE_DAY], weights=[w for _, w in SESSIONS_PER_ACTIVE_DAY])[0]
        for _ in range(count):
            hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
            start = local_midnight_utc + hour * MS_PER_H + rng.randrange(MS_PER_H)
            if player.install_ms < start < span_end_ms:
                starts.append(start)
    return sorted(starts)


def base_event(rng: random.Random, player: Player, session_id: str, name: str, ms: int) -> dict:
    event = {
        "event_id": new_uuid(rng),
        "event_name": name,
        "event_timestamp": format_local(ms, player.offset_min),
        "game_id": player.game_id,
        "player_id": player.player_id,
        "session_id": session_id,
        "platform": player.platform,
        "app_version": player.app_version,
        "country": player.country,
    }
    if not player.legacy_sdk:
        event["schema_version"] = 1
    return event


def with_params(event: dict, params: dict) -> dict:
    event["params"] = params
    return event


def transaction_id(rng: random.Random, platform: str) -> str:
    if platform == "ios":
        return str(rng.randrange(10**15, 10**16))
    if platform == "android":
        groups = (rng.randrange(10**4), rng.randrange(10**4), rng.randrange(10**4), rng.randrange(10**5))
        return "GPA.{:04d}-{:04d}-{:04d}-{:05d}".format(*groups)
    return f"txn_{rng.getrandbits(96):024x}"


def purchase_params(rng: random.Random, player: Player, shop: Shop) -> dict:
    sku, _, stackable = rng.choices(shop.skus, weights=[w for _, w, _ in shop.skus])[0]
    quantity = rng.randint(2, 5) if stackable and rng.random() < 0.12 else 1
    params = {
        "transaction_id": shop.transaction_id(rng, player.platform),
        "sku": sku,
        "price": shop.prices[(sku, player.currency)],
        "currency": player.currency,
    }
    if quantity > 1 or not player.legacy_sdk:
        params["quantity"] = quantity
    return params


def ad_params(rng: random.Random, after_fail: bool) -> dict:
    placement = "rewarded_continue" if after_fail and rng.random() < 0.6 else rng.choice(AD_PLACEMENTS)
    revenue = Decimal(rng.uniform(0.0005, 0.04)).quantize(REVENUE_QUANTUM)
    return {"ad_network": rng.choice(AD_NETWORKS), "placement": placement, "revenue_usd": revenue}


def session_budget_ms(rng: random.Random) -> int:
    seconds_wanted = rng.lognormvariate(math.log(480), 0.75)
    return int(min(4_800, max(45, seconds_wanted)) * MS_PER_S)


def play_session(
    rng: random.Random, player: Player, state: PlayerState, start_ms: int, shop: Shop, duplicate_transaction_rate: float
) -> list[TimedEvent]:
    """One session: session_start, level attempts (each level_start then level_complete or
    level_fail), ads and purchases between levels, then session_end (usually)."""
    session_id = new_uuid(rng)
    start = start_ms
    events: list[TimedEvent] = [(start, base_event(rng, player, session_id, SESSION_START, start))]
    t = start + rng.randint(1_500, 12_000)
    ends_at = start + session_budget_ms(rng)
    while t < ends_at:
        level = state.level
        events.append((t, with_params(base_event(rng, player, session_id, LEVEL_START, t), {"level": level})))
        played = int(rng.randint(25_000, 200_000) * (1 + 0.02 * level))
        t += played
        failed = rng.random() < fail_probability(level, player.skill)
        name = LEVEL_FAIL if failed else LEVEL_COMPLETE
        events.append((t, with_params(base_event(rng, player, session_id, name, t), {"level": level, "duration_s": seconds(played)})))
        if failed:
            state.fails_in_a_row += 1
            if not player.is_test_account and rng.random() < RAGE_QUIT_PER_FAIL * state.fails_in_a_row:
                state.quit = True
                ends_at = t  # closes the game right away
        else:
            state.level += 1
            state.fails_in_a_row = 0
        t += rng.randint(800, 4_000)
        if rng.random() < player.ad_propensity * (1.5 if failed else 1.0):
            events.append((t, with_params(base_event(rng, player, session_id, AD_IMPRESSION, t), ad_params(rng, failed))))
            t += rng.randint(5_000, 30_000)
        if rng.random() < player.payer_propensity * (2.0 if failed else 1.0):
            params = purchase_params(rng, player, shop)
            events.append((t, with_params(base_event(rng, player, session_id, PURCHASE, t), params)))
            if rng.random() < duplicate_transaction_rate:
                again = t + rng.randint(MS_PER_S, 2 * MS_PER_H)  # the store notifies the client again
                events.append((again, with_params(base_event(rng, player, session_id, PURCHASE, again), dict(params))))
            t += rng.randint(3_000, 20_000)
    if rng.random() < SESSION_END_SENT:
        events.append((t, with_params(base_event(rng, player, session_id, SESSION_END, t), {"duration_s": seconds(t - start)})))
    state.last_end_ms = t
    return sorted(events, key=lambda timed: timed[0])


def play(rng: random.Random, player: Player, span_end_ms: int, shop: Shop, duplicate_transaction_rate: float) -> list[list[TimedEvent]]:
    """Every session the player plays within the span, each a time-ordered list of events."""
    state = PlayerState()
    sessions: list[list[TimedEvent]] = []
    for planned in session_starts(rng, player, span_end_ms):
        if state.quit:
            break
        start = planned
        if state.last_end_ms:  # sessions never overlap
            start = max(planned, state.last_end_ms + rng.randint(30, 600) * MS_PER_S)
        if start >= span_end_ms:
            break
        sessions.append(play_session(rng, player, state, start, shop, duplicate_transaction_rate))
    return sessions
