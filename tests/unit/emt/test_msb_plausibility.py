"""Plausibility checks of a register series (imsys.emt.msb.plausibility)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from imsys.core.errors import UsageError
from imsys.core.reading import Reading, ReadingFlag
from imsys.emt.msb import (
    FindingKind,
    MsbReason,
    MsbRejected,
    PlausibilityLimits,
    max_power_from_fuse,
    validate,
)
from imsys.emt.msb._calendar import boundaries, day_end, day_start

METER = "1EMH0012345678"
OBIS = "1-0:1.8.0*255"
Q = timedelta(minutes=15)


def day_series(day: date, start: int = 100_000, step: int = 50, scaler: int = 0) -> list[Reading]:
    """A complete register series of a local day (both midnights), ``step`` per quarter hour."""
    grid = boundaries(day_start(day), day_end(day))
    return [Reading(METER, OBIS, start + i * step, scaler, 30, b) for i, b in enumerate(grid)]


def test_a_complete_day_is_plausible_with_97_boundaries() -> None:
    day = date(2026, 11, 23)
    report = validate(day_series(day), day_start(day), day_end(day))
    assert report.ok
    assert report.expected == 97
    assert (report.meter_id, report.obis) == (METER, OBIS)


@pytest.mark.parametrize(("day", "intervals"), [(date(2026, 3, 29), 92), (date(2026, 10, 25), 100)])
def test_dst_days_have_92_and_100_intervals_and_no_gap(day: date, intervals: int) -> None:
    series = day_series(day)
    assert len(series) == intervals + 1
    report = validate(series, day_start(day), day_end(day))
    assert report.ok
    assert report.expected == intervals + 1


def test_missing_boundaries_are_one_gap_finding_per_run() -> None:
    day = date(2026, 11, 23)
    series = day_series(day)
    kept = [r for i, r in enumerate(series) if i not in (10, 11, 12, 40)]
    report = validate(kept, day_start(day), day_end(day))
    gaps = report.of_kind(FindingKind.GAP)
    assert len(gaps) == 2
    first, second = gaps
    assert (first.start, first.end, first.boundaries) == (
        series[10].timestamp,
        series[12].timestamp,
        3,
    )
    assert first.values == (series[9].value, series[13].value)
    assert first.flags == ReadingFlag.GAP
    assert second.boundaries == 1


def test_a_gap_at_the_end_has_no_value_after_it() -> None:
    day = date(2026, 11, 23)
    series = day_series(day)[:-2]
    (gap,) = validate(series, day_start(day), day_end(day)).findings
    assert gap.kind is FindingKind.GAP
    assert gap.values == (series[-1].value, None)


def test_a_falling_register_is_a_decrease() -> None:
    day = date(2026, 11, 23)
    series = day_series(day)
    series[20] = Reading(METER, OBIS, series[19].value - 7, 0, 30, series[20].timestamp)
    report = validate(series, day_start(day), day_end(day))
    (decrease,) = report.of_kind(FindingKind.DECREASE)
    assert decrease.values == (series[19].value, series[19].value - 7)
    assert (decrease.start, decrease.end) == (series[19].timestamp, series[20].timestamp)


def test_a_jump_above_the_fuse_power_is_reported() -> None:
    assert max_power_from_fuse(63) == 43_470
    limits = PlausibilityLimits.from_fuse(63)  # 43 470 W → 10 867.5 Wh per quarter hour
    day = date(2026, 11, 23)
    ok = day_series(day, step=10_867)
    assert validate(ok, day_start(day), day_end(day), limits).ok
    series = day_series(day, step=100)
    series[30:] = [Reading(METER, OBIS, r.value + 10_868, 0, 30, r.timestamp) for r in series[30:]]
    report = validate(series, day_start(day), day_end(day), limits)
    (jump,) = report.of_kind(FindingKind.JUMP)
    assert (jump.start, jump.end) == (series[29].timestamp, series[30].timestamp)


def test_the_jump_check_respects_the_scaler_and_spans_gaps() -> None:
    limits = PlausibilityLimits(max_power=4_000)  # 1 000 Wh per quarter hour
    day = date(2026, 11, 23)
    series = day_series(day, step=9_999, scaler=-1)  # 999.9 Wh per quarter hour: fine
    assert validate(series, day_start(day), day_end(day), limits).ok
    gappy = [r for i, r in enumerate(series) if i not in (5, 6)]  # 2 999.7 Wh in 45 min: fine
    assert not validate(gappy, day_start(day), day_end(day), limits).of_kind(FindingKind.JUMP)


def test_invalid_readings_are_findings_and_not_compared() -> None:
    day = date(2026, 11, 23)
    series = day_series(day)
    bad = Reading(METER, OBIS, 0, 0, 30, series[5].timestamp, ReadingFlag.METER_ERROR, 0x100)
    series[5] = bad
    report = validate(series, day_start(day), day_end(day))
    (invalid,) = report.findings
    assert invalid.kind is FindingKind.INVALID
    assert invalid.flags == ReadingFlag.METER_ERROR
    assert invalid.values == (0,)


def test_off_grid_and_duplicate_readings_are_reported() -> None:
    day = date(2026, 11, 23)
    series = day_series(day)
    off = Reading(METER, OBIS, series[3].value + 1, 0, 30, series[3].timestamp + timedelta(0, 60))
    near = Reading(METER, OBIS, series[4].value, 0, 30, series[4].timestamp + timedelta(0, 5))
    report = validate([*series, off, near], day_start(day), day_end(day))
    kinds = sorted(f.kind.value for f in report.findings)
    assert kinds == ["duplicate", "off-grid"]
    assert report.of_kind(FindingKind.DUPLICATE)[0].start == series[4].timestamp


def test_validation_never_changes_the_input() -> None:
    day = date(2026, 11, 23)
    series = day_series(day)
    del series[7]
    before = list(series)
    validate(series, day_start(day), day_end(day), PlausibilityLimits(max_power=1))
    assert series == before


def test_mixed_series_are_rejected_with_a_reason() -> None:
    day = date(2026, 11, 23)
    series = day_series(day)
    other = Reading("1EMH0099999999", OBIS, 1, 0, 30, series[0].timestamp)
    with pytest.raises(MsbRejected) as info:
        validate([*series, other], day_start(day), day_end(day))
    assert info.value.reason is MsbReason.MIXED_SERIES


def test_misuse_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        validate([], datetime(2026, 1, 1), datetime(2026, 1, 2, tzinfo=UTC))
    with pytest.raises(UsageError):
        PlausibilityLimits(max_power=0)
    with pytest.raises(UsageError):
        PlausibilityLimits(tolerance=timedelta(minutes=8))


def test_an_empty_series_is_one_gap() -> None:
    start = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    report = validate([], start, start + 4 * Q)
    (gap,) = report.findings
    assert gap.boundaries == 5
    assert report.meter_id is None
