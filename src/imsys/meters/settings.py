"""Simulator settings: every quirk of a simulated meter in one frozen object.

Model sizes (annual consumption, peak power) are given here when a meter is built from a
:class:`~imsys.meters.simulator.ModelKind`; ``None`` means the model's own default (see
``docs/meters.md``). Meter quirks: transformer factor, clock offset and drift, register
resolution, a backstop, and injected faults with a time window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from imsys.core.errors import UsageError
from imsys.meters._grid import check_step


class FaultKind(StrEnum):
    """Faults a simulated meter can be told to show."""

    MAGNETIC_INFLUENCE = "magnetic-influence"
    MANIPULATION = "manipulation"
    FATAL_ERROR = "fatal-error"
    PHASE_FAILURE_L1 = "phase-failure-l1"
    PHASE_FAILURE_L2 = "phase-failure-l2"
    PHASE_FAILURE_L3 = "phase-failure-l3"
    PHASE_SEQUENCE_REVERSED = "phase-sequence-reversed"


PHASE_FAILURES = (
    FaultKind.PHASE_FAILURE_L1,
    FaultKind.PHASE_FAILURE_L2,
    FaultKind.PHASE_FAILURE_L3,
)


@dataclass(frozen=True)
class InjectedFault:
    """A fault active from ``start`` (inclusive) to ``end`` (exclusive; ``None`` = forever).

    Status flags follow the window to the second. A phase failure also removes that phase's
    load from the model (no voltage, no current, no energy) for every model step that starts
    inside the window, so the registers stay consistent with the reported power.
    """

    kind: FaultKind
    start: datetime
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or (self.end is not None and self.end.tzinfo is None):
            raise UsageError("fault windows need timezone-aware datetimes")
        if self.end is not None and self.end <= self.start:
            raise UsageError("a fault window must end after it starts")

    def active_at(self, when: datetime) -> bool:
        return self.start <= when and (self.end is None or when < self.end)


@dataclass(frozen=True)
class MeterSettings:
    """Everything that makes one simulated meter differ from another."""

    seed: int = 0
    # model sizes (None: the model's default)
    annual_consumption_kwh: float | None = None
    annual_water_m3: float | None = None
    peak_power_kw: float | None = None
    # site
    timezone: str = "Europe/Berlin"
    holiday_subdivision: str | None = None
    christmas_eve_as_saturday: bool = True
    latitude: float = 51.3
    longitude: float = 9.5
    # simulation
    step_s: int = 900
    # meter quirks
    transformer_factor: int = 1
    clock_offset_s: float = 0.0
    clock_drift_ppm: float = 0.0
    energy_scaler: int = -1
    volume_scaler: int = -3
    heat_energy_scaler: int = 0
    initial_registers: tuple[tuple[str, int], ...] = ()
    backstop: bool = False
    startup_threshold_w: float = 1.0
    nominal_voltage_v: float = 230.0
    line_resistance_ohm: float = 0.25
    faults: tuple[InjectedFault, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        check_step(self.step_s)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise UsageError(f"unknown time zone {self.timezone!r}") from exc
        if not isinstance(self.transformer_factor, int) or self.transformer_factor < 1:
            raise UsageError("transformer_factor must be a positive integer (CT ratio)")
        for name in ("annual_consumption_kwh", "annual_water_m3", "peak_power_kw"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise UsageError(f"{name} must not be negative")
        if not -4 <= self.energy_scaler <= 3:
            raise UsageError("energy_scaler must be in -4..3")
        if not -6 <= self.volume_scaler <= 0:
            raise UsageError("volume_scaler must be in -6..0")
        if not -2 <= self.heat_energy_scaler <= 6:
            raise UsageError("heat_energy_scaler must be in -2..6")
        if abs(self.clock_drift_ppm) > 1e5:
            raise UsageError("clock drift beyond ±10 % is not a clock")
        for obis, value in self.initial_registers:
            if not isinstance(value, int) or value < 0:
                raise UsageError(f"initial register {obis} must be a non-negative integer")
        if not isinstance(self.faults, tuple):
            object.__setattr__(self, "faults", tuple(self.faults))
        for f in self.faults:
            if not isinstance(f, InjectedFault):
                raise UsageError(f"{f!r} is not an InjectedFault")

    def initial(self, obis: str) -> int:
        return dict(self.initial_registers).get(obis, 0)

    def faults_at(self, when: datetime) -> frozenset[FaultKind]:
        return frozenset(f.kind for f in self.faults if f.active_at(when))
