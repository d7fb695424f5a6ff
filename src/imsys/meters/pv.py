"""Photovoltaic generation: clear-sky irradiance, seeded clouds, a fixed plane, a simple inverter.

The chain follows the methods pvlib implements, written out in numpy so that the simulator does
not pay pvlib's import time (about 1.5 s) and pandas per step; the tests check each stage
against pvlib (``pvlib.solarposition``, ``pvlib.clearsky.haurwitz``, ``pvlib.irradiance.erbs``,
``pvlib.irradiance.get_total_irradiance(model="isotropic")``):

1. Solar position: NOAA/Spencer series for declination and equation of time (accuracy a few
   tenths of a degree, enough for energy yield).
2. Clear-sky global horizontal irradiance: Haurwitz (1945), ``GHI = 1098·cos z·exp(−0.059/cos z)``.
3. Clouds: GHI × the seeded clear-sky index of :mod:`imsys.meters.weather`.
4. Split into beam and diffuse: Erbs, Klein & Duffie (1982), extraterrestrial irradiance by
   Spencer (1971) as in ``pvlib.irradiance.get_extra_radiation``.
5. Plane of array: isotropic sky (Liu & Jordan 1960) plus ground reflection (albedo 0.2).
6. DC power: ``P = kWp · POA/1000 W/m² · (1 + γ·(T_cell − 25 °C))`` with the NOCT cell
   temperature model (NOCT 45 °C, γ = −0.37 %/K); ``losses`` (default 14 %) for wiring, soiling,
   mismatch and the inverter; AC output clipped at ``inverter_kw``.

Irradiance is evaluated at the middle of each step. Generation is returned as negative power
(feed-in), symmetric on three phases (single-phase plants ≤ 4.6 kVA can be chosen).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imsys.core.errors import UsageError
from imsys.meters._grid import YearGrid
from imsys.meters.electricity import PhasePowers, single_phase, three_phase
from imsys.meters.weather import DEFAULT_CLIMATE, Climate, air_temperature, clear_sky_index


@dataclass(frozen=True, eq=False)
class SolarPosition:
    """Solar geometry per step: cosine of the zenith angle and the sun's unit vector (E, N, U)."""

    cos_zenith: np.ndarray
    east: np.ndarray
    north: np.ndarray
    day_of_year: np.ndarray

    @property
    def zenith_deg(self) -> np.ndarray:
        return np.degrees(np.arccos(np.clip(self.cos_zenith, -1.0, 1.0)))

    @property
    def azimuth_deg(self) -> np.ndarray:
        """Azimuth clockwise from north (pvlib convention)."""
        return np.degrees(np.arctan2(self.east, self.north)) % 360.0


def solar_position(utc_s: np.ndarray, latitude: float, longitude: float) -> SolarPosition:
    """Sun position for Unix times ``utc_s`` (NOAA general solar position, Spencer series)."""
    days = utc_s / 86400.0  # days since 1970-01-01T00:00Z
    # day of year (1-based, fractional) in UTC
    dt64 = (utc_s.astype("int64")).astype("datetime64[s]")
    year_start = dt64.astype("datetime64[Y]").astype("datetime64[s]")
    doy_frac = (dt64 - year_start).astype(np.int64) / 86400.0  # 0-based fractional
    n_days = np.where(
        (dt64.astype("datetime64[Y]").astype(int) + 1970) % 4 == 0, 366.0, 365.0
    )  # good for 1901–2099
    hour_utc = (days - np.floor(days)) * 24.0
    gamma = 2 * np.pi / n_days * (np.floor(doy_frac) + (hour_utc - 12.0) / 24.0)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * np.cos(gamma)
        - 0.032077 * np.sin(gamma)
        - 0.014615 * np.cos(2 * gamma)
        - 0.040849 * np.sin(2 * gamma)
    )
    decl = (
        0.006918
        - 0.399912 * np.cos(gamma)
        + 0.070257 * np.sin(gamma)
        - 0.006758 * np.cos(2 * gamma)
        + 0.000907 * np.sin(2 * gamma)
        - 0.002697 * np.cos(3 * gamma)
        + 0.00148 * np.sin(3 * gamma)
    )
    true_solar_min = hour_utc * 60.0 + eqtime + 4.0 * longitude
    hour_angle = np.radians(true_solar_min / 4.0 - 180.0)
    lat = np.radians(latitude)
    cos_z = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    east = -np.cos(decl) * np.sin(hour_angle)
    north = np.sin(decl) * np.cos(lat) - np.cos(decl) * np.cos(hour_angle) * np.sin(lat)
    return SolarPosition(cos_z, east, north, np.floor(doy_frac) + 1)


def extra_radiation(day_of_year: np.ndarray) -> np.ndarray:
    """Extraterrestrial normal irradiance (W/m²), Spencer (1971) as in pvlib."""
    b = 2 * np.pi * (day_of_year - 1) / 365.0
    return 1366.1 * (
        1.00011
        + 0.034221 * np.cos(b)
        + 0.00128 * np.sin(b)
        + 0.000719 * np.cos(2 * b)
        + 0.000077 * np.sin(2 * b)
    )


