"""TAF1 – data-minimising tariff ("Datensparsamer Tarif"): one register value per billing period.

Rules (facts.md §1.2 TAF1): one register value per billing period (OBS [S]); billing periods
start on the 1st of a month and last 1, 2, 3, 6 or 12 months (TRuDI ``TafAdapterTaf1.cs`` [V];
see :class:`~imsys.gateway.taf.calendar.BillingPeriod`). For each period imsys gives

* the register value at the period's end – the reading at the end boundary (local midnight on
  the 1st) by the boundary rule of :mod:`imsys.gateway.taf._boundary`: within ±9 s (PTB-A 50.8,
  facts.md §4.6 [V]), valid before invalid, closest, at-or-after on a tie;
* the same at the period's start, and the period's consumption ``end − start``.

A period is *billable* only if both boundary values exist and are valid (flags ``NONE``).
A missing boundary (a gap) or an invalid one leaves the period not billable, with no
consumption: a value is never invented, interpolated or taken from a reading farther away. A
valid end value below the valid start value is refused (``REGISTER_DECREASED``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from imsys.core.reading import Reading
from imsys.gateway.taf._boundary import TOLERANCE, BoundaryValue, RegisterTimeline
from imsys.gateway.taf.calendar import BillingPeriod, Period, as_utc
from imsys.gateway.taf.errors import EvaluationRejected, TafReason


@dataclass(frozen=True, slots=True)
class BillingValue:
    """One billing period with the register at its start and its end."""

    period: Period
    start: BoundaryValue
    end: BoundaryValue

    @property
    def billable(self) -> bool:
        """Both boundary values exist and are valid."""
        return self.start.valid and self.end.valid

    @property
    def value(self) -> int | None:
        """The register at the period's end, if that value is valid."""
        return self.end.value if self.end.valid else None

    @property
    def consumption(self) -> int | None:
        """End − start in the register's scaler and unit; None if the period is not billable."""
        if not self.billable:
            return None
        assert self.start.value is not None and self.end.value is not None
        return self.end.value - self.start.value

    @property
    def scaler(self) -> int | None:
        reading = self.end.reading or self.start.reading
        return None if reading is None else reading.scaler

    @property
    def unit(self) -> int | None:
        reading = self.end.reading or self.start.reading
        return None if reading is None else reading.unit


@dataclass(frozen=True, slots=True)
class Taf1Result:
    """TAF1 values of one register, one per whole billing period, in time order."""

    values: tuple[BillingValue, ...]

    def readings(self) -> tuple[Reading, ...]:
        """The readings to deliver: each period's end reading as received (flags kept)."""
        return tuple(v.end.reading for v in self.values if v.end.reading is not None)

    @property
    def billable(self) -> tuple[BillingValue, ...]:
        return tuple(v for v in self.values if v.billable)


def register_value(
    readings: Iterable[Reading], boundary: datetime, *, tolerance: timedelta = TOLERANCE
) -> BoundaryValue:
    """The register at ``boundary`` (readings of one register, in time order)."""
    return RegisterTimeline(readings).at(boundary, tolerance)


def billing_values(
    readings: Iterable[Reading],
    billing_period: BillingPeriod,
    *,
    start: datetime,
    end: datetime,
    tolerance: timedelta = TOLERANCE,
) -> Taf1Result:
    """TAF1 values for every whole billing period inside [``start``, ``end``].

    ``readings`` are one register's readings in time order (UTC). Periods that do not lie
    wholly inside the window are left out (the caller passes ``end`` = now − tolerance so a
    boundary whose reading may still arrive is not judged yet).
    """
    timeline = RegisterTimeline(readings)
    out: list[BillingValue] = []
    for period in billing_period.periods(as_utc(start, "start"), as_utc(end, "end")):
        value = BillingValue(
            period, timeline.at(period.start, tolerance), timeline.at(period.end, tolerance)
        )
        consumption = value.consumption
        if consumption is not None and consumption < 0:
            raise EvaluationRejected(
                TafReason.REGISTER_DECREASED,
                "the register at the end of a billing period is below its start",
                meter_id=timeline.meter_id,
                obis=timeline.obis,
                period_start=period.start.isoformat(),
                period_end=period.end.isoformat(),
            )
        out.append(value)
    return Taf1Result(tuple(out))


__all__ = ["BillingValue", "Taf1Result", "billing_values", "register_value"]
