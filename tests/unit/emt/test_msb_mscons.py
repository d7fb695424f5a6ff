"""MSCONS export (imsys.emt.msb.mscons), checked by an independent EDIFACT parser (pydifact)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from imsys.core.errors import UsageError
from imsys.core.reading import Reading, ReadingFlag, canonical_obis
from imsys.emt.msb import (
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
    plan,
    to_mscons,
)
from imsys.emt.msb._calendar import boundaries, day_end, day_start
from imsys.emt.msb.mscons import edifact_time, escape, obis_for_pia

pydifact = pytest.importorskip("pydifact")
from pydifact.parser import Parser  # noqa: E402
from pydifact.segmentcollection import Interchange  # noqa: E402

OBIS = "1-0:1.8.0*255"
MSB, DSO, SUPPLIER = "9900000000099", "9900000000001", "9900000000011"
CREATED = datetime(2026, 11, 24, 5, 30, tzinfo=UTC)
DAY = date(2026, 11, 24)
YESTERDAY = DAY - timedelta(days=1)
HEADER = ["UNH", "BGM", "DTM", "NAD", "NAD", "UNS", "NAD", "LOC", "DTM", "DTM", "LIN", "PIA"]
PIA = HEADER.index("PIA")


def series(meter: str, first: date, last: date, scaler: int = -1) -> list[Reading]:
    grid = boundaries(day_start(first), day_end(last))
    return [Reading(meter, OBIS, 123_456 + i * 37, scaler, 30, b) for i, b in enumerate(grid)]


def assignment(mp: str, meter: str, scope: DataScope = DataScope.REGISTER_SERIES):
    return MeteringPointAssignment(
        mp, meter, OBIS, scope, (Recipient(Role.DSO, DSO), Recipient(Role.SUPPLIER, SUPPLIER))
    )


def parse(text: str) -> list:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydifact has no segment directories for D.04B
        return list(Parser().parse(text))


def messages(segments: list) -> list[list]:
    out, current = [], None
    for seg in segments:
        if seg.tag == "UNH":
            current = [seg]
        elif current is not None:
            current.append(seg)
            if seg.tag == "UNT":
                out.append(current)
                current = None
    return out


@dataclass(frozen=True)
class Group:
    """One SG10 as read back: QTY, its measuring period, DTM+7 and the STS Z32 code."""

    qualifier: str
    value: Decimal
    unit: str
    start: datetime
    end: datetime
    used_at: datetime | None
    method_code: str | None


def qty_groups(message: list) -> list[Group]:
    body = message[len(HEADER) : -1]
    starts = [i for i, seg in enumerate(body) if seg.tag == "QTY"]
    assert starts and starts[0] == 0
    groups = []
    for a, b in zip(starts, [*starts[1:], len(body)], strict=True):
        qty, *rest = body[a:b]
        tags = [seg.tag for seg in rest]
        assert tags in (["DTM", "DTM"], ["DTM", "DTM", "DTM"], ["DTM", "DTM", "DTM", "STS"],
                        ["DTM", "DTM", "STS"])  # fmt: skip
        dtm = {seg.elements[0][0]: seg for seg in rest if seg.tag == "DTM"}
        assert set(dtm) <= {"163", "164", "7"} and {"163", "164"} <= set(dtm)
        assert all(seg.elements[0][2] == "303" for seg in dtm.values())
        sts = [seg for seg in rest if seg.tag == "STS"]
        if sts:
            assert sts[0].elements[0] == "Z32" and sts[0].elements[1] == ""
        qualifier, value, unit = qty.elements[0]
        groups.append(
            Group(
                qualifier,
                Decimal(value),
                unit,
                _time(dtm["163"]),
                _time(dtm["164"]),
                _time(dtm["7"]) if "7" in dtm else None,
                sts[0].elements[2] if sts else None,
            )
        )
    return groups


def _time(segment) -> datetime:
    text = segment.elements[0][1]
    assert text.endswith("+00")
    return datetime.strptime(text[:-3], "%Y%m%d%H%M").replace(tzinfo=UTC)


@pytest.fixture
def daily() -> list[Dispatch]:
    readings = series("M1", YESTERDAY, YESTERDAY)
    readings[10] = Reading("M1", OBIS, 1, -1, 30, readings[10].timestamp, ReadingFlag.METER_ERROR)
    del readings[20:23]
    out = plan(DAY, [assignment("DE000111", "M1")], InMemorySource(readings))
    return [d for d in out if d.recipient_id == SUPPLIER]


def test_the_interchange_parses_and_has_the_guide_s_segment_order(daily: list[Dispatch]) -> None:
    text = to_mscons(daily, sender_id=MSB, interchange_ref="R0001", created=CREATED)
    segments = parse(text)
    assert [s.tag for s in segments[:2]] == ["UNA", "UNB"]
    assert segments[-1].tag == "UNZ"
    (message,) = messages(segments)
    assert [s.tag for s in message[: len(HEADER)]] == HEADER
    assert message[0].elements[1] == ["MSCONS", "D", "04B", "UN", "2.4c"]
    assert message[1].elements[0] == "7"
    assert message[3].elements == ["MS", [MSB, "", "293"]]
    assert message[4].elements == ["MR", [SUPPLIER, "", "293"]]
    assert message[7].elements == ["172", "DE000111"]
    assert message[8].elements == [["163", "202611222300+00", "303"]]
    assert message[9].elements == [["164", "202611232300+00", "303"]]
    assert message[PIA].elements == ["5", ["1-0:1.8.0", "SRW"]]
    assert len(message) == len(HEADER) + 4 * 97 + 4 + 1  # 4 substitutes carry an STS
    # pydifact's own interchange model reads it too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interchange = Interchange.from_str(text)
        assert [m.type for m in interchange.get_messages()] == ["MSCONS"]
    assert interchange.sender == [MSB, "500"]
    assert interchange.recipient == [SUPPLIER, "500"]
    assert segments[1].elements[5:] == ["", "VL"]


def test_control_counts_match(daily: list[Dispatch]) -> None:
    both = [*daily, *daily]
    text = to_mscons(both, sender_id=MSB, interchange_ref="R0002", created=CREATED)
    segments = parse(text)
    unb, unz = segments[1], segments[-1]
    found = messages(segments)
    assert len(found) == 2
    assert unz.elements == [str(len(found)), "R0002"]
    assert unb.elements[4] == "R0002"
    for message in found:
        unh, unt = message[0], message[-1]
        assert unt.elements == [str(len(message)), unh.elements[0]]
    assert [m[0].elements[0] for m in found] == ["1", "2"]
    assert sum(1 for s in segments if s.tag in ("UNH", "UNT")) == 4


def test_values_and_substitute_markers_round_trip(daily: list[Dispatch]) -> None:
    (dispatch,) = daily
    text = to_mscons(daily, sender_id=MSB, interchange_ref="R3", created=CREATED)
    (message,) = messages(parse(text))
    groups = qty_groups(message)
    assert len(groups) == len(dispatch.readings)
    obis = canonical_obis(message[PIA].elements[1][0])
    for group, reading in zip(groups, dispatch.readings, strict=True):
        assert obis == reading.obis
        assert group.unit == "KWH"
        assert group.value * 1000 == reading.quantity  # kWh ↔ value × 10^scaler Wh, exactly
        assert group.end == group.used_at == reading.timestamp
        assert group.end - group.start == timedelta(minutes=15)
        substitute = reading.flags == ReadingFlag.SUBSTITUTE
        assert group.qualifier == ("67" if substitute else "220")
        assert group.method_code == ("Z92" if substitute else None)
        if substitute:
            assert dispatch.method_at(reading.timestamp) is SubstituteMethod.LINEAR
    substituted = [g.end for g in groups if g.qualifier == "67"]
    assert len(substituted) == 4  # the invalid value and the three missing ones


def test_an_energy_value_is_one_quantity_for_the_period() -> None:
    readings = series("M1", date(2026, 10, 31), date(2026, 11, 30), scaler=0)
    out = plan(date(2026, 12, 1), [assignment("MP7", "M1")], InMemorySource(readings))
    (monthly,) = [d for d in out if d.kind is DataKind.MONTHLY_ENERGY]
    text = to_mscons([monthly], sender_id=MSB, interchange_ref="R4", created=CREATED)
    (message,) = messages(parse(text))
    (group,) = qty_groups(message)
    assert (group.qualifier, group.unit, group.used_at, group.method_code) == (
        "220",
        "KWH",
        None,
        None,
    )
    assert group.value * 1000 == monthly.energy
    assert (group.start, group.end) == (monthly.period.start, monthly.period.end)
    assert parse(text)[1].elements[5:] == ["", "EM"]


def test_an_energy_value_with_a_substituted_end_is_marked_67() -> None:
    readings = series("M1", date(2026, 10, 31), date(2026, 11, 30), scaler=0)
    end = day_start(date(2026, 12, 1))
    readings = [r for r in readings if r.timestamp != end]
    readings.append(
        Reading("M1", OBIS, readings[-1].value + 37, 0, 30, end + timedelta(minutes=15))
    )
    out = plan(date(2026, 12, 1), [assignment("MP7", "M1")], InMemorySource(readings))
    (monthly,) = [d for d in out if d.kind is DataKind.MONTHLY_ENERGY]
    assert monthly.substituted
    text = to_mscons([monthly], sender_id=MSB, interchange_ref="R5", created=CREATED)
    (group,) = qty_groups(messages(parse(text))[0])
    assert (group.qualifier, group.method_code) == ("67", "Z92")


def test_service_characters_are_released() -> None:
    assert escape("a+b:c'd?e") == "a?+b?:c?'d??e"
    assert obis_for_pia("1-0:1.8.0*255") == "1-0?:1.8.0"
    assert obis_for_pia("1-0:2.8.1*1") == "1-0?:2.8.1*1"
    assert edifact_time(datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) == "202603290100?+00"


def test_refusals(daily: list[Dispatch]) -> None:
    with pytest.raises(MsbRejected) as info:
        to_mscons([], sender_id=MSB, interchange_ref="R", created=CREATED)
    assert info.value.reason is MsbReason.EMPTY
    with pytest.raises(MsbRejected) as info:
        to_mscons(daily, sender_id=MSB, interchange_ref="R-1", created=CREATED)
    assert info.value.reason is MsbReason.BAD_IDENTIFIER
    period = Period(day_start(YESTERDAY), day_end(YESTERDAY))
    monthly = Dispatch(SUPPLIER, Role.DSO, DataKind.MONTHLY_ENERGY, period, daily[0].readings[:2])
    with pytest.raises(UsageError):
        to_mscons([*daily, monthly], sender_id=MSB, interchange_ref="R", created=CREATED)
    other = Dispatch(DSO, Role.DSO, DataKind.REGISTER_SERIES, period, daily[0].readings, "X")
    with pytest.raises(UsageError):
        to_mscons([*daily, other], sender_id=MSB, interchange_ref="R", created=CREATED)
    incomplete = Dispatch(
        DSO,
        Role.DSO,
        DataKind.MONTHLY_ENERGY,
        period,
        daily[0].readings[:1],
        "X",
        missing=(period.end,),
    )
    with pytest.raises(MsbRejected) as info:
        to_mscons([incomplete], sender_id=MSB, interchange_ref="R", created=CREATED)
    assert info.value.reason is MsbReason.INCOMPLETE
    volts = Reading("M1", "1-0:32.7.0*255", 2301, -1, 35, period.start)
    odd = Dispatch(DSO, Role.DSO, DataKind.REGISTER_SERIES, period, (volts,), "X")
    with pytest.raises(MsbRejected) as info:
        to_mscons([odd], sender_id=MSB, interchange_ref="R", created=CREATED)
    assert info.value.reason is MsbReason.UNSUPPORTED_UNIT


def test_comparable_day_substitutes_carry_the_statistical_method_code() -> None:
    period = Period(day_start(YESTERDAY), day_end(YESTERDAY))
    first = Reading("M1", OBIS, 1000, 0, 30, period.start)
    second = Reading(
        "M1", OBIS, 1040, 0, 30, period.start + timedelta(minutes=15), ReadingFlag.SUBSTITUTE
    )
    dispatch = Dispatch(
        SUPPLIER,
        Role.SUPPLIER,
        DataKind.REGISTER_SERIES,
        period,
        (first, second),
        "MP9",
        methods=((second.timestamp, SubstituteMethod.COMPARABLE_DAY_ESTIMATED),),
    )
    text = to_mscons([dispatch], sender_id=MSB, interchange_ref="R6", created=CREATED)
    groups = qty_groups(messages(parse(text))[0])
    assert [(g.qualifier, g.method_code) for g in groups] == [("220", None), ("67", "ZJ2")]
    assert [g.value for g in groups] == [Decimal("1.000"), Decimal("1.040")]
