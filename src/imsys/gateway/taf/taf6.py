"""TAF6 – reading on demand ("Abruf von Messwerten im Bedarfsfall"): billing-day values.

Rules (facts.md §1.2 TAF6):

* The billing-day value of local day ``d`` is the register at the start of ``d`` – local
  midnight, Europe/Berlin ("abrechnungstechnischer Kalendertag", LH-TRUDI [V]) – taken by the
  boundary rule of :mod:`imsys.gateway.taf._boundary` (±9 s, PTB-A 50.8, facts.md §4.6 [V]);
  a missing value is a gap, an invalid one keeps its flags; nothing is invented.
* Values are available for **42 days** (LH-TRUDI [V]; OBS [S]: six weeks, older deleted): the
  value of day ``d`` is kept until local midnight at the start of ``d + 42``. At ``now`` the
  window is therefore the local days ``today − 41 … today`` (42 values once today's midnight
  value is in). Older values are reported as *expired*; the caller deletes them (TAF modules
  do not touch the store).
* A readout on demand (move-in/out, supplier change) asks for one day inside the window; a day
  that has expired or whose midnight has not passed yet is refused (``EXPIRED``,
  ``NOT_YET_AVAILABLE``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from imsys.core.reading import Reading
from imsys.gateway.taf._boundary import TOLERANCE, BoundaryValue, RegisterTimeline
from imsys.gateway.taf.calendar import DAY, as_utc, day_start, local_day
from imsys.gateway.taf.errors import EvaluationRejected, TafReason

#: How many local days a billing-day value is kept (LH-TRUDI, facts.md §1.2 TAF6 [V]).
RETENTION_DAYS = 42


def retention_window(now: datetime) -> tuple[date, date]:
    """(oldest, newest) local day whose billing-day value is kept at ``now``."""
    today = local_day(as_utc(now, "now"))
    return today - timedelta(days=RETENTION_DAYS - 1), today


@dataclass(frozen=True, slots=True)
class Taf6Result:
    """Billing-day values in the retention window (oldest first) and expired ones in the input."""

    values: tuple[BoundaryValue, ...]
    expired: tuple[BoundaryValue, ...]

    def readings(self) -> tuple[Reading, ...]:
        """The kept values' readings as received (gaps have none)."""
        return tuple(v.reading for v in self.values if v.reading is not None)

    def value(self, day: date) -> BoundaryValue | None:
        """The value of local ``day`` if it is in :attr:`values`."""
        return next((v for v in self.values if v.day == day), None)


def billing_day_value(
    readings: Iterable[Reading], day: date, *, tolerance: timedelta = TOLERANCE
) -> BoundaryValue:
    """The register at local midnight starting ``day`` (no retention check)."""
    return RegisterTimeline(readings).at(day_start(day), tolerance)


def _available(day: date, now: datetime, tolerance: timedelta) -> bool:
    return day_start(day) + tolerance <= now


def values(
    readings: Iterable[Reading],
    now: datetime,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    tolerance: timedelta = TOLERANCE,
) -> Taf6Result:
    """Billing-day values kept at ``now``, and the expired ones found in ``readings``.

    One value per local day of the retention window whose midnight lies in [``since``,
    ``until``] (default: the whole window) and has passed by ``now`` + tolerance – a gap where no
    reading fits. ``expired`` lists the billing-day values of older days present in
    ``readings`` (one per day), for the caller to delete.
    """
    at = as_utc(now, "now")
    timeline = RegisterTimeline(readings)
    oldest, newest = retention_window(at)
    first = oldest
    if since is not None:
        lo = as_utc(since, "since")
        start_day = local_day(lo)
        if day_start(start_day) < lo:
            start_day += DAY
        first = max(first, start_day)
    last = newest
    if until is not None:
        last = min(last, local_day(as_utc(until, "until")))
    kept: list[BoundaryValue] = []
    day = first
    while day <= last:
        if _available(day, at, tolerance):
            kept.append(timeline.at(day_start(day), tolerance))
        day += DAY
    expired: dict[date, BoundaryValue] = {}
    for when in timeline.times:
        if when >= day_start(oldest) - tolerance:
            break
        candidate = local_day(when + tolerance)
        if candidate < oldest and abs(when - day_start(candidate)) <= tolerance:
            expired.setdefault(candidate, timeline.at(day_start(candidate), tolerance))
    return Taf6Result(tuple(kept), tuple(expired.values()))


def readout(
    readings: Iterable[Reading],
    day: date,
    now: datetime,
    *,
    tolerance: timedelta = TOLERANCE,
) -> BoundaryValue:
    """Readout on demand of the billing-day value of local ``day`` at ``now``.

    Refuses a day outside the retention window (``EXPIRED``) or whose midnight has not passed
    (``NOT_YET_AVAILABLE``). A kept day without a reading is returned as a gap.
    """
    at = as_utc(now, "now")
    oldest, _ = retention_window(at)
    if day < oldest:
        raise EvaluationRejected(
            TafReason.EXPIRED,
            f"billing-day values are kept {RETENTION_DAYS} days; {day.isoformat()} has expired",
            day=day.isoformat(),
        )
    if not _available(day, at, tolerance):
        raise EvaluationRejected(
            TafReason.NOT_YET_AVAILABLE,
            f"the billing day {day.isoformat()} has not started yet",
            day=day.isoformat(),
        )
    return billing_day_value(readings, day, tolerance=tolerance)


__all__ = [
    "RETENTION_DAYS",
    "Taf6Result",
    "billing_day_value",
    "readout",
    "retention_window",
    "values",
]
