"""Distribution per § 60 Abs. 3 MsbG (seed 001 Tabelle 2): the rules table and plan()."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from imsys.core.errors import UsageError
from imsys.core.reading import Reading, ReadingFlag
from imsys.emt.msb import (
    RULES,
    Cadence,
    DataKind,
    DataScope,
    Dispatch,
    InMemorySource,
    MeteringPointAssignment,
    MsbReason,
    MsbRejected,
    Period,
    Recipient,
    Role,
    SubstituteMethod,
    check_entitled,
    plan,
    rules_for,
)
from imsys.emt.msb._calendar import boundaries, day_end, day_start

OBIS = "1-0:1.8.0*255"
SEED = Path(__file__).resolve().parents[4] / "shared" / "seeds" / "001_8d599328cf626ef7.txt"
DSO, TSO, BICO = "9900000000001", "9900000000002", "9900000000003"
SUPPLIER_A, SUPPLIER_B = "9900000000011", "9900000000012"


def readings(meter: str, first: date, last: date, step: int = 25) -> list[Reading]:
    grid = boundaries(day_start(first), day_end(last))
    return [Reading(meter, OBIS, 5_000 + i * step, 0, 30, b) for i, b in enumerate(grid)]


def point(
    mp: str, meter: str, scope: DataScope, supplier: str = SUPPLIER_A
) -> MeteringPointAssignment:
    return MeteringPointAssignment(
        mp,
        meter,
        "1-0:1.8.0",
        scope,
        (
            Recipient(Role.DSO, DSO),
            Recipient(Role.TSO, TSO),
            Recipient(Role.BICO, BICO),
            Recipient(Role.SUPPLIER, supplier),
        ),
    )


def table(scope: DataScope) -> dict[Role, set[tuple[DataKind, Cadence]]]:
    return {role: {(r.kind, r.cadence) for r in rules_for(scope, role)} for role in Role}


def test_register_series_points_send_the_previous_day_to_all_and_monthly_energy_to_the_dso() -> (
    None
):
    rows = table(DataScope.REGISTER_SERIES)
    daily = (DataKind.REGISTER_SERIES, Cadence.DAILY)
    assert rows[Role.DSO] == {daily, (DataKind.MONTHLY_ENERGY, Cadence.MONTHLY)}
    assert rows[Role.TSO] == rows[Role.BICO] == rows[Role.SUPPLIER] == {daily}
    assert all(
        r.granularity == timedelta(minutes=15) for r in RULES if r.kind is DataKind.REGISTER_SERIES
    )


def test_monthly_points_send_monthly_energy_to_the_dso_and_annual_values_to_the_others() -> None:
    rows = table(DataScope.MONTHLY)
    assert rows[Role.DSO] == {(DataKind.MONTHLY_ENERGY, Cadence.MONTHLY)}
    for role in (Role.TSO, Role.BICO, Role.SUPPLIER):
        assert rows[role] == {(DataKind.ANNUAL_ENERGY, Cadence.ANNUAL)}


def test_annual_points_send_annual_values_to_everyone() -> None:
    rows = table(DataScope.ANNUAL)
    assert all(rows[role] == {(DataKind.ANNUAL_ENERGY, Cadence.ANNUAL)} for role in Role)


def test_no_rule_pseudonymises_and_every_rule_cites_the_seed() -> None:
    assert not any(r.pseudonymised for r in RULES)
    assert all(r.seed_lines.startswith("seed 001 l. ") and r.legal_basis for r in RULES)


@pytest.mark.skipif(not SEED.exists(), reason="shared seeds not available")
def test_the_cited_seed_lines_say_what_the_table_says() -> None:
    lines = SEED.read_text(encoding="utf-8").splitlines()

    def cited(first: int, last: int) -> str:
        return " ".join(lines[first - 1 : last])

    daily = cited(522, 534)
    assert "Tägliche Übermittlung" in daily and "Vortag" in daily and "TAF 7" in daily
    assert "VNB" in daily and "ÜNB und BiKo" in daily and "Lieferanten" in daily
    monthly = cited(536, 539)
    assert "Monatsarbeit an den VNB" in monthly and "Nr. 1 TAF 1" in monthly
    annual = cited(541, 553)
    assert "Jahreswerten" in annual and "nicht unter" in annual and "TAF 1" in annual


def test_a_role_outside_its_rules_is_not_entitled() -> None:
    with pytest.raises(MsbRejected) as info:
        check_entitled(Role.TSO, DataKind.MONTHLY_ENERGY)
    assert info.value.reason is MsbReason.NOT_ENTITLED
    with pytest.raises(MsbRejected):
        check_entitled(Role.SUPPLIER, DataKind.REGISTER_SERIES, DataScope.ANNUAL)
    day = date(2026, 11, 23)
    with pytest.raises(MsbRejected):
        Dispatch(
            SUPPLIER_A,
            Role.SUPPLIER,
            DataKind.MONTHLY_ENERGY,
            Period(day_start(day), day_end(day)),
            (),
        )


def test_plan_sends_yesterday_s_register_series_to_each_recipient() -> None:
    day = date(2026, 11, 24)
    yesterday = day - timedelta(days=1)
    source = InMemorySource(readings("M1", yesterday, yesterday))
    out = plan(
        day, [point("DE0000000000000000000000000000001", "M1", DataScope.REGISTER_SERIES)], source
    )
    assert [(d.recipient_id, d.role, d.kind) for d in out] == [
        (DSO, Role.DSO, DataKind.REGISTER_SERIES),
        (TSO, Role.TSO, DataKind.REGISTER_SERIES),
        (BICO, Role.BICO, DataKind.REGISTER_SERIES),
        (SUPPLIER_A, Role.SUPPLIER, DataKind.REGISTER_SERIES),
    ]
    for d in out:
        assert d.period == Period(day_start(yesterday), day_end(yesterday))
        assert len(d.readings) == 97 and d.complete and not d.substituted
        assert d.rule is not None and d.rule.taf == "TAF 7"


@pytest.mark.parametrize(("day", "count"), [(date(2026, 3, 30), 93), (date(2026, 10, 26), 101)])
def test_plan_follows_dst_days(day: date, count: int) -> None:
    yesterday = day - timedelta(days=1)
    source = InMemorySource(readings("M1", yesterday, yesterday))
    out = plan(day, [point("MP1", "M1", DataScope.REGISTER_SERIES)], source)
    assert {len(d.readings) for d in out} == {count}


def test_each_recipient_gets_only_its_own_metering_points() -> None:
    day = date(2026, 11, 24)
    y = day - timedelta(days=1)
    source = InMemorySource([*readings("M1", y, y), *readings("M2", y, y, step=7)])
    a = point("MPA", "M1", DataScope.REGISTER_SERIES, SUPPLIER_A)
    b = point("MPB", "M2", DataScope.REGISTER_SERIES, SUPPLIER_B)
    out = plan(day, [a, b], source)
    for d in out:
        meter = {"MPA": "M1", "MPB": "M2"}[d.metering_point_id]
        assert {r.meter_id for r in d.readings} == {meter}
    by_recipient = {}
    for d in out:
        by_recipient.setdefault(d.recipient_id, set()).add(d.metering_point_id)
    assert by_recipient[SUPPLIER_A] == {"MPA"}
    assert by_recipient[SUPPLIER_B] == {"MPB"}
    assert by_recipient[DSO] == {"MPA", "MPB"}


def test_on_the_first_of_the_month_the_dso_also_gets_the_monthly_energy() -> None:
    day = date(2026, 12, 1)
    source = InMemorySource(readings("M1", date(2026, 11, 1), date(2026, 11, 30)))
    out = plan(day, [point("MP1", "M1", DataScope.REGISTER_SERIES)], source)
    monthly = [d for d in out if d.kind is DataKind.MONTHLY_ENERGY]
    assert [(d.recipient_id, d.role) for d in monthly] == [(DSO, Role.DSO)]
    (m,) = monthly
    assert m.period == Period(day_start(date(2026, 11, 1)), day_start(date(2026, 12, 1)))
    assert m.energy == 30 * 96 * 25
    assert len([d for d in out if d.kind is DataKind.REGISTER_SERIES]) == 4


def test_annual_values_on_new_year_and_monthly_points_on_the_first() -> None:
    source = InMemorySource(
        [*readings("M1", date(2025, 12, 31), date(2026, 1, 1), step=1),
         *readings("M1", date(2026, 12, 31), date(2026, 12, 31), step=1)]
    )  # fmt: skip
    out = plan(date(2027, 1, 1), [point("MP1", "M1", DataScope.MONTHLY)], source)
    kinds = {(d.role, d.kind) for d in out}
    assert kinds == {
        (Role.DSO, DataKind.MONTHLY_ENERGY),
        (Role.TSO, DataKind.ANNUAL_ENERGY),
        (Role.BICO, DataKind.ANNUAL_ENERGY),
        (Role.SUPPLIER, DataKind.ANNUAL_ENERGY),
    }
    # the year's value: the register readings at both new years' midnights exist
    annual = next(d for d in out if d.kind is DataKind.ANNUAL_ENERGY)
    assert annual.complete
    assert annual.readings[0].timestamp == day_start(date(2026, 1, 1))
    assert annual.readings[1].timestamp == day_start(date(2027, 1, 1))
    # the month's start (1 December) has no reading: the dispatch says so
    monthly = next(d for d in out if d.kind is DataKind.MONTHLY_ENERGY)
    assert monthly.missing == (day_start(date(2026, 12, 1)),)
    assert monthly.energy is None
    assert plan(date(2027, 1, 2), [point("MP1", "M1", DataScope.ANNUAL)], source) == []


def test_substitutes_travel_with_their_method_and_invalid_values_do_not() -> None:
    day = date(2026, 11, 24)
    y = day - timedelta(days=1)
    series = readings("M1", y, y)
    expected = [series[i].timestamp for i in (40, 50, 51)]
    series[40] = Reading("M1", OBIS, 0, 0, 30, series[40].timestamp, ReadingFlag.METER_ERROR)
    del series[50:52]
    out = plan(day, [point("MP1", "M1", DataScope.REGISTER_SERIES)], InMemorySource(series))
    d = out[0]
    assert len(d.readings) == 97 and d.substituted and d.complete
    subs = [r for r in d.readings if r.flags == ReadingFlag.SUBSTITUTE]
    assert [r.timestamp for r in subs] == expected
    assert all(d.method_at(r.timestamp) is SubstituteMethod.LINEAR for r in subs)
    assert all(r.valid or r.flags == ReadingFlag.SUBSTITUTE for r in d.readings)


def test_assignments_are_validated() -> None:
    with pytest.raises(MsbRejected) as info:
        point("DE 0001", "M1", DataScope.REGISTER_SERIES)
    assert info.value.reason is MsbReason.BAD_IDENTIFIER
    with pytest.raises(UsageError):
        MeteringPointAssignment(
            "MP1",
            "M1",
            OBIS,
            DataScope.ANNUAL,
            (Recipient(Role.DSO, DSO), Recipient(Role.DSO, TSO)),
        )
    with pytest.raises(MsbRejected) as info:
        Recipient("grid", DSO)  # type: ignore[arg-type]
    assert info.value.reason is MsbReason.UNKNOWN_ROLE
    with pytest.raises(UsageError):
        plan(day_start(date(2026, 1, 1)), [], InMemorySource([]))  # type: ignore[arg-type]
