"""Heat meter of a district-heating connection: heat power, flow/return temperature, flow rate.

Model (degree-hour method, as :mod:`.heat_pump`): space-heating demand proportional to
``max(0, 15 °C − T_air)`` plus a hot-water share with a morning and evening peak; scaled so the
calendar year delivers ``annual_kwh`` exactly before noise. The supply (flow) temperature
follows a sliding heating curve (75 °C at −12 °C outdoor, 60 °C from the heating limit up,
enough for hot water); the cooling ΔT grows with the load (15 K at no load, 30 K at design
load), and the volume flow follows from the heat balance of water

    P = ρ·c·V̇·ΔT,   ρ·c = 1.163 kWh/(m³·K)  (water at about 50 °C)

so that energy register (6-0:1.0.0) and volume register (6-0:2.0.0) stay consistent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imsys.core.errors import UsageError
from imsys.meters._grid import YearGrid, lognormal_factor, rng_for, smooth_noise
from imsys.meters.heat_pump import dhw_daily_shape
from imsys.meters.weather import DEFAULT_CLIMATE, Climate, air_temperature

SALT_HEAT = 81
#: Volumetric heat capacity of water, kWh/(m³·K) (EN 1434 uses the exact k-factor; 1.163 is
#: its value near 50 °C).
WATER_KWH_PER_M3_K = 1.163


@dataclass(frozen=True, eq=False)
class HeatYear:
    """Per step: heat power (W), flow and return temperature (°C), volume flow (m³/h)."""

    power_w: np.ndarray
    flow_temp_c: np.ndarray
    return_temp_c: np.ndarray
    flow_m3_per_h: np.ndarray


@dataclass(frozen=True)
class HeatSupply:
    """District heating for a single-family house (default 12 000 kWh/a)."""

    annual_kwh: float = 12000.0
    heating_limit_c: float = 15.0
    design_outdoor_c: float = -12.0
    design_flow_c: float = 75.0
    min_flow_c: float = 60.0
    dhw_share: float = 0.2
    min_delta_k: float = 15.0
    design_delta_k: float = 30.0
    noise: float = 0.1
    climate: Climate = DEFAULT_CLIMATE

    def __post_init__(self) -> None:
        if self.annual_kwh < 0:
            raise UsageError("annual heat must not be negative")
        if not 0 <= self.dhw_share < 1:
            raise UsageError("dhw_share must be in [0, 1)")

    def heat_year(self, grid: YearGrid, seed: int) -> HeatYear:
        t_air = air_temperature(grid, seed, self.climate)
        q_heat = np.maximum(self.heating_limit_c - t_air, 0.0)
        dhw = dhw_daily_shape(grid.second_of_day.astype(float))
        if float(q_heat.sum()) > 0:
            dhw = dhw * (float(q_heat.sum()) * self.dhw_share / (1 - self.dhw_share) / dhw.sum())
        p = q_heat + dhw
        if self.noise > 0:
            rng = rng_for(seed, grid.year, SALT_HEAT)
            width = max(1, 3600 // grid.step_s)
            p = p * lognormal_factor(smooth_noise(rng, grid.n_steps, width), self.noise)
        total_wh = float(p.sum()) * grid.step_hours
        if total_wh > 0:
            p = p * (self.annual_kwh * 1000.0 / total_wh)
        span = self.heating_limit_c - self.design_outdoor_c
        frac = np.clip((self.heating_limit_c - t_air) / span, 0.0, 1.2)
        flow_c = self.min_flow_c + frac * (self.design_flow_c - self.min_flow_c)
        load = p / max(float(p.max()), 1.0)
        delta = self.min_delta_k + load * (self.design_delta_k - self.min_delta_k)
        volume = p / 1000.0 / (WATER_KWH_PER_M3_K * delta)
        return HeatYear(p, flow_c, flow_c - delta, volume)
