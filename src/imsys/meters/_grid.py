"""The per-year time grid every simulator model is computed on.

A *year grid* covers one calendar year in local legal time (Germany: ``Europe/Berlin``), from
local 1 January 00:00 to the next local 1 January 00:00, in fixed steps of ``step_s`` seconds of
real (UTC) time. Because it is laid out in UTC, a spring-forward day has 92 quarter hours and a
fall-back day 100, exactly as the BDEW standard load profiles and the market (MaBiS) count them;
the wall-clock time of each step (``second_of_day``) is the local one, so the hour 02:00–03:00 is
missing on the spring day and appears twice on the autumn day.

Day types follow the BDEW rule: Sundays and public holidays are ``HOLIDAY`` ("Sonn- und
Feiertag"), Saturdays ``SATURDAY``, everything else ``WORKDAY``; 24 and 31 December count as
Saturdays unless they fall on a Sunday (switchable). Public holidays come from the ``holidays``
package (``holidays.country_holidays("DE", subdiv=...)``): without a subdivision only the
nationwide holidays count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from imsys.core.errors import UsageError

#: Model step sizes must divide the 15-minute registration period.
QUARTER_HOUR_S = 900


class DayType(IntEnum):
    """BDEW day type (index into the profile tables: WT, SA, FT)."""

    WORKDAY = 0
    SATURDAY = 1
    HOLIDAY = 2


class Season(IntEnum):
    """Season of the 1999 VDEW/BDEW profiles (H0, G0)."""

    WINTER = 0  # 1 Nov – 20 Mar
    SUMMER = 1  # 15 May – 14 Sep
    TRANSITION = 2  # 21 Mar – 14 May, 15 Sep – 31 Oct


def season_of(day: date) -> Season:
    """The VDEW season of ``day`` (winter 1.11.–20.3., summer 15.5.–14.9., else transition)."""
    md = (day.month, day.day)
    if md >= (11, 1) or md <= (3, 20):
        return Season.WINTER
    if (5, 15) <= md <= (9, 14):
        return Season.SUMMER
    return Season.TRANSITION


@lru_cache(maxsize=64)
def german_holidays(year: int, subdivision: str | None = None) -> frozenset[date]:
    """Public holidays in Germany (nationwide, or of one state such as ``"BY"``)."""
    import holidays  # imported here: keeps it off the package import path

    return frozenset(holidays.country_holidays("DE", subdiv=subdivision, years=year).keys())


def day_type_of(
    day: date, holidays: frozenset[date], *, christmas_eve_as_saturday: bool = True
) -> DayType:
    """BDEW day type of ``day``."""
    if day.weekday() == 6 or day in holidays:
        return DayType.HOLIDAY
    if day.weekday() == 5:
        return DayType.SATURDAY
    if christmas_eve_as_saturday and day.month == 12 and day.day in (24, 31):
        return DayType.SATURDAY
    return DayType.WORKDAY


@dataclass(frozen=True, eq=False)
class YearGrid:
    """One local calendar year in steps of ``step_s`` seconds (arrays are read-only).

    Per step: ``day`` (index of the local day), ``second_of_day`` (local wall-clock seconds
    since local midnight), ``utc_s`` (Unix seconds at the start of the step).
    Per local day: ``dates``, ``month``, ``day_of_year`` (1-based), ``day_type``, ``season``.
    """

    year: int
    tz: str
    step_s: int
    start: datetime  # UTC, local 1 January 00:00
    end: datetime  # UTC, next local 1 January 00:00
    n_steps: int
    day: np.ndarray
    second_of_day: np.ndarray
    utc_s: np.ndarray
    dates: tuple[date, ...]
    month: np.ndarray
    day_of_year: np.ndarray
    day_type: np.ndarray
    season: np.ndarray
    steps_per_day: np.ndarray

    @property
    def step_hours(self) -> float:
        return self.step_s / 3600.0

    def quarter_hour_of_day(self) -> np.ndarray:
        """Local quarter-hour index 0..95 of every step (the SLP table column)."""
        return (self.second_of_day // QUARTER_HOUR_S).astype(np.intp)

    def per_step(self, per_day: np.ndarray) -> np.ndarray:
        """Spread a per-day array onto the steps."""
        return per_day[self.day]

    def index_of(self, when: datetime) -> int:
        """Index of the step containing ``when`` (must lie inside the year)."""
        offset = int((when - self.start).total_seconds())
        k = offset // self.step_s
        if not 0 <= k < self.n_steps:
            raise UsageError(f"{when.isoformat()} is outside the year grid {self.year}")
        return k


def check_step(step_s: int) -> int:
    if not isinstance(step_s, int) or step_s <= 0 or QUARTER_HOUR_S % step_s:
        raise UsageError(f"model step must be a whole divisor of 900 s, got {step_s!r}")
    return step_s


def local_year_of(when: datetime, tz: str) -> int:
    """The local calendar year that contains the UTC instant ``when``."""
    return when.astimezone(ZoneInfo(tz)).year


def year_start(year: int, tz: str) -> datetime:
    """UTC instant of local 1 January 00:00 of ``year``."""
    return datetime(year, 1, 1, tzinfo=ZoneInfo(tz)).astimezone(UTC)


@lru_cache(maxsize=32)
def year_grid(
    year: int,
    tz: str = "Europe/Berlin",
    step_s: int = QUARTER_HOUR_S,
    subdivision: str | None = None,
    christmas_eve_as_saturday: bool = True,
) -> YearGrid:
    """Build (and cache) the grid of one local calendar year."""
    check_step(step_s)
    zone = ZoneInfo(tz)
    first = date(year, 1, 1)
    n_days = (date(year + 1, 1, 1) - first).days
    hol = german_holidays(year, subdivision)

    dates = tuple(first + timedelta(days=i) for i in range(n_days))
    starts = [datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC) for d in dates]
    starts.append(datetime(year + 1, 1, 1, tzinfo=zone).astimezone(UTC))
    start, end = starts[0], starts[-1]

    spd = np.empty(n_days, dtype=np.int64)
    day_idx: list[np.ndarray] = []
    sod: list[np.ndarray] = []
    for i in range(n_days):
        length = int((starts[i + 1] - starts[i]).total_seconds())
        if length % step_s:
            raise UsageError(f"day {dates[i]} is not a whole number of {step_s} s steps")
        n = length // step_s
        spd[i] = n
        day_idx.append(np.full(n, i, dtype=np.int32))
        if length == 86400:
            sod.append(np.arange(n, dtype=np.int64) * step_s)
        else:  # DST change: ask the zone for the wall clock of every step
            local = [(starts[i] + timedelta(seconds=j * step_s)).astimezone(zone) for j in range(n)]
            sod.append(
                np.array([t.hour * 3600 + t.minute * 60 + t.second for t in local], np.int64)
            )
    n_steps = int(spd.sum())
    utc0 = int(start.timestamp())

    def ro(a: np.ndarray) -> np.ndarray:
        a.setflags(write=False)
        return a

    return YearGrid(
        year=year,
        tz=tz,
        step_s=step_s,
        start=start,
        end=end,
        n_steps=n_steps,
        day=ro(np.concatenate(day_idx)),
        second_of_day=ro(np.concatenate(sod)),
        utc_s=ro(utc0 + np.arange(n_steps, dtype=np.int64) * step_s),
        dates=dates,
        month=ro(np.array([d.month for d in dates], dtype=np.int8)),
        day_of_year=ro(np.arange(1, n_days + 1, dtype=np.int16)),
        day_type=ro(
            np.array(
                [
                    day_type_of(d, hol, christmas_eve_as_saturday=christmas_eve_as_saturday)
                    for d in dates
                ],
                dtype=np.int8,
            )
        ),
        season=ro(np.array([season_of(d) for d in dates], dtype=np.int8)),
        steps_per_day=ro(spd),
    )


def rng_for(seed: int, year: int, salt: int) -> np.random.Generator:
    """A generator that depends only on (seed, year, salt): order of evaluation never matters."""
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, year, salt])


def smooth_noise(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """Standard-normal noise correlated over about ``width`` samples (moving average, unit std)."""
    if width <= 1:
        return rng.standard_normal(n)
    raw = rng.standard_normal(n + width - 1)
    kernel = np.ones(width) / np.sqrt(width)
    return np.convolve(raw, kernel, mode="valid")


def lognormal_factor(z: np.ndarray, sigma: float) -> np.ndarray:
    """Multiplicative noise with expectation 1: ``exp(sigma*z - sigma²/2)`` for std-normal ``z``."""
    if sigma <= 0:
        return np.ones_like(z, dtype=float)
    return np.exp(sigma * z - 0.5 * sigma * sigma)
