"""Typing and validating a whole Arrow table of text values at once (pure).

The result is exactly what typing each row with :func:`ingestion.batch.export_reader.type_row` gives
(same values, same reasons): every column goes through its own parser, and Arrow only takes a
shortcut where it provably agrees with that parser:

- text columns parsed by ``parse_string`` keep, unchanged, every value holding a letter or a digit
  (such a value is never blank); the other values go through the parser one by one;
- timestamps parsed by ``parse_timestamp`` in the strict form ``YYYY-MM-DDTHH:MM:SS[.ffffff]`` with
  ``Z`` or ``+00:00`` are cast by Arrow (which, like the parser, refuses impossible dates: if a cast
  fails, the whole column goes through the parser);
- every other column (booleans, decimals, currencies, dates) is parsed once per distinct value.

Rows with a problem are returned as (row index, reason, kind); the rest form the typed table. A key
held by more than one valid row rejects every copy.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ingestion.batch.parsing import FieldError, parse_string, parse_timestamp
from ingestion.batch.sources import (
    DUPLICATE_KEY,
    TIMESTAMP,
    BatchSource,
    Column,
    duplicate_reason,
    key_of,
    missing_kind,
)

_HAS_WORD_CHARACTER = r"[0-9A-Za-z]"
_STRICT_UTC_TIMESTAMP = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|\+00:00)$"
)


def parse_field(source: BatchSource, column: Column, text: str | None) -> tuple[Any, FieldError | None]:
    """One value through its column's parser: (typed value, None) or (None, problem)."""
    try:
        value = column.parse(column.name, text)
    except FieldError as error:
        return None, error
    if value is None and column.required:
        return None, FieldError(column.name, text, "is required but null or empty", missing_kind(source, column.name))
    return value, None


@dataclass(frozen=True)
class TypedColumn:
    values: pa.Array
    problems: dict[int, FieldError]  # row index -> problem


def _parse_rows(
    source: BatchSource, column: Column, texts: list[str | None], rows: Sequence[int]
) -> tuple[dict[int, Any], dict[int, FieldError]]:
    values: dict[int, Any] = {}
    problems: dict[int, FieldError] = {}
    for row in rows:
        value, problem = parse_field(source, column, texts[row])
        if problem is None:
            values[row] = value
        else:
            problems[row] = problem
    return values, problems


def _by_parser(source: BatchSource, column: Column, texts: pa.Array) -> TypedColumn:
    """Every value through the column's parser."""
    raw = texts.to_pylist()
    values, problems = _parse_rows(source, column, raw, range(len(raw)))
    return TypedColumn(pa.array([values.get(row) for row in range(len(raw))], type=column.type), problems)


def _with_shortcut(source: BatchSource, column: Column, texts: pa.Array, sure: pa.Array, cast: pa.Array) -> TypedColumn:
    """``cast`` where ``sure`` holds; the parser decides the other rows."""
    rows = pc.indices_nonzero(pc.invert(pc.fill_null(sure, False))).to_pylist()
    if not rows:
        return TypedColumn(cast, {})
    values, problems = _parse_rows(source, column, texts.to_pylist(), rows)
    merged = cast.to_pylist()
    for row in rows:
        merged[row] = values.get(row)
    return TypedColumn(pa.array(merged, type=column.type), problems)


def _by_distinct_value(source: BatchSource, column: Column, texts: pa.Array) -> TypedColumn:
    """Each distinct value (and NULL) through the parser once, then spread back to the rows."""
    encoded = pc.dictionary_encode(texts)
    parsed = [parse_field(source, column, text) for text in encoded.dictionary.to_pylist()]
    null_value, null_problem = parse_field(source, column, None)
    values = pc.take(pa.array([value for value, _ in parsed], type=column.type), encoded.indices)
    if encoded.null_count and null_value is not None:
        values = pc.fill_null(values, pa.scalar(null_value, type=column.type))
    bad_codes = {code for code, (_, problem) in enumerate(parsed) if problem is not None}
    problems: dict[int, FieldError] = {}
    if bad_codes or (encoded.null_count and null_problem is not None):
        for row, code in enumerate(encoded.indices.to_pylist()):
            problem = null_problem if code is None else parsed[code][1]
            if problem is not None:
                problems[row] = problem
    return TypedColumn(values, problems)


def type_column(source: BatchSource, column: Column, texts: pa.Array) -> TypedColumn:
    if column.parse is parse_string and pa.types.is_string(column.type):
        return _with_shortcut(source, column, texts, pc.match_substring_regex(texts, _HAS_WORD_CHARACTER), texts)
    if column.parse is parse_timestamp and column.type == TIMESTAMP:
        sure = pc.fill_null(pc.match_substring_regex(texts, _STRICT_UTC_TIMESTAMP), False)
        try:
            cast = pc.cast(pc.if_else(sure, texts, pa.scalar(None, pa.string())), TIMESTAMP)
        except pa.ArrowInvalid:
            return _by_parser(source, column, texts)
        return _with_shortcut(source, column, texts, sure, cast)
    return _by_distinct_value(source, column, texts)


@dataclass(frozen=True)
class TypedBatch:
    valid: pa.Table  # the source's typed columns (no lineage), in input order
    rejected: list[tuple[int, str, str]]  # (row index in the input, reason, kind), in input order


def duplicate_rows(source: BatchSource, table: pa.Table) -> list[int]:
    """The rows of ``table`` whose key another row of ``table`` shares."""
    if table.num_rows == 0:
        return []
    keys = [pc.cast(table.column(name), pa.string()) for name in source.key]
    joined = keys[0] if len(keys) == 1 else pc.binary_join_element_wise(*keys, "\x1f")
    counts = pc.value_counts(joined)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return []
    return pc.indices_nonzero(pc.is_in(joined, value_set=repeated)).to_pylist()


def _without_rows(table: pa.Table, rows: Sequence[int]) -> pa.Table:
    if not rows:
        return table
    return table.filter(pc.invert(pc.is_in(pa.array(range(table.num_rows), pa.int64()), value_set=pa.array(rows, pa.int64()))))


def type_batch(source: BatchSource, texts: pa.Table) -> TypedBatch:
    """Type and validate every row of ``texts`` (string columns named like the source's columns).
    Sources with whole-row checks are typed row by row instead."""
    if source.row_checks:
        raise ValueError(f"source {source.name} has row checks; type its rows one by one")
    typed = {c.name: type_column(source, c, texts.column(c.name).combine_chunks()) for c in source.columns}
    problems: dict[int, list[FieldError]] = {}
    for column in source.columns:
        for row, problem in typed[column.name].problems.items():
            problems.setdefault(row, []).append(problem)
    rejected = [(row, "; ".join(map(str, found)), found[0].kind) for row, found in problems.items()]
    table = _without_rows(pa.table({c.name: typed[c.name].values for c in source.columns}), sorted(problems))
    kept = [row for row in range(texts.num_rows) if row not in problems]

    duplicates = duplicate_rows(source, table)
    if duplicates:
        keys = {row: key_of(source, {name: table.column(name)[row].as_py() for name in source.key})
                for row in duplicates}
        copies = {key: list(keys.values()).count(key) for key in set(keys.values())}
        rejected += [(kept[row], duplicate_reason(source, key, copies[key]), DUPLICATE_KEY) for row, key in keys.items()]
        table = _without_rows(table, duplicates)
    return TypedBatch(table.cast(pa.schema([c.field() for c in source.columns])), sorted(rejected))

