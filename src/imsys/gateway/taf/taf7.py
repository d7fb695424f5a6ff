"""TAF7 – register series ("Zählerstandsgangmessung"): the register at every registration boundary.

Rules (facts.md §1.2 TAF7):

* The SMGW supplies the original value list: register readings at the registration period
  boundaries, smallest period 15 min, periods integer multiples of 15 min (LH-TRUDI [V]); imsys
  also requires the period to divide a day (see
  :func:`~imsys.gateway.taf.calendar.validate_registration_period`). Example TRuDI data has
  readings at :00/:15/:30/:45 (``IF_Adapter_TRuDI_DatenTAF7.xml`` [V]).
* Boundaries are on the local-time grid (Europe/Berlin): 96 a day for 15 min, 92 on the spring
  DST day and 100 on the autumn DST day (facts.md §1.2 TAF7 DST [S]); for longer periods see
  :func:`~imsys.gateway.taf.calendar.registration_boundaries`.
* Each boundary takes the reading within ±9 s (PTB-A 50.8, facts.md §4.6 [V]) by the boundary
  rule of :mod:`imsys.gateway.taf._boundary`. The reading is passed on unchanged (its own
  timestamp, value, flags and status word). A boundary without a reading is a **gap**
  (:attr:`ReadingFlag.GAP`, no reading): gaps are marked and never filled or interpolated;
  an invalid reading stays in the series with its flags.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from imsys.core.reading import Reading
from imsys.gateway.taf._boundary import TOLERANCE, BoundaryValue, RegisterTimeline
from imsys.gateway.taf.calendar import (
    DAY,
    as_utc,
    day_start,
    local_day,
    registration_boundaries,
    validate_registration_period,
)

#: The default and smallest registration period.
QUARTER_HOUR = timedelta(minutes=15)


def boundaries(period: timedelta, start: datetime, end: datetime) -> tuple[datetime, ...]:
    """Registration boundaries ``b`` with ``start ≤ b ≤ end`` (both ends inclusive), UTC."""
    validate_registration_period(period)
    lo, hi = as_utc(start, "start"), as_utc(end, "end")
    out: list[datetime] = []
    day = local_day(lo)
    while day_start(day) <= hi:
        out.extend(b for b in registration_boundaries(day, period) if lo <= b <= hi)
        day += DAY
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Taf7Result:
    """A register series: one point per registration boundary, in time order."""

    period: timedelta
    points: tuple[BoundaryValue, ...]

    def readings(self) -> tuple[Reading, ...]:
        """The readings of the series as received (gaps have none)."""
        return tuple(p.reading for p in self.points if p.reading is not None)

    @property
    def gaps(self) -> tuple[datetime, ...]:
        """The boundaries without a reading."""
        return tuple(p.boundary for p in self.points if p.gap)


def register_series(
    readings: Iterable[Reading],
    period: timedelta = QUARTER_HOUR,
    *,
    start: datetime,
    end: datetime,
    tolerance: timedelta = TOLERANCE,
) -> Taf7Result:
    """The register series of one register for every boundary in [``start``, ``end``]."""
    timeline = RegisterTimeline(readings)
    points = tuple(timeline.at(b, tolerance) for b in boundaries(period, start, end))
    return Taf7Result(period, points)


def day_series(
    readings: Iterable[Reading],
    day: date,
    period: timedelta = QUARTER_HOUR,
    *,
    tolerance: timedelta = TOLERANCE,
) -> Taf7Result:
    """The series of local ``day``: boundaries from its midnight up to, not including, the next."""
    timeline = RegisterTimeline(readings)
    points = tuple(timeline.at(b, tolerance) for b in registration_boundaries(day, period))
    return Taf7Result(period, points)


__all__ = ["QUARTER_HOUR", "Taf7Result", "boundaries", "day_series", "register_series"]
