"""Heat pump: electricity drawn by an air-source heat pump, driven by the outdoor temperature.

Model (degree-hour method with a Carnot-based COP, as in VDI 4650-1 simplified):

* Space heating demand per step ``Q_h ∝ max(0, T_limit − T_air)`` (heating limit 15 °C).
* Domestic hot water ``Q_dhw``: ``dhw_share`` of the annual heat, with a morning and an
  evening peak, the same every day.
* ``COP = η_Carnot · T_sink / (T_sink − T_air)`` (kelvin), ``η = 0.45``, clipped to
  [1.5, 6.5]; the sink is the heating-curve flow temperature (35 °C at −12 °C, 25 °C at the
  heating limit) for heating and 50 °C for hot water.
* ``P_el = Q_h/COP_h + Q_dhw/COP_dhw``, scaled so the calendar year draws ``annual_kwh`` exactly
  (before noise) and limited to ``max_power_kw`` (the excess is moved to the other steps by
  rescaling; if the limit is too low for the annual energy the total falls short).

The outdoor temperature comes from :mod:`imsys.meters.weather`. Three-phase, cos φ 0.97.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imsys.core.errors import UsageError
from imsys.meters._grid import YearGrid, lognormal_factor, rng_for, smooth_noise
from imsys.meters.electricity import PhasePowers, three_phase
from imsys.meters.weather import DEFAULT_CLIMATE, Climate, air_temperature

SALT_HEAT_PUMP = 41


def dhw_daily_shape(second_of_day: np.ndarray) -> np.ndarray:
    """Relative hot-water draw over the day: peaks at 07:00 and 19:30, a floor at night."""
    h = second_of_day / 3600.0
    return (
        0.15
        + np.exp(-0.5 * ((h - 7.0) / 1.2) ** 2)
        + 0.8 * np.exp(-0.5 * ((h - 19.5) / 1.8) ** 2)
        + 0.3 * np.exp(-0.5 * ((h - 12.5) / 1.5) ** 2)
    )


def carnot_cop(sink_c: np.ndarray, source_c: np.ndarray, efficiency: float) -> np.ndarray:
    sink_k = sink_c + 273.15
    lift = np.maximum(sink_c - source_c, 5.0)
    return np.clip(efficiency * sink_k / lift, 1.5, 6.5)


def scale_with_limit(p: np.ndarray, target: float, limit: float, rounds: int = 8) -> np.ndarray:
    """Scale ``p`` so it sums to ``target`` while no element exceeds ``limit``."""
    for _ in range(rounds):
        total = float(p.sum())
        if total <= 0:
            return p
        p = np.minimum(p * (target / total), limit)
    return p


@dataclass(frozen=True)
class HeatPump:
    """An air-source heat pump (defaults: 4000 kWh/a electricity, 5 kW electric maximum)."""

    annual_kwh: float = 4000.0
    max_power_kw: float = 5.0
    heating_limit_c: float = 15.0
    design_outdoor_c: float = -12.0
    design_flow_c: float = 35.0
    flow_at_limit_c: float = 25.0
    dhw_temp_c: float = 50.0
    dhw_share: float = 0.15
    carnot_efficiency: float = 0.45
    noise: float = 0.1
    power_factor: float = 0.97
    climate: Climate = DEFAULT_CLIMATE

    def __post_init__(self) -> None:
        if self.annual_kwh < 0 or self.max_power_kw <= 0:
            raise UsageError("heat pump needs annual_kwh ≥ 0 and max_power_kw > 0")
        if not 0 <= self.dhw_share < 1:
            raise UsageError("dhw_share must be in [0, 1)")

    def flow_temperature(self, t_air: np.ndarray) -> np.ndarray:
        """Heating curve: linear between the design point and the heating limit."""
        frac = (self.heating_limit_c - t_air) / (self.heating_limit_c - self.design_outdoor_c)
        frac = np.clip(frac, 0.0, 1.2)
        return self.flow_at_limit_c + frac * (self.design_flow_c - self.flow_at_limit_c)

    def power_w(self, grid: YearGrid, seed: int) -> np.ndarray:
        t_air = air_temperature(grid, seed, self.climate)
        q_heat = np.maximum(self.heating_limit_c - t_air, 0.0)
        dhw = dhw_daily_shape(grid.second_of_day.astype(float))
        heat_total = float(q_heat.sum())
        if heat_total > 0:
            dhw = dhw * (heat_total * self.dhw_share / (1 - self.dhw_share) / float(dhw.sum()))
        cop_h = carnot_cop(self.flow_temperature(t_air), t_air, self.carnot_efficiency)
        cop_w = carnot_cop(np.full_like(t_air, self.dhw_temp_c), t_air, self.carnot_efficiency)
        p = q_heat / cop_h + dhw / cop_w
        if self.noise > 0:
            rng = rng_for(seed, grid.year, SALT_HEAT_PUMP)
            width = max(1, 3600 // grid.step_s)
            p = p * lognormal_factor(smooth_noise(rng, grid.n_steps, width), self.noise)
        target = self.annual_kwh * 1000.0 / grid.step_hours
        return scale_with_limit(p, target, self.max_power_kw * 1000.0)

    def phase_powers(self, grid: YearGrid, seed: int) -> PhasePowers:
        return three_phase(self.power_w(grid, seed), self.power_factor)
