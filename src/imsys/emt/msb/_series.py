"""Readings of one register sorted onto the quarter-hour grid (shared by validate and substitute).

A reading belongs to the boundary ``b`` nearest to its timestamp if ``|timestamp − b|`` is within
the tolerance (default 9 s, PTB-A 50.8's ±1 % of 900 s, as the gateway's TAF7 uses; facts.md
§4.6). Among several readings for one boundary the first valid one in input order is chosen,
else the first one. Nothing is copied or changed: the chosen objects are the caller's readings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from imsys.core.errors import UsageError
from imsys.core.reading import Reading
from imsys.emt.msb._calendar import GRID, as_utc, nearest_boundary
from imsys.emt.msb._errors import MsbReason, MsbRejected

#: How far a reading may lie from its boundary (PTB-A 50.8: ±1 % of 900 s).
TOLERANCE = timedelta(seconds=9)


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """What every reading of one series shares."""

    meter_id: str
    obis: str
    scaler: int
    unit: int


def series_key(readings: Iterable[Reading]) -> SeriesKey | None:
    """The common key of ``readings`` (``None`` if empty); mixed series are rejected."""
    key: SeriesKey | None = None
    for reading in readings:
        if not isinstance(reading, Reading):
            raise UsageError(f"expected Reading, got {type(reading).__name__}")
        this = SeriesKey(reading.meter_id, reading.obis, reading.scaler, reading.unit)
        if key is None:
            key = this
        elif this != key:
            raise MsbRejected(
                MsbReason.MIXED_SERIES,
                "a series holds one meter, one register, one scaler and one unit",
                expected=key,
                got=this,
            )
    return key


def check_tolerance(tolerance: timedelta) -> timedelta:
    if not isinstance(tolerance, timedelta) or not timedelta(0) <= tolerance < GRID / 2:
        raise UsageError(f"tolerance must be a timedelta in [0, 7.5 min), got {tolerance!r}")
    return tolerance


@dataclass(frozen=True, slots=True)
class Bucketed:
    """Readings placed on boundaries."""

    at: Mapping[datetime, Reading]  # the chosen reading per boundary
    extra: Mapping[datetime, tuple[Reading, ...]]  # further readings for the same boundary
    off_grid: tuple[Reading, ...]  # readings farther than the tolerance from any boundary


def bucket(readings: Iterable[Reading], tolerance: timedelta = TOLERANCE) -> Bucketed:
    """Place ``readings`` on their boundaries (see the module docstring)."""
    check_tolerance(tolerance)
    at: dict[datetime, Reading] = {}
    extra: dict[datetime, list[Reading]] = {}
    off_grid: list[Reading] = []
    for reading in readings:
        ts = as_utc(reading.timestamp, "reading timestamp")
        b = nearest_boundary(ts)
        if abs(ts - b) > tolerance:
            off_grid.append(reading)
            continue
        chosen = at.get(b)
        if chosen is None:
            at[b] = reading
        elif reading.valid and not chosen.valid:
            at[b] = reading
            extra.setdefault(b, []).append(chosen)
        else:
            extra.setdefault(b, []).append(reading)
    return Bucketed(
        at=dict(sorted(at.items())),
        extra={b: tuple(rs) for b, rs in sorted(extra.items())},
        off_grid=tuple(off_grid),
    )
