"""The values a dispatch exports, one shape for MSCONS, CSV and JSON.

A register series exports each register value as the value of the quarter hour ending at its
timestamp; an energy kind exports one value, the register at the period's end minus the register
at its start, marked substitute if either end is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from imsys.core.reading import ReadingFlag
from imsys.emt.msb._calendar import GRID
from imsys.emt.msb._errors import MsbReason, MsbRejected
from imsys.emt.msb.distribution import DataKind, Dispatch
from imsys.emt.msb.substitute import SubstituteMethod


@dataclass(frozen=True, slots=True)
class ExportValue:
    """One exported value: ``value × 10^scaler`` in DLMS ``unit`` for ``(start, end]``."""

    start: datetime
    end: datetime
    value: int
    scaler: int
    unit: int
    substitute: bool
    method: SubstituteMethod | None


def export_values(dispatch: Dispatch) -> tuple[ExportValue, ...]:
    """The values of ``dispatch``; raises ``EMPTY`` or ``INCOMPLETE`` (:class:`MsbRejected`)."""
    if not dispatch.readings:
        raise MsbRejected(
            MsbReason.EMPTY,
            "a dispatch without values",
            metering_point_id=dispatch.metering_point_id,
            kind=dispatch.kind,
        )
    if dispatch.kind is DataKind.REGISTER_SERIES:
        return tuple(
            ExportValue(
                r.timestamp - GRID,
                r.timestamp,
                r.value,
                r.scaler,
                r.unit,
                bool(r.flags & ReadingFlag.SUBSTITUTE),
                dispatch.method_at(r.timestamp),
            )
            for r in dispatch.readings
        )
    energy = dispatch.energy
    if energy is None:
        raise MsbRejected(
            MsbReason.INCOMPLETE,
            "an energy value needs the register at both ends of the period",
            metering_point_id=dispatch.metering_point_id,
            missing=dispatch.missing,
        )
    first, last = dispatch.readings
    methods = (dispatch.method_at(first.timestamp), dispatch.method_at(last.timestamp))
    return (
        ExportValue(
            dispatch.period.start,
            dispatch.period.end,
            energy,
            first.scaler,
            first.unit,
            bool((first.flags | last.flags) & ReadingFlag.SUBSTITUTE),
            next((m for m in methods if m is not None), None),
        ),
    )
