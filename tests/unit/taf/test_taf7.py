"""TAF7: register series on the local registration grid, gaps marked, never filled."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from imsys.core.reading import Reading, ReadingFlag
from imsys.gateway.taf import (
    EvaluationProfile,
    ProfileRejected,
    Taf,
    Taf7Result,
    TafReason,
    evaluate,
    taf7,
)
from imsys.gateway.taf.calendar import registration_boundaries

BERLIN = ZoneInfo("Europe/Berlin")
METER = "1EMH0012345678"
IMPORT = "1-0:1.8.0*255"
Q = timedelta(minutes=15)

NORMAL, SPRING, AUTUMN = date(2025, 3, 29), date(2025, 3, 30), date(2025, 10, 26)


def local(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0, fold: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=BERLIN, fold=fold).astimezone(UTC)


def midnight(day: date) -> datetime:
    return local(day.year, day.month, day.day)


def reading(when: datetime, value: int, flags: ReadingFlag = ReadingFlag.NONE) -> Reading:
    return Reading(METER, IMPORT, value, -1, 30, when, flags)


def quarter_hourly(day: date, *, days: int = 1) -> list[Reading]:
    """Readings every 15 min of real time from local midnight of ``day`` for ``days`` days."""
    start, end = midnight(day), midnight(day + timedelta(days=days))
    count = (end - start) // Q
    return [reading(start + i * Q, 639_108 + 7 * i) for i in range(count)]


@pytest.mark.parametrize(
    ("day", "minutes", "count"),
    [
        (NORMAL, 15, 96),
        (SPRING, 15, 92),
        (AUTUMN, 15, 100),
        (NORMAL, 30, 48),
        (SPRING, 30, 46),
        (AUTUMN, 30, 50),
        (NORMAL, 60, 24),
        (SPRING, 60, 23),
        (AUTUMN, 60, 25),
        (NORMAL, 1440, 1),
        (SPRING, 1440, 1),
        (AUTUMN, 1440, 1),
    ],
)
def test_boundaries_per_local_day(day: date, minutes: int, count: int) -> None:
    assert len(registration_boundaries(day, timedelta(minutes=minutes))) == count


def test_a_normal_day_has_96_values() -> None:
    readings = quarter_hourly(NORMAL)
    result = taf7.day_series(readings, NORMAL)
    assert len(result.points) == 96
    assert result.gaps == ()
    assert all(p.reading is r for p, r in zip(result.points, readings, strict=True))
    assert result.points[0].boundary == datetime(2025, 3, 28, 23, tzinfo=UTC)


def test_the_spring_dst_day_has_92_values() -> None:
    readings = quarter_hourly(SPRING)
    result = taf7.day_series(readings, SPRING)
    assert len(result.points) == 92 and result.gaps == ()
    walls = [p.boundary.astimezone(BERLIN).strftime("%H:%M") for p in result.points]
    assert walls[7:9] == ["01:45", "03:00"]


def test_the_autumn_dst_day_has_100_values() -> None:
    readings = quarter_hourly(AUTUMN)
    result = taf7.day_series(readings, AUTUMN)
    assert len(result.points) == 100 and result.gaps == ()
    walls = [p.boundary.astimezone(BERLIN).strftime("%H:%M") for p in result.points]
    assert walls[8:16] == ["02:00", "02:15", "02:30", "02:45"] * 2
    assert len({p.boundary for p in result.points}) == 100


def test_missing_boundaries_are_gaps_without_value() -> None:
    readings = quarter_hourly(NORMAL)
    missing = {readings[10].timestamp, readings[11].timestamp, readings[50].timestamp}
    kept = [r for r in readings if r.timestamp not in missing]
    result = taf7.day_series(kept, NORMAL)
    assert len(result.points) == 96
    assert set(result.gaps) == missing
    for point in result.points:
        if point.boundary in missing:
            assert point.reading is None and point.value is None
            assert point.flags is ReadingFlag.GAP
    assert len(result.readings()) == 93


def test_invalid_reading_stays_in_the_series_with_its_flags() -> None:
    readings = quarter_hourly(NORMAL)
    readings[20] = reading(readings[20].timestamp, 1, ReadingFlag.SIGNATURE_INVALID)
    point = taf7.day_series(readings, NORMAL).points[20]
    assert point.reading is readings[20] and point.flags is ReadingFlag.SIGNATURE_INVALID
    assert not point.valid and not point.gap


def test_readings_within_nine_seconds_are_taken_unchanged_later_ones_are_gaps() -> None:
    start = midnight(NORMAL)
    early = reading(start + Q - timedelta(seconds=9), 10)
    late = reading(start + 2 * Q + timedelta(seconds=10), 20)
    result = taf7.register_series([early, late], start=start + Q, end=start + 2 * Q)
    first, second = result.points
    assert first.reading is early and first.reading.timestamp == early.timestamp
    assert second.gap


@pytest.mark.parametrize(("minutes", "every"), [(30, 2), (60, 4)])
def test_longer_periods_take_every_nth_quarter_hour(minutes: int, every: int) -> None:
    readings = quarter_hourly(NORMAL)
    result = taf7.day_series(readings, NORMAL, timedelta(minutes=minutes))
    assert [p.reading for p in result.points] == readings[::every]
    assert result.period == timedelta(minutes=minutes)


def test_sixty_minute_series_on_the_autumn_day_has_25_values() -> None:
    readings = quarter_hourly(AUTUMN)
    result = taf7.day_series(readings, AUTUMN, timedelta(hours=1))
    assert len(result.points) == 25 and result.gaps == ()
    assert result.points[2].boundary == local(2025, 10, 26, 2, fold=0)
    assert result.points[3].boundary == local(2025, 10, 26, 2, fold=1)


def test_register_series_includes_both_window_ends() -> None:
    start = midnight(NORMAL)
    assert taf7.boundaries(Q, start, start + 4 * Q) == tuple(start + i * Q for i in range(5))
    assert taf7.boundaries(Q, start + timedelta(seconds=1), start + Q) == (start + Q,)


def test_series_over_several_days_crosses_dst() -> None:
    readings = quarter_hourly(date(2025, 3, 29), days=3)
    result = taf7.register_series(
        readings, start=midnight(date(2025, 3, 29)), end=midnight(date(2025, 4, 1))
    )
    assert len(result.points) == 96 + 92 + 96 + 1
    assert len(result.gaps) == 1  # the closing midnight has no reading in the input


def test_bad_registration_period_is_refused() -> None:
    with pytest.raises(ProfileRejected) as caught:
        taf7.day_series([], NORMAL, timedelta(minutes=20))
    assert caught.value.reason is TafReason.BAD_REGISTRATION_PERIOD


def test_dispatcher_gives_the_series_up_to_the_last_settled_boundary() -> None:
    profile = EvaluationProfile(
        "TP-7",
        Taf.TAF7,
        METER,
        (IMPORT,),
        None,
        timedelta(minutes=30),
        (),
        None,
        ("9900000000001",),
        "PSEUDO-7",
        midnight(NORMAL),
    )
    readings = quarter_hourly(NORMAL)
    result = evaluate(profile, readings, now=local(2025, 3, 29, 2, 0, 5)).result(IMPORT)
    assert isinstance(result, Taf7Result)
    # 00:00, 00:30, 01:00, 01:30 – 02:00 is 5 s old, inside its tolerance, not judged yet
    assert [p.reading for p in result.points] == readings[0:8:2]
    settled = evaluate(profile, readings, now=local(2025, 3, 29, 2, 0, 9))
    assert len(settled.result(IMPORT).readings()) == 5
    assert {r.meter_id for r in settled.readings()} == {"PSEUDO-7"}
