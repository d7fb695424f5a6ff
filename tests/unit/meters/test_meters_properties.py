"""Properties (Hypothesis): registers never decrease and increments equal integrated power."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imsys.core.clock import SimulatedClock
from imsys.meters import registers as R
from imsys.meters.ids import Medium, MeterId
from imsys.meters.settings import MeterSettings
from imsys.meters.simulator import MeterKind, MeterSimulator, ModelKind

EPOCH = datetime(2025, 3, 29, 12, 0, tzinfo=UTC)  # the DST weekend is inside the runs
PROSUMER = {}


def prosumer(seed: int, step_s: int) -> MeterSimulator:
    key = (seed, step_s)
    if key not in PROSUMER:
        PROSUMER[key] = MeterSimulator(
            "1EMH0012345678",
            MeterKind.ELECTRICITY,
            ModelKind.PROSUMER,
            MeterSettings(seed=seed, step_s=step_s, peak_power_kw=12.0),
            SimulatedClock(EPOCH),
        )
    return PROSUMER[key]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 3),
    gaps=st.lists(st.integers(0, 6 * 3600), min_size=1, max_size=40),
    scaler=st.sampled_from([-4, -1, 0, 3]),
)
def test_registers_never_decrease(seed, gaps, scaler):
    clock = SimulatedClock(EPOCH)
    sim = MeterSimulator(
        "1EMH0012345678",
        MeterKind.ELECTRICITY,
        ModelKind.PROSUMER,
        MeterSettings(seed=seed, energy_scaler=scaler),
        clock,
    )
    last = sim.sample()
    for gap in gaps:
        clock.advance(timedelta(seconds=gap))
        snap = sim.sample()
        for obis in (R.IMPORT_ENERGY, R.EXPORT_ENERGY):
            assert snap.value(obis) >= last.value(obis)
        last = snap


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 3),
    step_s=st.sampled_from([60, 300, 900]),
    start_steps=st.integers(0, 2000),
    n_steps=st.integers(1, 400),
    stride=st.integers(1, 4),
)
def test_register_increments_equal_the_integral_of_reported_power(
    seed, step_s, start_steps, n_steps, stride
):
    """Sampling on model-step boundaries, 16.7.0 is constant until the next sample: the
    import/export increments equal Σ max(±P, 0)·Δt to within one register digit, with no drift
    however long the run."""
    sim = prosumer(seed, step_s)
    t = EPOCH + timedelta(seconds=start_steps * step_s)
    first = sim.snapshot_at(t)
    imp_exact = exp_exact = 0  # 0.01 W · s
    prev = first
    for _ in range(n_steps):
        dt = stride * step_s
        # power is constant over each model step; step through them
        for j in range(stride):
            p = sim.snapshot_at(t + timedelta(seconds=j * step_s)).value(R.ACTIVE_POWER)
            imp_exact += max(p, 0) * step_s
            exp_exact += max(-p, 0) * step_s
        t += timedelta(seconds=dt)
        snap = sim.snapshot_at(t)
        digit = 36_000  # one 0.1 Wh digit in 0.01 W·s
        for obis, exact in ((R.IMPORT_ENERGY, imp_exact), (R.EXPORT_ENERGY, exp_exact)):
            counted = (snap.value(obis) - first.value(obis)) * digit
            assert abs(counted - exact) < digit
            assert snap.value(obis) >= prev.value(obis)
        prev = snap


@given(
    medium=st.sampled_from(list(Medium)),
    manufacturer=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3),
    block=st.integers(0, 99),
    serial=st.integers(0, 99_999_999),
)
def test_meter_ids_round_trip(medium, manufacturer, block, serial):
    mid = MeterId(medium, manufacturer, block, serial)
    assert len(str(mid)) == 14
    assert MeterId.parse(str(mid)) == mid
    assert MeterId.from_server_id(mid.server_id) == mid


@given(st.lists(st.integers(0, 255), min_size=6, max_size=6))
def test_obis_hex_round_trip(parts):
    a, b, c, d, e, f = parts
    assert R.obis_hex(f"{a}-{b}:{c}.{d}.{e}*{f}") == bytes(parts).hex()
