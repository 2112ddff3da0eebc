"""The studio's reference data: store items with their local price points, and daily FX rates."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

USD = "USD"
# non-USD currencies players pay in, with a starting USD-per-unit rate and a daily volatility
FX_START: dict[str, tuple[Decimal, float]] = {
    "EUR": (Decimal("1.084500"), 0.004),
    "GBP": (Decimal("1.271800"), 0.004),
    "JPY": (Decimal("0.006650"), 0.005),
    "BRL": (Decimal("0.201300"), 0.009),
}
FX_HISTORY_DAYS = 7  # rates are exported from this many days before the start date
CENT = Decimal("0.01")
FX_QUANTUM = Decimal("0.000001")


@dataclass(frozen=True)
class ItemTemplate:
    key: str
    name: str  # "{currency}" is replaced by the game's soft-currency name
    item_type: str
    list_price_usd: Decimal
    weight: int  # how often it is bought
    stackable: bool  # may be bought several at once


ITEM_TEMPLATES: tuple[ItemTemplate, ...] = (
    ItemTemplate("{currency}_small", "Handful of {Currency}", "currency_pack", Decimal("0.99"), 30, True),
    ItemTemplate("{currency}_medium", "Pouch of {Currency}", "currency_pack", Decimal("4.99"), 22, True),
    ItemTemplate("{currency}_large", "Chest of {Currency}", "currency_pack", Decimal("19.99"), 8, False),
    ItemTemplate("{currency}_vault", "Vault of {Currency}", "currency_pack", Decimal("99.99"), 1, False),
    ItemTemplate("energy_refill", "Energy Refill", "consumable", Decimal("1.99"), 18, True),
    ItemTemplate("starter_bundle", "Starter Bundle", "bundle", Decimal("2.99"), 12, False),
    ItemTemplate("no_ads", "Remove Ads", "non_consumable", Decimal("3.99"), 6, False),
    ItemTemplate("season_pass", "Season Pass", "subscription", Decimal("9.99"), 5, False),
)
SOFT_CURRENCIES: tuple[str, ...] = ("gems", "coins", "crystals", "stars", "pearls")


def day_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def fx_rates(rng: random.Random, start_date: date, days: int, holidays: tuple[date, ...] = ()) -> list[dict]:
    """Weekday rates from ``start_date - 7`` to the last simulated day; nothing on weekends or
    ``holidays`` and no USD rows (USD is 1). ``usd_per_unit`` has 6 decimals."""
    levels = {currency: float(start) for currency, (start, _) in FX_START.items()}
    first = start_date - timedelta(days=FX_HISTORY_DAYS)
    last = start_date + timedelta(days=days - 1)
    rows: list[dict] = []
    for day in day_range(first, last):
        if day.weekday() >= 5 or day in holidays:
            continue
        for currency, (_, volatility) in FX_START.items():
            levels[currency] *= math.exp(rng.gauss(0.0, volatility))
            rate = Decimal(levels[currency]).quantize(FX_QUANTUM, ROUND_HALF_UP)
            rows.append({"date": day, "currency": currency, "usd_per_unit": rate})
    return rows


def store_items(rng: random.Random, game_id: str, soft_currency: str, start_date: date, shared_skus: bool = False) -> list[dict]:
    """The game's store catalogue, last edited some weeks before the start date. Its skus carry the
    game's id, or, with ``shared_skus``, are the same in every game (``pack_small``, ``no_ads``, ...)."""
    catalogue_start = datetime(start_date.year, start_date.month, start_date.day, tzinfo=timezone.utc)
    items: list[dict] = []
    for template in ITEM_TEMPLATES:
        edited = catalogue_start - timedelta(seconds=rng.randrange(5 * 86_400, 90 * 86_400))
        items.append(
            {
                "sku": template.key.format(currency="pack") if shared_skus else f"{game_id}.{template.key.format(currency=soft_currency)}",
                "game_id": game_id,
                "item_name": template.name.format(Currency=soft_currency.capitalize()),
                "item_type": template.item_type,
                "list_price_usd": template.list_price_usd,
                "updated_at": edited,
            }
        )
    return items


def local_price(list_price_usd: Decimal, currency: str, usd_per_unit: Decimal) -> Decimal:
    """The store's price point in ``currency``: x.99 tiers, whole tens of yen; always 2 decimals."""
    if currency == USD:
        return list_price_usd.quantize(CENT)
    raw = list_price_usd / usd_per_unit
    if currency == "JPY":
        return ((raw / 10).quantize(Decimal(1), ROUND_HALF_UP) * 10).quantize(CENT)
    return (raw.to_integral_value(ROUND_FLOOR) + Decimal("0.99")).quantize(CENT)


def price_points(items: list[dict], fx_rows: list[dict]) -> dict[tuple[str, str], Decimal]:
    """(sku, currency) -> unit price, fixed for the whole span from the first exported rates."""
    first_rate: dict[str, Decimal] = {}
    for row in fx_rows:
        first_rate.setdefault(row["currency"], row["usd_per_unit"])
    points: dict[tuple[str, str], Decimal] = {}
    for item in items:
        points[(item["sku"], USD)] = local_price(item["list_price_usd"], USD, Decimal(1))
        for currency, rate in first_rate.items():
            points[(item["sku"], currency)] = local_price(item["list_price_usd"], currency, rate)
    return points
