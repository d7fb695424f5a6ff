"""Gas for heating and hot water: the BDEW gas standard load profile (SigLinDe) per day.

Source: BDEW/VKU/GEODE "Leitfaden Abwicklung von Standardlastprofilen Gas" (sigmoid plus linear
term, TU München, 2015 revision): the daily consumption is proportional to

    h(T) = A / (1 + (B / (T − 40 °C))^C) + D

of the geometrically weighted daily mean temperature ``T = (T_d + ½T_d−1 + ¼T_d−2 + ⅛T_d−3) /
1.875``. The coefficients are those of the single-family house ("EFH", building class 5, no
wind impact) and the hour-of-day factors per 5 K temperature interval are read from the tables
that ship with ``demandlib`` (``shlp_sigmoid_factors.csv``, ``shlp_hour_factors.csv``).
The daily temperature comes from :mod:`imsys.meters.weather`.

The annual energy (``annual_kwh``, default 15 000 kWh) is converted into the operating volume
the meter counts with ``kwh_per_m3`` (calorific value × Zustandszahl, default 11.1 × 0.95 ≈
10.5 kWh/m³). Each calendar year integrates to ``annual_kwh`` exactly before noise.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache

import numpy as np

from imsys.core.errors import UsageError
from imsys.meters._grid import YearGrid, lognormal_factor, rng_for, smooth_noise
from imsys.meters.slp import bdew_data_file
from imsys.meters.weather import DEFAULT_CLIMATE, Climate, daily_mean_temperature

SALT_GAS = 61

#: SigLinDe coefficients A, B, C, D for EFH, building class 5, wind_impact 0.
SIGLINDE_EFH = (3.0217399, -37.18236, 5.647717, 0.1218169)


@cache
def hour_factors(building_class: int = 5, shlp_type: str = "EFH") -> np.ndarray:
    """Hour-of-day factors, shape (10 temperature intervals, 24 hours), each row summing to ~1."""
    table = np.zeros((10, 24))
    found = 0
    with bdew_data_file("shlp_hour_factors.csv").open(encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        first = header.index("temp_intervall_01")
        for r in reader:
            if r[4] == shlp_type and int(r[3]) == building_class and int(r[2]) == 0:
                table[:, int(r[1]) - 1] = [float(v) for v in r[first : first + 10]]
                found += 1
    if found != 24:
        raise UsageError(f"no hour factors for {shlp_type} class {building_class}")
    return table


def temperature_interval(t: np.ndarray) -> np.ndarray:
    """BDEW 5 K temperature interval index 0..9 (≤ −15 °C … > 25 °C) of ``ceil(T)``."""
    c = np.ceil(t).astype(int)
    return np.where(c <= -15, 0, np.minimum(9, 1 + (c + 14) // 5))


def geometric_temperature(daily: np.ndarray) -> np.ndarray:
    """``(T_d + ½T_d−1 + ¼T_d−2 + ⅛T_d−3)/1.875``; the first days repeat the first value."""
    padded = np.concatenate((np.full(3, daily[0]), daily))
    return (padded[3:] + 0.5 * padded[2:-1] + 0.25 * padded[1:-2] + 0.125 * padded[:-3]) / 1.875


def siglinde(t: np.ndarray, coeffs: tuple[float, float, float, float] = SIGLINDE_EFH) -> np.ndarray:
    a, b, c, d = coeffs
    return a / (1.0 + (b / (t - 40.0)) ** c) + d


@dataclass(frozen=True)
class GasHeating:
    """A gas boiler for space heating and hot water in a single-family house."""

    annual_kwh: float = 15000.0
    kwh_per_m3: float = 10.5
    noise: float = 0.15
    climate: Climate = DEFAULT_CLIMATE

    def __post_init__(self) -> None:
        if self.annual_kwh < 0 or self.kwh_per_m3 <= 0:
            raise UsageError("gas model needs annual_kwh ≥ 0 and kwh_per_m3 > 0")

    def power_w(self, grid: YearGrid, seed: int) -> np.ndarray:
        """Gas power (W, on the calorific value) per step."""
        t_geo = geometric_temperature(daily_mean_temperature(grid, seed, self.climate))
        daily = siglinde(t_geo)
        hf = hour_factors()
        hours = (grid.second_of_day // 3600).astype(np.intp)
        interval = grid.per_step(temperature_interval(t_geo))
        # share of the day's energy in this step: hour factor × step length / 1 h
        p = grid.per_step(daily) * hf[interval, hours]
        if self.noise > 0:
            rng = rng_for(seed, grid.year, SALT_GAS)
            width = max(1, 3600 // grid.step_s)
            p = p * lognormal_factor(smooth_noise(rng, grid.n_steps, width), self.noise)
        total_wh = float(p.sum()) * grid.step_hours
        return p * (self.annual_kwh * 1000.0 / total_wh) if total_wh > 0 else p

    def flow_m3_per_h(self, grid: YearGrid, seed: int) -> np.ndarray:
        """Operating volume flow (m³/h) per step."""
        return self.power_w(grid, seed) / 1000.0 / self.kwh_per_m3
