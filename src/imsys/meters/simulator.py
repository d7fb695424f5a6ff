"""The meter simulator: a model, a clock, registers, and snapshots of what the meter shows.

``MeterSimulator(meter_id, kind, model, settings, clock)`` is commissioned at ``clock.now()``
(the register epoch, where every register shows its initial value). ``sample()`` reads the
clock and returns a :class:`MeterSnapshot` of that instant: registers integrated from the epoch,
instantaneous values, the FNN meter status word, and the meter's own (drifting) time stamp.
``series(start, end, step)`` computes the registers for many instants at once (NumPy).

The models are computed once per local calendar year on a :mod:`year grid <._grid>` and
cached (the last three years); a step costs a few microseconds of index arithmetic, so a
``SimulatedClock`` stepped in 15-minute steps runs a year in well under a second per meter.

Registers are pure functions of time (see :mod:`.registers`), so identical seeds give identical
readings however the clock is stepped. If the clock goes backwards, registers and values hold
at the latest instant seen (a meter does not count backwards); the snapshot still carries the
clock's time in ``captured_at``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import numpy as np

from imsys.core.clock import Clock, SystemClock
from imsys.core.errors import UsageError
from imsys.meters import registers as R
from imsys.meters._grid import YearGrid, local_year_of, year_grid
from imsys.meters.business import business
from imsys.meters.electricity import ElectricityModel, Site, voltage_deviation
from imsys.meters.ev import EvCharger
from imsys.meters.gas import GasHeating
from imsys.meters.heat import HeatSupply
from imsys.meters.heat_pump import HeatPump
from imsys.meters.ids import MeterId
from imsys.meters.pv import PvPlant
from imsys.meters.registers import Accumulator, Reading, Unit, quantise, register_divisor
from imsys.meters.settings import PHASE_FAILURES, FaultKind, MeterSettings
from imsys.meters.slp import SlpProfile, StandardLoadProfile
from imsys.meters.status import DIRECTION_NEGATIVE_L, VOLTAGE_PRESENT_L, MeterStatus
from imsys.meters.water import WaterUse

_ONE_SECOND = timedelta(seconds=1)
_YEARS_CACHED = 3
# status bits as plain ints (IntFlag arithmetic is slow in the per-sample path)
_START_UP = int(MeterStatus.START_UP)
_SUM_NEGATIVE = int(MeterStatus.SUM_ENERGY_DIRECTION_NEGATIVE)
_BACKSTOP = int(MeterStatus.BACKSTOP_ACTIVE)
_PHASE_SEQUENCE = int(MeterStatus.PHASE_SEQUENCE_NOT_L1_L2_L3)
_DIRECTION_NEGATIVE = tuple(int(f) for f in DIRECTION_NEGATIVE_L)
_VOLTAGE_PRESENT = tuple(int(f) for f in VOLTAGE_PRESENT_L)
_W, _V, _A, _DEG, _HZ = Unit.WATT, Unit.VOLT, Unit.AMPERE, Unit.DEGREE, Unit.HERTZ
_FAULT_FLAGS = (
    (FaultKind.MAGNETIC_INFLUENCE, int(MeterStatus.MAGNETIC_INFLUENCE)),
    (FaultKind.MANIPULATION, int(MeterStatus.MANIPULATION)),
    (FaultKind.FATAL_ERROR, int(MeterStatus.FATAL_ERROR)),
)


class MeterKind(StrEnum):
    """What a meter measures."""

    ELECTRICITY = "electricity"
    GAS = "gas"
    WATER = "water"
    HEAT = "heat"


class ModelKind(StrEnum):
    """Ready-made models, sized from :class:`MeterSettings`."""

    HOUSEHOLD_H0 = "household-h0"
    HOUSEHOLD_H25 = "household-h25"
    BUSINESS_G0 = "business-g0"
    BUSINESS_G25 = "business-g25"
    PV = "pv"
    HEAT_PUMP = "heat-pump"
    EV = "ev"
    PROSUMER = "prosumer"  # H25 household + PV plant
    GAS_HEATING = "gas-heating"
    WATER = "water"
    DISTRICT_HEAT = "district-heat"


MODEL_METER_KIND: Mapping[ModelKind, MeterKind] = MappingProxyType(
    {
        ModelKind.HOUSEHOLD_H0: MeterKind.ELECTRICITY,
        ModelKind.HOUSEHOLD_H25: MeterKind.ELECTRICITY,
        ModelKind.BUSINESS_G0: MeterKind.ELECTRICITY,
        ModelKind.BUSINESS_G25: MeterKind.ELECTRICITY,
        ModelKind.PV: MeterKind.ELECTRICITY,
        ModelKind.HEAT_PUMP: MeterKind.ELECTRICITY,
        ModelKind.EV: MeterKind.ELECTRICITY,
        ModelKind.PROSUMER: MeterKind.ELECTRICITY,
        ModelKind.GAS_HEATING: MeterKind.GAS,
        ModelKind.WATER: MeterKind.WATER,
        ModelKind.DISTRICT_HEAT: MeterKind.HEAT,
    }
)


def build_model(model: ModelKind, settings: MeterSettings) -> Any:
    """The model object for ``model``, sized by ``settings`` (``None`` sizes: model default)."""
    annual = settings.annual_consumption_kwh
    peak = settings.peak_power_kw

    def kw(**values: float | None) -> dict[str, float]:
        return {k: v for k, v in values.items() if v is not None}

    loc = {"latitude": settings.latitude, "longitude": settings.longitude}
    match model:
        case ModelKind.HOUSEHOLD_H0:
            return StandardLoadProfile(SlpProfile.H0, **kw(annual_kwh=annual))
        case ModelKind.HOUSEHOLD_H25:
            return StandardLoadProfile(SlpProfile.H25, **kw(annual_kwh=annual))
        case ModelKind.BUSINESS_G0:
            return business(profile=SlpProfile.G0, **kw(annual_kwh=annual))
        case ModelKind.BUSINESS_G25:
            return business(profile=SlpProfile.G25, **kw(annual_kwh=annual))
        case ModelKind.PV:
            return PvPlant(**kw(kwp=peak), **loc)
        case ModelKind.HEAT_PUMP:
            return HeatPump(**kw(annual_kwh=annual, max_power_kw=peak))
        case ModelKind.EV:
            return EvCharger(**kw(annual_kwh=annual, charge_power_kw=peak))
        case ModelKind.PROSUMER:
            return Site(
                StandardLoadProfile(SlpProfile.H25, **kw(annual_kwh=annual)),
                PvPlant(**kw(kwp=peak), **loc),
            )
        case ModelKind.GAS_HEATING:
            return GasHeating(**kw(annual_kwh=annual))
        case ModelKind.WATER:
            return WaterUse(**kw(annual_m3=settings.annual_water_m3))
        case ModelKind.DISTRICT_HEAT:
            return HeatSupply(**kw(annual_kwh=annual))
    raise UsageError(f"unknown model kind {model!r}")  # pragma: no cover


def _check_model(kind: MeterKind, model: Any) -> None:
    ok = {
        MeterKind.ELECTRICITY: isinstance(model, ElectricityModel),
        MeterKind.GAS: callable(getattr(model, "flow_m3_per_h", None)),
        MeterKind.WATER: callable(getattr(model, "flow_m3_per_h", None)),
        MeterKind.HEAT: callable(getattr(model, "heat_year", None)),
    }[kind]
    if not ok:
        raise UsageError(f"{type(model).__name__} is not a model for a {kind} meter")


@dataclass(frozen=True, slots=True)
class MeterSnapshot:
    """What the meter shows at one instant.

    ``timestamp`` is the meter's own clock (with configured offset and drift), ``captured_at``
    the injected clock's time. ``readings`` are ``(obis, value, scaler, unit)`` tuples;
    ``status`` is the 32-bit FNN meter status word.
    """

    meter_id: str
    kind: MeterKind
    timestamp: datetime
    readings: tuple[Reading, ...]
    status: int
    captured_at: datetime

    def reading(self, obis: str) -> Reading:
        for r in self.readings:
            if r.obis == obis:
                return r
        raise KeyError(obis)

    def value(self, obis: str) -> int:
        """The integer value of ``obis`` (in units of ``10^scaler``)."""
        return self.reading(obis).value

    @property
    def status_flags(self) -> MeterStatus:
        return MeterStatus(self.status)

    @property
    def status_hex(self) -> str:
        return f"{self.status:08x}"


@dataclass(frozen=True, eq=False)
class MeterSeries:
    """Registers (and the main instantaneous quantity) at many instants.

    ``times`` is a ``datetime64[s]`` array in UTC; each register is an ``int64`` array in the
    register's own resolution (``scalers`` gives the exponent), ``rate`` the model's rate at
    each instant (W for electricity and heat, signed for electricity; m³/h for gas and water).
    """

    meter_id: str
    kind: MeterKind
    times: np.ndarray
    registers: Mapping[str, np.ndarray]
    scalers: Mapping[str, int]
    rate: np.ndarray


@dataclass(frozen=True, eq=False)
class _Year:
    grid: YearGrid
    channels: Mapping[str, Accumulator]
    data: Mapping[str, np.ndarray] = field(default_factory=dict)


class MeterSimulator:
    """A simulated meter driven by the injected clock."""

    def __init__(
        self,
        meter_id: MeterId | str,
        kind: MeterKind,
        model: ModelKind | Any,
        settings: MeterSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.meter_id = str(meter_id)
        try:
            self.kind = MeterKind(kind)
        except ValueError as exc:
            raise UsageError(f"unknown meter kind {kind!r}") from exc
        self.settings = settings or MeterSettings()
        self.clock: Clock = clock or SystemClock()
        if isinstance(model, str):
            try:
                model_kind = ModelKind(model)
            except ValueError as exc:
                raise UsageError(f"unknown model kind {model!r}") from exc
            if MODEL_METER_KIND[model_kind] is not self.kind:
                raise UsageError(f"model {model_kind} belongs on a {MODEL_METER_KIND[model_kind]}")
            model = build_model(model_kind, self.settings)
        _check_model(self.kind, model)
        self.model = model
        s = self.settings
        k = s.transformer_factor
        match self.kind:
            case MeterKind.ELECTRICITY:
                div = register_divisor(R.POWER_SCALER, s.energy_scaler, k)
                self._divisors = {R.IMPORT_ENERGY: div}
                if not s.backstop:
                    self._divisors[R.EXPORT_ENERGY] = div
                self._scalers = dict.fromkeys(self._divisors, s.energy_scaler)
            case MeterKind.GAS:
                self._divisors = {R.GAS_VOLUME: register_divisor(R.FLOW_SCALER, s.volume_scaler)}
                self._scalers = {R.GAS_VOLUME: s.volume_scaler}
            case MeterKind.WATER:
                self._divisors = {R.WATER_VOLUME: register_divisor(R.FLOW_SCALER, s.volume_scaler)}
                self._scalers = {R.WATER_VOLUME: s.volume_scaler}
            case MeterKind.HEAT:
                self._divisors = {
                    R.HEAT_ENERGY: register_divisor(R.POWER_SCALER, s.heat_energy_scaler),
                    R.HEAT_VOLUME: register_divisor(R.FLOW_SCALER, s.volume_scaler),
                }
                self._scalers = {
                    R.HEAT_ENERGY: s.heat_energy_scaler,
                    R.HEAT_VOLUME: s.volume_scaler,
                }
        self._years: OrderedDict[int, _Year] = OrderedDict()
        self._totals: dict[int, dict[str, int]] = {}
        self.epoch = self._whole_seconds(self.clock.now())
        self._epoch_year = local_year_of(self.epoch, s.timezone)
        self._base: dict[str, int] | None = None
        self._high_water = self.epoch
        self._current: _Year | None = None

    # ------------------------------------------------------------------ year data
    @staticmethod
    def _whole_seconds(when: datetime) -> datetime:
        if when.tzinfo is None:
            raise UsageError("the clock must return timezone-aware datetimes")
        return when.astimezone(UTC).replace(microsecond=0)

    def _grid(self, year: int) -> YearGrid:
        s = self.settings
        return year_grid(
            year, s.timezone, s.step_s, s.holiday_subdivision, s.christmas_eve_as_saturday
        )

    def _year(self, year: int) -> _Year:
        cached = self._years.get(year)
        if cached is not None:
            self._years.move_to_end(year)
            return cached
        data = self._compute_year(self._grid(year))
        self._years[year] = data
        self._totals[year] = {obis: acc.total for obis, acc in data.channels.items()}
        while len(self._years) > _YEARS_CACHED:
            self._years.popitem(last=False)
        return data

    def _phase_failures(self, grid: YearGrid) -> np.ndarray:
        """(3, n) bool: phase energised in step k."""
        energised = np.ones((3, grid.n_steps), dtype=bool)
        for f in self.settings.faults:
            if f.kind not in PHASE_FAILURES:
                continue
            start = int((f.start - grid.start) // _ONE_SECOND)
            end = (
                grid.n_steps * grid.step_s
                if f.end is None
                else int((f.end - grid.start) // _ONE_SECOND)
            )
            k0 = max(0, -(-start // grid.step_s))  # first step starting inside the window
            k1 = min(grid.n_steps, max(0, -(-end // grid.step_s)))
            if k0 < k1:
                energised[PHASE_FAILURES.index(f.kind), k0:k1] = False
        return energised

    def _compute_year(self, grid: YearGrid) -> _Year:
        seed = self.settings.seed
        match self.kind:
            case MeterKind.ELECTRICITY:
                pp = self.model.phase_powers(grid, seed)
                energised = self._phase_failures(grid)
                p = quantise(np.where(energised, pp.p_w, 0.0), R.POWER_SCALER)
                q = np.where(energised, pp.q_var, 0.0)
                total = p.sum(axis=0)
                channels = {R.IMPORT_ENERGY: Accumulator.of(np.maximum(total, 0), grid.step_s)}
                if not self.settings.backstop:
                    channels[R.EXPORT_ENERGY] = Accumulator.of(np.maximum(-total, 0), grid.step_s)
                freq = 50.0 + 0.02 * np.tanh(
                    np.random.default_rng([seed, grid.year, 13]).standard_normal(grid.n_steps)
                )
                instant = np.concatenate(
                    (p, q, voltage_deviation(grid, seed), energised, freq[None, :])
                ).T.copy()
                data = {"p": p, "total": total, "q": q, "energised": energised, "instant": instant}
                return _Year(grid, channels, data)
            case MeterKind.GAS | MeterKind.WATER:
                flow = quantise(self.model.flow_m3_per_h(grid, seed), R.FLOW_SCALER)
                obis = R.GAS_VOLUME if self.kind is MeterKind.GAS else R.WATER_VOLUME
                return _Year(grid, {obis: Accumulator.of(flow, grid.step_s)}, {"flow": flow})
            case MeterKind.HEAT:
                hy = self.model.heat_year(grid, seed)
                power = quantise(hy.power_w, R.POWER_SCALER)
                flow = quantise(hy.flow_m3_per_h, R.FLOW_SCALER)
                return _Year(
                    grid,
                    {
                        R.HEAT_ENERGY: Accumulator.of(power, grid.step_s),
                        R.HEAT_VOLUME: Accumulator.of(flow, grid.step_s),
                    },
                    {
                        "power": power,
                        "flow": flow,
                        "t_flow": hy.flow_temp_c,
                        "t_return": hy.return_temp_c,
                    },
                )
        raise UsageError(f"unsupported meter kind {self.kind}")  # pragma: no cover

    def _locate(self, when: datetime) -> tuple[_Year, int]:
        """Year data and whole seconds into that year for a UTC instant."""
        cur = self._current
        if cur is None or not cur.grid.start <= when < cur.grid.end:
            cur = self._year(local_year_of(when, self.settings.timezone))
            self._current = cur
        return cur, int((when - cur.grid.start) // _ONE_SECOND)

    def _years_before(self, year: int) -> dict[str, int]:
        """Integral of every channel over the full years from the epoch year to ``year``."""
        sums = dict.fromkeys(self._divisors, 0)
        for y in range(self._epoch_year, year):
            if y not in self._totals:
                self._year(y)
            for obis in sums:
                sums[obis] += self._totals[y][obis]
        return sums

    def _absolute(self, when: datetime) -> dict[str, int]:
        data, offset = self._locate(when)
        before = self._years_before(data.grid.year)
        return {obis: before[obis] + data.channels[obis].at(offset) for obis in self._divisors}

    def _registers_at(self, when: datetime) -> dict[str, int]:
        if self._base is None:
            self._base = self._absolute(self.epoch)
        absolute = self._absolute(when)
        return {
            obis: self.settings.initial(obis) + (absolute[obis] - self._base[obis]) // div
            for obis, div in self._divisors.items()
        }

    # ------------------------------------------------------------------ public API
    @property
    def register_scalers(self) -> Mapping[str, int]:
        return MappingProxyType(self._scalers)

    def meter_time(self, when: datetime) -> datetime:
        """The meter's own clock at true time ``when`` (offset plus drift since the epoch)."""
        s = self.settings
        drift = s.clock_drift_ppm * 1e-6 * (when - self.epoch).total_seconds()
        return when + timedelta(seconds=s.clock_offset_s + drift)

    def sample(self) -> MeterSnapshot:
        """Read the clock and return what the meter shows now."""
        now = self.clock.now()
        when = self._whole_seconds(now)
        if when < self._high_water:
            when = self._high_water
        self._high_water = when
        return self.snapshot_at(when, captured_at=now)

    def snapshot_at(self, when: datetime, captured_at: datetime | None = None) -> MeterSnapshot:
        """The snapshot at ``when`` (not before the epoch), without touching the clock."""
        when = self._whole_seconds(when)
        if when < self.epoch:
            raise UsageError(f"{when.isoformat()} is before the meter's epoch")
        regs = self._registers_at(when)
        data, offset = self._locate(when)
        k = offset // data.grid.step_s
        readings: list[Reading] = [
            Reading(obis, value, self._scalers[obis], self._register_unit(obis))
            for obis, value in regs.items()
        ]
        faults = self.settings.faults_at(when) if self.settings.faults else frozenset()
        status = int(MeterStatus.BIT_POS_2)
        for fault, flag in _FAULT_FLAGS:
            if fault in faults:
                status |= flag
        match self.kind:
            case MeterKind.ELECTRICITY:
                status |= self._electric_values(data, k, faults, readings)
            case MeterKind.GAS:
                hour = max(when.replace(minute=0, second=0), self.epoch)
                hourly = self._registers_at(hour)[R.GAS_VOLUME]
                scaler = self._scalers[R.GAS_VOLUME]
                readings.append(Reading(R.GAS_VOLUME_HOURLY, hourly, scaler, Unit.CUBIC_METRE))
            case MeterKind.HEAT:
                d = data.data
                readings += [
                    Reading(R.HEAT_POWER, _scaled(int(d["power"][k]), -2, 0), 0, Unit.WATT),
                    Reading(
                        R.HEAT_FLOW_RATE,
                        _scaled(int(d["flow"][k]), -6, -3),
                        -3,
                        Unit.CUBIC_METRE_PER_HOUR,
                    ),
                    Reading(
                        R.HEAT_FLOW_TEMPERATURE,
                        round(float(d["t_flow"][k]) * 100),
                        -2,
                        Unit.CELSIUS,
                    ),
                    Reading(
                        R.HEAT_RETURN_TEMPERATURE,
                        round(float(d["t_return"][k]) * 100),
                        -2,
                        Unit.CELSIUS,
                    ),
                    Reading(
                        R.HEAT_TEMPERATURE_DIFFERENCE,
                        round(float(d["t_flow"][k] - d["t_return"][k]) * 100),
                        -2,
                        Unit.KELVIN,
                    ),
                ]
        return MeterSnapshot(
            meter_id=self.meter_id,
            kind=self.kind,
            timestamp=self.meter_time(when),
            readings=tuple(readings),
            status=status,
            captured_at=captured_at if captured_at is not None else when,
        )

    def _register_unit(self, obis: str) -> Unit:
        return (
            Unit.WATT_HOUR
            if obis in (R.IMPORT_ENERGY, R.EXPORT_ENERGY, R.HEAT_ENERGY)
            else (Unit.CUBIC_METRE)
        )

    def _electric_values(
        self, data: _Year, k: int, faults: frozenset[FaultKind], readings: list[Reading]
    ) -> int:
        s = self.settings
        factor = s.transformer_factor
        # one row per step: p1..p3 (0.01 W), q1..q3 (var), u_dev1..3, energised1..3, frequency
        row = data.data["instant"][k].tolist()
        p = [int(v) for v in row[0:3]]  # 0.01 W, primary side
        q = row[3:6]
        u_dev = row[6:9]
        energised = [v > 0 for v in row[9:12]]
        total = p[0] + p[1] + p[2]
        status = 0
        if abs(total) >= s.startup_threshold_w * 100:
            status |= _START_UP
        if total < 0:
            status |= _SUM_NEGATIVE
            if s.backstop:
                status |= _BACKSTOP
        reversed_sequence = FaultKind.PHASE_SEQUENCE_REVERSED in faults
        if reversed_sequence:
            status |= _PHASE_SEQUENCE
        readings.append(Reading(R.ACTIVE_POWER, _div_round(total, factor), -2, _W))
        volts, amps, angles = [0, 0, 0], [0, 0, 0], [0, 0, 0]
        u_n, r_line = s.nominal_voltage_v, s.line_resistance_ohm
        for i in range(3):
            readings.append(Reading(R.ACTIVE_POWER_L[i], _div_round(p[i], factor), -2, _W))
            if p[i] < 0:
                status |= _DIRECTION_NEGATIVE[i]
            if not energised[i]:
                continue
            status |= _VOLTAGE_PRESENT[i]
            p_w = p[i] / 100.0
            u = u_n * (1.0 + u_dev[i]) - r_line * p_w / u_n
            apparent = math.hypot(p_w, q[i])
            current = apparent / u / factor if u > 0 else 0.0
            angle = math.degrees(math.atan2(q[i], p_w)) % 360.0 if apparent > 0 else 0.0
            volts[i] = round(u * 10)
            amps[i] = round(current * 100)
            angles[i] = round(angle * 10) % 3600
        for i in range(3):
            readings.append(Reading(R.VOLTAGE_L[i], volts[i], -1, _V))
        for i in range(3):
            readings.append(Reading(R.CURRENT_L[i], amps[i], -2, _A))
        u2, u3 = (2400, 1200) if reversed_sequence else (1200, 2400)
        readings.append(Reading(R.ANGLE_U_L2_U_L1, u2 if energised[1] else 0, -1, _DEG))
        readings.append(Reading(R.ANGLE_U_L3_U_L1, u3 if energised[2] else 0, -1, _DEG))
        for i in range(3):
            readings.append(Reading(R.ANGLE_I_U_L[i], angles[i], -1, _DEG))
        readings.append(Reading(R.FREQUENCY, round(row[12] * 100), -2, _HZ))
        return status

    def series(
        self, start: datetime, end: datetime, step: timedelta = timedelta(minutes=15)
    ) -> MeterSeries:
        """Registers at ``start, start+step, …`` up to and including ``end`` (vectorised).

        Does not read the clock and does not move the high-water mark.
        """
        start, end = self._whole_seconds(start), self._whole_seconds(end)
        if start < self.epoch:
            raise UsageError("a series cannot start before the meter's epoch")
        step_s = int(step // _ONE_SECOND)
        if step_s <= 0 or step != timedelta(seconds=step_s):
            raise UsageError("series step must be a positive whole number of seconds")
        if end < start:
            raise UsageError("series end is before its start")
        t0 = int(start.timestamp())
        n = int((end - start) // _ONE_SECOND) // step_s + 1
        utc = t0 + np.arange(n, dtype=np.int64) * step_s
        if self._base is None:
            self._base = self._absolute(self.epoch)
        regs = {obis: np.empty(n, dtype=np.int64) for obis in self._divisors}
        rate = np.empty(n)
        i = 0
        while i < n:
            when = datetime.fromtimestamp(int(utc[i]), UTC)
            data, _ = self._locate(when)
            g = data.grid
            j = int(np.searchsorted(utc, int(g.end.timestamp()), side="left"))
            offsets = utc[i:j] - int(g.start.timestamp())
            before = self._years_before(g.year)
            for obis, div in self._divisors.items():
                absolute = before[obis] + data.channels[obis].at_many(offsets)
                regs[obis][i:j] = self.settings.initial(obis) + (absolute - self._base[obis]) // div
            k = np.minimum(offsets // g.step_s, g.n_steps - 1)
            match self.kind:
                case MeterKind.ELECTRICITY:
                    rate[i:j] = data.data["total"][k] / 100.0
                case MeterKind.HEAT:
                    rate[i:j] = data.data["power"][k] / 100.0
                case _:
                    rate[i:j] = data.data["flow"][k] * 1e-6
            i = j
        for a in regs.values():
            a.setflags(write=False)
        return MeterSeries(
            meter_id=self.meter_id,
            kind=self.kind,
            times=utc.astype("datetime64[s]"),
            registers=MappingProxyType(regs),
            scalers=MappingProxyType(dict(self._scalers)),
            rate=rate,
        )

    def model_year(self, year: int) -> Mapping[str, np.ndarray]:
        """The raw per-step arrays of one local year (for plots, checks and the docs)."""
        data = self._year(year)
        out: dict[str, np.ndarray] = {"utc_s": data.grid.utc_s}
        out.update(data.data)
        for obis, acc in data.channels.items():
            out[f"rate:{obis}"] = acc.rate
        return MappingProxyType(out)


def _div_round(value: int, divisor: int) -> int:
    """Integer division rounded half away from zero."""
    if divisor == 1:
        return value
    q, r = divmod(abs(value), divisor)
    if 2 * r >= divisor:
        q += 1
    return q if value >= 0 else -q


def _scaled(value: int, from_scaler: int, to_scaler: int) -> int:
    """Re-express an integer in units of 10^from_scaler in units of 10^to_scaler (rounded)."""
    shift = to_scaler - from_scaler
    if shift <= 0:
        return value * 10**-shift
    return _div_round(value, 10**shift)
