"""The event contract as the simulator sees it, read from the JSON Schema (the single source of truth)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from ingestion.streaming.contract import load_game_event_schema


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The parsed contract (cached; treat it as read-only)."""
    return load_game_event_schema()


def _enum(field: str) -> tuple[str, ...]:
    return tuple(load_schema()["properties"][field]["enum"])


EVENT_NAMES: tuple[str, ...] = _enum("event_name")
PLATFORMS: tuple[str, ...] = _enum("platform")
REQUIRED_FIELDS: tuple[str, ...] = tuple(load_schema()["required"])


def event_name(name: str) -> str:
    """``name`` itself, after checking the contract knows it (fails fast if the contract changes)."""
    if name not in EVENT_NAMES:
        raise ValueError(f"event name {name!r} is not in the contract {EVENT_NAMES}")
    return name


SESSION_START = event_name("session_start")
SESSION_END = event_name("session_end")
LEVEL_START = event_name("level_start")
LEVEL_COMPLETE = event_name("level_complete")
LEVEL_FAIL = event_name("level_fail")
PURCHASE = event_name("purchase")
AD_IMPRESSION = event_name("ad_impression")
LEVEL_EVENTS: frozenset[str] = frozenset({LEVEL_START, LEVEL_COMPLETE, LEVEL_FAIL})
