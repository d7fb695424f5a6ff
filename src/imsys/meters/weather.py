"""Synthetic, seeded weather for the temperature- and sun-driven models.

Not a weather service: a small statistical model with the right German climatology, so that a
heat pump, a gas heating, a heat meter and a PV plant respond to plausible days.

* Air temperature: annual cycle ``9.5 − 9.0·cos(2π(doy − 15)/365.25)`` °C (coldest mid-January,
  about 0.5 °C; warmest mid-July, about 18.5 °C – close to the German 1991–2020 normals), a
  diurnal cycle of 2.5–5 K peaking at 15:00 local solar time, and a seeded day-to-day anomaly
  (AR(1), φ = 0.8, σ = 3.5 K) interpolated between day centres.
* Clear-sky index (share of clear-sky global irradiance that reaches the ground): a daily value
  drawn from a Beta distribution around a monthly mean calibrated so that a year gives about
  1000–1100 kWh/m² global horizontal irradiation in central Germany (DWD: 950–1200), plus a
  seeded intraday variation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imsys.meters._grid import YearGrid, rng_for, smooth_noise

SALT_TEMPERATURE = 31
SALT_CLOUDS = 32

#: Mean clear-sky index per month (January … December), calibrated for central Germany.
MONTHLY_CLEAR_SKY_INDEX = (0.50, 0.54, 0.58, 0.64, 0.64, 0.64, 0.65, 0.64, 0.62, 0.56, 0.48, 0.46)


@dataclass(frozen=True)
class Climate:
    """Parameters of the synthetic climate (defaults: central Germany)."""

    annual_mean_c: float = 9.5
    annual_amplitude_k: float = 9.0
    coldest_day: int = 15
    anomaly_sigma_k: float = 3.5
    anomaly_phi: float = 0.8
    clear_sky_index: tuple[float, ...] = MONTHLY_CLEAR_SKY_INDEX
    clear_sky_concentration: float = 3.0


#: The default climate (central Germany).
DEFAULT_CLIMATE = Climate()


def daily_anomaly(grid: YearGrid, seed: int, climate: Climate) -> np.ndarray:
    """AR(1) temperature anomaly per local day (K)."""
    rng = rng_for(seed, grid.year, SALT_TEMPERATURE)
    n = len(grid.dates)
    eps = rng.standard_normal(n) * climate.anomaly_sigma_k * np.sqrt(1 - climate.anomaly_phi**2)
    out = np.empty(n)
    out[0] = rng.standard_normal() * climate.anomaly_sigma_k
    for i in range(1, n):
        out[i] = climate.anomaly_phi * out[i - 1] + eps[i]
    return out


def air_temperature(grid: YearGrid, seed: int, climate: Climate | None = None) -> np.ndarray:
    """Air temperature (°C) at the middle of every step."""
    climate = climate or Climate()
    day_pos = (
        grid.per_step(grid.day_of_year.astype(float))
        - 1
        + (grid.second_of_day + grid.step_s / 2) / 86400.0
    )
    annual = climate.annual_mean_c - climate.annual_amplitude_k * np.cos(
        2 * np.pi * (day_pos - climate.coldest_day + 1) / 365.25
    )
    summerness = 0.5 - 0.5 * np.cos(2 * np.pi * (day_pos - climate.coldest_day + 1) / 365.25)
    diurnal_amp = 2.5 + 2.5 * summerness
    hours = (grid.second_of_day + grid.step_s / 2) / 3600.0
    diurnal = diurnal_amp * np.cos(2 * np.pi * (hours - 15.0) / 24.0)
    anomaly_days = daily_anomaly(grid, seed, climate)
    centres = np.arange(len(anomaly_days)) + 0.5
    anomaly = np.interp(day_pos, centres, anomaly_days)
    return annual + diurnal + anomaly


def daily_mean_temperature(grid: YearGrid, seed: int, climate: Climate | None = None) -> np.ndarray:
    """Mean air temperature per local day (°C)."""
    t = air_temperature(grid, seed, climate)
    sums = np.bincount(grid.day, weights=t, minlength=len(grid.dates))
    return sums / grid.steps_per_day


def clear_sky_index(grid: YearGrid, seed: int, climate: Climate | None = None) -> np.ndarray:
    """Share of the clear-sky irradiance that reaches the ground, per step (0.03 … 1.05)."""
    climate = climate or Climate()
    rng = rng_for(seed, grid.year, SALT_CLOUDS)
    mean = np.asarray(climate.clear_sky_index)[grid.month - 1]
    k = climate.clear_sky_concentration
    daily = rng.beta(mean * k, (1 - mean) * k)
    width = max(1, 3600 // grid.step_s)
    intraday = 0.12 * smooth_noise(rng, grid.n_steps, width)
    return np.clip(grid.per_step(daily) + intraday, 0.03, 1.05)
