"""Local time for the MSB: Europe/Berlin days, the quarter-hour grid and day types.

All instants are timezone-aware UTC. Berlin's UTC offset is a whole hour, so the local
quarter-hour grid is the UTC quarter-hour grid; a local day has 96 quarter hours, 92 on the spring
DST day and 100 on the autumn DST day (facts.md §1.2 TAF7 DST). The MSB is its own role process,
so it keeps this small calendar itself instead of importing the gateway's.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

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
        raise UsageError(f"{name} must be timezone-aware, got naive {instant.isoformat()}")
    return instant.astimezone(UTC)


def local_day(instant: datetime) -> date:
    """The local (Europe/Berlin) day ``instant`` falls on."""
    return as_utc(instant).astimezone(BERLIN).date()


def day_start(day: date) -> datetime:
    """Local midnight at the start of ``day``, in UTC."""
    return datetime.combine(day, time(0), tzinfo=BERLIN).astimezone(UTC)


def day_end(day: date) -> datetime:
    """Local midnight at the end of ``day``, in UTC."""
    return day_start(day + DAY)


def grid_floor(instant: datetime) -> datetime:
    """The quarter hour at or before ``instant``."""
    utc = as_utc(instant)
    return utc - (utc - _EPOCH) % GRID


def nearest_boundary(instant: datetime) -> datetime:
    """The quarter hour nearest to ``instant`` (a tie goes to the later one)."""
    floor = grid_floor(instant)
    return floor + GRID if as_utc(instant) - floor >= GRID / 2 else floor


def boundaries(start: datetime, end: datetime) -> tuple[datetime, ...]:
    """Quarter hours ``b`` with ``start ≤ b ≤ end`` (both inclusive), UTC."""
    lo, hi = as_utc(start, "start"), as_utc(end, "end")
    if hi < lo:
        raise UsageError(f"end {hi.isoformat()} is before start {lo.isoformat()}")
    first = grid_floor(lo)
    if first < lo:
        first += GRID
    count = (hi - first) // GRID + 1 if first <= hi else 0
    return tuple(first + i * GRID for i in range(count))


def slot_of_day(instant: datetime) -> int:
    """Index of the quarter hour starting at ``instant`` within its local day (0 = midnight)."""
    utc = as_utc(instant)
    return (utc - day_start(local_day(utc))) // GRID


def month_start(day: date) -> date:
    return day.replace(day=1)


def previous_month(day: date) -> tuple[date, date]:
    """First day of the month before ``day``'s month and first day of ``day``'s month."""
    this = month_start(day)
    prev = (this - DAY).replace(day=1)
    return prev, this


class DayType(StrEnum):
    """Day types for comparable-day profiles."""

    WORKDAY = "workday"  # Monday–Friday that is not a nationwide public holiday
    SATURDAY = "saturday"
    SUNDAY_OR_HOLIDAY = "sunday-or-holiday"


@lru_cache(maxsize=64)
def _german_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("DE", years=year).keys())


def day_type(day: date) -> DayType:
    """Day type of ``day`` (nationwide German public holidays count as Sundays)."""
    if day.weekday() == 6 or day in _german_holidays(day.year):
        return DayType.SUNDAY_OR_HOLIDAY
    if day.weekday() == 5:
        return DayType.SATURDAY
    return DayType.WORKDAY
