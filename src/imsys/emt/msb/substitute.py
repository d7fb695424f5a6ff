"""Substitute values (``Ersatzwertbildung``) for gaps and invalid register values.

The originals are never changed: :func:`substitute` returns a :class:`ValidatedSeries` that
keeps the input readings as given, the substitutes beside them and the findings.
:meth:`ValidatedSeries.effective` merges them per boundary: a valid original always wins, then a
substitute, then an invalid original (kept so that nothing disappears silently).

A boundary needs a substitute if it has no reading or only an invalid one. Consecutive such
boundaries form a *run*; its *anchors* are the nearest valid register values before and after it
(searched in ``readings`` and ``history``, also outside the window). Methods, tried in order:

``LINEAR`` (linear interpolation)
    Both anchors known, the register did not fall between them, and the anchors are at most
    ``max_interpolation`` apart (default 2 h). The value at boundary ``k`` of ``n`` intervals is
    ``v_l + floor((v_r − v_l) · k / n)``: integer, monotone, and the interval energies add up to
    exactly ``v_r − v_l``.

``COMPARABLE_DAY`` (profile of comparable days)
    Both anchors known but farther apart. The energy of each interval between the anchors is
    taken as the mean of the same local wall-clock quarter hour on comparable days (same day
    type – workday, Saturday, Sunday or public holiday – and for workdays the same weekday, in the
    last ``comparable_weeks`` weeks, from ``history``). The cumulated profile ``S_k`` is scaled so
    the run fills the register difference exactly: ``v_l + floor((v_r − v_l) · S_k / S_n)``.
    A profile of zero consumption falls back to the linear shape.

``COMPARABLE_DAY_ESTIMATED``
    Only the anchor before the run is known (the run reaches the end of the data): the profile
    energies are added to it (``v_l + floor(S_k)``). The result is an estimate and marked so.
    (A run with no valid value before it has no comparable days either – they lie before it –
    so it is not estimated backwards.)

A run that none of these can fill (no anchor before it, a falling register, no comparable day
covering every interval) stays open and is reported as an ``UNSUBSTITUTED`` finding.
Implausible jumps and decreases between valid values are reported but not corrected here: which
of the two values is wrong needs a person or another source (e.g. a meter reading on site).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from functools import cached_property

from imsys.core.errors import UsageError
from imsys.core.reading import Reading, ReadingFlag
from imsys.emt.msb._calendar import (
    BERLIN,
    DAY,
    GRID,
    DayType,
    as_utc,
    boundaries,
    day_type,
    local_day,
)
from imsys.emt.msb._series import TOLERANCE, SeriesKey, bucket, series_key
from imsys.emt.msb.plausibility import (
    Finding,
    FindingKind,
    PlausibilityLimits,
    validate,
)


class SubstituteMethod(StrEnum):
    """How a substitute value was formed (the tag exported beside it)."""

    LINEAR = "linear-interpolation"
    COMPARABLE_DAY = "comparable-day"
    COMPARABLE_DAY_ESTIMATED = "comparable-day-estimated"


@dataclass(frozen=True, slots=True)
class Substitute:
    """One substitute value: a :class:`Reading` flagged ``SUBSTITUTE`` and how it was formed."""

    reading: Reading
    method: SubstituteMethod

    def __post_init__(self) -> None:
        if self.reading.flags != ReadingFlag.SUBSTITUTE:
            raise UsageError("a substitute reading carries exactly ReadingFlag.SUBSTITUTE")

    @property
    def timestamp(self) -> datetime:
        return self.reading.timestamp


@dataclass(frozen=True, slots=True)
class SubstitutionPolicy:
    """Configuration of :func:`substitute`."""

    max_interpolation: timedelta = timedelta(hours=2)
    comparable_weeks: int = 4
    use_comparable_day: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.max_interpolation, timedelta) or self.max_interpolation < GRID:
            raise UsageError("max_interpolation must be a timedelta of at least 15 min")
        if not isinstance(self.comparable_weeks, int) or not 1 <= self.comparable_weeks <= 52:
            raise UsageError("comparable_weeks must be an int in 1..52")


@dataclass(frozen=True)
class ValidatedSeries:
    """Originals, substitutes and findings of one register series over ``start..end``."""

    start: datetime
    end: datetime
    original: tuple[Reading, ...]
    substitutes: tuple[Substitute, ...] = field(default=())
    findings: tuple[Finding, ...] = field(default=())
    tolerance: timedelta = TOLERANCE  # how originals were placed on boundaries

    @cached_property
    def _by_boundary(self) -> tuple[Mapping[datetime, Reading], Mapping[datetime, Substitute]]:
        lo, hi = as_utc(self.start), as_utc(self.end)
        window = tuple(
            r for r in self.original if lo - GRID / 2 <= as_utc(r.timestamp) < hi + GRID / 2
        )
        originals = bucket(window, self.tolerance).at
        return originals, {s.timestamp: s for s in self.substitutes}

    def effective(self) -> tuple[Reading, ...]:
        """One reading per boundary that has any: valid original, else substitute, else the
        invalid original. Boundaries with nothing stay absent."""
        originals, subs = self._by_boundary
        out: list[Reading] = []
        for b in boundaries(self.start, self.end):
            orig = originals.get(b)
            if orig is not None and orig.valid:
                out.append(orig)
            elif b in subs:
                out.append(subs[b].reading)
            elif orig is not None:
                out.append(orig)
        return tuple(out)

    def method_at(self, boundary: datetime) -> SubstituteMethod | None:
        """The method of the substitute used at ``boundary`` in :meth:`effective`, if any."""
        originals, subs = self._by_boundary
        b = as_utc(boundary)
        orig = originals.get(b)
        if (orig is not None and orig.valid) or b not in subs:
            return None
        return subs[b].method

    def missing(self) -> tuple[datetime, ...]:
        """Boundaries of the window without a usable (valid or substitute) value."""
        have = {
            r.timestamp for r in self.effective() if r.valid or r.flags == ReadingFlag.SUBSTITUTE
        }
        return tuple(b for b in boundaries(self.start, self.end) if b not in have)


# --- the profile of comparable days -------------------------------------------------------------


def comparable_days(day: date, weeks: int) -> tuple[date, ...]:
    """Days before ``day`` in the last ``weeks`` weeks with the same day type (most recent first);
    for workdays also the same weekday."""
    kind = day_type(day)
    out = []
    for back in range(1, 7 * weeks + 1):
        d = day - back * DAY
        if day_type(d) is not kind:
            continue
        if kind is DayType.WORKDAY and d.weekday() != day.weekday():
            continue
        out.append(d)
    return tuple(out)


def _same_wall_time(instant: datetime, day: date) -> datetime:
    local = instant.astimezone(BERLIN)
    return datetime.combine(day, local.time().replace(fold=0), tzinfo=BERLIN).astimezone(
        instant.tzinfo
    )


class _Profile:
    """Mean interval energies of comparable days, looked up per interval end."""

    def __init__(self, valid: Mapping[datetime, int], weeks: int) -> None:
        self._valid = valid
        self._weeks = weeks

    def energy(self, interval_end: datetime) -> Fraction | None:
        """Mean energy of the interval ``(interval_end − 15 min, interval_end]``, or ``None``."""
        begin = interval_end - GRID
        samples: list[int] = []
        for d in comparable_days(local_day(begin), self._weeks):
            b0 = _same_wall_time(begin, d)
            v0, v1 = self._valid.get(b0), self._valid.get(b0 + GRID)
            if v0 is not None and v1 is not None and v1 >= v0:
                samples.append(v1 - v0)
        return Fraction(sum(samples), len(samples)) if samples else None


# --- substitution ----------------------------------------------------------------------------


def _runs(grid: tuple[datetime, ...], usable: Mapping[datetime, int]) -> list[list[datetime]]:
    runs: list[list[datetime]] = []
    current: list[datetime] = []
    for b in grid:
        if b in usable:
            if current:
                runs.append(current)
                current = []
        else:
            current.append(b)
    if current:
        runs.append(current)
    return runs


def _fill(
    run: list[datetime],
    valid: Mapping[datetime, int],
    ordered: list[datetime],
    profile: _Profile,
    policy: SubstitutionPolicy,
) -> tuple[dict[datetime, int], SubstituteMethod] | str:
    """Values for the boundaries of ``run`` and the method, or why there are none."""
    i = bisect.bisect_left(ordered, run[0])
    left = ordered[i - 1] if i > 0 else None
    j = bisect.bisect_right(ordered, run[-1])
    right = ordered[j] if j < len(ordered) else None
    if left is not None and right is not None:
        v_l, v_r = valid[left], valid[right]
        if v_r < v_l:
            return "the register falls between the valid neighbours"
        n = (right - left) // GRID
        if right - left <= policy.max_interpolation:
            values = {b: v_l + (v_r - v_l) * ((b - left) // GRID) // n for b in run}
            return values, SubstituteMethod.LINEAR
        if not policy.use_comparable_day:
            return f"gap longer than {policy.max_interpolation} and no comparable-day method"
        ends = [left + k * GRID for k in range(1, n + 1)]
        energies = [profile.energy(e) for e in ends]
        if any(e is None for e in energies):
            return "no comparable day covers every interval"
        cumulative = dict(zip(ends, _accumulate(energies), strict=True))
        total = cumulative[right]
        if total == 0:
            return {b: v_l + (v_r - v_l) * ((b - left) // GRID) // n for b in run}, (
                SubstituteMethod.COMPARABLE_DAY
            )
        values = {b: v_l + math.floor((v_r - v_l) * cumulative[b] / total) for b in run}
        return values, SubstituteMethod.COMPARABLE_DAY
    if not policy.use_comparable_day:
        return "only one valid neighbour and no comparable-day method"
    if left is not None:
        ends = [left + k * GRID for k in range(1, (run[-1] - left) // GRID + 1)]
        energies = [profile.energy(e) for e in ends]
        if any(e is None for e in energies):
            return "no comparable day covers every interval"
        cumulative = dict(zip(ends, _accumulate(energies), strict=True))
        values = {b: valid[left] + math.floor(cumulative[b]) for b in run}
        return values, SubstituteMethod.COMPARABLE_DAY_ESTIMATED
    return "no valid value before the gap"


def _accumulate(energies: list[Fraction | None]) -> list[Fraction]:
    out: list[Fraction] = []
    total = Fraction(0)
    for e in energies:
        total += e or 0
        out.append(total)
    return out


def substitute(
    readings: Iterable[Reading],
    start: datetime,
    end: datetime,
    *,
    history: Iterable[Reading] = (),
    limits: PlausibilityLimits | None = None,
    policy: SubstitutionPolicy | None = None,
) -> ValidatedSeries:
    """Validate ``readings`` over ``start ≤ b ≤ end`` and form substitutes (module docstring).

    ``history`` holds earlier readings of the same register (for anchors and comparable days).
    Raises :class:`~imsys.emt.msb.MsbRejected` (``MIXED_SERIES``) if the readings and the history
    are not one series.
    """
    policy = policy or SubstitutionPolicy()
    limits = limits or PlausibilityLimits()
    original = tuple(readings)
    past = tuple(history)
    key: SeriesKey | None = series_key((*original, *past))
    report = validate(original, start, end, limits)
    findings = list(report.findings)
    if key is None:
        return ValidatedSeries(
            report.start, report.end, original, (), tuple(findings), limits.tolerance
        )

    placed = bucket((*past, *original), limits.tolerance)
    valid = {b: r.value for b, r in placed.at.items() if r.valid}
    ordered = sorted(valid)
    profile = _Profile(valid, policy.comparable_weeks)
    grid = boundaries(report.start, report.end)

    subs: list[Substitute] = []
    for run in _runs(grid, valid):
        result = _fill(run, valid, ordered, profile, policy)
        if isinstance(result, str):
            findings.append(
                Finding(
                    FindingKind.UNSUBSTITUTED,
                    run[0],
                    run[-1],
                    (_near(ordered, valid, run[0], -1), _near(ordered, valid, run[-1], 1)),
                    ReadingFlag.GAP,
                    result,
                )
            )
            continue
        values, method = result
        for b in run:
            reading = Reading(
                meter_id=key.meter_id,
                obis=key.obis,
                value=values[b],
                scaler=key.scaler,
                unit=key.unit,
                timestamp=b,
                flags=ReadingFlag.SUBSTITUTE,
            )
            subs.append(Substitute(reading, method))
    return ValidatedSeries(
        report.start, report.end, original, tuple(subs), tuple(findings), limits.tolerance
    )


def _near(
    ordered: list[datetime], valid: Mapping[datetime, int], b: datetime, side: int
) -> int | None:
    if side < 0:
        i = bisect.bisect_left(ordered, b)
        return valid[ordered[i - 1]] if i > 0 else None
    j = bisect.bisect_right(ordered, b)
    return valid[ordered[j]] if j < len(ordered) else None
