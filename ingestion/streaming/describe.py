"""Validation errors as readers want them: ``<where><path>: <what>, got <value>``, naming the
field and the value; and the same with the value masked, for log lines."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import msgspec

_VALUE_REPR_MAX: Final = 80
_GENERIC_DECODER: Final = msgspec.json.Decoder()
_MSGSPEC_ERROR = re.compile(r"^(?P<detail>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_PATH_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_BAD_ENUM = re.compile(r"^Invalid enum value ")
_ENDS_WITH_GOT_TYPE = re.compile(r"got \w+$")


def value_repr(value: Any) -> str:
    """A short, readable rendering of a JSON value for an error message."""
    text = repr(value) if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= _VALUE_REPR_MAX else text[: _VALUE_REPR_MAX - 3] + "..."


def masked_repr(value: Any) -> str:
    """A JSON value as a log line may show it: its first two characters at most, and its size
    (a player's e-mail typed into ``country`` must not reach the logs)."""
    if isinstance(value, str):
        return f"{value[:2]!r}... ({len(value)} chars)" if len(value) > 2 else f"({len(value)} chars)"
    if isinstance(value, dict):
        return f"an object of {len(value)} key(s)"
    if isinstance(value, list):
        return f"an array of {len(value)} item(s)"
    return "null" if value is None else type(value).__name__


def _lookup(doc: Any, path: str) -> tuple[bool, Any]:
    node = doc
    for key, index in _PATH_TOKEN.findall(path):
        if key and isinstance(node, dict) and key in node:
            node = node[key]
        elif index and isinstance(node, list) and int(index) < len(node):
            node = node[int(index)]
        else:
            return False, None
    return True, node


def describe_validation_error(
    error: msgspec.ValidationError,
    raw: bytes,
    where: str,
    enums: Mapping[str, tuple[str, ...]],
    render: Callable[[Any], str] = value_repr,
) -> str:
    """Rewrite a msgspec error as ``<where><path>: <what>, got <value>`` (the value as ``render``
    shows it)."""
    match = _MSGSPEC_ERROR.match(str(error))
    assert match is not None  # the pattern matches any string
    detail, path = match["detail"], match["path"] or ""
    missing = _MISSING_FIELD.match(detail)
    if missing:
        return f"{where}{path}.{missing['field']}: required field is missing"
    try:
        found, value = _lookup(_GENERIC_DECODER.decode(raw), path)
    except (msgspec.DecodeError, UnicodeDecodeError):
        found, value = False, None
    location = f"{where}{path}"
    if _BAD_ENUM.match(detail):
        allowed = enums.get(path.lstrip("."), ())
        options = f", expected one of {', '.join(allowed)}" if allowed else ""
        shown = detail.removeprefix("Invalid enum value ")
        got = render(value) if found else shown if render is value_repr else masked_repr(shown)
        return f"{location}: invalid value {got}{options}"
    text = detail.replace("`", "").replace("\\\\Z", "$")
    text = text[:1].lower() + text[1:]
    if found and not (value is None and text.endswith("got null")):
        sep = " " if _ENDS_WITH_GOT_TYPE.search(text) else ", got "
        text = f"{text}{sep}{render(value)}"
    return f"{location}: {text}"
