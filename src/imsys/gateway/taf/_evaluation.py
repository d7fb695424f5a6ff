"""The dispatcher: one evaluation of a profile over readings, through one table keyed by TAF.

:data:`EVALUATORS` maps every :class:`~imsys.gateway.taf.profile.Taf` to the function that
evaluates it, or to :class:`Unsupported` with the reason (STYLE.md §4: the gaps stay visible in
the dispatch table). The dispatcher picks the profile's meter and registers out of the
readings, orders them in time, and applies the profile's validity:

* ``since`` (default ``valid_from``) … ``until`` = ``min(now, valid_to)``;
* TAF1: whole billing periods inside [since, settled], settled = min(now − 9 s, valid_to) (a
  boundary is judged only once its tolerance has passed);
* TAF2: readings in [since − 9 s, valid_to + 9 s], continuing the registers of ``carry``;
* TAF6: the billing days of the 42-day window whose midnight lies in [since, until];
* TAF7: the registration boundaries in [since, settled].
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from imsys.core.errors import UsageError
from imsys.core.reading import Reading
from imsys.gateway.taf import taf1, taf2, taf6, taf7
from imsys.gateway.taf._boundary import TOLERANCE, check_tolerance
from imsys.gateway.taf.calendar import as_utc
from imsys.gateway.taf.errors import ProfileRejected, TafReason
from imsys.gateway.taf.profile import UNSUPPORTED_TAFS, EvaluationProfile, Taf

TafResult = taf1.Taf1Result | taf2.Taf2Result | taf6.Taf6Result | taf7.Taf7Result


@dataclass(frozen=True, slots=True)
class Window:
    """What one evaluation covers (all UTC).

    ``until`` = min(now, valid_to); ``settled`` = min(now − tolerance, valid_to) is the last
    boundary that can be judged (its tolerance window has passed, or the profile has ended).
    """

    now: datetime
    since: datetime
    until: datetime
    settled: datetime
    tolerance: timedelta


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A dispatch-table entry for a TAF imsys does not evaluate, with the reason."""

    reason: str


