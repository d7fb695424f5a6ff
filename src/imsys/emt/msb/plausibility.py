"""Plausibility checks (``Plausibilisierung``) of a register series: the MSB's first step.

Input: the 15-minute register readings (TAF7, ``Zählerstandsgang``) of one meter and one OBIS
register, and a window ``[start, end]`` (both boundaries included). Output: a
:class:`PlausibilityReport` with one :class:`Finding` per problem. The input is never changed.

Checks, in the order of the report:

* ``GAP`` – a run of quarter-hour boundaries in the window without any reading (local-time grid:
  96 intervals a day, 92/100 on DST days). One finding per run; ``values`` are the valid register
  values next to the run (``None`` where there is none).
* ``INVALID`` – a reading whose flags are not ``NONE`` (meter error, invalid clock or signature,
  a gap or substitute marker coming from upstream). ``flags`` carries them.
* ``DECREASE`` – a valid register value lower than the valid one before it (a register is
  monotone; a reset or a swapped meter shows here).
* ``JUMP`` – the energy between two valid values exceeds ``max_power × elapsed time`` (the
  maximum power of the connection, e.g. from its fuse rating: :func:`max_power_from_fuse`).
* ``OFF_GRID`` – a reading farther than the tolerance (9 s) from every boundary; it is not used.
* ``DUPLICATE`` – more than one reading for a boundary; the first valid one is used.

Checks ``DECREASE`` and ``JUMP`` compare neighbouring *valid* readings, also across a gap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from itertools import pairwise

from imsys.core.errors import UsageError
from imsys.core.reading import Reading, ReadingFlag
from imsys.emt.msb._calendar import GRID, as_utc, boundaries
from imsys.emt.msb._series import TOLERANCE, bucket, check_tolerance, series_key

#: Nominal phase voltage for :func:`max_power_from_fuse` (DIN EN 50160: 230 V).
NOMINAL_VOLTAGE = 230


class FindingKind(StrEnum):
    """What is wrong (plausibility) or what was left open (substitution)."""

    GAP = "gap"
    INVALID = "invalid"
    DECREASE = "decrease"
    JUMP = "jump"
    OFF_GRID = "off-grid"
    DUPLICATE = "duplicate"
    #: a gap or invalid value the substitution could not fill (see ``detail``)
    UNSUBSTITUTED = "unsubstituted"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: its kind, the interval it covers (UTC, both ends inclusive) and the values.

    ``values`` depends on the kind: for ``GAP``/``UNSUBSTITUTED`` the valid values before and
    after (or ``None``); for ``DECREASE``/``JUMP`` the two valid values compared; for
    ``INVALID``/``OFF_GRID``/``DUPLICATE`` the values of the readings concerned.
    """

    kind: FindingKind
    start: datetime
    end: datetime
    values: tuple[int | None, ...] = ()
    flags: ReadingFlag = ReadingFlag.NONE
    detail: str = ""

    @property
    def boundaries(self) -> int:
        """How many quarter-hour boundaries ``start..end`` spans (inclusive)."""
        return (self.end - self.start) // GRID + 1


def max_power_from_fuse(amperes: int, phases: int = 3, voltage: int = NOMINAL_VOLTAGE) -> int:
    """Maximum power in W of a connection with ``phases`` fuses of ``amperes`` A each.

    ``max_power_from_fuse(63)`` = 3 × 63 A × 230 V = 43 470 W.
    """
    if amperes <= 0 or phases not in (1, 2, 3) or voltage <= 0:
        raise UsageError("fuse rating, phase count (1–3) and voltage must be positive")
    return amperes * phases * voltage


@dataclass(frozen=True, slots=True)
class PlausibilityLimits:
    """Configuration of the checks.

    ``max_power`` is in the register's unit per hour (W for a Wh register); ``None`` switches
    the jump check off. ``tolerance`` is how far a reading may lie from its boundary.
    """

    max_power: int | None = None
    tolerance: timedelta = TOLERANCE

    def __post_init__(self) -> None:
        if self.max_power is not None and (
            not isinstance(self.max_power, int) or self.max_power <= 0
        ):
            raise UsageError(f"max_power must be a positive int or None, got {self.max_power!r}")
        check_tolerance(self.tolerance)

    @classmethod
    def from_fuse(cls, amperes: int, phases: int = 3) -> PlausibilityLimits:
        """Limits for a connection protected by ``phases`` × ``amperes`` A fuses (Wh register)."""
        return cls(max_power=max_power_from_fuse(amperes, phases))


