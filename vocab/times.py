"""Times as the hub stores them (naive datetimes in UTC) and shows them (ISO 8601 with a Z)."""

from __future__ import annotations

from datetime import UTC, datetime


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
