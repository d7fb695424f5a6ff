"""Local time, billing periods, registration grids and the TAF2 tariff calendar.

All instants in and out are timezone-aware UTC. Day boundaries, day profiles and billing periods
are local legal time of Germany (``Europe/Berlin``, :mod:`zoneinfo`).

Rules (sources are the tags of ``shared/spec/facts.md``):

* **15-minute grid.** Tariff switch points lie on the quarter hour (facts.md §1.2 TAF2, TRuDI
  ``ContextValidation.cs`` [V]); registration periods are 15 min × n (§1.2 TAF7, LH-TRUDI [V]).
  Berlin's UTC offset is always a whole hour, so the local quarter-hour grid *is* the UTC
  quarter-hour grid; only wall-clock labels differ.
* **Local days.** A day runs from local midnight to the next local midnight. Midnight exists on
  every day in Berlin (the DST jumps are at 02:00→03:00 and 03:00→02:00), so a day has 96
  quarter hours, 92 on the spring day (last Sunday of March) and 100 on the autumn day (last
  Sunday of October) (facts.md §1.2 TAF7 DST [S]).
* **Billing periods** start on the 1st of a month at local midnight and last 1, 2, 3, 6 or 12
  months (facts.md §1.2 TAF1, TRuDI ``TafAdapterTaf1.cs`` [V]); they repeat back to back from
  their start.
* **Day types.** Each local day uses one day profile: a special day (explicit date) first, then
  Sundays and public holidays (``holidays`` package, Germany, nationwide or one state), then
  Saturdays, then weekdays (Monday–Friday).
* **Day profiles** are switch points (time of day on the 15-minute grid, tariff stage); the first
  must be 00:00, so each day's stages do not depend on the day before.
* **DST rule for switch points** (imsys's own, the TR text was not available): every switch
  point takes effect exactly once per day, at the first quarter hour whose local wall-clock time
  has reached it. On the spring day a switch at 02:00–02:45 (a time that does not exist) takes
  effect at 03:00 CEST; on the autumn day a switch at 02:00–02:45 takes effect at its first
  occurrence (CEST) and is not repeated in the second 02:00–03:00 (CET) – the stage simply stays.
* **Registration boundaries** (TAF7) are the quarter hours whose local wall-clock time of day
  is a multiple of the registration period (counted from local midnight). For 15, 30 and 60 min
  this gives 96/48/24 values a day, 92/46/23 on the spring day and 100/50/25 on the autumn day;
  for longer periods the missing 02:00 (spring) is skipped and the repeated 02:00 (autumn)
  counts twice.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

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
from imsys.core.localtime import (
    on_grid as on_grid,
)
from imsys.gateway.taf.errors import ProfileRejected, TafReason

#: Local legal time of the German metering system.
#: The quarter-hour grid of switch points and registration periods.
#: One calendar day of wall-clock time (not of real time on DST days).
#: Lengths a billing period may have, in months (facts.md §1.2 TAF1, TRuDI [V]).
BILLING_PERIOD_MONTHS: frozenset[int] = frozenset({1, 2, 3, 6, 12})
#: Most tariff stages a TAF2 profile may declare (facts.md §1.2 TAF2, TRuDI [V]).
MAX_TARIFF_STAGES = 20



# --- instants and local days ----------------------------------------------------------------


def quarter_hours(day: date) -> tuple[datetime, ...]:
    """Start instants (UTC) of the quarter hours of local ``day``: 96, 92 or 100 of them."""
    start, end = day_start(day), day_end(day)
    count = (end - start) // GRID
    return tuple(start + i * GRID for i in range(count))


def wall_minutes(instant: datetime) -> int:
    """Local wall-clock minutes since midnight of ``instant`` (0..1439)."""
    local = as_utc(instant).astimezone(BERLIN)
    return local.hour * 60 + local.minute


# --- registration periods (TAF7) ------------------------------------------------------------


def validate_registration_period(period: timedelta) -> timedelta:
    """``period`` if it is 15 min × n (n ≥ 1) and divides a day, else :class:`ProfileRejected`.

    facts.md §1.2 TAF7 (LH-TRUDI [V]): smallest registration period 15 min, periods integer
    multiples of 15 min. Dividing a day keeps every local day's grid anchored at midnight.
    """
    if not isinstance(period, timedelta):
        raise ProfileRejected(
            TafReason.BAD_REGISTRATION_PERIOD, "registration period must be a timedelta"
        )
    if period < GRID or period % GRID or DAY % period:
        raise ProfileRejected(
            TafReason.BAD_REGISTRATION_PERIOD,
            f"registration period {period} is not 15 min × n dividing a day",
            registration_period_s=period.total_seconds(),
        )
    return period


def registration_boundaries(day: date, period: timedelta) -> tuple[datetime, ...]:
    """Registration boundaries (UTC) in local ``day`` [midnight, next midnight).

    A quarter hour is a boundary when its local wall-clock time is a multiple of ``period``
    since midnight (see the module rules): 96/92/100 for 15 min.
    """
    validate_registration_period(period)
    step = int(period // timedelta(minutes=1))
    return tuple(q for q in quarter_hours(day) if wall_minutes(q) % step == 0)


# --- billing periods (TAF1) -----------------------------------------------------------------


class Period(NamedTuple):
    """One billing period: its number counted from the anchor (0, 1, …) and its UTC bounds."""

    index: int
    start: datetime
    end: datetime


def _add_months(day: date, months: int) -> date:
    total = day.year * 12 + (day.month - 1) + months
    return date(total // 12, total % 12 + 1, 1)


@dataclass(frozen=True, slots=True)
class BillingPeriod:
    """Back-to-back billing periods of ``months`` months from the 1st of a month (local time).

    facts.md §1.2 TAF1 [V] (TRuDI accepts only periods starting on the 1st and lasting 1, 2, 3,
    6 or 12 months); OBS [S]: shortest period one month, multiples allowed.
    """

    start: date
    months: int

    def __post_init__(self) -> None:
        if type(self.start) is not date:
            raise ProfileRejected(
                TafReason.BAD_BILLING_PERIOD, "billing period start must be a date"
            )
        if self.start.day != 1:
            raise ProfileRejected(
                TafReason.BAD_BILLING_PERIOD,
                f"billing period must start on the 1st of a month, not {self.start.isoformat()}",
                start=self.start.isoformat(),
            )
        if type(self.months) is not int or self.months not in BILLING_PERIOD_MONTHS:
            raise ProfileRejected(
                TafReason.BAD_BILLING_PERIOD,
                f"billing period length must be 1, 2, 3, 6 or 12 months, not {self.months!r}",
                months=self.months,
            )

    def period(self, index: int) -> Period:
        """The ``index``-th period (0 = the one starting at :attr:`start`)."""
        if index < 0:
            raise UsageError("billing periods are counted from their start (index ≥ 0)")
        first = _add_months(self.start, index * self.months)
        last = _add_months(self.start, (index + 1) * self.months)
        return Period(index, day_start(first), day_start(last))

    def index_at(self, instant: datetime) -> int | None:
        """Number of the period containing ``instant``; None before the first period."""
        utc = as_utc(instant)
        if utc < day_start(self.start):
            return None
        here = local_day(utc)
        index = ((here.year - self.start.year) * 12 + here.month - self.start.month) // self.months
        return index

    def periods(self, start: datetime, end: datetime) -> tuple[Period, ...]:
        """Whole periods inside [``start``, ``end``]: start ≤ period.start, period.end ≤ end."""
        lo, hi = as_utc(start, "start"), as_utc(end, "end")
        index = self.index_at(lo)
        index = 0 if index is None else index
        out: list[Period] = []
        while True:
            current = self.period(index)
            if current.end > hi:
                return tuple(out)
            if current.start >= lo:
                out.append(current)
            index += 1


# --- tariff calendar (TAF2) -----------------------------------------------------------------


def _check_stage(stage: object) -> int:
    if type(stage) is not int or not 1 <= stage <= MAX_TARIFF_STAGES:
        raise ProfileRejected(
            TafReason.BAD_TARIFF_STAGE,
            f"tariff stage must be an integer 1..{MAX_TARIFF_STAGES}, not {stage!r}",
            stage=stage,
        )
    return stage


@dataclass(frozen=True, slots=True)
class Switch:
    """A switch point of a day profile: from local time ``at`` on, ``stage`` is active."""

    at: time
    stage: int

    def __post_init__(self) -> None:
        if not isinstance(self.at, time) or self.at.tzinfo is not None:
            raise ProfileRejected(
                TafReason.OFF_GRID_SWITCH_TIME, "switch time must be a naive local time of day"
            )
        if self.at.minute % 15 or self.at.second or self.at.microsecond:
            raise ProfileRejected(
                TafReason.OFF_GRID_SWITCH_TIME,
                f"switch time {self.at.isoformat()} is not on the 15-minute grid",
                at=self.at.isoformat(),
            )
        _check_stage(self.stage)


@dataclass(frozen=True, slots=True)
class DayProfile:
    """One day's switch points, ordered, the first at 00:00 (AR 2418-6 ``DayProfile``)."""

    day_id: int
    switches: tuple[Switch, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.switches, tuple):
            object.__setattr__(self, "switches", tuple(self.switches))
        if type(self.day_id) is not int or self.day_id < 0:
            raise ProfileRejected(
                TafReason.BAD_DAY_PROFILE, f"day id must be an integer ≥ 0, not {self.day_id!r}"
            )
        if not self.switches or not all(isinstance(s, Switch) for s in self.switches):
            raise ProfileRejected(
                TafReason.BAD_DAY_PROFILE,
                "a day profile needs at least one switch point",
                day_id=self.day_id,
            )
        if self.switches[0].at != time(0):
            raise ProfileRejected(
                TafReason.BAD_DAY_PROFILE,
                "the first switch point of a day profile must be at 00:00",
                day_id=self.day_id,
            )
        for before, after in itertools.pairwise(self.switches):
            if after.at <= before.at:
                raise ProfileRejected(
                    TafReason.BAD_DAY_PROFILE,
                    "switch points must be in strictly increasing time order",
                    day_id=self.day_id,
                    at=after.at.isoformat(),
                )

    @property
    def stages(self) -> frozenset[int]:
        """The stages this profile switches to."""
        return frozenset(s.stage for s in self.switches)