def haurwitz_ghi(cos_zenith: np.ndarray) -> np.ndarray:
    """Clear-sky global horizontal irradiance (W/m²), Haurwitz model."""
    cz = np.clip(cos_zenith, 0.0, None)
    with np.errstate(divide="ignore"):
        ghi = 1098.0 * cz * np.exp(-0.059 / np.where(cz > 0, cz, 1.0))
    return np.where(cz > 0, ghi, 0.0)


def erbs(
    ghi: np.ndarray, cos_zenith: np.ndarray, day_of_year: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Split GHI into DNI and DHI (Erbs et al. 1982), with pvlib's limits (zenith ≤ 87°)."""
    cz = np.maximum(cos_zenith, 0.065)
    kt = np.clip(ghi / (extra_radiation(day_of_year) * cz), 0.0, 1.0)
    df = np.where(
        kt <= 0.22,
        1.0 - 0.09 * kt,
        np.where(
            kt <= 0.8,
            0.9511 - 0.1604 * kt + 4.388 * kt**2 - 16.638 * kt**3 + 12.336 * kt**4,
            0.165,
        ),
    )
    dhi = df * ghi
    with np.errstate(divide="ignore", invalid="ignore"):
        dni = (ghi - dhi) / cos_zenith
    bad = (cos_zenith < np.cos(np.radians(87.0))) | (ghi < 0) | ~(dni >= 0)
    return np.where(bad, 0.0, dni), np.where(bad, ghi, dhi)


def plane_of_array(
    pos: SolarPosition,
    ghi: np.ndarray,
    dni: np.ndarray,
    dhi: np.ndarray,
    tilt_deg: float,
    azimuth_deg: float,
    albedo: float = 0.2,
) -> np.ndarray:
    """Irradiance on a tilted plane (W/m²), isotropic sky."""
    beta, gamma = np.radians(tilt_deg), np.radians(azimuth_deg)
    cos_aoi = (
        pos.east * np.sin(beta) * np.sin(gamma)
        + pos.north * np.sin(beta) * np.cos(gamma)
        + pos.cos_zenith * np.cos(beta)
    )
    beam = np.maximum(dni * cos_aoi, 0.0)
    sky = dhi * (1 + np.cos(beta)) / 2
    ground = ghi * albedo * (1 - np.cos(beta)) / 2
    return beam + sky + ground


@dataclass(frozen=True)
class PvPlant:
    """A roof-top PV plant (defaults: 10 kWp, 30° south, central Germany)."""

    kwp: float = 10.0
    tilt_deg: float = 30.0
    azimuth_deg: float = 180.0
    latitude: float = 51.3
    longitude: float = 9.5
    losses: float = 0.14
    inverter_kw: float | None = None
    noct_c: float = 45.0
    gamma_per_k: float = -0.0037
    albedo: float = 0.2
    phase: int | None = None  # None: three-phase inverter
    clouds: bool = True
    climate: Climate = DEFAULT_CLIMATE

    def __post_init__(self) -> None:
        if self.kwp < 0:
            raise UsageError("kWp must not be negative")
        if not -90 <= self.latitude <= 90 or not -180 <= self.longitude <= 180:
            raise UsageError("latitude/longitude out of range")
        if not 0 <= self.losses < 1:
            raise UsageError("losses must be in [0, 1)")

    def poa_w_m2(self, grid: YearGrid, seed: int) -> np.ndarray:
        """Plane-of-array irradiance at the middle of every step (W/m²)."""
        mid = grid.utc_s.astype(float) + grid.step_s / 2
        pos = solar_position(mid, self.latitude, self.longitude)
        ghi = haurwitz_ghi(pos.cos_zenith)
        if self.clouds:
            ghi = ghi * clear_sky_index(grid, seed, self.climate)
        dni, dhi = erbs(ghi, pos.cos_zenith, pos.day_of_year)
        return plane_of_array(pos, ghi, dni, dhi, self.tilt_deg, self.azimuth_deg, self.albedo)

    def power_w(self, grid: YearGrid, seed: int) -> np.ndarray:
        """AC generation per step in W (positive numbers; fed in, so the meter sees −P)."""
        poa = self.poa_w_m2(grid, seed)
        t_cell = air_temperature(grid, seed, self.climate) + poa * (self.noct_c - 20.0) / 800.0
        dc = self.kwp * poa * (1.0 + self.gamma_per_k * (t_cell - 25.0))
        ac = np.maximum(dc * (1.0 - self.losses), 0.0)
        limit = 1000.0 * (self.inverter_kw if self.inverter_kw is not None else self.kwp)
        return np.minimum(ac, limit)

    def phase_powers(self, grid: YearGrid, seed: int) -> PhasePowers:
        feed_in = -self.power_w(grid, seed)
        if self.phase is None:
            return three_phase(feed_in, 1.0)
        return single_phase(feed_in, self.phase, 1.0)
