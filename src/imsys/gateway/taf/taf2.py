"""TAF2 – time-of-use tariff ("Zeitvariabler Tarif"): tariff-stage, total and error registers.

Rules (facts.md §1.2 TAF2, TAF7 gaps):

* The energy between two consecutive valid readings of a register (``later − earlier``, exact
  integers) goes to the tariff stage active in that interval according to the
  :class:`~imsys.gateway.taf.calendar.TariffCalendar` (switch points on the 15-minute grid,
  local time, DST rule in :mod:`~imsys.gateway.taf.calendar`).
* Registers (TRuDI ``ObisIdExtensions.cs`` [V]): the running **total register** E = 0, one
  **stage register** per declared stage E = 1..20 (e.g. ``1-0:1.8.1*255``), and the running
  **error register** E = 63 (OBS [S]: the SMGW keeps a running error and total register).
* **Gap rule** (LH-TRUDI TRuDI_029/030 [V]): if readings are missing but the stage does not
  change inside the gap, its energy goes to that stage's register; if the stage changes inside
  the gap (a "switch" = a change of the active stage, not merely a switch point), the energy
  goes to the error register and the interval is flagged (:attr:`Cause.SWITCH_IN_INTERVAL`).
* **Invalid values** (flags ≠ ``NONE``) are never used as values. The energy between the valid
  readings on either side of one or more invalid readings goes to the error register
  (:attr:`Cause.INVALID_VALUE`) – it is exactly the sum of the intervals that have an invalid
  value at one end.
* **Timestamps on the grid.** For the stage lookup a reading within ±9 s of a quarter hour
  (PTB-A 50.8, facts.md §4.6 [V]) counts as taken at that quarter hour; farther away its exact
  time is used, so an off-grid interval that straddles a switch goes to the error register.
* **Invariant:** ``sum(stage registers) + error register == total register`` exactly, in the
  scaler and unit of the input readings; no register ever decreases. A valid reading below the
  previous valid one is refused (``REGISTER_DECREASED``); so is a change of scaler or unit.

Registers start at zero when the profile starts (:meth:`Taf2State.initial`) and run on: feed
later readings with the returned state. Energy before the first valid reading is not counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from imsys.core.errors import UsageError
from imsys.core.reading import Reading, ReadingFlag
from imsys.gateway.taf._boundary import TOLERANCE, RegisterTimeline, check_tolerance
from imsys.gateway.taf._obis import ERROR_E, TOTAL_E, tariff_e, with_tariff
from imsys.gateway.taf.calendar import (
    GRID,
    MAX_TARIFF_STAGES,
    TariffCalendar,
    as_utc,
    grid_floor,
)
from imsys.gateway.taf.errors import EvaluationRejected, TafReason


class Cause(StrEnum):
    """Why an interval's energy went where it went."""

    #: consecutive readings at most one quarter hour apart, one stage: that stage's register
    STAGE = "stage"
    #: readings missing in between, the stage did not change: that stage (TRuDI_029)
    GAP = "gap"
    #: the active stage changed inside the interval: error register (TRuDI_030)
    SWITCH_IN_INTERVAL = "switch-in-interval"
    #: an invalid value lay at one end of the interval: error register
    INVALID_VALUE = "invalid-value"


@dataclass(frozen=True, slots=True)
class Attribution:
    """Where the energy of one interval between valid readings went.

    ``start``/``end`` are the (grid-snapped) interval bounds used for the stage lookup,
    ``energy`` is the register difference, ``stage`` is ``None`` for the error register.
    """

    start: datetime
    end: datetime
    energy: int
    stage: int | None
    cause: Cause

    @property
    def to_error_register(self) -> bool:
        return self.stage is None