class DayType(StrEnum):
    """Which day profile a local day uses."""

    WEEKDAY = "weekday"
    SATURDAY = "saturday"
    SUNDAY_HOLIDAY = "sunday-holiday"
    SPECIAL = "special"


@dataclass(frozen=True, slots=True)
class SpecialDay:
    """A date with its own day profile (AR 2418-6 ``SpecialDayProfile``)."""

    day: date
    day_id: int

    def __post_init__(self) -> None:
        if type(self.day) is not date:
            raise ProfileRejected(TafReason.BAD_DAY_PROFILE, "a special day must be a date")


@lru_cache(maxsize=16)
def _german_subdivisions() -> frozenset[str]:
    import holidays  # imported here: keeps it off the package import path

    return frozenset(holidays.country_holidays("DE").subdivisions)


@lru_cache(maxsize=256)
def german_holidays(year: int, subdivision: str | None = None) -> frozenset[date]:
    """Public holidays in Germany in ``year`` (nationwide, or of one state such as ``"BY"``)."""
    import holidays

    return frozenset(holidays.country_holidays("DE", subdiv=subdivision, years=year).keys())


@lru_cache(maxsize=4096)
def _roll_out(profile: DayProfile, day: date) -> tuple[tuple[datetime, int], ...]:
    """(quarter-hour start UTC, stage) for every quarter hour of ``day`` under ``profile``.

    The pointer into the switch points only moves forward, which is the DST rule of the module
    docstring: a skipped wall-clock time takes effect at the next existing quarter hour, a
    repeated one does not switch again.
    """
    switches = profile.switches
    pointer = 0
    out: list[tuple[datetime, int]] = []
    for quarter in quarter_hours(day):
        wall = quarter.astimezone(BERLIN).time()
        while pointer + 1 < len(switches) and switches[pointer + 1].at <= wall:
            pointer += 1
        out.append((quarter, switches[pointer].stage))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class TariffCalendar:
    """Day profiles and which local day uses which (AR 2418-6 ``TariffChangeTrigger``).

    ``weekday``, ``saturday`` and ``sunday_holiday`` name day profiles by ``day_id``; special
    days override all three; public holidays use ``sunday_holiday``. Holidays are those of the
    ``holidays`` package for Germany (``holiday_subdivision`` ``None`` = nationwide only, or a
    state code such as ``"BY"``).
    """

    day_profiles: tuple[DayProfile, ...]
    weekday: int
    saturday: int
    sunday_holiday: int
    special_days: tuple[SpecialDay, ...] = ()
    holiday_subdivision: str | None = None

    def __post_init__(self) -> None:
        for name in ("day_profiles", "special_days"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if not self.day_profiles or not all(isinstance(p, DayProfile) for p in self.day_profiles):
            raise ProfileRejected(TafReason.BAD_DAY_PROFILE, "a tariff calendar needs day profiles")
        ids = [p.day_id for p in self.day_profiles]
        if len(set(ids)) != len(ids):
            raise ProfileRejected(TafReason.BAD_DAY_PROFILE, "day profile ids must be unique")
        known = set(ids)
        for name in ("weekday", "saturday", "sunday_holiday"):
            if getattr(self, name) not in known:
                raise ProfileRejected(
                    TafReason.BAD_DAY_PROFILE,
                    f"{name} names day profile {getattr(self, name)!r}, which is not defined",
                    day_type=name,
                )
        if not all(isinstance(s, SpecialDay) for s in self.special_days):
            raise ProfileRejected(TafReason.BAD_DAY_PROFILE, "special days must be SpecialDay")
        dates = [s.day for s in self.special_days]
        if len(set(dates)) != len(dates):
            raise ProfileRejected(TafReason.BAD_DAY_PROFILE, "a special day is listed twice")
        for special in self.special_days:
            if special.day_id not in known:
                raise ProfileRejected(
                    TafReason.BAD_DAY_PROFILE,
                    f"special day {special.day.isoformat()} names an undefined day profile",
                    day=special.day.isoformat(),
                    day_id=special.day_id,
                )
        if self.holiday_subdivision is not None and (
            not isinstance(self.holiday_subdivision, str)
            or self.holiday_subdivision not in _german_subdivisions()
        ):
            raise ProfileRejected(
                TafReason.BAD_HOLIDAY_REGION,
                f"unknown German holiday subdivision {self.holiday_subdivision!r}",
            )

    # -- lookups ---------------------------------------------------------------------------

    @property
    def stages(self) -> frozenset[int]:
        """Every stage some day profile switches to."""
        return frozenset().union(*(p.stages for p in self.day_profiles))

    def day_type(self, day: date) -> DayType:
        """Special day, Sunday/holiday, Saturday or weekday – in that order of precedence."""
        if any(s.day == day for s in self.special_days):
            return DayType.SPECIAL
        if day.weekday() == 6 or day in german_holidays(day.year, self.holiday_subdivision):
            return DayType.SUNDAY_HOLIDAY
        if day.weekday() == 5:
            return DayType.SATURDAY
        return DayType.WEEKDAY

    def day_profile(self, day: date) -> DayProfile:
        """The day profile local ``day`` uses."""
        kind = self.day_type(day)
        if kind is DayType.SPECIAL:
            day_id = next(s.day_id for s in self.special_days if s.day == day)
        elif kind is DayType.SUNDAY_HOLIDAY:
            day_id = self.sunday_holiday
        elif kind is DayType.SATURDAY:
            day_id = self.saturday
        else:
            day_id = self.weekday
        return next(p for p in self.day_profiles if p.day_id == day_id)

    def roll_out(self, day: date) -> tuple[tuple[datetime, int], ...]:
        """(quarter-hour start UTC, stage) for each quarter hour of local ``day``."""
        return _roll_out(self.day_profile(day), day)

    def stage_at(self, instant: datetime) -> int:
        """The tariff stage active at ``instant``."""
        quarter = grid_floor(instant)
        day = local_day(quarter)
        index = (quarter - day_start(day)) // GRID
        return self.roll_out(day)[index][1]

    def stages_between(self, start: datetime, end: datetime) -> frozenset[int]:
        """Every stage active at some instant of [``start``, ``end``); empty if end ≤ start."""
        lo, hi = as_utc(start, "start"), as_utc(end, "end")
        found: set[int] = set()
        for quarter, stage in self._quarters(grid_floor(lo), hi):
            if quarter + GRID > lo:
                found.add(stage)
        return frozenset(found)

    def changes(self, start: datetime, end: datetime) -> tuple[tuple[datetime, int], ...]:
        """The rolled-out calendar: (instant, new stage) for every stage change in (start, end).

        Like TRuDI's "rolled-out calendar" (facts.md §1.2 TAF7, LH-TRUDI [V]); a switch point
        that keeps the stage is not a change.
        """
        lo, hi = as_utc(start, "start"), as_utc(end, "end")
        out: list[tuple[datetime, int]] = []
        previous = self.stage_at(lo) if lo < hi else None
        for quarter, stage in self._quarters(grid_floor(lo), hi):
            if quarter > lo and stage != previous:
                out.append((quarter, stage))
            previous = stage
        return tuple(out)

    def _quarters(self, first: datetime, end: datetime) -> Iterator[tuple[datetime, int]]:
        """(quarter, stage) for the quarter hours from ``first`` (on the grid) before ``end``."""
        day = local_day(first)
        while (start := day_start(day)) < end:
            skip = (first - start) // GRID if first > start else 0
            for quarter, stage in self.roll_out(day)[skip:]:
                if quarter >= end:
                    return
                yield quarter, stage
            day += DAY


__all__ = [
    "BERLIN",
    "BILLING_PERIOD_MONTHS",
    "DAY",
    "GRID",
    "MAX_TARIFF_STAGES",
    "BillingPeriod",
    "DayProfile",
    "DayType",
    "Period",
    "SpecialDay",
    "Switch",
    "TariffCalendar",
    "as_utc",
    "day_end",
    "day_start",
    "german_holidays",
    "grid_floor",
    "local_day",
    "on_grid",
    "quarter_hours",
    "registration_boundaries",
    "validate_registration_period",
    "wall_minutes",
]
