"""AR 2418-6 documents: encode, parse back, refuse what is unsafe or malformed."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imsys.core.errors import UsageError
from imsys.core.reading import Reading, ReadingFlag
from imsys.wire.ar2418 import (
    AR_2418_6_NS,
    DocumentReason,
    DocumentRejected,
    IntervalReading,
    MeterReading,
    StatusPtb,
    UsagePointDocument,
    document_from_readings,
    encode_document,
    parse_document,
    pseudonymise,
    readings_of,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
METER = "1EMH0012345678"


def taf7_readings(count: int = 96) -> list[Reading]:
    return [Reading(METER, "1-0:1.8.0*255", 639108 + 7 * i, -1, 30, T0 + timedelta(minutes=15 * i),
                    status_word=0x0000010500100504) for i in range(count)]


def taf7_document() -> UsagePointDocument:
    return document_from_readings(taf7_readings(), usage_point_id="DE0001",
                                  smgw_id="EABC0012345678", tariff_name="TAF7-0001",
                                  measurement_period=900,
                                  invoicing_party_id="Lieferant AG", customer_id="user-1")


def test_taf7_series_round_trips() -> None:
    document = taf7_document()
    data = encode_document(document)
    assert parse_document(data) == document
    assert readings_of(parse_document(data)) == taf7_readings()


def test_document_has_the_trudi_shape() -> None:
    text = encode_document(taf7_document()).decode()
    assert f'xmlns="{AR_2418_6_NS}"' in text
    assert "<espi:uom>72</espi:uom>" in text
    assert "<obisCode>0100010800ff</obisCode>" in text
    assert f"<qualifiedLogicalName>0100010800ff.{METER}.sm</qualifiedLogicalName>" in text
    assert "<measurementPeriod>900</measurementPeriod>" in text
    assert "<statusFNN>0000010500100504</statusFNN>" in text
    assert "<start>2025-01-01T00:00:00Z</start>" in text
    # the interval spans first to last capture time, so every reading lies inside it
    assert f"<duration>{95 * 900}</duration>" in text
    # XSD order inside UsagePoint
    order = [text.index(tag) for tag in ("<espi:ServiceCategory>", "<usagePointId>", "<Customer>",
                                         "<InvoicingParty>", "<SMGW>", "<tariffName>",
                                         "<MeterReading>")]
    assert order == sorted(order)


def test_register_values_group_by_meter_and_obis() -> None:
    readings = [Reading(METER, "1-0:1.8.0*255", 100, 0, 30, T0),
                Reading(METER, "1-0:2.8.0*255", 5, 0, 30, T0),
                Reading("1EMH0099999999", "1-0:1.8.0*255", 7, 0, 30, T0)]
    document = document_from_readings(readings, usage_point_id="DE1", smgw_id="EABC0012345678",
                                      tariff_name="TAF1")
    assert len(document.meter_readings) == 3
    assert sorted(readings_of(parse_document(encode_document(document))),
                  key=lambda r: (r.meter_id, r.obis)) == sorted(readings,
                                                                key=lambda r: (r.meter_id, r.obis))


def test_pseudonymisation_replaces_meter_id_everywhere() -> None:
    document = pseudonymise(taf7_document(), "PSEUDO-4711")
    text = encode_document(document).decode()
    assert METER not in text and "user-1" not in text
    assert "<qualifiedLogicalName>0100010800ff.PSEUDO-4711.sm</qualifiedLogicalName>" in text
    assert parse_document(text.encode()).meter_ids == {"PSEUDO-4711"}


def test_invalid_flags_become_ptb_status() -> None:
    reading = Reading(METER, "1-0:1.8.0*255", 1, 0, 30, T0, flags=ReadingFlag.METER_ERROR)
    document = document_from_readings([reading], usage_point_id="DE1", smgw_id="EABC0012345678",
                                      tariff_name="T")
    value = parse_document(encode_document(document)).meter_readings[0].readings[0]
    assert value.status_ptb is StatusPtb.FATAL_ERROR


@pytest.mark.parametrize("payload, reason", [
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><UsagePoints/>',
     DocumentReason.FORBIDDEN_MARKUP),
    (b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><UsagePoints/>', DocumentReason.FORBIDDEN_MARKUP),
    ('<?xml version="1.0" encoding="UTF-16"?><a/>'.encode("utf-16"), DocumentReason.NOT_UTF8),
    (b'<?xml version="1.0" encoding="latin-1"?><a/>', DocumentReason.NOT_UTF8),
    (b"\xff\xfe<a/>", DocumentReason.NOT_UTF8),
    (b"<UsagePoints", DocumentReason.MALFORMED),
    (b"<Other/>", DocumentReason.MALFORMED),
    (f'<UsagePoints xmlns="{AR_2418_6_NS}"/>'.encode(), DocumentReason.MALFORMED),
], ids=["entity", "external-dtd", "utf16", "latin1", "bad-bytes", "truncated", "wrong-root",
        "empty"])
def test_unsafe_or_malformed_input_is_refused(payload: bytes, reason: DocumentReason) -> None:
    with pytest.raises(DocumentRejected) as info:
        parse_document(payload)
    assert info.value.reason is reason


def test_size_bound_is_checked_before_parsing() -> None:
    with pytest.raises(DocumentRejected) as info:
        parse_document(b"<a>" + b"x" * 2000 + b"</a>", max_size=1000)
    assert info.value.reason is DocumentReason.TOO_LARGE


def test_comments_and_cdata_are_fine() -> None:
    data = encode_document(taf7_document()).replace(b"<UsagePoint>",
                                                    b"<!-- a comment --><UsagePoint>")
    assert parse_document(data) == taf7_document()


def test_mismatched_qualified_logical_name_is_refused() -> None:
    data = encode_document(taf7_document()).replace(f".{METER}.sm".encode(), b".OTHER.sm")
    with pytest.raises(DocumentRejected) as info:
        parse_document(data)
    assert info.value.reason is DocumentReason.INVALID_VALUE


def test_reading_outside_its_block_is_refused() -> None:
    data = encode_document(taf7_document()).replace(
        b"<duration>85500</duration>", b"<duration>60</duration>")
    with pytest.raises(DocumentRejected) as info:
        parse_document(data)
    assert info.value.reason is DocumentReason.INVALID_VALUE


def test_construction_validates() -> None:
    with pytest.raises(UsageError):
        MeterReading(METER, "1.8.0", 0, 72, (IntervalReading(T0, 1),))
    with pytest.raises(UsageError):
        IntervalReading(datetime(2025, 1, 1), 1)  # naive
    with pytest.raises(UsageError):
        document_from_readings([], usage_point_id="a", smgw_id="b", tariff_name="c")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_fail_only_with_document_rejected(data: bytes) -> None:
    with contextlib.suppress(DocumentRejected):
        parse_document(data)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=20),
       scaler=st.integers(-128, 127), status=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_values_round_trip(values: list[int], scaler: int, status: int | None) -> None:
    readings = [Reading(METER, "1-0:1.8.0*255", v, scaler, 30, T0 + timedelta(minutes=15 * i),
                        status_word=status) for i, v in enumerate(values)]
    document = document_from_readings(readings, usage_point_id="DE1", smgw_id="EABC0012345678",
                                      tariff_name="T", measurement_period=900)
    assert readings_of(parse_document(encode_document(document))) == readings
