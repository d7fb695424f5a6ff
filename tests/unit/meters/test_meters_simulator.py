"""MeterSimulator: snapshots, determinism, DST, clock handling, quirks and faults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from imsys.core.clock import SimulatedClock
from imsys.core.errors import UsageError
from imsys.meters import registers as R
from imsys.meters.ev import EvCharger
from imsys.meters.pv import PvPlant
from imsys.meters.settings import FaultKind, InjectedFault, MeterSettings
from imsys.meters.simulator import MeterKind, MeterSimulator, ModelKind
from imsys.meters.slp import SlpProfile, StandardLoadProfile
from imsys.meters.status import MeterStatus, check_meter_status

T0 = datetime(2025, 3, 1, 0, 0, tzinfo=UTC)
Q = timedelta(minutes=15)


def make(model=ModelKind.PROSUMER, kind=MeterKind.ELECTRICITY, start=T0, **settings):
    clock = SimulatedClock(start)
    return MeterSimulator("1EMH0012345678", kind, model, MeterSettings(**settings), clock), clock


def test_snapshot_carries_the_grid_status_values_of_the_issue():
    sim, clock = make(seed=1)
    clock.advance(timedelta(days=120, hours=11))  # a June noon: PV feeds in
    snap = sim.sample()
    obis = [r.obis for r in snap.readings]
    for code in (
        R.IMPORT_ENERGY,
        R.EXPORT_ENERGY,
        R.ACTIVE_POWER,
        *R.ACTIVE_POWER_L,
        *R.VOLTAGE_L,
        *R.CURRENT_L,
        R.ANGLE_U_L2_U_L1,
        R.ANGLE_U_L3_U_L1,
        *R.ANGLE_I_U_L,
    ):
        assert code in obis
    assert snap.reading(R.IMPORT_ENERGY).unit == 30 and snap.reading(R.IMPORT_ENERGY).scaler == -1
    assert snap.reading(R.ACTIVE_POWER).unit == 27
    p = [snap.value(c) for c in R.ACTIVE_POWER_L]
    assert snap.value(R.ACTIVE_POWER) == sum(p)
    for c in R.VOLTAGE_L:
        assert 2150 <= snap.value(c) <= 2450  # 215–245 V
    assert snap.value(R.ANGLE_U_L2_U_L1) == 1200 and snap.value(R.ANGLE_U_L3_U_L1) == 2400
    assert snap.meter_id == "1EMH0012345678" and snap.kind is MeterKind.ELECTRICITY
    flags = check_meter_status(snap.status)
    assert MeterStatus.VOLTAGE_L1_PRESENT in flags
    if snap.value(R.ACTIVE_POWER) < 0:
        assert MeterStatus.SUM_ENERGY_DIRECTION_NEGATIVE in flags
        assert 900 < snap.value(R.ANGLE_I_U_L[0]) < 2700  # export: S in quadrant II/III


def test_current_matches_apparent_power_over_voltage():
    sim, clock = make(ModelKind.HOUSEHOLD_H25, seed=2)
    clock.advance(timedelta(hours=19))
    snap = sim.sample()
    for i in range(3):
        p = snap.reading(R.ACTIVE_POWER_L[i]).quantity
        u = snap.reading(R.VOLTAGE_L[i]).quantity
        i_a = snap.reading(R.CURRENT_L[i]).quantity
        # household cos φ = 0.95
        assert i_a == pytest.approx(p / 0.95 / u, abs=0.011)
        assert snap.value(R.ANGLE_I_U_L[i]) == pytest.approx(182, abs=1)  # 18.2° inductive


def test_same_seed_gives_identical_series_and_a_different_seed_does_not():
    a, _ = make(seed=5)
    b, _ = make(seed=5)
    c, _ = make(seed=6)
    end = T0 + timedelta(days=60)
    sa, sb, sc = (s.series(T0, end) for s in (a, b, c))
    for obis in sa.registers:
        np.testing.assert_array_equal(sa.registers[obis], sb.registers[obis])
    assert not np.array_equal(sa.registers[R.IMPORT_ENERGY], sc.registers[R.IMPORT_ENERGY])
    np.testing.assert_array_equal(sa.rate, sb.rate)


def test_registers_do_not_depend_on_how_the_clock_is_stepped():
    fine, clock_f = make(seed=9)
    coarse, clock_c = make(seed=9)
    for _ in range(4 * 24):
        clock_f.advance(Q)
        fine.sample()
    clock_c.advance(timedelta(hours=24))
    assert fine.sample().readings[:2] == coarse.sample().readings[:2]


def test_series_agrees_with_sample():
    sim, _clock = make(seed=3)
    series = sim.series(T0, T0 + timedelta(days=2), timedelta(hours=1))
    for i in range(0, 49, 7):
        snap = sim.snapshot_at(T0 + timedelta(hours=i))
        for obis, values in series.registers.items():
            assert values[i] == snap.value(obis)
        assert series.rate[i] * 100 == pytest.approx(snap.value(R.ACTIVE_POWER))
    assert series.scalers[R.IMPORT_ENERGY] == -1
    assert series.times[0] == np.datetime64("2025-03-01T00:00:00")


@pytest.mark.parametrize(("day", "quarters"), [("2025-03-30", 92), ("2025-10-26", 100)])
def test_dst_days_in_local_time_and_consistent_registers(day, quarters):
    local_midnight = datetime.fromisoformat(day).replace(tzinfo=None)
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Berlin")
    start = local_midnight.replace(tzinfo=tz).astimezone(UTC)
    end = (local_midnight + timedelta(days=1)).replace(tzinfo=tz).astimezone(UTC)
    sim, clock = make(ModelKind.HOUSEHOLD_H0, start=start, seed=4)
    readings = [sim.sample().value(R.IMPORT_ENERGY)]
    while clock.now() < end:
        clock.advance(Q)
        readings.append(sim.sample().value(R.IMPORT_ENERGY))
    assert len(readings) - 1 == quarters
    steps = np.diff(readings)
    assert (steps >= 0).all()
    assert steps.sum() == readings[-1] - readings[0]
    # registers follow the model's quarter-hour energies (0.1 Wh digits, no drift)
    year = sim.model_year(2025)
    k0 = int((start.timestamp() - year["utc_s"][0]) // 900)
    energy_mwh = year["rate:" + R.IMPORT_ENERGY][k0 : k0 + quarters] * 900 / 3600 * 10  # 0.001 Wh
    assert abs(steps.sum() * 100 - energy_mwh.sum()) < 100


def test_year_boundary_is_seamless():
    start = datetime(2025, 12, 31, 20, 0, tzinfo=UTC)
    sim, clock = make(ModelKind.HOUSEHOLD_H25, start=start, seed=8)
    s = sim.series(start, start + timedelta(hours=8), timedelta(minutes=5))
    assert (np.diff(s.registers[R.IMPORT_ENERGY]) >= 0).all()
    assert (np.diff(s.registers[R.IMPORT_ENERGY])[:-1] > 0).any()
    clock.advance(timedelta(hours=8))
    assert sim.sample().value(R.IMPORT_ENERGY) == s.registers[R.IMPORT_ENERGY][-1]


def test_clock_going_backwards_holds_the_registers():
    sim, clock = make(seed=1)
    clock.advance(timedelta(days=1))
    before = sim.sample()
    clock.set(T0 + timedelta(hours=2))
    after = sim.sample()
    assert after.readings == before.readings
    assert after.captured_at == T0 + timedelta(hours=2)


def test_epoch_and_initial_registers():
    sim, _clock = make(seed=1, initial_registers=((R.IMPORT_ENERGY, 123_456_789),))
    assert sim.sample().value(R.IMPORT_ENERGY) == 123_456_789
    assert sim.sample().value(R.EXPORT_ENERGY) == 0
    with pytest.raises(UsageError):
        sim.snapshot_at(T0 - timedelta(seconds=1))


def test_transformer_factor_divides_registers_and_currents():
    plain, c1 = make(ModelKind.BUSINESS_G25, seed=2, annual_consumption_kwh=200_000)
    ct, c2 = make(
        ModelKind.BUSINESS_G25, seed=2, annual_consumption_kwh=200_000, transformer_factor=40
    )
    for c in (c1, c2):
        c.advance(timedelta(days=10, hours=10))
    a, b = plain.sample(), ct.sample()
    assert b.value(R.IMPORT_ENERGY) == a.value(R.IMPORT_ENERGY) // 40
    assert b.value(R.ACTIVE_POWER) == pytest.approx(a.value(R.ACTIVE_POWER) / 40, abs=1)
    assert b.value(R.CURRENT_L[0]) == pytest.approx(a.value(R.CURRENT_L[0]) / 40, abs=1)
    assert b.value(R.VOLTAGE_L[0]) == a.value(R.VOLTAGE_L[0])


def test_clock_drift_and_offset_shift_the_meter_timestamp():
    sim, clock = make(seed=1, clock_offset_s=2.0, clock_drift_ppm=100)
    clock.advance(timedelta(days=10))
    snap = sim.sample()
    expected = clock.now() + timedelta(seconds=2.0 + 864_000 * 100e-6)
    assert abs((snap.timestamp - expected).total_seconds()) < 1e-3
    assert snap.captured_at == clock.now()


def test_injected_faults_set_status_bits_inside_their_window():
    window = InjectedFault(
        FaultKind.MAGNETIC_INFLUENCE, T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    )
    fatal = InjectedFault(FaultKind.FATAL_ERROR, T0 + timedelta(hours=3))
    seq = InjectedFault(FaultKind.PHASE_SEQUENCE_REVERSED, T0, T0 + timedelta(minutes=30))
    sim, clock = make(ModelKind.HOUSEHOLD_H25, faults=(window, fatal, seq), seed=1)
    s0 = sim.sample()
    assert MeterStatus.PHASE_SEQUENCE_NOT_L1_L2_L3 in s0.status_flags
    assert s0.value(R.ANGLE_U_L2_U_L1) == 2400
    clock.advance(timedelta(minutes=90))
    s1 = sim.sample()
    assert MeterStatus.MAGNETIC_INFLUENCE in s1.status_flags
    assert MeterStatus.PHASE_SEQUENCE_NOT_L1_L2_L3 not in s1.status_flags
    clock.advance(timedelta(hours=2))
    s2 = sim.sample()
    assert MeterStatus.MAGNETIC_INFLUENCE not in s2.status_flags
    assert MeterStatus.FATAL_ERROR in s2.status_flags
    for s in (s0, s1, s2):
        check_meter_status(s.status)


def test_phase_failure_removes_voltage_current_and_energy_of_that_phase():
    fault = InjectedFault(
        FaultKind.PHASE_FAILURE_L2, T0 + timedelta(hours=1), T0 + timedelta(hours=5)
    )
    faulty, c1 = make(ModelKind.HOUSEHOLD_H25, faults=(fault,), seed=1)
    healthy, c2 = make(ModelKind.HOUSEHOLD_H25, seed=1)
    for c in (c1, c2):
        c.advance(timedelta(hours=2))
    a = faulty.sample()
    assert a.value(R.VOLTAGE_L[1]) == 0 and a.value(R.CURRENT_L[1]) == 0
    assert a.value(R.ACTIVE_POWER_L[1]) == 0
    assert MeterStatus.VOLTAGE_L2_PRESENT not in a.status_flags
    assert MeterStatus.VOLTAGE_L1_PRESENT in a.status_flags
    for c in (c1, c2):
        c.advance(timedelta(hours=4))
    assert faulty.sample().value(R.IMPORT_ENERGY) < healthy.sample().value(R.IMPORT_ENERGY)
    assert MeterStatus.VOLTAGE_L2_PRESENT in faulty.sample().status_flags


def test_backstop_meter_has_no_export_register():
    sim, clock = make(ModelKind.PV, backstop=True, seed=1)
    clock.advance(timedelta(days=100, hours=11))
    snap = sim.sample()
    assert R.EXPORT_ENERGY not in [r.obis for r in snap.readings]
    assert snap.value(R.IMPORT_ENERGY) == 0
    assert MeterStatus.BACKSTOP_ACTIVE in snap.status_flags


def test_gas_meter_reports_the_full_hour_value():
    sim, clock = make(ModelKind.GAS_HEATING, MeterKind.GAS, seed=1)
    clock.advance(timedelta(hours=5, minutes=40))
    snap = sim.sample()
    at_hour = sim.snapshot_at(T0 + timedelta(hours=5))
    assert snap.value(R.GAS_VOLUME_HOURLY) == at_hour.value(R.GAS_VOLUME)
    assert snap.value(R.GAS_VOLUME) > snap.value(R.GAS_VOLUME_HOURLY)
    assert snap.reading(R.GAS_VOLUME).unit == 13 and snap.reading(R.GAS_VOLUME).scaler == -3
    assert snap.status == 0x4


def test_heat_meter_snapshot():
    sim, clock = make(ModelKind.DISTRICT_HEAT, MeterKind.HEAT, seed=1)
    clock.advance(timedelta(hours=7))
    snap = sim.sample()
    t_flow = snap.reading(R.HEAT_FLOW_TEMPERATURE).quantity
    t_ret = snap.reading(R.HEAT_RETURN_TEMPERATURE).quantity
    assert 60 <= t_flow <= 80 and t_ret < t_flow
    p_kw = snap.reading(R.HEAT_POWER).quantity / 1000
    flow = snap.reading(R.HEAT_FLOW_RATE).quantity
    assert p_kw == pytest.approx(1.163 * flow * (t_flow - t_ret), rel=0.02)


def test_custom_model_objects_and_kind_checks():
    model = StandardLoadProfile(SlpProfile.H0, annual_kwh=2000)
    sim, _ = make(model)
    assert sim.model is model
    with pytest.raises(UsageError):
        make(ModelKind.GAS_HEATING, MeterKind.ELECTRICITY)
    with pytest.raises(UsageError):
        make(PvPlant(), MeterKind.GAS)
    with pytest.raises(UsageError):
        make("no-such-model")
    with pytest.raises(UsageError):
        MeterSettings(step_s=7)
    with pytest.raises(UsageError):
        MeterSettings(transformer_factor=0)


def test_finer_model_step_keeps_the_registers_exact():
    ev = EvCharger(annual_kwh=3000)
    sim, _clock = make(ev, step_s=60, seed=2)
    series = sim.series(T0, T0 + timedelta(days=30), timedelta(minutes=1))
    reg = series.registers[R.IMPORT_ENERGY]
    integral = np.concatenate(([0], np.cumsum(series.rate[:-1] * 60 / 3600 * 10)))
    assert np.abs(reg - reg[0] - integral).max() < 1


def test_a_run_over_several_years_keeps_counting():
    start = datetime(2025, 6, 1, tzinfo=UTC)
    sim, clock = make(ModelKind.HOUSEHOLD_H25, start=start, seed=1, annual_consumption_kwh=3650)
    first = sim.sample().value(R.IMPORT_ENERGY)
    clock.advance(timedelta(days=5 * 365))  # five years later, past four New Years
    five_years_kwh = (sim.sample().value(R.IMPORT_ENERGY) - first) / 10_000
    assert five_years_kwh == pytest.approx(5 * 3650, rel=0.01)
    clock.advance(timedelta(days=1))
    assert sim.sample().value(R.IMPORT_ENERGY) > first
