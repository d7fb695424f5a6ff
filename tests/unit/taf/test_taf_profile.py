"""Evaluation profile: construction, each refusal with its reason, the JSON document."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from imsys.gateway.taf import (
    EVALUATORS,
    PROFILE_FORMAT,
    UNSUPPORTED_TAFS,
    BillingPeriod,
    DayProfile,
    EvaluationProfile,
    ProfileRejected,
    SpecialDay,
    Switch,
    Taf,
    TafReason,
    TariffCalendar,
    TariffStage,
    Unsupported,
)

FROM = datetime(2025, 1, 1, tzinfo=UTC)


def calendar() -> TariffCalendar:
    weekday = DayProfile(1, (Switch(time(0), 2), Switch(time(6), 1), Switch(time(22), 2)))
    weekend = DayProfile(2, (Switch(time(0), 2),))
    return TariffCalendar(
        (weekday, weekend),
        weekday=1,
        saturday=2,
        sunday_holiday=2,
        special_days=(SpecialDay(date(2025, 12, 24), 2),),
    )


def profile(taf: Taf = Taf.TAF1, /, **changes: Any) -> EvaluationProfile:
    fields: dict[str, Any] = {
        "profile_id": "TP-0001",
        "taf": taf,
        "meter_id": "1EMH0012345678",
        "registers": ("1-0:1.8.0*255",),
        "billing_period": None,
        "registration_period": None,
        "tariff_stages": (),
        "tariff_calendar": None,
        "recipients": ("9900000000001",),
        "pseudonym": None,
        "valid_from": FROM,
        "valid_to": None,
    }
    if taf is Taf.TAF1:
        fields["billing_period"] = BillingPeriod(date(2025, 1, 1), 1)
    if taf is Taf.TAF2:
        fields["tariff_stages"] = (TariffStage(1, "HT"), TariffStage(2, "NT"))
        fields["tariff_calendar"] = calendar()
    if taf is Taf.TAF7:
        fields["registration_period"] = timedelta(minutes=15)
    fields.update(changes)
    return EvaluationProfile(**fields)


def rejected(reason: TafReason, build: Any) -> ProfileRejected:
    with pytest.raises(ProfileRejected) as caught:
        build()
    assert caught.value.reason is reason, caught.value
    return caught.value


# --- construction -------------------------------------------------------------------------------


@pytest.mark.parametrize("taf", [Taf.TAF1, Taf.TAF2, Taf.TAF6, Taf.TAF7])
def test_each_supported_taf_builds_a_profile(taf: Taf) -> None:
    built = profile(taf)
    assert built.taf is taf
    assert built.valid_from == FROM


def test_registers_are_stored_in_canonical_obis_form() -> None:
    assert profile(registers=["1-0:1.8.0", "1-0:2.8.0*255"]).registers == (
        "1-0:1.8.0*255",
        "1-0:2.8.0*255",
    )


def test_taf2_output_registers_are_total_stages_and_error() -> None:
    assert profile(Taf.TAF2).output_registers() == (
        "1-0:1.8.0*255",
        "1-0:1.8.1*255",
        "1-0:1.8.2*255",
        "1-0:1.8.63*255",
    )


def test_validity_is_half_open() -> None:
    built = profile(valid_to=datetime(2025, 2, 1, tzinfo=UTC))
    assert built.valid_at(FROM)
    assert not built.valid_at(datetime(2025, 2, 1, tzinfo=UTC))
    assert not built.valid_at(FROM - timedelta(seconds=1))


def test_taf_titles_follow_trudi() -> None:
    assert Taf.TAF7.title == "Zählerstandsgangsmessung"
    assert Taf.TAF2.title == "Zeitvariabler Tarif"


def test_dispatch_table_lists_every_taf_and_the_reason_for_unsupported_ones() -> None:
    assert set(EVALUATORS) == set(Taf)
    supported = {t for t, entry in EVALUATORS.items() if not isinstance(entry, Unsupported)}
    assert supported == {Taf.TAF1, Taf.TAF2, Taf.TAF6, Taf.TAF7}
    for taf, reason in UNSUPPORTED_TAFS.items():
        entry = EVALUATORS[taf]
        assert isinstance(entry, Unsupported) and entry.reason == reason


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months"),
    [(date(2025, 1, 15), 1), (date(2025, 1, 1), 4), (date(2025, 1, 1), 0), (date(2025, 1, 1), 24)],
)
def test_bad_billing_period_is_refused(start: date, months: int) -> None:
    rejected(TafReason.BAD_BILLING_PERIOD, lambda: BillingPeriod(start, months))


@pytest.mark.parametrize("months", [1, 2, 3, 6, 12])
def test_billing_period_lengths_of_trudi_are_accepted(months: int) -> None:
    assert BillingPeriod(date(2025, 4, 1), months).months == months


def test_more_than_20_tariff_stages_are_refused() -> None:
    stages = (*(TariffStage(n) for n in range(1, 21)), TariffStage(1))
    rejected(TafReason.TOO_MANY_TARIFF_STAGES, lambda: profile(Taf.TAF2, tariff_stages=stages))
    document = profile(Taf.TAF2).to_dict()
    document["tariff_stages"] = [{"number": n, "description": ""} for n in range(1, 22)]
    rejected(TafReason.TOO_MANY_TARIFF_STAGES, lambda: EvaluationProfile.from_dict(document))


def test_exactly_20_tariff_stages_are_accepted() -> None:
    stages = tuple(TariffStage(n) for n in range(1, 21))
    assert len(profile(Taf.TAF2, tariff_stages=stages).tariff_stages) == 20


@pytest.mark.parametrize("number", [0, 21, 63])
def test_tariff_stage_number_outside_1_to_20_is_refused(number: int) -> None:
    rejected(TafReason.BAD_TARIFF_STAGE, lambda: TariffStage(number))


def test_duplicate_tariff_stage_is_refused() -> None:
    stages = (TariffStage(1), TariffStage(2), TariffStage(2))
    rejected(TafReason.BAD_TARIFF_STAGE, lambda: profile(Taf.TAF2, tariff_stages=stages))


@pytest.mark.parametrize("at", [time(6, 10), time(6, 0, 30), time(23, 59)])
def test_off_grid_switch_time_is_refused(at: time) -> None:
    rejected(TafReason.OFF_GRID_SWITCH_TIME, lambda: Switch(at, 1))


def test_day_profile_switching_to_an_undeclared_stage_is_refused() -> None:
    only_one = (TariffStage(1),)
    rejected(TafReason.UNKNOWN_TARIFF_STAGE, lambda: profile(Taf.TAF2, tariff_stages=only_one))


@pytest.mark.parametrize(
    "build",
    [
        lambda: DayProfile(1, ()),
        lambda: DayProfile(1, (Switch(time(6), 1),)),
        lambda: DayProfile(1, (Switch(time(0), 1), Switch(time(8), 2), Switch(time(7), 1))),
        lambda: DayProfile(1, (Switch(time(0), 1), Switch(time(0), 2))),
        lambda: TariffCalendar((DayProfile(1, (Switch(time(0), 1),)),), 1, 1, 9),
        lambda: TariffCalendar(
            (DayProfile(1, (Switch(time(0), 1),)), DayProfile(1, (Switch(time(0), 2),))), 1, 1, 1
        ),
        lambda: TariffCalendar(
            (DayProfile(1, (Switch(time(0), 1),)),),
            1,
            1,
            1,
            special_days=(SpecialDay(date(2025, 1, 2), 1), SpecialDay(date(2025, 1, 2), 1)),
        ),
        lambda: TariffCalendar(
            (DayProfile(1, (Switch(time(0), 1),)),),
            1,
            1,
            1,
            special_days=(SpecialDay(date(2025, 1, 2), 5),),
        ),
    ],
    ids=[
        "empty",
        "not-from-midnight",
        "unordered",
        "same-time-twice",
        "unknown-sunday-profile",
        "duplicate-day-id",
        "special-day-twice",
        "special-day-unknown-profile",
    ],
)
def test_bad_day_profile_or_assignment_is_refused(build: Any) -> None:
    rejected(TafReason.BAD_DAY_PROFILE, build)


def test_unknown_holiday_subdivision_is_refused() -> None:
    profiles = (DayProfile(1, (Switch(time(0), 1),)),)
    rejected(
        TafReason.BAD_HOLIDAY_REGION,
        lambda: TariffCalendar(profiles, 1, 1, 1, holiday_subdivision="XX"),
    )
    assert TariffCalendar(profiles, 1, 1, 1, holiday_subdivision="BY").holiday_subdivision == "BY"


@pytest.mark.parametrize("taf", [3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 16])
def test_unsupported_taf_is_refused_with_its_reason(taf: int) -> None:
    error = rejected(TafReason.UNSUPPORTED_TAF, lambda: profile(Taf.TAF6, taf=Taf(taf)))
    assert UNSUPPORTED_TAFS[Taf(taf)] in str(error)


def test_a_taf_that_does_not_exist_is_refused() -> None:
    rejected(TafReason.UNSUPPORTED_TAF, lambda: profile(Taf.TAF6, taf=15))


@pytest.mark.parametrize("minutes", [0, 10, 20, 75, 105, 900, 2880])
def test_registration_period_not_15min_multiple_dividing_a_day_is_refused(minutes: int) -> None:
    period = timedelta(minutes=minutes)
    rejected(
        TafReason.BAD_REGISTRATION_PERIOD,
        lambda: profile(Taf.TAF7, registration_period=period),
    )


@pytest.mark.parametrize("minutes", [15, 30, 45, 60, 90, 120, 180, 240, 360, 480, 720, 1440])
def test_registration_periods_dividing_a_day_are_accepted(minutes: int) -> None:
    period = timedelta(minutes=minutes)
    assert profile(Taf.TAF7, registration_period=period).registration_period == period


@pytest.mark.parametrize(
    ("taf", "changes"),
    [
        (Taf.TAF1, {"billing_period": None}),
        (Taf.TAF2, {"tariff_stages": ()}),
        (Taf.TAF2, {"tariff_calendar": None}),
        (Taf.TAF7, {"registration_period": None}),
        (Taf.TAF6, {"recipients": ()}),
    ],
)
def test_missing_field_is_refused(taf: Taf, changes: dict[str, Any]) -> None:
    rejected(TafReason.MISSING_FIELD, lambda: profile(taf, **changes))


@pytest.mark.parametrize(
    ("taf", "changes"),
    [
        (Taf.TAF6, {"billing_period": BillingPeriod(date(2025, 1, 1), 1)}),
        (Taf.TAF1, {"registration_period": timedelta(minutes=15)}),
        (Taf.TAF1, {"tariff_stages": (TariffStage(1),)}),
        (Taf.TAF7, {"tariff_calendar": calendar()}),
    ],
)
def test_field_the_taf_does_not_use_is_refused(taf: Taf, changes: dict[str, Any]) -> None:
    rejected(TafReason.FIELD_NOT_APPLICABLE, lambda: profile(taf, **changes))


def test_optional_billing_period_of_taf2_and_taf7_is_carried() -> None:
    period = BillingPeriod(date(2025, 1, 1), 12)
    assert profile(Taf.TAF2, billing_period=period).billing_period == period
    assert profile(Taf.TAF7, billing_period=period).billing_period == period


@pytest.mark.parametrize(
    "changes",
    [{"registers": ()}, {"registers": ("1.8.0",)}, {"registers": ("1-0:1.8.0", "1-0:1.8.0*255")}],
)
def test_bad_register_list_is_refused(changes: dict[str, Any]) -> None:
    rejected(TafReason.BAD_REGISTER, lambda: profile(Taf.TAF1, **changes))


def test_taf2_refuses_a_register_that_is_not_a_total_register() -> None:
    rejected(TafReason.BAD_REGISTER, lambda: profile(Taf.TAF2, registers=("1-0:1.8.1*255",)))


@pytest.mark.parametrize(
    "changes",
    [
        {"profile_id": ""},
        {"meter_id": "  "},
        {"recipients": ("a", "")},
        {"recipients": ("a", "a")},
        {"pseudonym": ""},
    ],
)
def test_bad_identifier_is_refused(changes: dict[str, Any]) -> None:
    rejected(TafReason.BAD_IDENTIFIER, lambda: profile(Taf.TAF6, **changes))


@pytest.mark.parametrize(
    "changes",
    [
        {"valid_from": datetime(2025, 1, 1)},
        {"valid_to": FROM},
        {"valid_to": FROM - timedelta(days=1)},
    ],
)
def test_bad_validity_is_refused(changes: dict[str, Any]) -> None:
    rejected(TafReason.BAD_VALIDITY, lambda: profile(Taf.TAF6, **changes))


def test_profile_is_frozen() -> None:
    built = profile()
    with pytest.raises(AttributeError):
        built.meter_id = "other"  # type: ignore[misc]


# --- document -----------------------------------------------------------------------------------


@pytest.mark.parametrize("taf", [Taf.TAF1, Taf.TAF2, Taf.TAF6, Taf.TAF7])
def test_document_round_trips_through_json(taf: Taf) -> None:
    built = profile(
        taf,
        pseudonym="PSEUDO-7",
        valid_to=datetime(2026, 1, 1, tzinfo=UTC),
        recipients=("9900000000001", "9900000000002"),
    )
    document = json.loads(json.dumps(built.to_dict()))
    assert document["format"] == PROFILE_FORMAT
    assert EvaluationProfile.from_dict(document) == built
    assert EvaluationProfile.from_dict(document).to_dict() == document


def test_document_shape_of_a_taf2_profile() -> None:
    document = profile(Taf.TAF2).to_dict()
    assert list(document) == ["format", *(f for f in EvaluationProfile.__dataclass_fields__)]
    assert document["taf"] == 2
    assert document["valid_from"] == "2025-01-01T00:00:00Z"
    assert document["tariff_calendar"]["day_profiles"][0]["switches"][1] == {
        "at": "06:00",
        "stage": 1,
    }
    assert document["tariff_calendar"]["special_days"] == [{"date": "2025-12-24", "day_id": 2}]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(extra=1), TafReason.MALFORMED),
        (lambda d: d.pop("meter_id"), TafReason.MALFORMED),
        (lambda d: d.update(taf="2"), TafReason.MALFORMED),
        (lambda d: d.update(taf=True), TafReason.MALFORMED),
        (lambda d: d.update(registers="1-0:1.8.0*255"), TafReason.MALFORMED),
        (lambda d: d.update(valid_from="yesterday"), TafReason.MALFORMED),
        (lambda d: d.update(valid_from="2025-01-01T00:00:00"), TafReason.BAD_VALIDITY),
        (lambda d: d.update(format="imsys-evaluation-profile/9"), TafReason.UNSUPPORTED_FORMAT),
        (lambda d: d["tariff_calendar"].update(weekday=7), TafReason.BAD_DAY_PROFILE),
        (
            lambda d: d["tariff_calendar"]["day_profiles"][0]["switches"][1].update(at="06:07"),
            TafReason.OFF_GRID_SWITCH_TIME,
        ),
        (
            lambda d: d["tariff_calendar"]["day_profiles"][0]["switches"][1].update(at="6 Uhr"),
            TafReason.MALFORMED,
        ),
        (lambda d: d.update(taf=3), TafReason.UNSUPPORTED_TAF),
    ],
)
def test_bad_document_is_refused_with_its_reason(mutate: Any, reason: TafReason) -> None:
    document = json.loads(json.dumps(profile(Taf.TAF2).to_dict()))
    mutate(document)
    rejected(reason, lambda: EvaluationProfile.from_dict(document))


def test_document_must_be_an_object() -> None:
    rejected(TafReason.MALFORMED, lambda: EvaluationProfile.from_dict([]))  # type: ignore[arg-type]


def test_replace_revalidates() -> None:
    built = profile(Taf.TAF7)
    rejected(
        TafReason.BAD_REGISTRATION_PERIOD,
        lambda: replace(built, registration_period=timedelta(minutes=7)),
    )


def test_conformance_table_names_every_taf() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[3] / "docs" / "taf.md").read_text(encoding="utf-8")
    for taf in Taf:
        assert f"| {taf.name} |" in text or f"## {taf.name} " in text, taf
    for reason in TafReason:
        assert f"`{reason.value}`" in text or f"`{reason.name}`" in text, reason
