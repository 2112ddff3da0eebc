"""Time helpers. Inside the simulator every instant is an ``int`` of milliseconds since the Unix
epoch (UTC), which keeps arithmetic exact and outputs byte-identical."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MS_PER_S = 1_000
MS_PER_MIN = 60 * MS_PER_S
MS_PER_H = 60 * MS_PER_MIN
MS_PER_DAY = 24 * MS_PER_H

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|([+-])(\d{2}):(\d{2}))$"
)


def date_to_ms(day: date) -> int:
    """Midnight UTC of ``day``."""
    return (day - EPOCH.date()).days * MS_PER_DAY


def ms_to_datetime(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def ms_to_utc_date(ms: int) -> date:
    return EPOCH.date() + timedelta(days=ms // MS_PER_DAY)


def format_offset(offset_min: int) -> str:
    if offset_min == 0:
        return "Z"
    sign = "+" if offset_min > 0 else "-"
    hours, minutes = divmod(abs(offset_min), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def format_local(ms: int, offset_min: int) -> str:
    """RFC 3339 with milliseconds in the sender's local offset, e.g. ``2026-01-03T21:15:02.123+09:00``."""
    local = ms_to_datetime(ms + offset_min * MS_PER_MIN)
    return f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond // 1000:03d}{format_offset(offset_min)}"


def format_local_naive(ms: int, offset_min: int) -> str:
    """Local wall-clock time with no offset at all (what a broken client sends)."""
    return format_local(ms, offset_min)[:23]


def format_utc(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``."""
    utc = moment.astimezone(timezone.utc)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def format_utc_seconds(moment: datetime) -> str:
    """ISO-8601 in UTC to the second with ``Z`` (the style of the database extracts)."""
    return f"{moment.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%S}Z"


def parse_timestamp(text: str) -> datetime:
    """Parse a contract timestamp (RFC 3339 with an offset, up to 9 fractional digits) into an
    aware UTC datetime, truncating below the microsecond."""
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp with an offset: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    micros = int((match.group(7) or "0").ljust(9, "0")[:6])
    offset = timedelta(0)
    if match.group(9):
        offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        if match.group(9) == "-":
            offset = -offset
    local = datetime(year, month, day, hour, minute, second, micros, tzinfo=timezone(offset))
    return local.astimezone(timezone.utc)