@dataclass(frozen=True, slots=True)
class Taf2State:
    """The running TAF2 registers of one base register (E = 0) of one meter.

    ``stages`` are the declared stage numbers (ascending) and ``stage_values`` their register
    values; ``last`` is the last valid reading consumed, ``consumed_until`` the timestamp of the
    last reading consumed (valid or not), ``pending_invalid`` whether an invalid reading came
    after ``last``. Construction checks the invariant.
    """

    meter_id: str
    obis: str
    stages: tuple[int, ...]
    stage_values: tuple[int, ...]
    total: int = 0
    error: int = 0
    scaler: int | None = None
    unit: int | None = None
    last: Reading | None = None
    consumed_until: datetime | None = None
    pending_invalid: bool = False

    def __post_init__(self) -> None:
        if tariff_e(self.obis) != TOTAL_E:
            raise UsageError(f"TAF2 evaluates a total register (E = 0), not {self.obis}")
        if list(self.stages) != sorted(set(self.stages)) or not all(
            1 <= s <= MAX_TARIFF_STAGES for s in self.stages
        ):
            raise UsageError(f"stages must be distinct, ascending, 1..20: {self.stages}")
        if len(self.stage_values) != len(self.stages):
            raise UsageError("one register value per stage")
        if min((*self.stage_values, self.error, self.total)) < 0:
            raise UsageError("TAF2 registers are never negative")
        if sum(self.stage_values) + self.error != self.total:
            raise UsageError("TAF2 invariant violated: stages + error must equal total")

    @classmethod
    def initial(cls, meter_id: str, obis: str, stages: Iterable[int]) -> Taf2State:
        """All registers at zero, nothing consumed yet."""
        ordered = tuple(sorted(set(stages)))
        return cls(meter_id, obis, ordered, (0,) * len(ordered))

    @property
    def as_of(self) -> datetime | None:
        """The instant the registers refer to: the last valid reading's timestamp."""
        return None if self.last is None else self.last.timestamp

    def value(self, stage: int) -> int:
        """The register of ``stage``."""
        try:
            return self.stage_values[self.stages.index(stage)]
        except ValueError:
            raise UsageError(f"stage {stage} is not declared ({self.stages})") from None

    def readings(self) -> tuple[Reading, ...]:
        """Total (E = 0), stage (E = stage) and error (E = 63) registers as readings.

        Stamped with :attr:`as_of`; empty before the first valid reading.
        """
        if self.last is None or self.scaler is None or self.unit is None:
            return ()
        base = replace(
            self.last,
            timestamp=as_utc(self.last.timestamp),
            obis=self.obis,
            value=self.total,
            flags=ReadingFlag.NONE,
            status_word=None,
        )
        out = [base]
        out.extend(
            replace(base, obis=with_tariff(self.obis, stage), value=value)
            for stage, value in zip(self.stages, self.stage_values, strict=True)
        )
        out.append(replace(base, obis=with_tariff(self.obis, ERROR_E), value=self.error))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Taf2Result:
    """The registers after an evaluation and how each interval was attributed."""

    state: Taf2State
    attributions: tuple[Attribution, ...]

    def readings(self) -> tuple[Reading, ...]:
        """The register readings to deliver (see :meth:`Taf2State.readings`)."""
        return self.state.readings()


def _snap(instant: datetime, tolerance: timedelta) -> datetime:
    nearest = grid_floor(instant + GRID / 2)
    return nearest if abs(instant - nearest) <= tolerance else instant


def evaluate(
    readings: Iterable[Reading],
    calendar: TariffCalendar,
    state: Taf2State,
    *,
    tolerance: timedelta = TOLERANCE,
) -> Taf2Result:
    """Run the registers in ``state`` on over ``readings`` (one register, in time order).

    ``readings`` must all be later than ``state.consumed_until`` and belong to ``state``'s
    meter and register. Returns the new state and one :class:`Attribution` per interval.
    """
    check_tolerance(tolerance)
    timeline = RegisterTimeline(readings)
    if not timeline.readings:
        return Taf2Result(state, ())
    if (timeline.meter_id, timeline.obis) != (state.meter_id, state.obis):
        raise UsageError(
            f"readings of {timeline.meter_id} {timeline.obis} fed to the TAF2 registers of "
            f"{state.meter_id} {state.obis}"
        )
    undeclared = calendar.stages - set(state.stages)
    if undeclared:
        raise UsageError(f"the calendar uses undeclared stages {sorted(undeclared)}")
    if state.consumed_until is not None and timeline.times[0] <= state.consumed_until:
        raise UsageError("readings already consumed were fed again")
    if state.scaler is not None and timeline.scale != (state.scaler, state.unit):
        raise EvaluationRejected(
            TafReason.INCONSISTENT_SCALE,
            "scaler or unit differ from the registers'",
            meter_id=state.meter_id,
            obis=state.obis,
        )

    values = dict(zip(state.stages, state.stage_values, strict=True))
    total, error = state.total, state.error
    last, pending = state.last, state.pending_invalid
    attributions: list[Attribution] = []
    for reading, when in zip(timeline.readings, timeline.times, strict=True):
        if not reading.valid:
            pending = True
            continue
        if last is None:  # the first valid value: the baseline, no energy before it
            last, pending = reading, False
            continue
        energy = reading.value - last.value
        if energy < 0:
            raise EvaluationRejected(
                TafReason.REGISTER_DECREASED,
                "a valid register reading is below the previous valid one",
                meter_id=state.meter_id,
                obis=state.obis,
                previous=last.timestamp.isoformat(),
                at=when.isoformat(),
            )
        since = as_utc(last.timestamp)
        start, end = _snap(since, tolerance), _snap(when, tolerance)
        if end <= start:  # both snapped to one quarter hour: use the exact times
            start, end = since, when
        stage: int | None
        if pending:
            stage, cause = None, Cause.INVALID_VALUE
        else:
            active = calendar.stages_between(start, end)
            if len(active) == 1:
                (stage,) = active
                cause = Cause.STAGE if end - start <= GRID else Cause.GAP
            else:
                stage, cause = None, Cause.SWITCH_IN_INTERVAL
        if stage is None:
            error += energy
        else:
            values[stage] += energy
        total += energy
        attributions.append(Attribution(start, end, energy, stage, cause))
        last, pending = reading, False

    scaler, unit = (state.scaler, state.unit)
    if last is not None and timeline.scale is not None:
        scaler, unit = timeline.scale
    new_state = Taf2State(
        state.meter_id,
        state.obis,
        state.stages,
        tuple(values[s] for s in state.stages),
        total,
        error,
        scaler,
        unit,
        last,
        timeline.times[-1],
        pending,
    )
    return Taf2Result(new_state, tuple(attributions))


__all__ = ["Attribution", "Cause", "Taf2Result", "Taf2State", "evaluate"]
