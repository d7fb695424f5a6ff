"""Electric vehicle charging at home: seeded sessions at a wallbox.

Model (own, documented; shapes after the German "Mobilität in Deutschland" pattern of evening
home arrivals):

* Each local day has a session with probability ``sessions_per_week / 7``.
* Arrival: workdays normal around 18:00 (σ 1.5 h), Saturdays, Sundays and holidays around
  14:00 (σ 3 h), clipped to 06:00–23:30.
* Energy per session: gamma distributed (shape 3); all session energies of a calendar year are
  scaled so that they add up to ``annual_kwh``.
* The car charges at constant ``charge_power_kw`` until the energy is in (no CC/CV tail); a
  session that would start while the previous one is still charging starts when that one ends.
  A session cut by the end of the year loses the rest (the total then falls short slightly).

Three-phase (11 kW) by default, cos φ 0.99. Steps that are only partly covered get the average
power of the step, so the energy is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imsys.core.errors import UsageError
from imsys.meters._grid import DayType, YearGrid, rng_for
from imsys.meters.electricity import PhasePowers, single_phase, three_phase

SALT_EV = 51


@dataclass(frozen=True)
class ChargingSession:
    """One session: start and end as seconds from the start of the year grid, energy in Wh."""

    start_s: float
    end_s: float
    energy_wh: float


@dataclass(frozen=True)
class EvCharger:
    """A wallbox with a car (defaults: 2500 kWh/a, 11 kW, three sessions a week)."""

    annual_kwh: float = 2500.0
    charge_power_kw: float = 11.0
    sessions_per_week: float = 3.0
    phase: int | None = None  # None: three-phase
    power_factor: float = 0.99

    def __post_init__(self) -> None:
        if self.annual_kwh < 0 or self.charge_power_kw <= 0:
            raise UsageError("EV charger needs annual_kwh ≥ 0 and charge_power_kw > 0")
        if not 0 < self.sessions_per_week <= 7:
            raise UsageError("sessions_per_week must be in (0, 7]")

    def sessions(self, grid: YearGrid, seed: int) -> tuple[ChargingSession, ...]:
        """The charging sessions of one year (deterministic for seed and year)."""
        rng = rng_for(seed, grid.year, SALT_EV)
        n_days = len(grid.dates)
        has = rng.random(n_days) < self.sessions_per_week / 7.0
        workday = grid.day_type == DayType.WORKDAY
        arrival_h = np.where(workday, rng.normal(18.0, 1.5, n_days), rng.normal(14.0, 3.0, n_days))
        arrival_h = np.clip(arrival_h, 6.0, 23.5)
        energy = rng.gamma(3.0, 1.0, n_days) * has
        if energy.sum() <= 0 or self.annual_kwh == 0:
            return ()
        energy = energy * (self.annual_kwh * 1000.0 / energy.sum())
        day_start = np.concatenate(([0], np.cumsum(grid.steps_per_day)[:-1])) * grid.step_s
        power = self.charge_power_kw * 1000.0
        year_len = float(grid.n_steps * grid.step_s)
        out: list[ChargingSession] = []
        busy_until = 0.0
        for d in np.flatnonzero(has):
            start = max(float(day_start[d] + arrival_h[d] * 3600.0), busy_until)
            if start >= year_len:
                break
            end = min(start + energy[d] / power * 3600.0, year_len)
            out.append(ChargingSession(start, end, (end - start) / 3600.0 * power))
            busy_until = end
        return tuple(out)

    def power_w(self, grid: YearGrid, seed: int) -> np.ndarray:
        step = grid.step_s
        covered = np.zeros(grid.n_steps)  # seconds of charging per step
        for s in self.sessions(grid, seed):
            k0, k1 = int(s.start_s // step), int(np.ceil(s.end_s / step))
            covered[k0:k1] += step
            covered[k0] -= s.start_s - k0 * step
            covered[k1 - 1] -= k1 * step - s.end_s
        return covered / step * self.charge_power_kw * 1000.0

    def phase_powers(self, grid: YearGrid, seed: int) -> PhasePowers:
        p = self.power_w(grid, seed)
        if self.phase is None:
            return three_phase(p, self.power_factor)
        return single_phase(p, self.phase, self.power_factor)
