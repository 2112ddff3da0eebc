"""Who plays: players with a country, a local UTC offset, a device and a behaviour profile."""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime

from simulator.contract import PLATFORMS
from simulator.timefmt import MS_PER_DAY, MS_PER_S, date_to_ms, ms_to_datetime

LIVES_FOREVER = 10_000  # lifetime (days) of players who never churn within any span


@dataclass(frozen=True)
class Country:
    code: str
    weight: int
    currency: str
    offsets_min: tuple[int, ...]  # UTC offsets players there use (minutes)


COUNTRIES: tuple[Country, ...] = (
    Country("US", 30, "USD", (-300, -360, -480)),
    Country("BR", 10, "BRL", (-180,)),
    Country("GB", 9, "GBP", (0,)),
    Country("DE", 8, "EUR", (60,)),
    Country("FR", 6, "EUR", (60,)),
    Country("ES", 4, "EUR", (60,)),
    Country("JP", 10, "JPY", (540,)),
    Country("KR", 4, "USD", (540,)),
    Country("IN", 6, "USD", (330,)),
    Country("AU", 4, "USD", (660, 600)),
    Country("MX", 4, "USD", (-360,)),
    Country("PH", 3, "USD", (480,)),
    Country("CA", 2, "USD", (-300, -480)),
)
PLATFORM_WEIGHTS: dict[str, float] = {"android": 46, "ios": 36, "pc": 9, "web": 6, "console": 3}
ACQUISITION_CHANNELS: tuple[tuple[str, int], ...] = (
    ("organic", 45),
    ("paid_social", 25),
    ("paid_search", 12),
    ("cross_promo", 10),
    ("influencer", 8),
)
APP_VERSIONS: tuple[tuple[str, int], ...] = (("1.9.0", 55), ("1.8.2", 30), ("1.7.5", 15))
# (sdk version, weight); legacy SDKs send one bare event per message and omit optional fields
SDK_VERSIONS: tuple[tuple[str, int], ...] = (("3.4.1", 55), ("3.2.0", 30), ("2.9.7", 15))
LEGACY_SDK_MAJOR = "2."


@dataclass(frozen=True)
class Player:
    player_id: str
    game_id: str
    country: str
    currency: str
    offset_min: int
    platform: str
    app_version: str
    sdk_version: str
    acquisition_channel: str
    is_test_account: bool
    install_ms: int
    updated_ms: int
    lifetime_days: int  # days after install on which the player may still come back
    engagement: float  # chance of playing on a day within the lifetime
    payer_propensity: float  # chance of a purchase at a level end
    ad_propensity: float  # chance of an ad at a level end
    skill: float  # lowers the fail probability

    @property
    def legacy_sdk(self) -> bool:
        return self.sdk_version.startswith(LEGACY_SDK_MAJOR)


def weighted(rng: random.Random, options: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([name for name, _ in options], weights=[w for _, w in options])[0]


def new_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng`` (deterministic, unlike uuid4)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _platform(rng: random.Random) -> str:
    return rng.choices(PLATFORMS, weights=[PLATFORM_WEIGHTS.get(p, 3) for p in PLATFORMS])[0]


def _lifetime(rng: random.Random) -> int:
    draw = rng.random()
    if draw < 0.38:
        return 0  # tries the game once
    if draw < 0.53:
        return LIVES_FOREVER  # core player
    return 1 + int(rng.expovariate(1 / 10))


def _payer_propensity(rng: random.Random) -> float:
    draw = rng.random()
    if draw < 0.01:
        return rng.uniform(0.25, 0.5)  # whale
    if draw < 0.08:
        return rng.uniform(0.02, 0.12)
    return 0.001


def _install_ms(rng: random.Random, start_ms: int, days: int) -> int:
    if days > 3 and rng.random() < 0.15:  # launch push
        return start_ms + rng.randrange(3 * MS_PER_DAY)
    return start_ms + rng.randrange(days * MS_PER_DAY)


def make_player(rng: random.Random, game_id: str, player_id: str, start: date, days: int, test: bool) -> Player:
    start_ms = date_to_ms(start)
    end_ms = start_ms + days * MS_PER_DAY
    country = rng.choices(COUNTRIES, weights=[c.weight for c in COUNTRIES])[0]
    install_ms = _install_ms(rng, start_ms, days) // MS_PER_S * MS_PER_S + rng.randrange(MS_PER_S)
    updated_ms = install_ms if rng.random() < 0.5 else rng.randrange(install_ms, end_ms)
    return Player(
        player_id=player_id,
        game_id=game_id,
        country=country.code,
        currency=country.currency,
        offset_min=rng.choice(country.offsets_min),
        platform=_platform(rng),
        app_version=weighted(rng, APP_VERSIONS),
        sdk_version=weighted(rng, SDK_VERSIONS),
        acquisition_channel="organic" if test else weighted(rng, ACQUISITION_CHANNELS),
        is_test_account=test,
        install_ms=install_ms,
        updated_ms=updated_ms,
        lifetime_days=LIVES_FOREVER if test else _lifetime(rng),
        engagement=rng.uniform(0.7, 0.95) if test else rng.uniform(0.3, 0.9),
        payer_propensity=rng.uniform(0.1, 0.3) if test else _payer_propensity(rng),
        ad_propensity=rng.uniform(0.15, 0.6),
        skill=rng.uniform(-0.08, 0.08),
    )


def make_players(
    rng: random.Random, game_id: str, count: int, start: date, days: int, test_share: float,
    accounts: list[str] | None = None,
) -> list[Player]:
    """``count`` players of one game, ordered by install time; ``test_share`` of them (at least one
    when the share is positive) are the studio's test accounts. Their ids are drawn for this game,
    or from ``accounts``, the studio's account ids shared by its games."""
    test_count = max(1, round(test_share * count)) if test_share > 0 else 0
    test_indexes = set(rng.sample(range(count), min(test_count, count)))
    if accounts is not None:
        if len(accounts) < count:
            raise ValueError(f"{count} players need at least as many accounts, not {len(accounts)}")
        chosen = iter(rng.sample(accounts, count))
    ids: set[str] = set()
    players: list[Player] = []
    for index in range(count):
        if accounts is not None:
            player_id = next(chosen)
        else:
            player_id = f"p_{rng.getrandbits(64):016x}"
            while player_id in ids:
                player_id = f"p_{rng.getrandbits(64):016x}"
        ids.add(player_id)
        players.append(make_player(rng, game_id, player_id, start, days, index in test_indexes))
    return sorted(players, key=lambda p: (p.install_ms, p.player_id))


def studio_accounts(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct account ids of a studio whose games share one account system."""
    ids: list[str] = []
    while len(ids) < count:
        player_id = f"p_{rng.getrandbits(64):016x}"
        if player_id not in ids:
            ids.append(player_id)
    return ids


def _utc_second(ms: int) -> datetime:
    return ms_to_datetime(ms // MS_PER_S * MS_PER_S)


def player_row(player: Player) -> dict:
    """The player as the studio's player database exports it."""
    return {
        "player_id": player.player_id,
        "game_id": player.game_id,
        "created_at": _utc_second(player.install_ms),
        "country": player.country,
        "acquisition_channel": player.acquisition_channel,
        "is_test_account": player.is_test_account,
        "updated_at": _utc_second(player.updated_ms),
    }
