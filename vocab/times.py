"""Times as the hub stores them (naive datetimes in UTC) and shows them (ISO 8601 with a Z)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

DURATION_RE = re.compile(r"([0-9]{1,5})([mhd])")
DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def utc_naive(value: datetime | float) -> datetime:
    """A naive UTC datetime from an aware/naive (assumed UTC) datetime or epoch seconds."""
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def minute_of(value: datetime) -> datetime:
    """The naive UTC datetime truncated to its minute."""
    return utc_naive(value).replace(second=0, microsecond=0)


def isoformat(value: datetime | None) -> str | None:
    """'2024-05-01T12:03:09Z' (seconds), None for None."""
    return value.isoformat(timespec="seconds") + "Z" if value else None


def parse_duration(text: str) -> timedelta:
    """'90m', '24h', '7d' -> a timedelta; ValueError for anything else (and for zero)."""
    match = DURATION_RE.fullmatch(str(text).strip())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration such as 90m, 24h or 7d")
    return timedelta(**{DURATION_UNITS[match.group(2)]: int(match.group(1))})
