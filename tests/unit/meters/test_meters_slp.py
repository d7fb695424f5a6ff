"""BDEW standard load profiles: tables, day types, seasons, DST, dynamisation, oracles."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from imsys.meters._grid import DayType, Season, day_type_of, german_holidays, season_of, year_grid
from imsys.meters.slp import (
    SlpProfile,
    StandardLoadProfile,
    dynamisation_factor,
    profile_table,
    slp_shape,
)


def test_h0_table_has_the_published_first_values():
    h0 = profile_table(SlpProfile.H0)
    assert h0.shape == (3, 3, 96)
    # VDEW H0, W per 1000 kWh/a, 00:00–00:15, winter: workday 67.6, Saturday 70.8
    assert h0[Season.WINTER, DayType.WORKDAY, 0] == pytest.approx(67.6)
    assert h0[Season.WINTER, DayType.SATURDAY, 0] == pytest.approx(70.84)


def test_2025_tables_have_twelve_months():
    for p in (SlpProfile.H25, SlpProfile.G25):
        t = profile_table(p)
        assert t.shape == (12, 3, 96)
        assert (t > 0).all()


def test_dynamisation_polynomial():
    f = dynamisation_factor(np.array([1, 180, 365]))
    assert f[0] == pytest.approx(1.2421, abs=1e-4)
    assert f[1] == pytest.approx(0.7982, abs=1e-3)
    assert f[2] == pytest.approx(1.2572, abs=1e-3)


@pytest.mark.parametrize(
    ("day", "season"),
    [
        (date(2025, 3, 20), Season.WINTER),
        (date(2025, 3, 21), Season.TRANSITION),
        (date(2025, 5, 14), Season.TRANSITION),
        (date(2025, 5, 15), Season.SUMMER),
        (date(2025, 9, 14), Season.SUMMER),
        (date(2025, 9, 15), Season.TRANSITION),
        (date(2025, 10, 31), Season.TRANSITION),
        (date(2025, 11, 1), Season.WINTER),
    ],
)
def test_vdew_season_boundaries(day, season):
    assert season_of(day) is season


def test_day_types_follow_bdew_rules():
    hol = german_holidays(2025)
    assert day_type_of(date(2025, 12, 25), hol) is DayType.HOLIDAY  # Christmas, Thursday
    assert day_type_of(date(2025, 12, 24), hol) is DayType.SATURDAY  # Wednesday, treated as Sa
    assert day_type_of(date(2025, 12, 24), hol, christmas_eve_as_saturday=False) is (
        DayType.WORKDAY
    )
    assert day_type_of(date(2025, 12, 27), hol) is DayType.SATURDAY
    assert day_type_of(date(2025, 12, 28), hol) is DayType.HOLIDAY  # Sunday
    assert day_type_of(date(2025, 4, 18), hol) is DayType.HOLIDAY  # Good Friday
    assert day_type_of(date(2025, 1, 6), hol) is DayType.WORKDAY  # Epiphany: not nationwide
    assert day_type_of(date(2025, 1, 6), german_holidays(2025, "BY")) is DayType.HOLIDAY


def test_dst_days_have_92_and_100_quarter_hours():
    g = year_grid(2025)
    spd = dict(zip(g.dates, g.steps_per_day.tolist(), strict=True))
    assert spd[date(2025, 3, 30)] == 92
    assert spd[date(2025, 10, 26)] == 100
    assert sum(v != 96 for v in spd.values()) == 2
    assert g.n_steps == 365 * 96
    # the spring day skips 02:00–03:00, the autumn day repeats it
    spring = g.second_of_day[g.day == g.dates.index(date(2025, 3, 30))]
    autumn = g.second_of_day[g.day == g.dates.index(date(2025, 10, 26))]
    assert 2 * 3600 not in spring and 3 * 3600 in spring
    assert list(autumn).count(2 * 3600) == 2


def test_leap_year_grid():
    g = year_grid(2024)
    assert g.n_steps == 366 * 96
    assert g.start.isoformat() == "2023-12-31T23:00:00+00:00"


@pytest.mark.parametrize("profile", list(SlpProfile))
def test_raw_bdew_scaling_is_within_one_percent_of_1000_kwh(profile):
    g = year_grid(2025)
    total_kwh = slp_shape(g, profile).sum() * g.step_hours / 1000
    assert total_kwh == pytest.approx(1000, rel=0.01)


def test_normalised_model_without_noise_hits_the_annual_energy_exactly():
    g = year_grid(2026)
    p = StandardLoadProfile(SlpProfile.H0, annual_kwh=3500, noise=0).power_w(g, seed=1)
    assert p.sum() * g.step_hours == pytest.approx(3_500_000, rel=1e-12)


def test_h0_winter_evening_is_higher_than_summer_evening_after_dynamisation():
    g = year_grid(2025)
    p = StandardLoadProfile(SlpProfile.H0, noise=0).power_w(g, 0)
    k_jan = g.dates.index(date(2025, 1, 15)) * 96 + 19 * 4  # 19:00 local (CET)
    k_jul = g.dates.index(date(2025, 7, 16)) * 96 + 19 * 4 - 4  # 19:00 local (CEST)
    assert p[k_jan] > 1.3 * p[k_jul]


@pytest.mark.filterwarnings("ignore:The inplace keyword")
@pytest.mark.parametrize(("profile", "cls_name"), [("h25", "H25"), ("g25", "G25")])
def test_2025_profiles_match_demandlib(profile, cls_name):
    """Our numpy lookup reproduces demandlib's pandas implementation (UTC grid: no DST)."""
    pd = pytest.importorskip("pandas")
    bdew = pytest.importorskip("demandlib.bdew")
    g = year_grid(2025, "UTC", 900, None, False)
    hol = german_holidays(2025)
    idx = pd.date_range("2025-01-01", periods=g.n_steps, freq="15min")
    oracle = getattr(bdew, cls_name)(idx, holidays={d: "" for d in hol}).to_numpy()
    ours = slp_shape(g, SlpProfile(profile)) * 1000  # W per 1000 kWh/a → W per 1 GWh/a
    np.testing.assert_allclose(ours / 1000, oracle, rtol=1e-9)
