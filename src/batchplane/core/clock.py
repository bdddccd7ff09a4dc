"""Time as an injectable dependency, so that tests control it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Returns the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """An aware datetime: SQLite gives naive ones back, and everything stored is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def rfc3339(moment: datetime) -> str:
    """Format as RFC 3339 with millisecond precision and a `Z` suffix."""
    return as_utc(moment).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
