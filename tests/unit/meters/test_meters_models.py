"""Consumption and generation models: plausible totals, shapes, and pvlib as an oracle."""

from __future__ import annotations

import itertools
from datetime import date

import numpy as np
import pytest

from imsys.meters._grid import DayType, year_grid
from imsys.meters.business import business
from imsys.meters.electricity import Site
from imsys.meters.ev import EvCharger
from imsys.meters.gas import GasHeating, temperature_interval
from imsys.meters.heat import WATER_KWH_PER_M3_K, HeatSupply
from imsys.meters.heat_pump import HeatPump
from imsys.meters.pv import PvPlant, erbs, haurwitz_ghi, plane_of_array, solar_position
from imsys.meters.slp import SlpProfile
from imsys.meters.water import WaterUse
from imsys.meters.weather import air_temperature

GRID = year_grid(2025)


def kwh(p_w: np.ndarray, grid=GRID) -> float:
    return float(p_w.sum()) * grid.step_hours / 1000.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pv_specific_yield_is_plausible_for_germany(seed):
    yield_per_kwp = kwh(PvPlant(kwp=10).power_w(GRID, seed)) / 10
    assert 850 <= yield_per_kwp <= 1150  # German roof-top systems: about 900–1100 kWh/kWp


def test_pv_generates_only_in_daylight_and_respects_the_inverter():
    pv = PvPlant(kwp=8, inverter_kw=6)
    p = pv.power_w(GRID, 1)
    hours = GRID.second_of_day / 3600
    assert p.max() <= 6000 + 1e-9
    assert p[(hours < 4) | (hours > 22)].max() == 0
    assert (p >= 0).all()
    pp = pv.phase_powers(GRID, 1)
    assert (pp.p_w <= 0).all()  # feed-in
    np.testing.assert_allclose(pp.total_w, -p)


def test_pv_without_clouds_is_the_clear_sky_upper_bound():
    clear = kwh(PvPlant(clouds=False).power_w(GRID, 0))
    cloudy = kwh(PvPlant().power_w(GRID, 0))
    assert 1.4 * cloudy < clear


