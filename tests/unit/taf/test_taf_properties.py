"""Properties: TAF2 invariant and monotone registers, TAF7 invents nothing, profile round trip."""

from __future__ import annotations

import bisect
import itertools
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from imsys.core.reading import Reading, ReadingFlag
from imsys.gateway.taf import (
    BillingPeriod,
    Cause,
    DayProfile,
    EvaluationProfile,
    SpecialDay,
    Switch,
    Taf,
    Taf2State,
    TariffCalendar,
    TariffStage,
    taf2,
    taf7,
)
from imsys.gateway.taf.calendar import DAY, day_start

BERLIN = ZoneInfo("Europe/Berlin")
METER = "1EMH0012345678"
IMPORT = "1-0:1.8.0*255"
Q = timedelta(minutes=15)
DST_DAYS = [date(2025, 3, 30), date(2025, 10, 26), date(2024, 3, 31), date(2024, 10, 27)]
BAD_FLAGS = [
    ReadingFlag.METER_ERROR,
    ReadingFlag.CLOCK_INVALID,
    ReadingFlag.SIGNATURE_INVALID,
    ReadingFlag.GAP,
    ReadingFlag.METER_ERROR | ReadingFlag.SUBSTITUTE,
]

days = st.one_of(
    st.sampled_from(DST_DAYS), st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 12, 31))
)


