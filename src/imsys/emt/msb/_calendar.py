"""Local time for the MSB: Europe/Berlin days, the quarter-hour grid and day types.

All instants are timezone-aware UTC. Berlin's UTC offset is a whole hour, so the local
quarter-hour grid is the UTC quarter-hour grid; a local day has 96 quarter hours, 92 on the spring
DST day and 100 on the autumn DST day (facts.md §1.2 TAF7 DST). The MSB is its own role process,
so it does not import the gateway's calendar; both build on :mod:`imsys.core.localtime`.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from functools import lru_cache

import holidays

from imsys.core.errors import UsageError

# re-exported: the role's modules import local time from here
from imsys.core.localtime import (
    BERLIN as BERLIN,
)
from imsys.core.localtime import (
    DAY as DAY,
)
from imsys.core.localtime import (
    GRID as GRID,
)
from imsys.core.localtime import (
    as_utc as as_utc,
)
from imsys.core.localtime import (
    day_end as day_end,
)
from imsys.core.localtime import (
    day_start as day_start,
)
from imsys.core.localtime import (
    grid_floor as grid_floor,
)
from imsys.core.localtime import (
    local_day as local_day,
)


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