Evaluator = Callable[
    [EvaluationProfile, str, tuple[Reading, ...], Window, TafResult | None], TafResult
]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The result of evaluating one profile: one TAF result per register, in profile order."""

    profile_id: str
    taf: Taf
    meter_id: str
    pseudonym: str | None
    window: Window
    results: tuple[tuple[str, TafResult], ...]

    def result(self, obis: str) -> TafResult:
        """The result for register ``obis``."""
        for register, result in self.results:
            if register == obis:
                return result
        raise UsageError(f"{obis} is not a register of profile {self.profile_id}")

    def readings(self) -> tuple[Reading, ...]:
        """Every result reading, with the meter id replaced by the pseudonym if one is set."""
        out = [r for _, result in self.results for r in result.readings()]
        if self.pseudonym is None:
            return tuple(out)
        return tuple(replace(r, meter_id=self.pseudonym) for r in out)


def _taf1(
    profile: EvaluationProfile,
    obis: str,
    readings: tuple[Reading, ...],
    window: Window,
    carry: TafResult | None,
) -> taf1.Taf1Result:
    assert profile.billing_period is not None
    return taf1.billing_values(
        readings,
        profile.billing_period,
        start=window.since,
        end=window.settled,
        tolerance=window.tolerance,
    )


def _taf2(
    profile: EvaluationProfile,
    obis: str,
    readings: tuple[Reading, ...],
    window: Window,
    carry: TafResult | None,
) -> taf2.Taf2Result:
    assert profile.tariff_calendar is not None
    if carry is None:
        state = taf2.Taf2State.initial(profile.meter_id, obis, profile.stage_numbers)
    elif isinstance(carry, taf2.Taf2Result):
        state = carry.state
    else:  # pragma: no cover - guarded by evaluate()
        raise UsageError("carry is not a TAF2 result")
    lo = window.since - window.tolerance
    hi = None if profile.valid_to is None else profile.valid_to + window.tolerance
    done = state.consumed_until
    selected = tuple(
        r
        for r in readings
        if lo <= r.timestamp
        and (hi is None or r.timestamp <= hi)
        and (done is None or r.timestamp > done)
    )
    return taf2.evaluate(selected, profile.tariff_calendar, state, tolerance=window.tolerance)


def _taf6(
    profile: EvaluationProfile,
    obis: str,
    readings: tuple[Reading, ...],
    window: Window,
    carry: TafResult | None,
) -> taf6.Taf6Result:
    return taf6.values(
        readings, window.now, since=window.since, until=window.until, tolerance=window.tolerance
    )


def _taf7(
    profile: EvaluationProfile,
    obis: str,
    readings: tuple[Reading, ...],
    window: Window,
    carry: TafResult | None,
) -> taf7.Taf7Result:
    assert profile.registration_period is not None
    return taf7.register_series(
        readings,
        profile.registration_period,
        start=window.since,
        end=window.settled,
        tolerance=window.tolerance,
    )


#: The one dispatch table: every TAF, with its evaluator or the reason it is not supported.
EVALUATORS: Mapping[Taf, Evaluator | Unsupported] = {
    Taf.TAF1: _taf1,
    Taf.TAF2: _taf2,
    Taf.TAF6: _taf6,
    Taf.TAF7: _taf7,
    **{taf: Unsupported(reason) for taf, reason in UNSUPPORTED_TAFS.items()},
}
assert set(EVALUATORS) == set(Taf), "every TAF needs an entry in the dispatch table"


def evaluate(
    profile: EvaluationProfile,
    readings: Iterable[Reading],
    *,
    now: datetime,
    since: datetime | None = None,
    carry: Evaluation | None = None,
    tolerance: timedelta = TOLERANCE,
) -> Evaluation:
    """Evaluate ``profile`` over ``readings`` at ``now`` (see the module docstring).

    ``readings`` may contain other meters and registers; only the profile's are used, sorted
    by time per register. ``carry`` is the previous evaluation of the same profile: TAF2's
    running registers continue from it (the other TAFs are stateless). Raises
    :class:`ProfileRejected` for a TAF without evaluator, ``EvaluationRejected`` for readings
    that cannot be evaluated, ``UsageError`` for misuse.
    """
    entry = EVALUATORS[profile.taf]
    if isinstance(entry, Unsupported):
        raise ProfileRejected(TafReason.UNSUPPORTED_TAF, entry.reason, taf=int(profile.taf))
    check_tolerance(tolerance)
    at = as_utc(now, "now")
    start = profile.valid_from if since is None else max(as_utc(since, "since"), profile.valid_from)
    until = at if profile.valid_to is None else min(at, profile.valid_to)
    settled = at - tolerance if profile.valid_to is None else min(at - tolerance, profile.valid_to)
    window = Window(at, start, until, settled, tolerance)
    if carry is not None and (carry.profile_id, carry.taf) != (profile.profile_id, profile.taf):
        raise UsageError(f"carry belongs to profile {carry.profile_id}, not {profile.profile_id}")

    by_register: dict[str, list[Reading]] = {obis: [] for obis in profile.registers}
    for reading in readings:
        if reading.meter_id == profile.meter_id and reading.obis in by_register:
            by_register[reading.obis].append(reading)
    results: list[tuple[str, TafResult]] = []
    for obis, selected in by_register.items():
        selected.sort(key=lambda r: as_utc(r.timestamp, "reading timestamp"))
        previous = None
        if carry is not None:
            previous = next((res for reg, res in carry.results if reg == obis), None)
        results.append((obis, entry(profile, obis, tuple(selected), window, previous)))
    return Evaluation(
        profile.profile_id, profile.taf, profile.meter_id, profile.pseudonym, window, tuple(results)
    )


__all__ = ["EVALUATORS", "Evaluation", "TafResult", "Unsupported", "Window", "evaluate"]