@st.composite
def day_profiles(draw: st.DrawFn, day_id: int, stages: list[int]) -> DayProfile:
    quarters = draw(st.lists(st.integers(1, 95), max_size=8, unique=True))
    times = [time(0)] + [time(q // 4, 15 * (q % 4)) for q in sorted(quarters)]
    return DayProfile(day_id, tuple(Switch(t, draw(st.sampled_from(stages))) for t in times))


@st.composite
def calendars(draw: st.DrawFn, first_day: date) -> TariffCalendar:
    stages = draw(st.lists(st.integers(1, 20), min_size=1, max_size=20, unique=True))
    count = draw(st.integers(1, 3))
    profiles = tuple(draw(day_profiles(i, stages)) for i in range(1, count + 1))
    ids = st.integers(1, count)
    offsets = draw(st.lists(st.integers(0, 6), max_size=3, unique=True))
    specials = tuple(SpecialDay(first_day + timedelta(days=o), draw(ids)) for o in offsets)
    return TariffCalendar(profiles, draw(ids), draw(ids), draw(ids), specials)


@dataclass(frozen=True)
class Scenario:
    calendar: TariffCalendar
    readings: list[Reading]
    cuts: list[int]


TAF2_STEPS = st.tuples(
    st.integers(0, 500),  # consumption in the quarter hour
    st.sampled_from(["valid"] * 6 + ["missing"] * 2 + ["invalid"]),
    st.sampled_from([0, 0, 0, -9, 5, 30, -200]),  # seconds off the grid
    st.sampled_from(BAD_FLAGS),
    st.integers(0, 2 * 10**9),  # what an invalid reading claims
)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """A monotone register on the 15-min grid with gaps, invalid values and jitter."""
    first_day = draw(days)
    start = day_start(first_day) + draw(st.integers(0, 95)) * Q
    calendar = draw(calendars(first_day))
    value = draw(st.integers(0, 10**9))
    readings: list[Reading] = []
    steps = draw(st.lists(TAF2_STEPS, min_size=2, max_size=250))
    for i, (used, kind, jitter, flags, garbage) in enumerate(steps):
        value += used
        when = start + i * Q + timedelta(seconds=jitter)
        if kind == "invalid":
            readings.append(Reading(METER, IMPORT, garbage, -1, 30, when, flags))
        elif kind == "valid":
            readings.append(Reading(METER, IMPORT, value, -1, 30, when))
    cuts = sorted(draw(st.lists(st.integers(0, len(readings)), max_size=4)))
    return Scenario(calendar, readings, cuts)


def registers(state: Taf2State) -> tuple[int, ...]:
    return (*state.stage_values, state.error, state.total)


@settings(max_examples=120, deadline=None)
@given(scenarios())
def test_taf2_stages_plus_error_equal_total_and_nothing_decreases(scenario: Scenario) -> None:
    stages = sorted(scenario.calendar.stages)
    state = Taf2State.initial(METER, IMPORT, stages)
    bounds = [0, *scenario.cuts, len(scenario.readings)]
    previous = registers(state)
    for lo, hi in itertools.pairwise(bounds):
        result = taf2.evaluate(scenario.readings[lo:hi], scenario.calendar, state)
        state = result.state
        assert sum(state.stage_values) + state.error == state.total
        current = registers(state)
        assert all(now >= before for now, before in zip(current, previous, strict=True))
        previous = current
        for attribution in result.attributions:
            assert attribution.energy >= 0
            assert (attribution.stage is None) == (
                attribution.cause in (Cause.SWITCH_IN_INTERVAL, Cause.INVALID_VALUE)
            )
    valid = [r for r in scenario.readings if r.valid]
    expected_total = valid[-1].value - valid[0].value if valid else 0
    assert state.total == expected_total
    # batches change nothing: one run over everything gives the same registers
    whole = taf2.evaluate(
        scenario.readings, scenario.calendar, Taf2State.initial(METER, IMPORT, stages)
    )
    assert whole.state == state


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_taf2_without_gaps_or_invalid_values_has_an_empty_error_register(
    scenario: Scenario,
) -> None:
    start = (
        scenario.readings[0].timestamp if scenario.readings else datetime(2025, 1, 1, tzinfo=UTC)
    )
    start = start - (start - datetime(2025, 1, 1, tzinfo=UTC)) % Q
    clean = [
        Reading(METER, IMPORT, 10 * i * i, -1, 30, start + i * Q)
        for i in range(len(scenario.readings) + 2)
    ]
    stages = sorted(scenario.calendar.stages)
    result = taf2.evaluate(clean, scenario.calendar, Taf2State.initial(METER, IMPORT, stages))
    assert result.state.error == 0
    assert result.state.total == clean[-1].value


STEPS = st.tuples(
    st.integers(0, 50),  # consumption in the quarter hour
    st.sampled_from(["valid"] * 4 + ["missing"] * 2),
    st.sampled_from([0, 0, 3, -9, 9, 10, -11, 120]),  # seconds off the grid
    st.sampled_from([ReadingFlag.NONE] * 5 + BAD_FLAGS),
)


@st.composite
def series_inputs(draw: st.DrawFn) -> tuple[list[Reading], timedelta, datetime, datetime]:
    start = day_start(draw(days))
    period = timedelta(minutes=draw(st.sampled_from([15, 30, 45, 60, 120, 240, 1440])))
    readings: list[Reading] = []
    value = draw(st.integers(0, 10**6))
    for i, (used, kind, jitter, flags) in enumerate(draw(st.lists(STEPS, max_size=3 * 96))):
        value += used
        if kind == "valid":
            when = start + i * Q + timedelta(seconds=jitter)
            readings.append(Reading(METER, IMPORT, value, -1, 30, when, flags))
    lo = start + timedelta(minutes=draw(st.integers(0, 24 * 60)))
    hi = lo + timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
    return readings, period, lo, hi


@settings(max_examples=120, deadline=None)
@given(series_inputs())
def test_taf7_never_produces_a_value_that_was_not_in_the_input(
    data: tuple[list[Reading], timedelta, datetime, datetime],
) -> None:
    readings, period, lo, hi = data
    tolerance = timedelta(seconds=9)
    result = taf7.register_series(readings, period, start=lo, end=hi)
    assert [p.boundary for p in result.points] == list(taf7.boundaries(period, lo, hi))
    inputs = {id(r): r for r in readings}
    times = [r.timestamp for r in readings]
    used: set[int] = set()
    for point in result.points:
        assert lo <= point.boundary <= hi
        near = times[
            bisect.bisect_left(times, point.boundary - tolerance) : bisect.bisect_right(
                times, point.boundary + tolerance
            )
        ]
        if point.reading is None:
            assert point.flags is ReadingFlag.GAP and point.value is None
            assert near == []  # a gap only where no reading was close enough
            continue
        assert inputs.get(id(point.reading)) is point.reading  # the input object itself
        assert point.reading.timestamp in near
        assert id(point.reading) not in used
        used.add(id(point.reading))
        assert point.flags == point.reading.flags


@settings(max_examples=40, deadline=None)
@given(days, st.sampled_from([15, 30, 60]))
def test_taf7_day_lengths(day: date, minutes: int) -> None:
    hours = (day_start(day + DAY) - day_start(day)) / timedelta(hours=1)
    points = taf7.day_series([], day, timedelta(minutes=minutes)).points
    assert len(points) == hours * 60 / minutes
    last_sunday = day.weekday() == 6 and day.day >= 25  # of March (23 h) or October (25 h)
    expected = {3: 23, 10: 25}.get(day.month, 24) if last_sunday else 24
    assert hours == expected


# --- profile documents --------------------------------------------------------------------------

identifiers = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=16)
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)


