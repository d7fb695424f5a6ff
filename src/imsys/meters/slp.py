"""BDEW standard load profiles (SLP) as fast numpy lookups.

Sources:

* 1999 VDEW/BDEW profiles ("Repräsentative VDEW-Lastprofile", VDEW M-28/99): H0 household,
  G0–G6 business, L0–L2 farms. Three seasons (winter 1.11.–20.3., summer 15.5.–14.9.,
  transition otherwise) × three day types (workday, Saturday, Sunday/holiday) × 96 quarter
  hours, in W for an annual consumption of 1000 kWh. H0 is *dynamised* with the BDEW
  polynomial ``F(t) = −3.92e-10·t⁴ + 3.2e-7·t³ − 7.02e-5·t² + 2.1e-3·t + 1.24`` (t = day of
  the year, 1-based), applied per day.
* 2025 BDEW profiles (H25, G25, L25, P25, S25): twelve months × three day types × 96 quarter
  hours; H25, P25 and S25 are dynamised with the same polynomial, G25 and L25 are static.

The tables are read from the data files that ship with ``demandlib`` (oemof, MIT licence;
``demandlib/bdew/bdew_data``) with the ``csv`` module, so neither pandas nor demandlib's classes
are imported at run time. ``demandlib.bdew.H25``/``G25`` are used as oracles in the tests; the
old ``demandlib.bdew.ElecSlp`` (H0/G0) does not run on pandas ≥ 3.1, which is why H0/G0 are
rebuilt here from its ``selp_series.csv``.

Day types come from :mod:`imsys.meters._grid` (``holidays`` for Germany; 24/31 December count as
Saturdays). Local legal time is used, so DST days have 92/100 quarter hours.

By default a model normalises the year it computes so that its integral equals the configured
annual consumption exactly (the raw BDEW scaling is off by a few per mille, see ``docs/meters.md``).
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

import numpy as np

from imsys.core.errors import UsageError
from imsys.meters._grid import (
    DayType,
    Season,
    YearGrid,
    lognormal_factor,
    rng_for,
    smooth_noise,
)
from imsys.meters.electricity import PhasePowers, spread_over_phases

SALT_SLP = 21


class SlpProfile(StrEnum):
    """The BDEW standard load profiles available (lower-case names as BDEW writes them)."""

    H0 = "h0"
    G0 = "g0"
    G1 = "g1"
    G2 = "g2"
    G3 = "g3"
    G4 = "g4"
    G5 = "g5"
    G6 = "g6"
    L0 = "l0"
    L1 = "l1"
    L2 = "l2"
    H25 = "h25"
    G25 = "g25"
    L25 = "l25"
    P25 = "p25"
    S25 = "s25"

    @property
    def is_2025(self) -> bool:
        return self.value.endswith("25")

    @property
    def dynamised(self) -> bool:
        """H0, H25, P25 and S25 use the BDEW dynamisation polynomial."""
        return self in (SlpProfile.H0, SlpProfile.H25, SlpProfile.P25, SlpProfile.S25)


_MONTHS_DE = (
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
)
_DAYTYPE_25 = {"WT": DayType.WORKDAY, "SA": DayType.SATURDAY, "FT": DayType.HOLIDAY}
_SEASON_1999 = {"winter": Season.WINTER, "summer": Season.SUMMER, "transition": Season.TRANSITION}
_WEEKDAY_1999 = {1: DayType.WORKDAY, 6: DayType.SATURDAY, 7: DayType.HOLIDAY}


def bdew_data_file(name: str) -> Path:
    """A file of demandlib's BDEW data, found without importing demandlib (and pandas)."""
    spec = importlib.util.find_spec("demandlib")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the BDEW profile tables come from the 'demandlib' package")
    path = Path(next(iter(spec.submodule_search_locations))) / "bdew" / "bdew_data" / name
    if not path.is_file():
        raise UsageError(f"demandlib data file {name} not found at {path}")
    return path


