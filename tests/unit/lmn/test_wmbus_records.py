"""DIF/DIFE/VIF/VIFE records, data types F and G, scaling per VIF (EN 13757-3)."""

from __future__ import annotations

import pytest

from imsys.core.errors import UsageError
from imsys.lmn.errors import LmnReason, WmbusRejected
from imsys.lmn.wmbus import (
    Coding,
    DataRecord,
    DateG,
    DateTimeF,
    Function,
    decode_records,
    describe,
    encode_records,
)
from imsys.lmn.wmbus.link import (
    Address,
    FrameFormat,
    LinkHeader,
    crc16_en13757,
    encode_link,
    manufacturer_code,
    manufacturer_text,
    strip_link,
)


@pytest.mark.parametrize(("record", "quantity", "unit", "scaled"), [
    ("040E" "39300000", "energy", "J", 12345000000),           # 0x0E: 10^6 J
    ("0403" "39300000", "energy", "Wh", 12345),                # 10^0 Wh
    ("0406" "39300000", "energy", "Wh", 12345000),             # 10^3 Wh (kWh)
    ("0C13" "27048502", "volume", "m³", 2850.427),             # BCD8, 10^-3 m³
    ("022B" "E803", "power", "W", 1000),                       # 10^0 W
    ("043B" "10270000", "volume flow", "m³/h", 10.0),          # 10^-3 m³/h
    ("025B" "4600", "flow temperature", "°C", 70),
    ("025F" "2B00", "return temperature", "°C", 43),
    ("0262" "F401", "temperature difference", "K", 50.0),     # 10^-1 K … 500 → 50.0
    ("04FD4A" "E8030000", "voltage", "V", 10000),             # FD 0x4A: 10^(10-9) V
    ("0D78" "0431323334", "fabrication number", "", "4321"),   # LVAR text, sent reversed
    ("04937C" "10270000", "volume", "m³", 10.0),              # VIFE 0x7C: no scaling
])
def test_record_decoding_and_scaling(record: str, quantity: str, unit: str, scaled: object
                                     ) -> None:
    records, mfr, more = decode_records(bytes.fromhex(record))
    assert mfr is None and not more and len(records) == 1
    r = records[0]
    assert r.info.quantity == quantity and r.info.unit == unit
    if isinstance(scaled, float):
        assert r.scaled_value == pytest.approx(scaled)
    else:
        assert r.scaled_value == scaled
    assert encode_records(records) == bytes.fromhex(record)


def test_vif_exponents() -> None:
    assert describe(b"\x03").exponent == 0 and describe(b"\x06").exponent == 3  # Wh
    assert describe(b"\x13").exponent == -3 and describe(b"\x16").exponent == 0  # m³
    assert describe(b"\x5a").exponent == -1 and describe(b"\x5a").unit == "°C"
    assert describe(b"\xfb\x01").unit == "MWh" and describe(b"\xfb\x01").exponent == 0
    assert describe(b"\x93\x74").exponent == -3 - 2  # VIFE E111 0nnn: ×10^(nnn-6)


def test_dates_type_f_and_g() -> None:
    records, _, _ = decode_records(bytes.fromhex("046D32371F15" "426C9F2C"))
    f, g = records
    assert isinstance(f.value, DateTimeF) and str(f.value) == "2008-05-31T23:50"
    assert isinstance(g.value, DateG) and str(g.value) == "2020-12-31"
    assert g.storage == 1
    assert encode_records(records) == bytes.fromhex("046D32371F15426C9F2C")


def test_dife_chain_storage_tariff_subunit() -> None:
    r = DataRecord(coding=Coding.INT32, vib=b"\x03", value=7, function=Function.MAXIMUM,
                   storage=0x25, tariff=3, subunit=1)
    wire = encode_records([r])
    assert wire[0] & 0x80 and wire[0] & 0x30 == 0x10
    assert decode_records(wire)[0] == (r,)


def test_bcd_negative_and_non_bcd() -> None:
    records, _, _ = decode_records(bytes.fromhex("0A13" "3412" "0A13" "34F1" "0A13" "FFFF"))
    assert [r.value for r in records] == [1234, -134, b"\xff\xff"]
    assert encode_records(records) == bytes.fromhex("0A1334120A1334F10A13FFFF")


def test_idle_filler_and_manufacturer_data() -> None:
    records, mfr, more = decode_records(bytes.fromhex("2F2F" "0113" "05" "0F" "DEADBEEF"))
    assert len(records) == 1 and mfr == bytes.fromhex("DEADBEEF") and not more
    _, mfr, more = decode_records(bytes.fromhex("1F0102"))
    assert more and mfr == b"\x01\x02"


def test_truncated_and_bad_records() -> None:
    for data in ("04", "0413", "041300", "8F", "0D13"):
        with pytest.raises(WmbusRejected) as e:
            decode_records(bytes.fromhex(data))
        assert e.value.reason in (LmnReason.TRUNCATED, LmnReason.UNSUPPORTED)
    with pytest.raises(WmbusRejected) as e:
        decode_records(bytes.fromhex("84" + "80" * 11 + "00" + "13" + "00000000"))
    assert e.value.reason is LmnReason.MALFORMED


def test_encoder_refuses_inconsistent_records() -> None:
    with pytest.raises(UsageError):
        encode_records([DataRecord(coding=Coding.INT16, vib=b"\x13", value=2**20)])
    with pytest.raises(UsageError):
        encode_records([DataRecord(coding=Coding.INT8, vib=b"\x93", value=1)])  # ext bit, no VIFE


def test_crc_en13757_and_manufacturer_codes() -> None:
    assert crc16_en13757(b"123456789") == 0xC2B7
    assert manufacturer_code("ELS") == 0x1593 and manufacturer_text(0x1593) == "ELS"
    assert manufacturer_text(0x2C2D) == "KAM"


@pytest.mark.parametrize("fmt", [FrameFormat.A, FrameFormat.B, FrameFormat.NONE])
@pytest.mark.parametrize("size", [0, 5, 6, 21, 22, 115, 116, 117, 200, 244])
def test_link_layer_frame_formats(fmt: FrameFormat, size: int) -> None:
    header = LinkHeader(0x44, Address(manufacturer_code("ABC"), 0x12345678, 1, 7))
    payload = bytes([0x78]) + bytes(range(size % 256))[:size]
    try:
        wire = encode_link(header, payload, fmt)
    except UsageError:
        assert size > 200
        return
    raw, got = strip_link(wire, fmt)
    assert got is fmt and raw[10:] == payload and raw[0] == len(raw) - 1
    assert strip_link(wire, FrameFormat.AUTO)[0] == raw or fmt is FrameFormat.NONE