@st.composite
def profiles(draw: st.DrawFn) -> EvaluationProfile:
    taf = draw(st.sampled_from([Taf.TAF1, Taf.TAF2, Taf.TAF6, Taf.TAF7]))
    billing = BillingPeriod(
        date(draw(st.integers(2020, 2030)), draw(st.integers(1, 12)), 1),
        draw(st.sampled_from([1, 2, 3, 6, 12])),
    )
    stages: tuple[TariffStage, ...] = ()
    calendar = None
    if taf is Taf.TAF2:
        numbers = draw(st.lists(st.integers(1, 20), min_size=1, max_size=20, unique=True))
        stages = tuple(TariffStage(n, draw(st.text(max_size=8))) for n in numbers)
        count = draw(st.integers(1, 3))
        calendar = TariffCalendar(
            tuple(draw(day_profiles(i, numbers)) for i in range(1, count + 1)),
            draw(st.integers(1, count)),
            draw(st.integers(1, count)),
            draw(st.integers(1, count)),
            holiday_subdivision=draw(st.sampled_from([None, "BY", "NW", "SN"])),
        )
    valid_from = draw(instants)
    valid_to = draw(st.one_of(st.none(), st.timedeltas(timedelta(seconds=1), timedelta(days=999))))
    return EvaluationProfile(
        profile_id=draw(identifiers),
        taf=taf,
        meter_id=draw(identifiers),
        registers=tuple(
            draw(
                st.lists(
                    st.sampled_from(["1-0:1.8.0*255", "1-0:2.8.0*255", "1-1:1.8.0*255"]),
                    min_size=1,
                    unique=True,
                )
            )
        ),
        billing_period=billing
        if taf is Taf.TAF1 or (taf is not Taf.TAF6 and draw(st.booleans()))
        else None,
        registration_period=timedelta(minutes=draw(st.sampled_from([15, 30, 60, 1440])))
        if taf is Taf.TAF7
        else None,
        tariff_stages=stages,
        tariff_calendar=calendar,
        recipients=tuple(draw(st.lists(identifiers, min_size=1, max_size=3, unique=True))),
        pseudonym=draw(st.one_of(st.none(), identifiers)),
        valid_from=valid_from,
        valid_to=None if valid_to is None else valid_from + valid_to,
    )


@settings(max_examples=100, deadline=None)
@given(profiles())
def test_profile_documents_round_trip_through_json(profile: EvaluationProfile) -> None:
    document = json.loads(json.dumps(profile.to_dict()))
    again = EvaluationProfile.from_dict(document)
    assert again == profile
    assert again.to_dict() == document