@cache
def profile_table(profile: SlpProfile) -> np.ndarray:
    """The raw table in W per 1000 kWh/a.

    Shape ``(3 seasons, 3 day types, 96)`` for the 1999 profiles (index by :class:`Season`,
    :class:`DayType`), ``(12 months, 3 day types, 96)`` for the 2025 profiles.
    """
    if profile.is_2025:
        table = np.zeros((12, 3, 96))
        with bdew_data_file(f"{profile.value}.csv").open(encoding="utf-8") as f:
            rows = list(csv.reader(f))
        months, daytypes = rows[0], rows[1]
        data = rows[2:]
        if len(data) != 96:
            raise UsageError(f"{profile.value}.csv: expected 96 quarter hours, got {len(data)}")
        for col in range(1, len(months)):
            m = _MONTHS_DE.index(months[col])
            dt = _DAYTYPE_25[daytypes[col]]
            # kWh per quarter hour for 1 GWh/a  ->  W for 1000 kWh/a: × 4
            table[m, dt] = [4.0 * float(r[col]) for r in data]
        return table
    table = np.zeros((3, 3, 96))
    filled = np.zeros((3, 3), dtype=int)
    with bdew_data_file("selp_series.csv").open(encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        col = header.index(profile.value)
        for r in reader:
            weekday = int(r[2])
            if weekday not in _WEEKDAY_1999:
                continue
            s, dt = _SEASON_1999[r[1]], _WEEKDAY_1999[weekday]
            table[s, dt, filled[s, dt]] = 1000.0 * float(r[col])
            filled[s, dt] += 1
    if not (filled == 96).all():
        raise UsageError("selp_series.csv: incomplete table")
    return table


def dynamisation_factor(day_of_year: np.ndarray) -> np.ndarray:
    """The BDEW dynamisation polynomial F(t) for day of year t (1-based)."""
    t = np.asarray(day_of_year, dtype=float)
    return -3.92e-10 * t**4 + 3.2e-7 * t**3 - 7.02e-5 * t**2 + 2.1e-3 * t + 1.24


def slp_shape(grid: YearGrid, profile: SlpProfile) -> np.ndarray:
    """Average power per step in W for 1000 kWh/a, as BDEW defines it (not normalised)."""
    table = profile_table(profile)
    first = grid.month - 1 if profile.is_2025 else grid.season
    per_step_first = grid.per_step(first.astype(np.intp))
    per_step_dt = grid.per_step(grid.day_type.astype(np.intp))
    values = table[per_step_first, per_step_dt, grid.quarter_hour_of_day()]
    if profile.dynamised:
        values = values * grid.per_step(dynamisation_factor(grid.day_of_year))
    return values


@dataclass(frozen=True)
class StandardLoadProfile:
    """A consumer that follows a BDEW standard load profile (household H0/H25, business G0/G25).

    ``annual_kwh`` is the configured annual consumption. ``normalise`` scales each computed
    calendar year so that its integral is exactly ``annual_kwh`` (before noise). ``noise`` is
    the standard deviation of a seeded multiplicative log-normal factor with expectation 1,
    correlated over ``noise_correlation_s``: a single household is never the smooth average
    the SLP describes. Single-phase appliances are spread over the three phases with shares
    that wander around 1/3 (``phase_imbalance``). ``power_factor`` gives the reactive power.
    """

    profile: SlpProfile = SlpProfile.H25
    annual_kwh: float = 3500.0
    noise: float = 0.3
    noise_correlation_s: int = 1800
    normalise: bool = True
    phase_imbalance: float = 0.4
    power_factor: float = 0.95

    def __post_init__(self) -> None:
        if self.annual_kwh < 0:
            raise UsageError("annual consumption must not be negative")
        if not 0 <= self.noise <= 2:
            raise UsageError("noise must be between 0 and 2")

    def power_w(self, grid: YearGrid, seed: int) -> np.ndarray:
        """Total power per step in W (never negative)."""
        p = slp_shape(grid, self.profile) * (self.annual_kwh / 1000.0)
        if self.normalise:
            energy_wh = float(p.sum()) * grid.step_hours
            if energy_wh > 0:
                p = p * (self.annual_kwh * 1000.0 / energy_wh)
        if self.noise > 0:
            rng = rng_for(seed, grid.year, SALT_SLP)
            width = max(1, self.noise_correlation_s // grid.step_s)
            p = p * lognormal_factor(smooth_noise(rng, grid.n_steps, width), self.noise)
        return p

    def phase_powers(self, grid: YearGrid, seed: int) -> PhasePowers:
        rng = rng_for(seed, grid.year, SALT_SLP + 1)
        width = max(1, 3600 // grid.step_s)
        return spread_over_phases(
            self.power_w(grid, seed), rng, self.phase_imbalance, self.power_factor, width
        )


def household(
    annual_kwh: float = 3500.0, profile: SlpProfile = SlpProfile.H25, **options: object
) -> StandardLoadProfile:
    """A household on H25 (default) or H0."""
    if profile not in (SlpProfile.H0, SlpProfile.H25, SlpProfile.P25, SlpProfile.S25):
        raise UsageError(f"{profile} is not a household profile")
    return StandardLoadProfile(profile=profile, annual_kwh=annual_kwh, **options)  # type: ignore[arg-type]
