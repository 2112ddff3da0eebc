"""Days whose money sums end exactly on half a cent, so that the rounding rule (half away from zero)
is exercised: one ad impression and one USD purchase are added to a session on such a day, sized so
that the day's counted ad revenue and purchase revenue, in full precision, end on 0.005."""
from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

from simulator.contract import AD_IMPRESSION, PURCHASE
from simulator.gameplay import Shop, TimedEvent, base_event, with_params
from simulator.population import Player
from simulator.timefmt import ms_to_utc_date
from simulator.truth import USD, FxTable, decimal

CENT = Decimal("0.01")
HALF_CENT = Decimal("0.005")
LIST_PRICE_USD = Decimal("0.99")

Played = list[tuple[Player, list[TimedEvent]]]  # one game's sessions, each with its player


def to_half_cent(total: Decimal) -> Decimal:
    """The smallest positive amount that makes ``total`` (not negative) end exactly on half a cent."""
    over = total % CENT
    return HALF_CENT - over if over < HALF_CENT else HALF_CENT + CENT - over


def day_sums(played: Played, counted: set[str], fx: FxTable) -> tuple[dict[date, Decimal], dict[date, Decimal]]:
    """Per UTC date: the counted players' ad revenue, and their purchase revenue in USD (each
    transaction once, the first by time then event id giving the day and amount)."""
    ads: dict[date, Decimal] = defaultdict(Decimal)
    first: dict[str, tuple[int, str, dict]] = {}
    for player, session in played:
        if player.player_id not in counted:
            continue
        for ms, event in session:
            if event["event_name"] == AD_IMPRESSION:
                ads[ms_to_utc_date(ms)] += decimal(event["params"]["revenue_usd"])
            elif event["event_name"] == PURCHASE:
                key = event["params"]["transaction_id"]
                if key not in first or (ms, event["event_id"]) < first[key][:2]:
                    first[key] = (ms, event["event_id"], event["params"])
    revenue: dict[date, Decimal] = defaultdict(Decimal)
    for ms, _, params in first.values():
        day = ms_to_utc_date(ms)
        amount = decimal(params["price"]) * decimal(params.get("quantity", 1))
        revenue[day] += amount * fx.usd_per_unit(params["currency"], day)
    return ads, revenue


def slots(played: Played, counted: set[str]) -> Iterator[tuple[date, int, int]]:
    """(UTC date, session index, event index) where two events can be added between an event and the
    next one of a counted player's session, both on that date."""
    for index, (player, session) in enumerate(played):
        if player.player_id not in counted:
            continue
        for position, ((ms, _), (next_ms, _)) in enumerate(zip(session, session[1:])):
            if next_ms - ms >= 3 and ms_to_utc_date(ms) == ms_to_utc_date(ms + 2):
                yield ms_to_utc_date(ms), index, position
                break


def end_days_on_half_cents(rng: random.Random, played: Played, counted: set[str], shop: Shop, fx: FxTable, days: int) -> list[date]:
    """Add, on ``days`` dates of one game, an ad impression and a USD purchase to a counted
    player's session so that both of the date's sums end exactly on half a cent; returns the dates."""
    by_day: dict[date, tuple[int, int]] = {}
    for day, index, position in slots(played, counted):
        by_day.setdefault(day, (index, position))
    chosen = sorted(rng.sample(sorted(by_day), min(days, len(by_day))))
    ads, revenue = day_sums(played, counted, fx)
    sku = shop.skus[0][0]
    for day in chosen:
        index, position = by_day[day]
        player, session = played[index]
        ms, event = session[position]
        ad = with_params(base_event(rng, player, event["session_id"], AD_IMPRESSION, ms + 1),
                         {"ad_network": "admob", "placement": "banner_home", "revenue_usd": to_half_cent(ads[day])})
        price = LIST_PRICE_USD + to_half_cent(revenue[day] + LIST_PRICE_USD)
        purchase = with_params(base_event(rng, player, event["session_id"], PURCHASE, ms + 2), {
            "transaction_id": shop.transaction_id(rng, player.platform), "sku": sku, "price": price,
            "currency": USD, "quantity": 1})
        session[position + 1:position + 1] = [(ms + 1, ad), (ms + 2, purchase)]
    return chosen
