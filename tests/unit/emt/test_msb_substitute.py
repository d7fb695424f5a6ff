"""Substitute values (imsys.emt.msb.substitute): methods, provenance and properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imsys.core.errors import UsageError
from imsys.core.reading import Reading, ReadingFlag
from imsys.emt.msb import (
    FindingKind,
    Substitute,
    SubstituteMethod,
    SubstitutionPolicy,
    ValidatedSeries,
    comparable_days,
    substitute,
)
from imsys.emt.msb._calendar import BERLIN, boundaries, day_end, day_start

METER = "1EMH0012345678"
OBIS = "1-0:1.8.0*255"
Q = timedelta(minutes=15)
DAY = date(2026, 11, 18)  # a Wednesday


def usage(b: datetime) -> int:
    """A daily load shape: 40 Wh per quarter hour from 06:00 to 22:00 local time, else 4 Wh."""
    return 40 if 6 <= b.astimezone(BERLIN).hour < 22 else 4


def history_and_day(day: date, weeks: int = 4) -> tuple[list[Reading], list[Reading]]:
    """Readings of the ``weeks`` weeks before ``day`` and of ``day``, shaped by :func:`usage`."""
    grid = boundaries(day_start(day - timedelta(days=7 * weeks)), day_end(day))
    value, out = 1_000_000, []
    for b in grid:
        out.append(Reading(METER, OBIS, value, 0, 30, b))
        value += usage(b)
    start = day_start(day)
    return [r for r in out if r.timestamp < start], [r for r in out if r.timestamp >= start]


def monotone(readings: tuple[Reading, ...]) -> bool:
    return all(a.value <= b.value for a, b in pairwise(readings))


def test_a_short_gap_is_interpolated_linearly_integer_and_exact() -> None:
    _, series = history_and_day(DAY)
    gap = set(range(20, 25))  # 5 boundaries, anchors 1 h 30 min apart
    kept = [r for i, r in enumerate(series) if i not in gap]
    result = substitute(kept, day_start(DAY), day_end(DAY))
    assert {s.method for s in result.substitutes} == {SubstituteMethod.LINEAR}
    assert len(result.substitutes) == 5
    left, right = series[19].value, series[25].value
    values = [s.reading.value for s in result.substitutes]
    assert values == [left + (right - left) * k // 6 for k in range(1, 6)]
    for s in result.substitutes:
        assert s.reading.flags == ReadingFlag.SUBSTITUTE
        assert (s.reading.meter_id, s.reading.obis, s.reading.unit) == (METER, OBIS, 30)
    effective = result.effective()
    assert len(effective) == 97
    assert monotone(effective)
    assert [f.kind for f in result.findings] == [FindingKind.GAP]


def test_interpolation_stops_at_the_configured_length() -> None:
    _, series = history_and_day(DAY)
    kept = [r for i, r in enumerate(series) if not 20 <= i < 28]  # anchors 2 h 15 min apart
    policy = SubstitutionPolicy(use_comparable_day=False)
    result = substitute(kept, day_start(DAY), day_end(DAY), policy=policy)
    assert not result.substitutes
    (open_gap,) = [f for f in result.findings if f.kind is FindingKind.UNSUBSTITUTED]
    assert open_gap.boundaries == 8
    assert result.missing() == tuple(series[i].timestamp for i in range(20, 28))
    longer = SubstitutionPolicy(max_interpolation=timedelta(hours=3), use_comparable_day=False)
    assert len(substitute(kept, day_start(DAY), day_end(DAY), policy=longer).substitutes) == 8


def test_a_long_gap_follows_comparable_days_and_fills_the_difference_exactly() -> None:
    history, series = history_and_day(DAY)
    # the gap spans night and day (03:00–10:00 UTC); the day's true values follow the profile
    gap = range(12, 41)
    kept = [r for i, r in enumerate(series) if i not in gap]
    result = substitute(kept, day_start(DAY), day_end(DAY), history=history)
    assert {s.method for s in result.substitutes} == {SubstituteMethod.COMPARABLE_DAY}
    assert [s.reading.value for s in result.substitutes] == [series[i].value for i in gap]
    assert not [f for f in result.findings if f.kind is FindingKind.UNSUBSTITUTED]


def test_comparable_day_values_are_scaled_to_the_register_difference() -> None:
    history, series = history_and_day(DAY)
    gap = range(12, 41)
    kept = [r for i, r in enumerate(series) if i not in gap]
    # the register after the gap is 10 % higher than the profile predicts
    shift = (series[41].value - series[11].value) // 10
    kept = [
        r if r.timestamp < series[41].timestamp else replace(r, value=r.value + shift) for r in kept
    ]
    result = substitute(kept, day_start(DAY), day_end(DAY), history=history)
    effective = result.effective()
    assert monotone(effective)
    assert effective[41].value - effective[11].value == series[41].value - series[11].value + shift
    # the night quarter hours get less than the day quarter hours
    steps = [b.value - a.value for a, b in pairwise(effective[11:42])]
    assert max(steps[:8]) < min(steps[16:24])


def test_an_open_end_is_estimated_from_comparable_days_and_marked() -> None:
    history, series = history_and_day(DAY)
    kept = series[:60]  # nothing after 15:00 UTC
    result = substitute(kept, day_start(DAY), day_end(DAY), history=history)
    methods = {s.method for s in result.substitutes}
    assert methods == {SubstituteMethod.COMPARABLE_DAY_ESTIMATED}
    assert [s.reading.value for s in result.substitutes] == [r.value for r in series[60:]]
    assert result.method_at(series[70].timestamp) is SubstituteMethod.COMPARABLE_DAY_ESTIMATED


def test_a_run_without_a_value_before_it_stays_open() -> None:
    _, series = history_and_day(DAY)
    result = substitute(series[10:], day_start(DAY), day_end(DAY))
    assert not result.substitutes
    (finding,) = [f for f in result.findings if f.kind is FindingKind.UNSUBSTITUTED]
    assert (finding.start, finding.end) == (series[0].timestamp, series[9].timestamp)
    assert finding.values == (None, series[10].value)


def test_without_comparable_days_a_long_gap_stays_open() -> None:
    _, series = history_and_day(DAY)
    kept = [r for i, r in enumerate(series) if not 12 <= i < 41]
    result = substitute(kept, day_start(DAY), day_end(DAY))
    assert not result.substitutes
    (finding,) = [f for f in result.findings if f.kind is FindingKind.UNSUBSTITUTED]
    assert "comparable day" in finding.detail


def test_invalid_values_get_substitutes_and_the_original_is_kept() -> None:
    _, series = history_and_day(DAY)
    bad = replace(series[30], value=0, flags=ReadingFlag.METER_ERROR, status_word=0x100)
    given_readings = [*series[:30], bad, *series[31:]]
    result = substitute(given_readings, day_start(DAY), day_end(DAY))
    assert result.original == tuple(given_readings)
    (sub,) = result.substitutes
    assert sub.timestamp == bad.timestamp
    assert sub.reading.value == series[30].value  # linear over a straight stretch
    assert result.effective()[30] is sub.reading
    assert bad in result.original


def test_substitutes_never_overwrite_originals() -> None:
    _, series = history_and_day(DAY)
    foreign = Substitute(
        replace(series[10], value=series[10].value + 999, flags=ReadingFlag.SUBSTITUTE),
        SubstituteMethod.LINEAR,
    )
    merged = ValidatedSeries(day_start(DAY), day_end(DAY), tuple(series), (foreign,))
    assert merged.effective() == tuple(series)
    assert merged.method_at(series[10].timestamp) is None


def test_a_falling_register_is_not_bridged() -> None:
    _, series = history_and_day(DAY)
    kept = [r for i, r in enumerate(series) if i not in (20, 21)]
    kept = [r if i < 20 else replace(r, value=r.value - 10_000) for i, r in enumerate(kept)]
    result = substitute(kept, day_start(DAY), day_end(DAY))
    assert not result.substitutes
    kinds = {f.kind for f in result.findings}
    assert {FindingKind.DECREASE, FindingKind.UNSUBSTITUTED} <= kinds


def test_the_input_is_not_changed() -> None:
    history, series = history_and_day(DAY)
    kept = [r for i, r in enumerate(series) if i % 7]
    before_kept, before_history = list(kept), list(history)
    substitute(kept, day_start(DAY), day_end(DAY), history=history)
    assert kept == before_kept
    assert history == before_history


def test_comparable_days_share_the_day_type() -> None:
    wednesday = date(2026, 11, 18)  # Buß- und Bettag is a holiday only in Saxony
    assert comparable_days(wednesday, 2) == (date(2026, 11, 11), date(2026, 11, 4))
    christmas = date(2026, 12, 25)  # a Friday, a public holiday
    days = comparable_days(christmas, 1)
    assert days == (date(2026, 12, 20),)  # the Sunday of the week before
    saturday = date(2026, 11, 21)
    assert comparable_days(saturday, 2) == (date(2026, 11, 14), date(2026, 11, 7))


def test_a_substitute_must_carry_the_substitute_flag() -> None:
    _, series = history_and_day(DAY)
    with pytest.raises(UsageError):
        Substitute(series[0], SubstituteMethod.LINEAR)
    with pytest.raises(UsageError):
        SubstitutionPolicy(max_interpolation=timedelta(minutes=5))


# --- properties ----------------------------------------------------------------------------------

START = datetime(2026, 3, 28, 20, 0, tzinfo=UTC)  # spans the spring DST night


@st.composite
def gappy_series(draw: st.DrawFn) -> tuple[list[Reading], datetime]:
    n = draw(st.integers(min_value=2, max_value=60))
    steps = draw(st.lists(st.integers(0, 3_000), min_size=n, max_size=n))
    keep = draw(st.lists(st.booleans(), min_size=n + 1, max_size=n + 1))
    value = draw(st.integers(0, 10**9))
    readings = []
    for i in range(n + 1):
        if keep[i]:
            readings.append(Reading(METER, OBIS, value, -1, 30, START + i * Q))
        if i < n:
            value += steps[i]
    return readings, START + n * Q


@settings(max_examples=150, deadline=None)
@given(gappy_series())
def test_property_substitution_is_monotone_complete_and_keeps_originals(
    case: tuple[list[Reading], datetime],
) -> None:
    readings, end = case
    before = list(readings)
    policy = SubstitutionPolicy()
    result = substitute(readings, START, end, policy=policy)
    effective = result.effective()
    assert readings == before
    assert monotone(effective)
    by_time = {r.timestamp: r for r in effective}
    for original in readings:
        assert by_time[original.timestamp] is original
    valid_times = sorted(r.timestamp for r in readings)
    for left, right in pairwise(valid_times):
        if right - left <= policy.max_interpolation:
            b = left + Q
            while b < right:
                assert by_time[b].flags == ReadingFlag.SUBSTITUTE
                assert result.method_at(b) is SubstituteMethod.LINEAR
                b += Q
    assert sum(1 for s in result.substitutes if s.timestamp in set(valid_times)) == 0


WEEK_DAY = date(2026, 11, 25)  # a Wednesday; comparable day: 18 November


@st.composite
def profiled_series(draw: st.DrawFn) -> tuple[list[Reading], list[Reading], list[int]]:
    """Eight days of history with a daily shape, then a day with random gaps and own steps."""
    shape = draw(st.lists(st.integers(0, 500), min_size=96, max_size=96))
    today = draw(st.lists(st.integers(0, 500), min_size=96, max_size=96))
    holes = draw(st.lists(st.booleans(), min_size=97, max_size=97))
    grid = boundaries(day_start(WEEK_DAY - timedelta(days=8)), day_end(WEEK_DAY))
    start = day_start(WEEK_DAY)
    value, history, window = 0, [], []
    for i, b in enumerate(grid):
        reading = Reading(METER, OBIS, value, 0, 30, b)
        if b < start:
            history.append(reading)
            value += shape[i % 96]
        else:
            k = (b - start) // Q
            if not holes[k]:
                window.append(reading)
            value += today[k % 96]
    return history, window, shape


@settings(max_examples=60, deadline=None)
@given(profiled_series())
def test_property_comparable_day_substitutes_are_monotone_and_exact(
    case: tuple[list[Reading], list[Reading], list[int]],
) -> None:
    history, window, _ = case
    policy = SubstitutionPolicy(max_interpolation=timedelta(minutes=30), comparable_weeks=1)
    result = substitute(
        window, day_start(WEEK_DAY), day_end(WEEK_DAY), history=history, policy=policy
    )
    effective = result.effective()
    assert monotone((history[-1], *effective))
    by_time = {r.timestamp: r for r in effective}
    assert all(by_time[r.timestamp] is r for r in window)
    # every gap with a valid value before it is filled (after it too, or estimated to the end)
    assert len(effective) == 97
    for s in result.substitutes:
        assert s.reading.flags == ReadingFlag.SUBSTITUTE
        if s.method is SubstituteMethod.COMPARABLE_DAY_ESTIMATED:
            assert all(r.timestamp < s.timestamp for r in window)
