"""Readings of one register in time order, and the value of a register at a boundary.

Boundary rule (shared by TAF1, TAF6 and TAF7): the value of a register at a boundary instant
``b`` is the reading with ``|timestamp − b| ≤ tolerance`` (default :data:`TOLERANCE` = 9 s);
among several, a valid one (flags ``NONE``) before an invalid one, then the one closest to
``b``, then the later one (at-or-after wins a tie). No reading in the window is a gap
(:attr:`ReadingFlag.GAP`, no value); an invalid reading in the window is kept with its flags.
Nothing is interpolated or shifted: the reading is passed on as received.

The 9 s are PTB-A 50.8's ±1 % of the 900 s registration period (facts.md §4.6 [V]). The window
is symmetric because the PTB tolerance is; the tie-break prefers at-or-after, because a register
read just after the boundary already contains all energy up to it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from imsys.core.errors import UsageError
from imsys.core.reading import Reading, ReadingFlag
from imsys.gateway.taf.calendar import GRID, as_utc, local_day
from imsys.gateway.taf.errors import EvaluationRejected, TafReason

#: How far a reading may lie from a boundary and still be its value (PTB-A 50.8, ±1 % of 900 s).
TOLERANCE = timedelta(seconds=9)


def check_tolerance(tolerance: timedelta) -> timedelta:
    """``tolerance`` if 0 ≤ tolerance < 7.5 min (so no reading can serve two boundaries)."""
    if not isinstance(tolerance, timedelta) or not timedelta(0) <= tolerance < GRID / 2:
        raise UsageError(f"tolerance must be a timedelta in [0, 7.5 min), got {tolerance!r}")
    return tolerance


@dataclass(frozen=True, slots=True)
class BoundaryValue:
    """The register at one boundary: the reading taken for it, or ``None`` for a gap.

    ``flags`` is :attr:`ReadingFlag.GAP` for a gap, else the reading's own flags; ``value`` is
    the reading's integer value (also for an invalid reading, which callers must not bill).
    """

    boundary: datetime
    reading: Reading | None

    @property
    def flags(self) -> ReadingFlag:
        return ReadingFlag.GAP if self.reading is None else self.reading.flags

    @property
    def valid(self) -> bool:
        """A reading is there and its flags are ``NONE``."""
        return self.reading is not None and self.reading.valid

    @property
    def gap(self) -> bool:
        return self.reading is None

    @property
    def value(self) -> int | None:
        return None if self.reading is None else self.reading.value

    @property
    def day(self) -> date:
        """The local day the boundary starts (useful for daily values)."""
        return local_day(self.boundary)


class RegisterTimeline:
    """The readings of one register of one meter, checked and in strictly increasing time.

    Raises :class:`UsageError` for mixed meters or registers and for readings out of order or
    with equal timestamps (the caller keeps them ordered), and :class:`EvaluationRejected`
    (``INCONSISTENT_SCALE``) if scaler or unit change within the series.
    """

    __slots__ = ("meter_id", "obis", "readings", "scale", "times")

    def __init__(self, readings: Iterable[Reading]) -> None:
        self.readings: tuple[Reading, ...] = tuple(readings)
        self.times: tuple[datetime, ...] = tuple(
            as_utc(r.timestamp, "reading timestamp") for r in self.readings
        )
        self.meter_id: str | None = None
        self.obis: str | None = None
        self.scale: tuple[int, int] | None = None
        if not self.readings:
            return
        first = self.readings[0]
        self.meter_id, self.obis, self.scale = (
            first.meter_id,
            first.obis,
            (first.scaler, first.unit),
        )
        for before, after, reading in zip(
            self.times, self.times[1:], self.readings[1:], strict=False
        ):
            if reading.meter_id != self.meter_id or reading.obis != self.obis:
                raise UsageError(
                    f"readings of one register expected ({self.meter_id} {self.obis}), "
                    f"got {reading.meter_id} {reading.obis}"
                )
            if after <= before:
                raise UsageError(
                    f"readings must be in strictly increasing time order ({after.isoformat()} "
                    f"follows {before.isoformat()})"
                )
            if (reading.scaler, reading.unit) != self.scale:
                raise EvaluationRejected(
                    TafReason.INCONSISTENT_SCALE,
                    "scaler or unit changed within one register's readings",
                    meter_id=self.meter_id,
                    obis=self.obis,
                    at=after.isoformat(),
                )

    def __len__(self) -> int:
        return len(self.readings)

    def window(self, start: datetime, end: datetime) -> tuple[Reading, ...]:
        """Readings with ``start ≤ timestamp ≤ end``."""
        lo = bisect.bisect_left(self.times, as_utc(start, "start"))
        hi = bisect.bisect_right(self.times, as_utc(end, "end"))
        return self.readings[lo:hi]

    def at(self, boundary: datetime, tolerance: timedelta = TOLERANCE) -> BoundaryValue:
        """The register's value at ``boundary`` by the module's boundary rule."""
        b = as_utc(boundary, "boundary")
        check_tolerance(tolerance)
        lo = bisect.bisect_left(self.times, b - tolerance)
        hi = bisect.bisect_right(self.times, b + tolerance)
        best: tuple[bool, timedelta, bool] | None = None
        chosen: Reading | None = None
        for i in range(lo, hi):
            reading, when = self.readings[i], self.times[i]
            # smaller key wins: valid first, then closest, then at-or-after
            key = (not reading.valid, abs(when - b), when < b)
            if best is None or key < best:
                best, chosen = key, reading
        return BoundaryValue(b, chosen)


__all__ = ["TOLERANCE", "BoundaryValue", "RegisterTimeline", "check_tolerance"]
