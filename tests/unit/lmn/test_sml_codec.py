"""TL fields, escapes, padding and the value types (SML 1.04 §6.3, §8)."""

from __future__ import annotations

import pytest

from imsys.core.errors import UsageError
from imsys.lmn.errors import LmnReason, SmlRejected
from imsys.lmn.sml import (
    CloseResponse,
    CrcKind,
    GetListResponse,
    ListEntry,
    Obis,
    OpenResponse,
    SecIndex,
    SmlFile,
    SmlMessage,
    Unit,
    decode_frame,
    encode_frame,
)
from imsys.lmn.sml import _codec as c
from imsys.lmn.sml.transport import ESC, START, escape, unescape
from imsys.lmn.sml.units import unit_symbol


@pytest.mark.parametrize(("t", "n", "wire"), [
    (c.T_OCTETS, 0, "01"),
    (c.T_OCTETS, 14, "0f"),
    (c.T_OCTETS, 15, "8101"),  # 15 data + 2 TL = 17 = 0x11
    (c.T_OCTETS, 253, "8f0f"),  # 253 + 2 = 255
    (c.T_OCTETS, 254, "818001"),  # 254 + 3 = 257 = 0x101
    (c.T_LIST, 15, "7f"),
    (c.T_LIST, 20, "f104"),  # the long list of the Holley frame
    (c.T_UINT, 4, "65"),
])
def test_tl_encoding(t: int, n: int, wire: str) -> None:
    assert c.tl(t, n).hex() == wire
    tt, nn, i = c.read_tl(bytes.fromhex(wire) + b"\x00" * 300, 0)
    assert (tt, nn, i) == (t, n, len(wire) // 2)


def test_tl_continuation_with_type_bits_is_malformed() -> None:
    with pytest.raises(SmlRejected) as e:
        c.read_tl(bytes.fromhex("8171"), 0)
    assert e.value.reason is LmnReason.MALFORMED


@pytest.mark.parametrize(("value", "wire"), [
    (0, "6200"), (255, "62ff"), (256, "630100"), (2**64 - 1, "69ffffffffffffffff"),
    (-1, "52ff"), (127, "627f"), (-128, "5280"), (-129, "53ff7f"), (True, "4201"),
    (b"DZG", "04445a47"),
])
def test_value_encoding_is_shortest(value: object, wire: str) -> None:
    out: c.Out = []
    c.w_value(out, value)  # type: ignore[arg-type]
    assert b"".join(out).hex() == wire
    got, _ = c.read_value(bytes.fromhex(wire), 0)
    assert got == value and type(got) is type(value)


def test_number_longer_than_eight_bytes_is_malformed() -> None:
    with pytest.raises(SmlRejected) as e:
        c.read_uint(bytes.fromhex("8a01") + b"\x00" * 9, 0)
    assert e.value.reason is LmnReason.MALFORMED


def test_encoder_refuses_values_outside_the_sml_types() -> None:
    with pytest.raises(UsageError):
        c.w_value([], 2**64)
    with pytest.raises(UsageError):
        c.w_int([], 128, 8)
    with pytest.raises(UsageError):
        c.w_octets_opt([], b"")  # would read back as "absent"


def test_escape_doubles_only_aligned_words() -> None:
    data = b"\x00" + ESC + b"\x00\x00\x00" + ESC
    assert escape(data) == b"\x00" + ESC + b"\x00\x00\x00" + ESC + ESC
    assert unescape(escape(data)) == data


def _file_with_octets(payload: bytes) -> SmlFile:
    entry = ListEntry(bytes(Obis(1, 0, 96, 1, 0)), value=payload)
    msgs = (
        SmlMessage(transaction_id=b"\x01", body=OpenResponse(req_file_id=b"f", server_id=b"s")),
        SmlMessage(transaction_id=b"\x02", body=GetListResponse(server_id=b"s",
                                                                val_list=(entry,))),
        SmlMessage(transaction_id=b"\x03", body=CloseResponse()),
    )
    return SmlFile(msgs)


@pytest.mark.parametrize("shift", range(4))
def test_escape_sequence_in_data_round_trips(shift: int) -> None:
    f = _file_with_octets(b"\x00" * shift + ESC * 3 + b"\x1a\x00\x00\x00")
    wire = encode_frame(f)
    assert decode_frame(wire) == f
    # the data holds aligned escape words for some shifts: they must have been doubled
    assert wire.count(ESC) >= 2


def test_unknown_escape_is_rejected() -> None:
    wire = bytearray(encode_frame(_file_with_octets(b"abc")))
    wire[8:8] = ESC + b"\x02\x00\x00\x00"
    with pytest.raises(SmlRejected) as e:
        decode_frame(bytes(wire))
    assert e.value.reason is LmnReason.BAD_ESCAPE


def test_transport_crc_mismatch_is_rejected_and_kermit_is_accepted() -> None:
    f = _file_with_octets(b"x")
    wire = bytearray(encode_frame(f))
    wire[-1] ^= 1
    with pytest.raises(SmlRejected) as e:
        decode_frame(bytes(wire))
    assert e.value.reason is LmnReason.BAD_CRC
    kermit = encode_frame(f, CrcKind.KERMIT)
    assert decode_frame(kermit).crc is CrcKind.KERMIT
    with pytest.raises(SmlRejected):
        decode_frame(kermit, CrcKind.X25)


def test_message_crc_mismatch_is_rejected() -> None:
    f = _file_with_octets(b"x")
    wire = bytearray(encode_frame(f))
    k = wire.index(b"\x63", wire.index(b"\x01\x00\x60\x01\x00\xff"))  # crc16 of message 2
    wire[k + 1] ^= 0xFF
    from imsys.lmn.sml.crc import sml_crc

    wire[-2:] = sml_crc(bytes(wire[:-2])).to_bytes(2, "big")  # keep the transport CRC valid
    with pytest.raises(SmlRejected) as e:
        decode_frame(bytes(wire))
    assert e.value.reason is LmnReason.BAD_CRC and e.value.context["message_index"] == 1
    assert decode_frame(bytes(wire), verify_message_crc=False) == f


def test_padding_makes_the_frame_a_multiple_of_four_bytes() -> None:
    for n in range(8):
        wire = encode_frame(_file_with_octets(b"p" * n + b"q"))
        assert len(wire) % 4 == 0
        assert wire[-8:-4] == ESC and wire[-4] == 0x1A and wire[-3] <= 3
        assert wire.startswith(START)


def test_truncated_frame_is_rejected() -> None:
    wire = encode_frame(_file_with_octets(b"abc"))
    for cut in (9, 20, len(wire) - 9, len(wire) - 1):
        with pytest.raises(SmlRejected) as e:
            decode_frame(wire[:cut])
        assert e.value.reason in (LmnReason.TRUNCATED, LmnReason.MALFORMED)


def test_obis_text_and_bytes() -> None:
    o = Obis.parse("1-0:1.8.0*255")
    assert bytes(o).hex() == "0100010800ff"
    assert str(o) == "1-0:1.8.0*255"
    assert Obis.parse("1.8.0") == o == Obis.parse("0100010800FF")
    assert Obis.from_bytes(bytes.fromhex("8181c78203ff")) == Obis(129, 129, 199, 130, 3)
    with pytest.raises(UsageError):
        Obis.parse("1-0:1.8")


def test_units_and_scaling() -> None:
    assert Unit.WATT_HOUR == 30 and Unit.WATT == 27 and Unit.VOLT == 35 and Unit.AMPERE == 33
    assert Unit.DEGREE == 8 and Unit.CUBIC_METRE == 13
    assert unit_symbol(30) == "Wh" and unit_symbol(13) == "m³" and unit_symbol(200) == "?200"
    e = ListEntry(b"\x01\x00\x01\x08\x00\xff", unit=Unit.WATT_HOUR, scaler=-1, value=44998962)
    assert e.scaled_value == 4499896.2
    assert ListEntry(b"", scaler=3, value=13391).scaled_value == 13391000
    assert SecIndex(5) != SecIndex(6)
