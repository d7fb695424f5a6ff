"""TAF6: billing-day values at local midnight, kept 42 days, readout on demand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from imsys.core.reading import Reading, ReadingFlag
from imsys.gateway.taf import (
    RETENTION_DAYS,
    EvaluationProfile,
    EvaluationRejected,
    Taf,
    Taf6Result,
    TafReason,
    evaluate,
    taf6,
)

BERLIN = ZoneInfo("Europe/Berlin")
METER = "1EMH0012345678"
IMPORT = "1-0:1.8.0*255"
Q = timedelta(minutes=15)


def local(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=BERLIN).astimezone(UTC)


def midnight(day: date) -> datetime:
    return local(day.year, day.month, day.day)


def reading(when: datetime, value: int, flags: ReadingFlag = ReadingFlag.NONE) -> Reading:
    return Reading(METER, IMPORT, value, -1, 30, when, flags)


def daily(first: date, last: date) -> list[Reading]:
    """One reading per local midnight, value = 1000 × day number since ``first``."""
    out, day, n = [], first, 0
    while day <= last:
        out.append(reading(midnight(day), 1000 * n))
        day += timedelta(days=1)
        n += 1
    return out


NOW = local(2025, 4, 10, 12)  # the window crosses the spring DST day (30 March)


def test_retention_is_42_local_days_ending_today() -> None:
    assert RETENTION_DAYS == 42
    assert taf6.retention_window(NOW) == (date(2025, 2, 28), date(2025, 4, 10))


def test_values_are_the_last_42_billing_days_and_older_ones_expire() -> None:
    readings = daily(date(2025, 1, 1), date(2025, 4, 10))
    result = taf6.values(readings, NOW)
    assert len(result.values) == 42
    assert result.values[0].day == date(2025, 2, 28)
    assert result.values[-1].day == date(2025, 4, 10)
    assert all(v.valid for v in result.values)
    # each value is the input reading at that local midnight, also across the DST change
    assert result.value(date(2025, 3, 31)).reading is readings[89]  # type: ignore[union-attr]
    assert result.values[-1].boundary == datetime(2025, 4, 9, 22, tzinfo=UTC)
    # 1 January … 27 February are expired (58 days), oldest first
    assert [v.day for v in result.expired] == [
        date(2025, 1, 1) + timedelta(days=i) for i in range(58)
    ]
    assert result.expired[0].reading is readings[0]
    assert result.readings() == tuple(readings[58:])


def test_todays_value_appears_once_its_tolerance_has_passed() -> None:
    readings = daily(date(2025, 4, 1), date(2025, 4, 10))
    just_after = taf6.values(readings, local(2025, 4, 10, 0, 0, 5))
    assert just_after.values[-1].day == date(2025, 4, 9)
    settled = taf6.values(readings, local(2025, 4, 10, 0, 0, 9))
    assert settled.values[-1].day == date(2025, 4, 10)


def test_missing_and_invalid_days_are_marked_not_invented() -> None:
    readings = daily(date(2025, 4, 1), date(2025, 4, 10))
    del readings[3]  # 4 April missing
    readings[5] = reading(readings[5].timestamp, 99, ReadingFlag.METER_ERROR)  # 7 April invalid
    result = taf6.values(readings, NOW, since=midnight(date(2025, 4, 1)))
    assert len(result.values) == 10
    gap = result.value(date(2025, 4, 4))
    assert gap is not None and gap.gap and gap.flags is ReadingFlag.GAP and gap.value is None
    bad = result.value(date(2025, 4, 7))
    assert bad is not None and not bad.valid and bad.flags is ReadingFlag.METER_ERROR
    assert len(result.readings()) == 9


def test_a_reading_a_few_seconds_after_midnight_is_the_days_value() -> None:
    late = reading(local(2025, 4, 5, 0, 0, 7), 123)
    off = reading(local(2025, 4, 6, 0, 15), 456)  # the first quarter hour, not the boundary
    assert taf6.billing_day_value([late, off], date(2025, 4, 5)).reading is late
    assert taf6.billing_day_value([late, off], date(2025, 4, 6)).gap


def test_readout_on_demand_of_a_kept_day() -> None:
    readings = daily(date(2025, 1, 1), date(2025, 4, 10))
    value = taf6.readout(readings, date(2025, 2, 28), NOW)
    assert value.valid and value.value == 1000 * 58


def test_readout_of_an_expired_day_is_refused() -> None:
    readings = daily(date(2025, 1, 1), date(2025, 4, 10))
    with pytest.raises(EvaluationRejected) as caught:
        taf6.readout(readings, date(2025, 2, 27), NOW)
    assert caught.value.reason is TafReason.EXPIRED


def test_readout_of_a_day_not_yet_started_is_refused() -> None:
    with pytest.raises(EvaluationRejected) as caught:
        taf6.readout([], date(2025, 4, 11), NOW)
    assert caught.value.reason is TafReason.NOT_YET_AVAILABLE


def test_readout_of_a_kept_day_without_reading_is_a_gap() -> None:
    assert taf6.readout([], date(2025, 4, 1), NOW).gap


def test_expired_values_are_reported_once_per_day() -> None:
    old = [
        reading(local(2025, 1, 1) - timedelta(seconds=2), 10),
        reading(local(2025, 1, 1, 0, 0, 3), 11),
        reading(local(2025, 1, 1, 12), 50),  # not a billing-day value
    ]
    result = taf6.values(old, NOW)
    # the closer of the two (2 s before) is the value
    assert [(v.day, v.value) for v in result.expired] == [(date(2025, 1, 1), 10)]


def test_dispatcher_limits_days_to_the_profile_validity() -> None:
    profile = EvaluationProfile(
        "TP-6",
        Taf.TAF6,
        METER,
        (IMPORT,),
        None,
        None,
        (),
        None,
        ("9900000000001",),
        None,
        local(2025, 4, 3, 8),
        local(2025, 4, 8),
    )
    readings = daily(date(2025, 1, 1), date(2025, 4, 10))
    result = evaluate(profile, readings, now=NOW).result(IMPORT)
    assert isinstance(result, Taf6Result)
    assert [v.day for v in result.values] == [date(2025, 4, d) for d in range(4, 9)]
    assert len(result.expired) == 58