@pytest.mark.filterwarnings("ignore:.*dayofyear is deprecated")
def test_solar_geometry_and_irradiance_match_pvlib():
    pd = pytest.importorskip("pandas")
    pvlib = pytest.importorskip("pvlib")
    mid = GRID.utc_s + 450.0
    times = pd.DatetimeIndex(pd.to_datetime(mid, unit="s", utc=True))
    lat, lon = 51.3, 9.5
    sp = pvlib.solarposition.get_solarposition(times, lat, lon)
    ours = solar_position(mid, lat, lon)
    up = sp["zenith"].to_numpy() < 88
    assert np.abs(ours.zenith_deg - sp["zenith"].to_numpy())[up].max() < 0.6
    az_err = (ours.azimuth_deg - sp["azimuth"].to_numpy() + 180) % 360 - 180
    assert np.abs(az_err)[sp["zenith"].to_numpy() < 85].max() < 0.6
    # clear sky, decomposition and transposition on pvlib's own geometry
    zen = sp["zenith"].to_numpy()
    cz = np.cos(np.radians(zen))
    ghi_ref = pvlib.clearsky.haurwitz(sp["zenith"]).ghi.to_numpy()
    np.testing.assert_allclose(haurwitz_ghi(cz), ghi_ref, atol=1e-6)
    ghi = 0.6 * ghi_ref
    dni, dhi = erbs(ghi, cz, np.asarray(times.day_of_year, dtype=float))
    ref = pvlib.irradiance.erbs(ghi, zen, times)
    np.testing.assert_allclose(dhi, np.asarray(ref["dhi"]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dni, np.asarray(ref["dni"]), rtol=1e-6, atol=1e-6)
    poa_ref = pvlib.irradiance.get_total_irradiance(
        30, 180, zen, sp["azimuth"].to_numpy(), dni, ghi, dhi, albedo=0.2, model="isotropic"
    )["poa_global"]
    poa_ref = np.asarray(poa_ref, dtype=float)
    poa = plane_of_array(ours, ghi, dni, dhi, 30, 180)
    # geometry differs by < 0.6°: annual plane-of-array energy agrees within 1 %
    assert poa.sum() == pytest.approx(np.nansum(poa_ref), rel=0.01)


def test_synthetic_temperature_has_german_climatology():
    t = air_temperature(GRID, 0)
    jan = GRID.per_step(GRID.month) == 1
    jul = GRID.per_step(GRID.month) == 7
    assert 8 < t.mean() < 11
    assert -3 < t[jan].mean() < 4
    assert 15 < t[jul].mean() < 22


@pytest.mark.parametrize("profile", [SlpProfile.G0, SlpProfile.G25])
def test_business_annual_total_and_weekend_dip(profile):
    model = business(30_000, profile)
    p = model.power_w(GRID, 5)
    assert kwh(p) == pytest.approx(30_000, rel=0.02)
    workday = GRID.per_step(GRID.day_type) == DayType.WORKDAY
    noon = (GRID.second_of_day >= 10 * 3600) & (GRID.second_of_day < 14 * 3600)
    sunday = GRID.per_step(GRID.day_type) == DayType.HOLIDAY
    assert p[workday & noon].mean() > 1.5 * p[sunday & noon].mean()


def test_heat_pump_follows_temperature_and_its_limit():
    hp = HeatPump(annual_kwh=4500, max_power_kw=4)
    p = hp.power_w(GRID, 2)
    assert kwh(p) == pytest.approx(4500, rel=0.02)
    assert p.max() <= 4000 + 1e-9
    month = GRID.per_step(GRID.month)
    assert p[month == 1].mean() > 3 * p[month == 7].mean()
    t = air_temperature(GRID, 2)
    assert np.corrcoef(t, p)[0, 1] < -0.7


def test_ev_sessions_are_seeded_sequential_and_total_the_annual_energy():
    ev = EvCharger(annual_kwh=3000, charge_power_kw=11)
    s1, s2 = ev.sessions(GRID, 9), ev.sessions(GRID, 9)
    assert s1 == s2 and s1 != ev.sessions(GRID, 10)
    for a, b in itertools.pairwise(s1):
        assert a.end_s <= b.start_s
    p = ev.power_w(GRID, 9)
    assert p.max() <= 11_000 + 1e-6 and p.min() >= -1e-9
    assert kwh(p) == pytest.approx(sum(s.energy_wh for s in s1) / 1000, rel=1e-9)
    assert kwh(p) == pytest.approx(3000, rel=0.02)
    assert 100 < len(s1) < 210


def test_site_sums_its_components_with_independent_seeds():
    site = Site(business(10_000, SlpProfile.G25), business(10_000, SlpProfile.G25))
    pp = site.phase_powers(GRID, 3)
    single = business(10_000, SlpProfile.G25).phase_powers(GRID, 3)
    assert kwh(pp.total_w) == pytest.approx(20_000, rel=0.02)
    assert not np.allclose(pp.total_w, 2 * single.total_w)


def test_gas_follows_siglinde_and_hits_the_annual_volume():
    gas = GasHeating(annual_kwh=18_000, kwh_per_m3=10.5)
    flow = gas.flow_m3_per_h(GRID, 4)
    assert flow.sum() * GRID.step_hours == pytest.approx(18_000 / 10.5, rel=0.02)
    month = GRID.per_step(GRID.month)
    assert flow[month == 1].mean() > 3 * flow[month == 7].mean()
    assert (flow > 0).all()  # hot water all year


def test_gas_temperature_intervals():
    t = np.array([-20.0, -15.0, -14.5, -10.0, -9.5, 0.0, 0.5, 5.0, 25.0, 25.5, 40.0])
    assert temperature_interval(t).tolist() == [0, 0, 1, 1, 2, 3, 4, 4, 8, 9, 9]


def test_water_annual_volume_and_night_minimum():
    q = WaterUse(annual_m3=120).flow_m3_per_h(GRID, 6)
    assert q.sum() * GRID.step_hours == pytest.approx(120, rel=0.02)
    hour = GRID.second_of_day // 3600
    assert q[hour == 3].mean() < 0.2 * q[hour == 7].mean()


def test_heat_supply_energy_volume_and_temperatures_are_consistent():
    hy = HeatSupply(annual_kwh=15_000).heat_year(GRID, 8)
    assert kwh(hy.power_w) == pytest.approx(15_000, rel=1e-9)
    delta = hy.flow_temp_c - hy.return_temp_c
    np.testing.assert_allclose(
        hy.power_w / 1000, WATER_KWH_PER_M3_K * hy.flow_m3_per_h * delta, rtol=1e-9
    )
    assert (hy.flow_temp_c >= 60).all() and (hy.flow_temp_c <= 80).all()
    assert (delta >= 15).all() and (delta <= 30 + 1e-9).all()


def test_models_are_deterministic_per_seed_and_year():
    pv = PvPlant()
    np.testing.assert_array_equal(pv.power_w(GRID, 1), pv.power_w(GRID, 1))
    assert not np.array_equal(pv.power_w(GRID, 1), pv.power_w(GRID, 2))
    g26 = year_grid(2026)
    assert not np.array_equal(pv.power_w(GRID, 1)[:1000], pv.power_w(g26, 1)[:1000])
    assert GRID.dates[0] == date(2025, 1, 1)
