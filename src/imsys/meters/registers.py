"""OBIS codes, DLMS units, readings, and the integer integration behind every register.

Readings are ``(obis, value, scaler, unit)``: the quantity is ``value · 10^scaler`` in ``unit``
(a DLMS/COSEM unit code, as SML carries it: 27 W, 30 Wh, 35 V, 33 A, 13 m³, 9 °C …).

Registers are exact integer integrals. A model's rate (power, volume flow) is quantised per
model step to an integer number of *rate quanta* (0.01 W for power, 1 ml/h for volume flow);
the accumulator counts quanta·seconds as Python/NumPy integers at one-second time resolution;
a register shows ``accumulated // divisor`` in its own resolution (default 0.1 Wh for 1.8.0 and
2.8.0, 1 Wh for heat, 1 l for gas, water and heat volume). So registers never decrease, never
drift from the integral of the reported power, and the increment between two readings differs
from the exact energy of that interval by less than one register digit.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from imsys.core.errors import UsageError


class Unit(IntEnum):
    """DLMS/COSEM unit codes (IEC 62056-6-2) used by the simulators."""

    DEGREE = 8
    CELSIUS = 9
    CUBIC_METRE = 13
    CUBIC_METRE_PER_HOUR = 15
    WATT = 27
    VOLT_AMPERE = 28
    VAR = 29
    WATT_HOUR = 30
    AMPERE = 33
    VOLT = 35
    HERTZ = 44
    KELVIN = 52


class Reading(NamedTuple):
    """One value: OBIS code (``"1-0:1.8.0*255"``), integer value, decimal scaler, unit."""

    obis: str
    value: int
    scaler: int
    unit: Unit

    @property
    def quantity(self) -> float:
        """``value · 10^scaler`` as a float (for display and tests, not for billing)."""
        return self.value * 10.0**self.scaler


# --- OBIS codes -----------------------------------------------------------------------------
# electricity (value group A = 1)
IMPORT_ENERGY = "1-0:1.8.0*255"
EXPORT_ENERGY = "1-0:2.8.0*255"
ACTIVE_POWER = "1-0:16.7.0*255"
ACTIVE_POWER_L = ("1-0:36.7.0*255", "1-0:56.7.0*255", "1-0:76.7.0*255")
VOLTAGE_L = ("1-0:32.7.0*255", "1-0:52.7.0*255", "1-0:72.7.0*255")
CURRENT_L = ("1-0:31.7.0*255", "1-0:51.7.0*255", "1-0:71.7.0*255")
ANGLE_U_L2_U_L1 = "1-0:81.7.1*255"
ANGLE_U_L3_U_L1 = "1-0:81.7.2*255"
ANGLE_I_U_L = ("1-0:81.7.4*255", "1-0:81.7.15*255", "1-0:81.7.26*255")
FREQUENCY = "1-0:14.7.0*255"
# gas (A = 7): volume at metering conditions (current register) and at the last full hour
GAS_VOLUME = "7-0:3.0.0*255"
GAS_VOLUME_HOURLY = "7-0:3.1.0*255"
# water (A = 8, cold water)
WATER_VOLUME = "8-0:1.0.0*255"
# heat (A = 6), EN 13757-1 value group C
HEAT_ENERGY = "6-0:1.0.0*255"
HEAT_VOLUME = "6-0:2.0.0*255"
HEAT_POWER = "6-0:8.0.0*255"
HEAT_FLOW_RATE = "6-0:9.0.0*255"
HEAT_FLOW_TEMPERATURE = "6-0:10.0.0*255"
HEAT_RETURN_TEMPERATURE = "6-0:11.0.0*255"
HEAT_TEMPERATURE_DIFFERENCE = "6-0:12.0.0*255"


def obis_hex(obis: str) -> str:
    """``"1-0:1.8.0*255"`` → ``"0100010800ff"`` (the 6-byte form SML carries)."""
    try:
        ab, rest = obis.split(":")
        a, b = ab.split("-")
        cde, f = rest.split("*") if "*" in rest else (rest, "255")
        c, d, e = cde.split(".")
        parts = [int(x) for x in (a, b, c, d, e, f)]
    except ValueError as exc:
        raise UsageError(f"not an OBIS code: {obis!r}") from exc
    if not all(0 <= p <= 255 for p in parts):
        raise UsageError(f"OBIS value group out of range: {obis!r}")
    return bytes(parts).hex()


# --- quantisation ---------------------------------------------------------------------------
#: Power is quantised to 0.01 W (10^-2 W) per model step.
POWER_SCALER = -2
#: Volume flow is quantised to 1 ml/h (10^-6 m³/h) per model step.
FLOW_SCALER = -6


def quantise(values: np.ndarray, scaler: int) -> np.ndarray:
    """Round ``values`` to integers in units of ``10^scaler``."""
    return np.rint(np.asarray(values, dtype=float) * 10.0 ** (-scaler)).astype(np.int64)


def register_divisor(rate_scaler: int, register_scaler: int, factor: int = 1) -> int:
    """Quanta·seconds per register digit.

    One register digit is ``10^register_scaler`` (rate unit × hour); one accumulator count is
    ``10^rate_scaler`` (rate unit) × 1 s. Raises if the ratio is not a whole number.
    """
    exponent = register_scaler - rate_scaler
    if exponent < 0:
        num, den = 3600 * factor, 10**-exponent
        if num % den:
            raise UsageError(
                f"register resolution 10^{register_scaler} is finer than the integration allows"
            )
        return num // den
    return 3600 * factor * 10**exponent


@dataclass(frozen=True, eq=False)
class Accumulator:
    """Exact integral of a piecewise-constant integer rate over one year grid.

    ``rate[k]`` (quanta) holds during step ``k`` of ``step_s`` seconds; ``cum[k]`` is the
    integral from the start of the year to the start of step ``k`` (quanta·s).
    """

    rate: np.ndarray
    step_s: int
    cum: np.ndarray

    @classmethod
    def of(cls, rate: np.ndarray, step_s: int) -> Accumulator:
        if (rate < 0).any():
            raise UsageError("an integrating register only counts non-negative rates")
        r = rate.astype(np.int64)
        cum = np.zeros(r.size + 1, dtype=np.int64)
        np.cumsum(r * step_s, out=cum[1:])
        r.setflags(write=False)
        cum.setflags(write=False)
        return cls(r, step_s, cum)

    @property
    def total(self) -> int:
        return int(self.cum[-1])

    def at(self, offset_s: int) -> int:
        """Integral from the start of the year to ``offset_s`` seconds into it."""
        if offset_s >= self.rate.size * self.step_s:
            return self.total
        k = offset_s // self.step_s
        return int(self.cum[k]) + int(self.rate[k]) * (offset_s - k * self.step_s)

    def at_many(self, offsets_s: np.ndarray) -> np.ndarray:
        o = np.minimum(offsets_s.astype(np.int64), self.rate.size * self.step_s)
        k = np.minimum(o // self.step_s, self.rate.size - 1)
        return self.cum[k] + self.rate[k] * (o - k * self.step_s)
