"""What to simulate."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_GAME_ID = re.compile(r"^[a-z0-9_-]{1,64}$")
_RATES = (
    "test_account_share",
    "unexported_player_share",
    "duplicate_rate",
    "duplicate_transaction_rate",
    "late_rate",
    "invalid_rate",
    "malformed_rate",
)


@dataclass(frozen=True)
class SimulationConfig:
    """Every knob of a simulation; the same config always yields byte-identical outputs."""

    seed: int = 7
    start_date: date = date(2026, 1, 1)
    days: int = 35
    games: tuple[str, ...] = ("dragon_idle", "puzzle_pop")
    players_per_game: int = 300  # installs spread over the span
    test_account_share: float = 0.03  # players flagged is_test_account (they still send events)
    duplicate_rate: float = 0.02  # same event delivered twice (same event_id, usually in another message)
    duplicate_transaction_rate: float = 0.05  # of purchases: sent again with a new event_id, same transaction_id
    late_rate: float = 0.02  # events published 1 h .. 5 days after their event_timestamp
    invalid_rate: float = 0.01  # extra invalid events injected
    malformed_rate: float = 0.005  # extra events that are not valid JSON objects, inside a batch
    max_events_per_message: int = 50
    # one account system and one catalogue for all games: the same player_id plays several games
    # (a test account in one, a real player in another), every game sells the same skus, and each
    # game's store numbers its own orders tx-000001, tx-000002, ... (so they repeat across games)
    shared_ids: bool = False
    unexported_player_share: float = 0.0  # players who play but are missing from the players export
    fx_holidays: tuple[date, ...] = ()  # days without an FX export (besides weekends)
    # days per game whose revenue and ad revenue sums are made to end exactly on half a cent
    # (one ad impression and one USD purchase added to a session that day)
    half_cent_days: int = 0

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if self.players_per_game < 1:
            raise ValueError("players_per_game must be at least 1")
        if self.half_cent_days < 0:
            raise ValueError("half_cent_days must not be negative")
        if self.max_events_per_message < 1:
            raise ValueError("max_events_per_message must be at least 1")
        if not self.games or len(set(self.games)) != len(self.games):
            raise ValueError("games must be a non-empty tuple of distinct ids")
        for game in self.games:
            if not _GAME_ID.match(game):
                raise ValueError(f"game id {game!r} is not a lower-case slug")
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
