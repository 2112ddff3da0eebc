"""The contract's typed decoders, built at import from the JSON Schema file: enums, patterns,
lengths, minimums, defaults, and which params go with which event_name. Nothing else restates them;
a keyword the decoders cannot express is a ``ContractError`` at import, not a silent gap."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, Raw, UnsetType

from . import ContractError, ecma_to_python_pattern, load_game_event_schema, resolve_ref

_ANNOTATION_KEYS: Final = frozenset(
    {"description", "title", "$comment", "examples", "default", "format", "deprecated"}
)
_KNOWN_FORMATS: Final = frozenset({"uuid", "date-time"})
_CONTRACT_COLUMNS: Final = (
    "event_id",
    "event_name",
    "event_timestamp",
    "game_id",
    "player_id",
    "session_id",
    "platform",
    "app_version",
    "country",
    "schema_version",
)


def _check_keys(node: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = set(node) - allowed - _ANNOTATION_KEYS
    if unknown:
        raise ContractError(f"{where}: keyword(s) {sorted(unknown)} not supported by the validator")


def _scalar_type(node: Mapping[str, Any], where: str) -> Any:
    """The msgspec type of one scalar property schema."""
    if "enum" in node or "const" in node:
        _check_keys(node, frozenset({"enum", "const", "type"}), where)
        values = tuple(node["enum"]) if "enum" in node else (node["const"],)
        if not values or not all(isinstance(v, str) for v in values):
            raise ContractError(f"{where}: only non-empty enums of strings are supported")
        return Literal[values]  # type: ignore[valid-type]
    fmt = node.get("format")
    if fmt is not None and fmt not in _KNOWN_FORMATS:
        raise ContractError(f"{where}: format {fmt!r} not supported by the validator")
    if fmt == "uuid" and "pattern" not in node:
        raise ContractError(f"{where}: format 'uuid' needs a pattern that spells it out")
    kind = node.get("type")
    if kind == "string":
        _check_keys(node, frozenset({"type", "pattern", "minLength", "maxLength"}), where)
        meta = msgspec.Meta(
            pattern=ecma_to_python_pattern(node["pattern"]) if "pattern" in node else None,
            min_length=node.get("minLength"),
            max_length=node.get("maxLength"),
        )
        return Annotated[str, meta]
    if kind in ("integer", "number"):
        _check_keys(
            node,
            frozenset({"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}),
            where,
        )
        meta = msgspec.Meta(
            ge=node.get("minimum"),
            le=node.get("maximum"),
            gt=node.get("exclusiveMinimum"),
            lt=node.get("exclusiveMaximum"),
        )
        return Annotated[int if kind == "integer" else float, meta]
    if kind == "boolean":
        _check_keys(node, frozenset({"type"}), where)
        return bool
    raise ContractError(f"{where}: type {kind!r} not supported by the validator")


def _object_struct(
    name: str,
    node: Mapping[str, Any],
    root: dict[str, Any],
    where: str,
    raw_fields: frozenset[str] = frozenset(),
    skip_keys: frozenset[str] = frozenset(),
) -> type[msgspec.Struct]:
    """A Struct for an object schema. ``raw_fields`` are kept as undecoded JSON (``Raw``)."""
    if "$ref" in node:
        node = resolve_ref(root, node["$ref"])
    _check_keys(
        node,
        frozenset({"type", "properties", "required", "additionalProperties"}) | skip_keys,
        where,
    )
    if node.get("type") != "object":
        raise ContractError(f"{where}: expected an object schema, got type {node.get('type')!r}")
    required = set(node.get("required", ()))
    fields: list[tuple[Any, ...]] = []
    for prop, sub in node.get("properties", {}).items():
        sub_where = f"{where}.{prop}"
        if prop in raw_fields:
            _object_struct(f"{name}_{prop}", sub, root, sub_where)  # must itself be supported
            fields.append((prop, Raw, Raw()))  # an empty Raw means "absent"
            continue
        typ = _scalar_type(sub, sub_where)
        if prop in required:
            fields.append((prop, typ))
        else:
            fields.append((prop, typ | UnsetType, sub.get("default", UNSET)))
    missing = required - set(node.get("properties", {}))
    if missing:
        raise ContractError(f"{where}: required field(s) {sorted(missing)} have no schema")
    return msgspec.defstruct(
        name,
        fields,
        kw_only=True,
        forbid_unknown_fields=node.get("additionalProperties", True) is False,
    )


@dataclass(frozen=True)
class _ParamsRule:
    decoder: msgspec.json.Decoder[Any]
    required: bool


def _params_rules(
    root: dict[str, Any],
) -> tuple[Mapping[str, _ParamsRule], _ParamsRule]:
    """Read the ``allOf`` of ``if event_name is X then params ...`` blocks of the contract."""
    default_struct = _object_struct("Params", root["properties"]["params"], root, "params")
    default = _ParamsRule(msgspec.json.Decoder(default_struct), required=False)
    rules: dict[str, _ParamsRule] = {}
    for n, block in enumerate(root.get("allOf", ())):
        where = f"allOf[{n}]"
        cond, then = block.get("if", {}), block.get("then", {})
        if set(block) - {"if", "then"} or set(cond.get("properties", {})) != {"event_name"}:
            raise ContractError(f"{where}: only 'if event_name ... then params ...' is supported")
        if set(then) - {"required", "properties"} or set(then.get("properties", {})) - {"params"}:
            raise ContractError(f"{where}: a 'then' may only constrain params")
        if set(then.get("required", ())) - {"params"}:
            raise ContractError(f"{where}: a 'then' may only require params")
        name_schema = cond["properties"]["event_name"]
        names = name_schema["enum"] if "enum" in name_schema else [name_schema["const"]]
        params_schema = then.get("properties", {}).get("params", root["properties"]["params"])
        struct = _object_struct(f"Params_{n}", params_schema, root, f"{where}.then.params")
        rule = _ParamsRule(msgspec.json.Decoder(struct), required="params" in then.get("required", ()))
        for event_name in names:
            if event_name in rules:
                raise ContractError(f"{where}: event_name {event_name!r} has two params rules")
            rules[event_name] = rule
    return MappingProxyType(rules), default


@dataclass(frozen=True)
class Contract:
    event_decoder: msgspec.json.Decoder[Any]
    params_rules: Mapping[str, _ParamsRule]
    default_params: _ParamsRule
    enums: Mapping[str, tuple[str, ...]]


def build_contract(root: dict[str, Any]) -> Contract:
    props = root.get("properties", {})
    columns = tuple(p for p in props if p != "params")
    if set(columns) != set(_CONTRACT_COLUMNS) or "params" not in props:
        raise ContractError(
            f"properties: the contract's columns {sorted(columns)} differ from the typed "
            f"columns {sorted(_CONTRACT_COLUMNS)}; update ValidEvent and the bronze schema"
        )
    if props["event_timestamp"].get("format") != "date-time":
        raise ContractError("properties.event_timestamp: expected format 'date-time'")
    event_struct = _object_struct(
        "GameEvent",
        root,
        root,
        "$",
        raw_fields=frozenset({"params"}),
        skip_keys=frozenset({"$schema", "$id", "allOf", "$defs"}),
    )
    rules, default = _params_rules(root)
    enums = {p: tuple(s["enum"]) for p, s in props.items() if "enum" in s}
    return Contract(
        event_decoder=msgspec.json.Decoder(event_struct),
        params_rules=rules,
        default_params=default,
        enums=MappingProxyType(enums),
    )


CONTRACT: Final = build_contract(load_game_event_schema())
