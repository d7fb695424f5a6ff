"""Legal time of the German metering system: Europe/Berlin days on a UTC quarter-hour grid.

All instants in imsys are timezone-aware UTC. Berlin's offset is a whole hour, so the local
quarter-hour grid is the UTC quarter-hour grid; a local day has 96 quarter hours, 92 on the
spring DST day and 100 on the autumn one (facts.md §1.2, TAF7). Gateway (TAF evaluation) and
metering point operator (plausibility, substitutes) share these definitions.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from imsys.core.errors import UsageError

BERLIN = ZoneInfo("Europe/Berlin")
GRID = timedelta(minutes=15)
DAY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def as_utc(instant: datetime, name: str = "instant") -> datetime:
    """``instant`` in UTC; a naive datetime is a caller's bug (:class:`UsageError`)."""
    if not isinstance(instant, datetime):
        raise UsageError(f"{name} must be a datetime, got {type(instant).__name__}")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise UsageError(f"{name} must be timezone-aware (UTC), got naive {instant.isoformat()}")
    return instant.astimezone(UTC)


def local_day(instant: datetime) -> date:
    """The local (Europe/Berlin) calendar day ``instant`` falls on."""
    return as_utc(instant).astimezone(BERLIN).date()


def day_start(day: date) -> datetime:
    """Local midnight at the start of ``day``, as UTC."""
    return datetime.combine(day, time(0), tzinfo=BERLIN).astimezone(UTC)


def day_end(day: date) -> datetime:
    """Local midnight at the end of ``day`` (= start of the next day), as UTC."""
    return day_start(day + DAY)


def grid_floor(instant: datetime) -> datetime:
    """The quarter hour at or before ``instant`` (UTC; equal to the local quarter hour)."""
    utc = as_utc(instant)
    return utc - (utc - _EPOCH) % GRID


def on_grid(instant: datetime) -> bool:
    """True if ``instant`` is exactly a quarter hour."""
    return grid_floor(instant) == as_utc(instant)