@dataclass(frozen=True, slots=True)
class PlausibilityReport:
    """The result of :func:`validate` for one register series and window."""

    meter_id: str | None
    obis: str | None
    start: datetime
    end: datetime
    expected: int  # boundaries in the window
    findings: tuple[Finding, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """No findings at all."""
        return not self.findings

    def of_kind(self, kind: FindingKind) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind is kind)


def _exceeds(delta: int, scaler: int, span: timedelta, max_power: int) -> bool:
    energy = Fraction(delta) * Fraction(10) ** scaler
    return energy > Fraction(max_power) * Fraction(int(span.total_seconds()), 3600)


def validate(
    readings: Iterable[Reading],
    start: datetime,
    end: datetime,
    limits: PlausibilityLimits | None = None,
) -> PlausibilityReport:
    """Check the register series ``readings`` on the boundaries ``start ≤ b ≤ end``.

    Readings outside the window (beyond the tolerance) are ignored. Raises
    :class:`~imsys.emt.msb.MsbRejected` (``MIXED_SERIES``) for readings of several meters,
    registers, scalers or units, :class:`UsageError` for naive datetimes.
    """
    limits = limits or PlausibilityLimits()
    lo, hi = as_utc(start, "start"), as_utc(end, "end")
    grid = boundaries(lo, hi)
    items = tuple(readings)
    key = series_key(items)
    tol = limits.tolerance
    in_window = tuple(r for r in items if lo - tol <= as_utc(r.timestamp) <= hi + tol)
    placed = bucket(in_window, tol)

    findings: list[Finding] = []
    valid = [(b, r) for b, r in placed.at.items() if r.valid]

    def valid_before(b: datetime) -> int | None:
        vals = [r.value for t, r in valid if t < b]
        return vals[-1] if vals else None

    def valid_after(b: datetime) -> int | None:
        return next((r.value for t, r in valid if t > b), None)

    run: list[datetime] = []
    for b in (*grid, None):
        if b is not None and b not in placed.at:
            run.append(b)
            continue
        if run:
            findings.append(
                Finding(
                    FindingKind.GAP,
                    run[0],
                    run[-1],
                    (valid_before(run[0]), valid_after(run[-1])),
                    ReadingFlag.GAP,
                    f"{len(run)} boundaries without a reading",
                )
            )
            run = []

    for b, r in placed.at.items():
        if not r.valid:
            findings.append(
                Finding(FindingKind.INVALID, b, b, (r.value,), r.flags, f"flags {r.flags!r}")
            )

    for (b0, r0), (b1, r1) in pairwise(valid):
        if r1.value < r0.value:
            findings.append(
                Finding(
                    FindingKind.DECREASE,
                    b0,
                    b1,
                    (r0.value, r1.value),
                    detail=f"register fell by {r0.value - r1.value}",
                )
            )
        elif limits.max_power is not None and _exceeds(
            r1.value - r0.value, r1.scaler, b1 - b0, limits.max_power
        ):
            findings.append(
                Finding(
                    FindingKind.JUMP,
                    b0,
                    b1,
                    (r0.value, r1.value),
                    detail=f"more than {limits.max_power} per hour over {b1 - b0}",
                )
            )

    for r in placed.off_grid:
        ts = as_utc(r.timestamp)
        findings.append(
            Finding(FindingKind.OFF_GRID, ts, ts, (r.value,), r.flags, "not on a boundary")
        )
    for b, rs in placed.extra.items():
        findings.append(
            Finding(
                FindingKind.DUPLICATE,
                b,
                b,
                (placed.at[b].value, *(r.value for r in rs)),
                detail=f"{len(rs) + 1} readings for one boundary",
            )
        )

    return PlausibilityReport(
        meter_id=key.meter_id if key else None,
        obis=key.obis if key else None,
        start=lo,
        end=hi,
        expected=len(grid),
        findings=tuple(findings),
    )
