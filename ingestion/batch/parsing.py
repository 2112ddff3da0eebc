"""Pure parsers for the text values of the batch exports.

Each parser takes the raw CSV text of one field (``None`` when the field is absent) and returns the
typed value, or raises :class:`FieldError` naming the field and the value. Nothing here does I/O.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal, localcontext
from typing import Any

# A field parser: (field name, raw text or None) -> typed value or None; raises FieldError.
Parser = Callable[[str, str | None], Any]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# ISO-8601 date and time with an explicit UTC offset; fromisoformat alone also accepts a bare date.
_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$"
)
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")

# Common ISO 4217 currency codes. Not the whole standard: a currency missing here is rejected
# loudly (reason names it), never guessed, and is added here when the studio starts selling in it.
ISO_4217: frozenset[str] = frozenset(
    """
    AED ARS AUD BGN BRL CAD CHF CLP CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR ISK JPY KRW
    KWD KZT MAD MXN MYR NGN NOK NZD PEN PHP PKR PLN QAR RON RSD RUB SAR SEK SGD THB TRY TWD UAH
    USD VND ZAR
    """.split()
)


class FieldError(ValueError):
    """A field's value is missing or does not parse; the message names the field and the value,
    ``kind`` is the short code the load's rejection counts are kept under."""

    def __init__(self, field: str, value: str | None, problem: str, kind: str = "wrong_type") -> None:
        self.field = field
        self.value = value
        self.kind = kind
        super().__init__(f"{field} {value!r} {problem}")


def is_blank(value: str | None) -> bool:
    return value is None or value.strip() == ""


def parse_string(field: str, value: str | None) -> str | None:
    """Text as exported; an empty field is NULL."""
    return None if is_blank(value) else value


def parse_bool(field: str, value: str | None) -> bool | None:
    if is_blank(value):
        return None
    if value == "true":
        return True
    if value == "false":
        return False
    raise FieldError(field, value, "is not a boolean (expected true or false)")


def matching(field: str, value: str | None, pattern: re.Pattern[str], problem: str) -> str | None:
    """``value`` when it matches ``pattern``, None when blank; raises FieldError naming ``problem``."""
    if is_blank(value):
        return None
    assert value is not None
    if not pattern.match(value):
        raise FieldError(field, value, problem)
    return value


def parse_date(field: str, value: str | None) -> date | None:
    if matching(field, value, _DATE, "is not a date (expected YYYY-MM-DD)") is None:
        return None
    assert value is not None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise FieldError(field, value, "is not a valid calendar date") from None


def parse_timestamp(field: str, value: str | None) -> datetime | None:
    """An ISO-8601 timestamp with a UTC offset (``Z`` or ``+hh:mm``), returned in UTC."""
    problem = "is not an ISO-8601 timestamp with a UTC offset (e.g. 2024-01-31T12:00:00Z)"
    if matching(field, value, _TIMESTAMP, problem) is None:
        return None
    assert value is not None
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise FieldError(field, value, "is not a valid calendar timestamp") from None
    return parsed.astimezone(timezone.utc)


def decimal_parser(precision: int, scale: int) -> Parser:
    """A parser for exact decimals that fit ``decimal128(precision, scale)``: never a binary float,
    never rounded (a value with more fractional digits than ``scale`` is an error, not a guess)."""

    def parse(field: str, value: str | None) -> Decimal | None:
        if matching(field, value, _DECIMAL, "is not a decimal number") is None:
            return None
        assert value is not None
        with localcontext() as context:
            context.prec = 2 * precision + len(value)  # wide enough that nothing here rounds
            number = Decimal(value)
            quantized = number.quantize(Decimal(1).scaleb(-scale))
            if quantized != number:
                raise FieldError(field, value, f"has more than {scale} decimal places")
        if len(quantized.as_tuple().digits) > precision:
            raise FieldError(field, value, f"does not fit decimal({precision}, {scale})")
        return quantized

    return parse


def requiring(parser: Parser, holds: Callable[[Any], bool], problem: str, kind: str) -> Parser:
    """``parser``, then require ``holds(value)`` of every value it returns (NULL aside)."""

    def parse(field: str, value: str | None) -> Any:
        parsed = parser(field, value)
        if parsed is not None and not holds(parsed):
            raise FieldError(field, value, problem, kind)
        return parsed

    return parse


def positive(parser: Parser, kind: str = "not_positive") -> Parser:
    """``parser``, then require the value to be strictly greater than zero."""
    return requiring(parser, lambda number: number > 0, "is not greater than 0", kind)


def non_negative(parser: Parser, kind: str = "negative") -> Parser:
    """``parser``, then require the value to be zero or more."""
    return requiring(parser, lambda number: number >= 0, "is negative", kind)


def parse_currency(field: str, value: str | None) -> str | None:
    """A 3-letter upper-case ISO 4217 code from :data:`ISO_4217`."""
    if is_blank(value):
        return None
    if value not in ISO_4217:
        raise FieldError(field, value, "is not a known ISO 4217 currency code", "unknown_currency")
    return value
