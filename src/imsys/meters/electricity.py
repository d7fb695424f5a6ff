"""Electricity: the model interface, sites made of several models, and grid status values.

Every electricity model yields, for one :class:`~imsys.meters._grid.YearGrid`, the active power
``p_w`` and reactive power ``q_var`` of each phase (arrays of shape ``(3, n_steps)``; positive
= drawn from the grid, negative = fed in). A :class:`Site` adds models up (a household with PV,
heat pump and wallbox behind one meter). The meter then integrates the *sum* over the phases
("saldierend", as German electronic meters do): import 1.8.0 counts ``max(ΣP, 0)``, export
2.8.0 counts ``max(-ΣP, 0)``.

Grid status values (TAF10 "Netzzustandsdaten") are derived from the same powers with a simple
line model: ``U = U_n·(1 + δ(t)) − R·P/U_n`` per phase with a seeded, slowly varying ``δ``
(±1.5 %), ``I = |S|/U`` and the phase angle of the apparent power ``φ = atan2(Q, P)`` in the
four-quadrant convention (0–90° import inductive, 90–180° export capacitive, 180–270° export
inductive, 270–360° import capacitive). These are plausible shapes, not a network calculation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from imsys.core.errors import UsageError
from imsys.meters._grid import YearGrid, rng_for, smooth_noise

#: Salt for the phase split noise (see :func:`imsys.meters._grid.rng_for`).
SALT_PHASES = 11
SALT_VOLTAGE = 12


@dataclass(frozen=True, eq=False)
class PhasePowers:
    """Active (W) and reactive (var) power per phase and step, shape ``(3, n_steps)``."""

    p_w: np.ndarray
    q_var: np.ndarray

    def __post_init__(self) -> None:
        if self.p_w.ndim != 2 or self.p_w.shape[0] != 3 or self.q_var.shape != self.p_w.shape:
            raise UsageError("PhasePowers needs two arrays of shape (3, n_steps)")

    @property
    def total_w(self) -> np.ndarray:
        return self.p_w.sum(axis=0)

    def __add__(self, other: PhasePowers) -> PhasePowers:
        return PhasePowers(self.p_w + other.p_w, self.q_var + other.q_var)


@runtime_checkable
class ElectricityModel(Protocol):
    """Something that draws or feeds electric power: yields per-phase power for one year."""

    def phase_powers(self, grid: YearGrid, seed: int) -> PhasePowers: ...


def reactive_from_power_factor(p_w: np.ndarray, power_factor: float) -> np.ndarray:
    """Inductive reactive power for ``cos φ = power_factor`` (Q has the sign of P)."""
    if not 0 < power_factor <= 1:
        raise UsageError(f"power factor must be in (0, 1], got {power_factor}")
    return p_w * float(np.tan(np.arccos(power_factor)))


def three_phase(total_w: np.ndarray, power_factor: float = 1.0) -> PhasePowers:
    """A symmetric three-phase device: a third of the power on each phase."""
    p = np.repeat((total_w / 3.0)[None, :], 3, axis=0)
    return PhasePowers(p, reactive_from_power_factor(p, power_factor))


def single_phase(total_w: np.ndarray, phase: int, power_factor: float = 1.0) -> PhasePowers:
    """A device on one phase (``phase`` 1, 2 or 3)."""
    if phase not in (1, 2, 3):
        raise UsageError(f"phase must be 1, 2 or 3, got {phase}")
    p = np.zeros((3, total_w.size))
    p[phase - 1] = total_w
    return PhasePowers(p, reactive_from_power_factor(p, power_factor))


def spread_over_phases(
    total_w: np.ndarray,
    rng: np.random.Generator,
    imbalance: float,
    power_factor: float,
    correlation_steps: int,
) -> PhasePowers:
    """Many single-phase appliances: shares around 1/3 that wander (seeded), summing to 1."""
    z = np.stack([smooth_noise(rng, total_w.size, correlation_steps) for _ in range(3)])
    weights = np.exp(imbalance * z)
    shares = weights / weights.sum(axis=0)
    p = shares * total_w[None, :]
    return PhasePowers(p, reactive_from_power_factor(p, power_factor))


def _component_seed(seed: int, index: int) -> int:
    return (seed ^ ((index + 1) * 0x9E3779B97F4A7C15)) & 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class Site:
    """Several electricity models behind one meter (e.g. household + PV + heat pump + wallbox).

    Component ``i`` gets its own seed derived from the meter seed and ``i``, so two components
    of the same type do not share their noise.
    """

    components: tuple[ElectricityModel, ...]

    def __init__(self, *components: ElectricityModel | Sequence[ElectricityModel]) -> None:
        flat: list[ElectricityModel] = []
        for c in components:
            if isinstance(c, ElectricityModel):
                flat.append(c)
            else:
                flat.extend(c)
        if not flat:
            raise UsageError("a Site needs at least one component")
        for c in flat:
            if not isinstance(c, ElectricityModel):
                raise UsageError(f"{c!r} is not an electricity model")
        object.__setattr__(self, "components", tuple(flat))

    def phase_powers(self, grid: YearGrid, seed: int) -> PhasePowers:
        total = self.components[0].phase_powers(grid, _component_seed(seed, 0))
        for i, c in enumerate(self.components[1:], start=1):
            total = total + c.phase_powers(grid, _component_seed(seed, i))
        return total


def voltage_deviation(grid: YearGrid, seed: int, amplitude: float = 0.015) -> np.ndarray:
    """Relative voltage deviation per phase and step, shape (3, n): daily swing plus noise."""
    rng = rng_for(seed, grid.year, SALT_VOLTAGE)
    hours = grid.second_of_day / 3600.0
    # lower in the evening peak, higher at night and at midday (PV)
    daily = 0.4 * np.cos(2 * np.pi * (hours - 3.0) / 24.0) - 0.25 * np.cos(
        2 * np.pi * (hours - 13.0) / 12.0
    )
    width = max(1, 3600 // grid.step_s)
    shared = smooth_noise(rng, grid.n_steps, width)
    dev = np.stack(
        [daily + 0.6 * shared + 0.4 * smooth_noise(rng, grid.n_steps, width) for _ in range(3)]
    )
    return amplitude * np.clip(dev, -2.5, 2.5) / 1.25


@dataclass(frozen=True)
class GridValues:
    """Instantaneous grid status of one phase: voltage (V), current (A), angle of S (degrees)."""

    voltage_v: float
    current_a: float
    angle_deg: float


def grid_values(
    p_w: float,
    q_var: float,
    deviation: float,
    *,
    nominal_v: float,
    line_resistance_ohm: float,
    energised: bool,
) -> GridValues:
    """Voltage, current and phase angle of one phase from its active and reactive power."""
    if not energised:
        return GridValues(0.0, 0.0, 0.0)
    u = nominal_v * (1.0 + deviation) - line_resistance_ohm * p_w / nominal_v
    s = float(np.hypot(p_w, q_var))
    i = s / u if u > 0 else 0.0
    angle = float(np.degrees(np.arctan2(q_var, p_w))) % 360.0 if s > 0 else 0.0
    return GridValues(u, i, angle)
