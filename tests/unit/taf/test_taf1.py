"""TAF1: one register value per billing period, hand-computed examples."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from imsys.core.errors import UsageError
from imsys.core.reading import Reading, ReadingFlag
from imsys.gateway.taf import (
    BillingPeriod,
    EvaluationProfile,
    EvaluationRejected,
    Taf,
    Taf1Result,
    TafReason,
    evaluate,
    taf1,
)

BERLIN = ZoneInfo("Europe/Berlin")
METER = "1EMH0012345678"
IMPORT = "1-0:1.8.0*255"


def local(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=BERLIN).astimezone(UTC)


def reading(
    when: datetime,
    value: int,
    flags: ReadingFlag = ReadingFlag.NONE,
    *,
    meter: str = METER,
    obis: str = IMPORT,
) -> Reading:
    return Reading(meter, obis, value, -1, 30, when, flags)


MONTHLY = BillingPeriod(date(2025, 1, 1), 1)
QUARTERLY = BillingPeriod(date(2025, 1, 1), 3)


def test_monthly_periods_give_end_value_and_consumption() -> None:
    readings = [
        reading(local(2025, 1, 1), 10_000),
        reading(local(2025, 1, 15, 12), 10_400),
        reading(local(2025, 2, 1), 11_000),
        reading(local(2025, 2, 20, 8, 15), 11_300),
        reading(local(2025, 3, 1), 11_800),
    ]
    result = taf1.billing_values(readings, MONTHLY, start=local(2025, 1, 1), end=local(2025, 3, 1))
    assert [(v.period.start, v.period.end) for v in result.values] == [
        (datetime(2024, 12, 31, 23, tzinfo=UTC), datetime(2025, 1, 31, 23, tzinfo=UTC)),
        (datetime(2025, 1, 31, 23, tzinfo=UTC), datetime(2025, 2, 28, 23, tzinfo=UTC)),
    ]
    january, february = result.values
    assert (january.value, january.consumption, january.billable) == (11_000, 1_000, True)
    assert (february.value, february.consumption, february.billable) == (11_800, 800, True)
    assert (january.scaler, january.unit) == (-1, 30)
    assert result.readings() == (readings[2], readings[4])


def test_three_month_period_ends_at_local_midnight_after_the_dst_change() -> None:
    # 1 April 00:00 CEST is 31 March 22:00 UTC; 1 January 00:00 CET is 31 December 23:00 UTC
    readings = [
        reading(datetime(2024, 12, 31, 23, tzinfo=UTC), 50_000),
        reading(datetime(2025, 3, 31, 22, tzinfo=UTC), 58_765),
        reading(datetime(2025, 6, 30, 22, tzinfo=UTC), 61_000),
    ]
    result = taf1.billing_values(
        readings, QUARTERLY, start=local(2025, 1, 1), end=local(2025, 7, 1)
    )
    q1, q2 = result.values
    assert q1.period.end == datetime(2025, 3, 31, 22, tzinfo=UTC)
    assert (q1.value, q1.consumption) == (58_765, 8_765)
    assert (q2.value, q2.consumption) == (61_000, 2_235)


def test_missing_end_value_makes_the_period_not_billable() -> None:
    readings = [
        reading(local(2025, 1, 1), 10_000),
        reading(local(2025, 1, 31, 23, 45), 10_990),  # the last quarter hour, not the boundary
        reading(local(2025, 2, 1, 0, 15), 11_020),
        reading(local(2025, 3, 1), 11_800),
    ]
    result = taf1.billing_values(readings, MONTHLY, start=local(2025, 1, 1), end=local(2025, 3, 1))
    january, february = result.values
    assert not january.billable
    assert january.end.gap and january.end.flags is ReadingFlag.GAP
    assert january.value is None and january.consumption is None
    # the next period's start is the same missing boundary
    assert not february.billable and february.start.gap
    assert february.value == 11_800 and february.consumption is None
    assert result.billable == ()
    assert result.readings() == (readings[3],)


def test_invalid_end_value_makes_the_period_not_billable_but_is_kept_flagged() -> None:
    bad = reading(local(2025, 2, 1), 11_000, ReadingFlag.METER_ERROR)
    readings = [reading(local(2025, 1, 1), 10_000), bad]
    result = taf1.billing_values(readings, MONTHLY, start=local(2025, 1, 1), end=local(2025, 2, 1))
    (january,) = result.values
    assert not january.billable
    assert january.end.reading is bad and january.end.flags is ReadingFlag.METER_ERROR
    assert january.value is None and january.consumption is None
    assert result.readings() == (bad,)


def test_boundary_tolerance_is_nine_seconds_either_side() -> None:
    boundary = local(2025, 2, 1)
    late = reading(boundary + timedelta(seconds=9), 11_000)
    assert taf1.register_value([late], boundary).reading is late
    too_late = reading(boundary + timedelta(seconds=10), 11_000)
    assert taf1.register_value([too_late], boundary).gap
    early = reading(boundary - timedelta(seconds=9), 10_999)
    assert taf1.register_value([early], boundary).reading is early


def test_boundary_prefers_valid_then_closest_then_at_or_after() -> None:
    boundary = local(2025, 2, 1)
    before = reading(boundary - timedelta(seconds=3), 10_999)
    after = reading(boundary + timedelta(seconds=3), 11_000)
    assert taf1.register_value([before, after], boundary).reading is after
    invalid_close = reading(boundary + timedelta(seconds=1), 11_000, ReadingFlag.CLOCK_INVALID)
    valid_far = reading(boundary + timedelta(seconds=8), 11_001)
    assert taf1.register_value([invalid_close, valid_far], boundary).reading is valid_far


def test_only_whole_periods_inside_the_window_are_evaluated() -> None:
    readings = [reading(local(2025, m, 1), 1000 * m) for m in range(1, 6)]
    result = taf1.billing_values(
        readings, MONTHLY, start=local(2025, 1, 10), end=local(2025, 4, 20)
    )
    assert [v.period.index for v in result.values] == [1, 2]  # February and March


def test_register_running_backwards_is_refused() -> None:
    readings = [reading(local(2025, 1, 1), 10_000), reading(local(2025, 2, 1), 9_000)]
    with pytest.raises(EvaluationRejected) as caught:
        taf1.billing_values(readings, MONTHLY, start=local(2025, 1, 1), end=local(2025, 2, 1))
    assert caught.value.reason is TafReason.REGISTER_DECREASED
    assert caught.value.context["meter_id"] == METER


def test_readings_out_of_order_or_of_two_registers_are_a_usage_error() -> None:
    a, b = reading(local(2025, 1, 1), 1), reading(local(2025, 2, 1), 2)
    with pytest.raises(UsageError):
        taf1.billing_values([b, a], MONTHLY, start=local(2025, 1, 1), end=local(2025, 2, 1))
    other = reading(local(2025, 2, 1), 2, obis="1-0:2.8.0*255")
    with pytest.raises(UsageError):
        taf1.billing_values([a, other], MONTHLY, start=local(2025, 1, 1), end=local(2025, 2, 1))


def test_naive_window_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        taf1.billing_values([], MONTHLY, start=datetime(2025, 1, 1), end=local(2025, 2, 1))


def test_dispatcher_picks_the_profile_register_and_judges_only_passed_boundaries() -> None:
    profile = EvaluationProfile(
        "TP-1",
        Taf.TAF1,
        METER,
        ("1-0:1.8.0",),
        MONTHLY,
        None,
        (),
        None,
        ("9900000000001",),
        "PSEUDO-1",
        local(2025, 1, 1),
    )
    readings = [
        reading(local(2025, 3, 1), 11_800),  # unordered input is sorted by the dispatcher
        reading(local(2025, 1, 1), 10_000),
        reading(local(2025, 2, 1), 11_000),
        reading(local(2025, 2, 1), 99, meter="1EMH0099999999"),  # another meter
        reading(local(2025, 2, 1), 77, obis="1-0:2.8.0*255"),  # another register
    ]
    # 4 s after the March boundary its tolerance has not passed: only January is judged
    early = evaluate(profile, readings, now=local(2025, 3, 1, 0, 0, 4))
    result = early.result(IMPORT)
    assert isinstance(result, Taf1Result)
    assert [v.period.index for v in result.values] == [0]
    later = evaluate(profile, readings, now=local(2025, 3, 1, 0, 0, 10))
    values = later.result(IMPORT)
    assert isinstance(values, Taf1Result)
    assert [v.consumption for v in values.values] == [1_000, 800]
    delivered = later.readings()
    assert [r.value for r in delivered] == [11_000, 11_800]
    assert {r.meter_id for r in delivered} == {"PSEUDO-1"}


def test_dispatcher_respects_validity_end() -> None:
    profile = EvaluationProfile(
        "TP-2",
        Taf.TAF1,
        METER,
        (IMPORT,),
        MONTHLY,
        None,
        (),
        None,
        ("9900000000001",),
        None,
        local(2025, 1, 1),
        local(2025, 2, 1),
    )
    readings = [reading(local(2025, m, 1), 1000 * m) for m in range(1, 5)]
    result = evaluate(profile, readings, now=local(2025, 6, 1)).result(IMPORT)
    assert isinstance(result, Taf1Result)
    assert [v.period.index for v in result.values] == [0]
