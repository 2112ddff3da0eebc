"""The event contract: the JSON Schema file next to this module is the single source of truth.

This module only loads it and translates the ECMA-262 regular expressions it uses into Python
ones; ``decoders`` builds the typed decoders from what is loaded here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONTRACT_DIR = Path(__file__).resolve().parent
GAME_EVENT_V1_PATH = CONTRACT_DIR / "game_event.v1.schema.json"


class ContractError(ValueError):
    """The schema uses something the platform's validator cannot express."""


def load_game_event_schema(path: Path = GAME_EVENT_V1_PATH) -> dict[str, Any]:
    """Parse the event contract (a fresh dict on every call, so nobody shares a mutable copy)."""
    with path.open("rb") as f:
        schema = json.load(f)
    if not isinstance(schema, dict):
        raise ContractError(f"{path}: top level must be an object, got {type(schema).__name__}")
    return schema


def resolve_ref(schema: dict[str, Any], ref: str) -> dict[str, Any]:
    """Resolve a local JSON pointer such as ``#/$defs/level_params``."""
    if not ref.startswith("#/"):
        raise ContractError(f"$ref: only local references are supported, got {ref!r}")
    node: Any = schema
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise ContractError(f"$ref: {ref!r} does not resolve")
        node = node[part]
    if not isinstance(node, dict):
        raise ContractError(f"$ref: {ref!r} does not point at a schema object")
    return node


def ecma_to_python_pattern(pattern: str) -> str:
    """Translate an ECMA-262 pattern (no flags) into a Python ``re`` pattern with the same meaning
    for the constructs the contract uses.

    ECMA ``$`` matches only at the very end of the input, whereas Python's ``$`` also matches
    before a final newline, so every unescaped ``$`` outside a character class becomes ``\\Z``.
    ``\\d``, ``\\w`` and ``\\s`` are ASCII-only in ECMA but Unicode-aware in Python; those are
    rejected rather than silently changing meaning (the contract spells out ``[0-9]``).
    """
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= len(pattern):
                raise ContractError(f"pattern {pattern!r}: trailing backslash")
            nxt = pattern[i + 1]
            if nxt in "dDwWsSbB":
                raise ContractError(
                    f"pattern {pattern!r}: \\{nxt} differs between ECMA-262 and Python; "
                    "spell the character set out"
                )
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
        elif ch == "$":
            out.append(r"\Z")
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)
