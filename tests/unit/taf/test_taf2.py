"""TAF2: tariff-stage, total and error registers, hand-computed examples."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from imsys.core.errors import UsageError
from imsys.core.reading import Reading, ReadingFlag
from imsys.gateway.taf import (
    Cause,
    DayProfile,
    DayType,
    EvaluationProfile,
    EvaluationRejected,
    SpecialDay,
    Switch,
    Taf,
    Taf2Result,
    Taf2State,
    TafReason,
    TariffCalendar,
    TariffStage,
    evaluate,
    taf2,
)

BERLIN = ZoneInfo("Europe/Berlin")
METER = "1EMH0012345678"
IMPORT = "1-0:1.8.0*255"
Q = timedelta(minutes=15)

HT, NT = 1, 2
WEEKDAY = DayProfile(1, (Switch(time(0), NT), Switch(time(6), HT), Switch(time(22), NT)))
WEEKEND = DayProfile(2, (Switch(time(0), NT),))
CHRISTMAS_EVE = DayProfile(3, (Switch(time(0), HT), Switch(time(12), NT)))
CALENDAR = TariffCalendar(
    (WEEKDAY, WEEKEND, CHRISTMAS_EVE),
    weekday=1,
    saturday=2,
    sunday_holiday=2,
    special_days=(SpecialDay(date(2025, 12, 24), 3),),
)


def local(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0, fold: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=BERLIN, fold=fold).astimezone(UTC)


def reading(
    when: datetime, value: int, flags: ReadingFlag = ReadingFlag.NONE, scaler: int = -1
) -> Reading:
    return Reading(METER, IMPORT, value, scaler, 30, when, flags)


def series(start: datetime, values: Sequence[int], step: timedelta = Q) -> list[Reading]:
    return [reading(start + i * step, v) for i, v in enumerate(values)]


def fresh(stages: Sequence[int] = (HT, NT)) -> Taf2State:
    return Taf2State.initial(METER, IMPORT, stages)


def run(readings: Sequence[Reading], calendar: TariffCalendar = CALENDAR) -> Taf2Result:
    stages = sorted(calendar.stages)
    result = taf2.evaluate(readings, calendar, fresh(stages))
    check_invariant(result.state)
    return result


def check_invariant(state: Taf2State) -> None:
    assert sum(state.stage_values) + state.error == state.total


# --- two stages ---------------------------------------------------------------------------------


def test_consumption_goes_to_the_stage_active_in_each_quarter_hour() -> None:
    # Monday 6 January 2025: NT until 06:00, HT from 06:00
    readings = series(local(2025, 1, 6, 5, 30), [1000, 1010, 1030, 1060, 1100])
    result = run(readings)
    state = result.state
    assert (state.value(HT), state.value(NT), state.error, state.total) == (70, 30, 0, 100)
    assert [(a.energy, a.stage, a.cause) for a in result.attributions] == [
        (10, NT, Cause.STAGE),
        (20, NT, Cause.STAGE),
        (30, HT, Cause.STAGE),
        (40, HT, Cause.STAGE),
    ]


def test_registers_are_delivered_as_readings_with_derived_obis() -> None:
    readings = series(local(2025, 1, 6, 5, 30), [1000, 1010, 1030, 1060, 1100])
    out = run(readings).readings()
    assert [(r.obis, r.value) for r in out] == [
        ("1-0:1.8.0*255", 100),
        ("1-0:1.8.1*255", 70),
        ("1-0:1.8.2*255", 30),
        ("1-0:1.8.63*255", 0),
    ]
    assert {r.timestamp for r in out} == {local(2025, 1, 6, 6, 30)}
    assert {(r.meter_id, r.scaler, r.unit, r.flags) for r in out} == {
        (METER, -1, 30, ReadingFlag.NONE)
    }


def test_gap_without_switch_goes_to_the_active_stage() -> None:
    # TRuDI_029: 08:00 → 09:30 on a Tuesday is HT throughout
    result = run([reading(local(2025, 1, 7, 8), 0), reading(local(2025, 1, 7, 9, 30), 300)])
    assert (result.state.value(HT), result.state.error) == (300, 0)
    assert result.attributions[0].cause is Cause.GAP


def test_gap_across_midnight_without_a_stage_change_is_attributed() -> None:
    # Friday 23:00 (weekday NT) → Saturday 01:00 (weekend NT): day profile changes, stage does not
    result = run([reading(local(2025, 1, 10, 23), 0), reading(local(2025, 1, 11, 1), 80)])
    assert (result.state.value(NT), result.state.error) == (80, 0)
    assert result.attributions[0].cause is Cause.GAP


def test_gap_spanning_a_switch_goes_to_the_error_register() -> None:
    # TRuDI_030: 05:45 → 06:30 contains the NT → HT switch at 06:00
    readings = [
        reading(local(2025, 1, 6, 5, 30), 0),
        reading(local(2025, 1, 6, 5, 45), 10),
        reading(local(2025, 1, 6, 6, 30), 100),
        reading(local(2025, 1, 6, 6, 45), 120),
    ]
    result = run(readings)
    state = result.state
    assert (state.value(NT), state.value(HT), state.error, state.total) == (10, 20, 90, 120)
    flagged = [a for a in result.attributions if a.to_error_register]
    assert [(a.energy, a.cause) for a in flagged] == [(90, Cause.SWITCH_IN_INTERVAL)]
    assert (flagged[0].start, flagged[0].end) == (
        local(2025, 1, 6, 5, 45),
        local(2025, 1, 6, 6, 30),
    )


def test_invalid_value_sends_both_adjacent_intervals_to_the_error_register() -> None:
    readings = [
        reading(local(2025, 1, 6, 7), 100),
        reading(local(2025, 1, 6, 7, 15), 5, ReadingFlag.METER_ERROR),  # never used as a value
        reading(local(2025, 1, 6, 7, 30), 130),
        reading(local(2025, 1, 6, 7, 45), 150),
    ]
    result = run(readings)
    state = result.state
    assert (state.value(HT), state.error, state.total) == (20, 30, 50)
    assert [(a.energy, a.stage, a.cause) for a in result.attributions] == [
        (30, None, Cause.INVALID_VALUE),
        (20, HT, Cause.STAGE),
    ]


def test_invalid_values_before_the_first_valid_one_count_nothing() -> None:
    readings = [
        reading(local(2025, 1, 6, 7), 999, ReadingFlag.SIGNATURE_INVALID),
        reading(local(2025, 1, 6, 7, 15), 100),
        reading(local(2025, 1, 6, 7, 30), 110),
    ]
    state = run(readings).state
    assert (state.total, state.value(HT), state.error) == (10, 10, 0)


def test_invalid_value_at_the_end_of_a_batch_is_remembered() -> None:
    first = [
        reading(local(2025, 1, 6, 7), 100),
        reading(local(2025, 1, 6, 7, 15), 0, ReadingFlag.GAP),
    ]
    middle = taf2.evaluate(first, CALENDAR, fresh())
    assert middle.state.pending_invalid and middle.state.total == 0
    assert middle.state.as_of == local(2025, 1, 6, 7)
    end = taf2.evaluate([reading(local(2025, 1, 6, 7, 30), 140)], CALENDAR, middle.state)
    assert (end.state.error, end.state.total) == (40, 40)


# --- day types ----------------------------------------------------------------------------------


def test_holiday_uses_the_sunday_profile() -> None:
    assert CALENDAR.day_type(date(2025, 12, 25)) is DayType.SUNDAY_HOLIDAY  # Thursday
    assert CALENDAR.day_type(date(2025, 12, 23)) is DayType.WEEKDAY
    holiday = run(series(local(2025, 12, 25, 10), [0, 25]))
    workday = run(series(local(2025, 12, 23, 10), [0, 25]))
    assert (holiday.state.value(NT), holiday.state.value(HT)) == (25, 0)
    assert (workday.state.value(NT), workday.state.value(HT)) == (0, 25)


def test_state_holiday_needs_its_subdivision() -> None:
    epiphany = date(2025, 1, 6)  # Monday, a holiday in Bavaria only
    bavaria = TariffCalendar((WEEKDAY, WEEKEND), 1, 2, 2, holiday_subdivision="BY")
    assert CALENDAR.day_type(epiphany) is DayType.WEEKDAY
    assert bavaria.day_type(epiphany) is DayType.SUNDAY_HOLIDAY
    assert bavaria.stage_at(local(2025, 1, 6, 10)) == NT


def test_special_day_overrides_the_weekday_profile() -> None:
    # Wednesday 24 December 2025: HT from 00:00, NT from 12:00 (weekday would be the reverse)
    assert CALENDAR.day_type(date(2025, 12, 24)) is DayType.SPECIAL
    morning = run(series(local(2025, 12, 24, 5), [0, 7]))
    afternoon = run(series(local(2025, 12, 24, 13), [0, 9]))
    assert morning.state.value(HT) == 7
    assert afternoon.state.value(NT) == 9
    # the same hours on the day before
    assert CALENDAR.stage_at(local(2025, 12, 23, 5)) == NT
    assert CALENDAR.stage_at(local(2025, 12, 23, 13)) == HT


def test_saturday_and_sunday() -> None:
    assert CALENDAR.day_type(date(2025, 1, 11)) is DayType.SATURDAY
    assert CALENDAR.day_type(date(2025, 1, 12)) is DayType.SUNDAY_HOLIDAY
    assert CALENDAR.stage_at(local(2025, 1, 11, 12)) == NT


# --- twenty stages ------------------------------------------------------------------------------


def test_twenty_stages_switching_every_hour() -> None:
    # stage h+1 from hour h for h = 0..19; stage 20 until midnight
    hourly = DayProfile(1, tuple(Switch(time(h), h + 1) for h in range(20)))
    calendar = TariffCalendar((hourly,), 1, 1, 1)
    # quarter i (0..95) consumes i + 1, so the register after k quarters is k(k+1)/2
    readings = series(local(2025, 1, 6), [k * (k + 1) // 2 for k in range(97)])
    result = run(readings, calendar)
    state = result.state
    assert state.stages == tuple(range(1, 21))
    for stage in range(1, 20):
        assert state.value(stage) == 16 * (stage - 1) + 10
    assert state.value(20) == sum(range(77, 97)) == 1730
    assert (state.total, state.error) == (4656, 0)
    assert [r.obis for r in state.readings()][1:3] == ["1-0:1.8.1*255", "1-0:1.8.2*255"]
    assert state.readings()[20].obis == "1-0:1.8.20*255"
    assert state.readings()[-1].obis == "1-0:1.8.63*255"


# --- time ---------------------------------------------------------------------------------------


def test_switch_in_the_missing_spring_hour_takes_effect_at_three() -> None:
    profile = DayProfile(1, (Switch(time(0), 1), Switch(time(2, 30), 2)))
    calendar = TariffCalendar((profile,), 1, 1, 1)
    assert calendar.stage_at(local(2025, 3, 30, 1, 45)) == 1
    assert calendar.stage_at(local(2025, 3, 30, 3)) == 2  # 01:00 UTC
    assert calendar.changes(local(2025, 3, 30), local(2025, 3, 31, 0, 15)) == (
        (datetime(2025, 3, 30, 1, tzinfo=UTC), 2),
        (datetime(2025, 3, 30, 22, tzinfo=UTC), 1),  # the next day starts with stage 1 again
    )
    # 01:45 CET → 03:00 CEST is one quarter hour of real time, still stage 1
    result = run(series(local(2025, 3, 30, 1, 45), [0, 4, 9]), calendar)
    assert [(a.stage, a.cause) for a in result.attributions] == [(1, Cause.STAGE), (2, Cause.STAGE)]


def test_switch_in_the_repeated_autumn_hour_happens_once() -> None:
    profile = DayProfile(1, (Switch(time(0), 1), Switch(time(2, 30), 2)))
    calendar = TariffCalendar((profile,), 1, 1, 1)
    first_two = local(2025, 10, 26, 2, fold=0)  # CEST, 00:00 UTC
    stages = [calendar.stage_at(first_two + i * Q) for i in range(8)]
    assert stages == [1, 1, 2, 2, 2, 2, 2, 2]  # 02:00 CET (fold 1) does not go back to stage 1
    assert first_two + 4 * Q == local(2025, 10, 26, 2, fold=1)


def test_readings_within_nine_seconds_of_a_quarter_hour_count_as_on_it() -> None:
    readings = [
        reading(local(2025, 1, 6, 5, 45), 0),
        reading(local(2025, 1, 6, 6, 0, 5), 10),  # switch at 06:00: snapped, still NT
        reading(local(2025, 1, 6, 6, 15, 0) - timedelta(seconds=4), 30),
    ]
    result = run(readings)
    assert [(a.stage, a.cause) for a in result.attributions] == [
        (NT, Cause.STAGE),
        (HT, Cause.STAGE),
    ]
    assert result.attributions[0].end == local(2025, 1, 6, 6)


def test_off_grid_interval_straddling_a_switch_goes_to_the_error_register() -> None:
    readings = [reading(local(2025, 1, 6, 5, 52), 0), reading(local(2025, 1, 6, 6, 7), 15)]
    result = run(readings)
    assert (result.state.error, result.attributions[0].cause) == (15, Cause.SWITCH_IN_INTERVAL)


# --- continuation and refusals --------------------------------------------------------------


def test_batches_give_the_same_registers_as_one_run() -> None:
    values = [0, 5, 5, 12, 30, 31, 60, 61, 90, 100, 100, 140]
    readings = series(local(2025, 1, 6, 4, 30), values, step=Q * 2)
    readings[4] = reading(readings[4].timestamp, 0, ReadingFlag.CLOCK_INVALID)
    del readings[7]
    whole = run(readings).state
    state = fresh()
    for part in (readings[:3], readings[3:5], readings[5:]):
        state = taf2.evaluate(part, CALENDAR, state).state
        check_invariant(state)
    assert state == whole


def test_register_running_backwards_is_refused() -> None:
    with pytest.raises(EvaluationRejected) as caught:
        run(series(local(2025, 1, 6, 7), [100, 90]))
    assert caught.value.reason is TafReason.REGISTER_DECREASED


def test_changing_scaler_is_refused() -> None:
    readings = [reading(local(2025, 1, 6, 7), 100), reading(local(2025, 1, 6, 7, 15), 11, scaler=0)]
    with pytest.raises(EvaluationRejected) as caught:
        run(readings)
    assert caught.value.reason is TafReason.INCONSISTENT_SCALE


def test_feeding_consumed_readings_again_is_a_usage_error() -> None:
    readings = series(local(2025, 1, 6, 7), [100, 110])
    state = taf2.evaluate(readings, CALENDAR, fresh()).state
    with pytest.raises(UsageError):
        taf2.evaluate(readings[1:], CALENDAR, state)


def test_calendar_with_undeclared_stage_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        taf2.evaluate(series(local(2025, 1, 6, 7), [1, 2]), CALENDAR, fresh((HT,)))


def test_state_refuses_a_broken_invariant() -> None:
    with pytest.raises(UsageError):
        Taf2State(METER, IMPORT, (1, 2), (5, 5), total=11)
    with pytest.raises(UsageError):
        Taf2State(METER, "1-0:1.8.1*255", (1,), (0,))


def test_dispatcher_runs_each_register_and_carries_the_registers_on() -> None:
    profile = EvaluationProfile(
        "TP-2",
        Taf.TAF2,
        METER,
        (IMPORT, "1-0:2.8.0*255"),
        None,
        None,
        (TariffStage(HT, "HT"), TariffStage(NT, "NT")),
        CALENDAR,
        ("9900000000001",),
        None,
        local(2025, 1, 6),
    )
    day = series(local(2025, 1, 6, 5, 30), [1000, 1010, 1030, 1060, 1100])
    export = [
        Reading(METER, "1-0:2.8.0*255", v, -1, 30, local(2025, 1, 6, 5, 30) + i * Q)
        for i, v in enumerate([0, 0, 0, 0, 8])
    ]
    first = evaluate(profile, day[:3] + export, now=local(2025, 1, 6, 6, 1))
    second = evaluate(profile, day + export, now=local(2025, 1, 6, 7), carry=first)
    imported = second.result(IMPORT)
    assert isinstance(imported, Taf2Result)
    assert (imported.state.value(HT), imported.state.value(NT), imported.state.total) == (
        70,
        30,
        100,
    )
    exported = second.result("1-0:2.8.0*255")
    assert isinstance(exported, Taf2Result)
    assert exported.state.value(HT) == 8
    assert [r.obis for r in second.readings()] == list(profile.output_registers())
