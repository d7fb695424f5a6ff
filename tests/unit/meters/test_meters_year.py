"""Acceptance: a simulated year stepped with a SimulatedClock in 15-minute steps."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from imsys.core.clock import SimulatedClock
from imsys.meters import registers as R
from imsys.meters.settings import MeterSettings
from imsys.meters.simulator import MeterKind, MeterSimulator, ModelKind

# local 2025-01-01 00:00 (CET) to local 2026-01-01 00:00
START = datetime(2024, 12, 31, 23, 0, tzinfo=UTC)
END = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
QUARTER = timedelta(minutes=15)


def run_year(model, kind, settings):
    clock = SimulatedClock(START)
    sim = MeterSimulator("1EMH0012345678", kind, model, settings, clock)
    first = sim.sample()
    steps = 0
    last = first
    while clock.now() < END:
        clock.advance(QUARTER)
        snap = sim.sample()
        for r_now, r_before in zip(snap.readings[:2], last.readings[:2], strict=True):
            if r_now.obis in sim.register_scalers:
                assert r_now.value >= r_before.value
        last = snap
        steps += 1
    assert steps == 35040
    return first, last


@pytest.mark.parametrize(
    ("model", "annual_kwh"),
    [
        (ModelKind.HOUSEHOLD_H0, 3500),
        (ModelKind.HOUSEHOLD_H25, 3500),
        (ModelKind.BUSINESS_G0, 25_000),
        (ModelKind.BUSINESS_G25, 25_000),
        (ModelKind.HEAT_PUMP, 4_500),
        (ModelKind.EV, 2_500),
    ],
)
def test_a_simulated_year_totals_the_configured_consumption_within_2_percent(model, annual_kwh):
    t = time.perf_counter()
    first, last = run_year(
        model, MeterKind.ELECTRICITY, MeterSettings(seed=42, annual_consumption_kwh=annual_kwh)
    )
    elapsed = time.perf_counter() - t
    consumed_kwh = (last.value(R.IMPORT_ENERGY) - first.value(R.IMPORT_ENERGY)) / 10 / 1000
    assert consumed_kwh == pytest.approx(annual_kwh, rel=0.02)
    assert last.value(R.EXPORT_ENERGY) == 0
    assert elapsed < 10, f"a simulated year took {elapsed:.1f} s"


def test_a_pv_year_yields_a_plausible_energy_per_kwp():
    first, last = run_year(
        ModelKind.PV, MeterKind.ELECTRICITY, MeterSettings(seed=7, peak_power_kw=9.5)
    )
    fed_in_kwh = (last.value(R.EXPORT_ENERGY) - first.value(R.EXPORT_ENERGY)) / 10_000
    assert 850 <= fed_in_kwh / 9.5 <= 1150
    assert last.value(R.IMPORT_ENERGY) == 0


def test_a_gas_year_totals_the_configured_volume():
    first, last = run_year(
        ModelKind.GAS_HEATING, MeterKind.GAS, MeterSettings(seed=3, annual_consumption_kwh=21_000)
    )
    m3 = (last.value(R.GAS_VOLUME) - first.value(R.GAS_VOLUME)) / 1000
    assert m3 == pytest.approx(21_000 / 10.5, rel=0.02)
    assert last.value(R.GAS_VOLUME_HOURLY) == last.value(R.GAS_VOLUME)  # on the full hour


def test_a_water_year_and_a_heat_year():
    first, last = run_year(ModelKind.WATER, MeterKind.WATER, MeterSettings(annual_water_m3=110))
    assert (last.value(R.WATER_VOLUME) - first.value(R.WATER_VOLUME)) / 1000 == pytest.approx(
        110, rel=0.02
    )
    first, last = run_year(
        ModelKind.DISTRICT_HEAT, MeterKind.HEAT, MeterSettings(annual_consumption_kwh=14_000)
    )
    assert (last.value(R.HEAT_ENERGY) - first.value(R.HEAT_ENERGY)) / 1000 == pytest.approx(
        14_000, rel=0.02
    )
