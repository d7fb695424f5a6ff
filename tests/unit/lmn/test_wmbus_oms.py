"""OMS Vol. 2 example telegrams: decryption (modes 5 and 7), MAC, replay, keys (vectors: README)."""

from __future__ import annotations

import pytest
from wmbus_vectors import VECTORS

from imsys.lmn.errors import LmnReason, WmbusRejected
from imsys.lmn.wmbus import (
    Address,
    Coding,
    DateTimeF,
    FrameFormat,
    MemoryCounterTracker,
    SecurityMode,
    decode_telegram,
    derive_keys,
    encode_telegram,
    manufacturer_code,
)
from imsys.lmn.wmbus.security import afl_mac, mode5_iv

GAS = [("volume", 28504.27, "m³"), ("date and time", None, ""), ("error flags", 0, "")]


def _summary(t) -> list[tuple[str, object, str]]:  # type: ignore[no-untyped-def]
    out = []
    for r in t.records:
        v = r.scaled_value
        out.append((r.info.quantity, None if isinstance(v, DateTimeF) else v, r.info.unit))
    return out


@pytest.mark.parametrize("name", ["oms-profile-a-mode5", "oms-profile-b-mode7-integrated",
                                  "oms-profile-b-mode7-radio-adapter"])
def test_gas_meter_examples_decrypt_to_the_published_values(name: str) -> None:
    v = VECTORS[name]
    t = decode_telegram(v.wire, v.key)
    assert t.meter.id_text == "12345678" and t.meter.manufacturer_id == "ELS"
    assert t.meter.device_type == 0x03  # gas
    assert _summary(t) == GAS
    assert str(t.records[1].value) == "2008-05-31T23:50"
    assert t.records[0].coding is Coding.BCD8


@pytest.mark.parametrize("name", ["oms-profile-a-mode5", "oms-profile-b-mode7-integrated",
                                  "oms-profile-b-mode7-radio-adapter"])
def test_encoder_reproduces_the_published_telegrams_byte_for_byte(name: str) -> None:
    v = VECTORS[name]
    assert encode_telegram(decode_telegram(v.wire, v.key), v.key, v.fmt) == v.wire


def test_mode7_example_structure() -> None:
    v = VECTORS["oms-profile-b-mode7-integrated"]
    t = decode_telegram(v.wire, v.key)
    assert t.tpl.mode is SecurityMode.AES_CBC_NO_IV and t.tpl.config_ext == 0x10
    assert t.ell is not None and t.ell.ci == 0x8C
    assert t.afl is not None and t.afl.message_counter == 0x0AB3 and t.afl.mcl == 0x25
    assert t.afl.mac == bytes.fromhex("21924D4F2FB66E01")
    adapter = decode_telegram(VECTORS["oms-profile-b-mode7-radio-adapter"].wire, v.key)
    assert adapter.link.address.device_type == 0x37  # radio converter, meter side
    assert adapter.tpl.address == t.meter


def test_mode7_key_derivation_and_mac_match_the_example() -> None:
    kenc, kmac = derive_keys(bytes(range(16)), 0x0AB3, 0x12345678)
    assert kenc != kmac
    # the MAC of the example telegram over MCL, MCR, TPL header and ciphertext
    v = VECTORS["oms-profile-b-mode7-integrated"]
    tpl_and_cipher = bytes.fromhex("7A75002007109058475F4BC91DF878B80A1B0F98B629024AAC727942"
                                   "BFC549233C0140829B93")
    assert afl_mac(kmac, 0x25, 0x0AB3, None, tpl_and_cipher) == bytes.fromhex("21924D4F2FB66E01")
    assert v.key == bytes(range(16))


def test_mode5_iv_layout() -> None:
    a = Address(manufacturer_code("ELS"), 0x12345678, 0x33, 0x03)
    assert mode5_iv(a, 0x2A).hex() == "9315785634123303" + "2a" * 8


def test_partial_encryption_keeps_the_clear_tail() -> None:
    v = VECTORS["oms-partial-encryption-mode5"]
    t = decode_telegram(v.wire, v.key)
    assert t.meter.manufacturer_id == "QDS" and t.meter.id_text == "55667788"
    assert t.records[0].value == 1234
    assert t.records[3].value == 12345678
    assert len(t.records) == 4
    again = decode_telegram(encode_telegram(t, v.key), v.key)  # re-encoded fully encrypted
    assert again == t


def test_frame_format_b_example() -> None:
    v = VECTORS["oms-frame-format-b"]
    t = decode_telegram(v.wire, fmt=FrameFormat.B)
    assert t.meter.manufacturer_id == "CEN" and t.records[0].scaled_value == 876.543
    assert encode_telegram(t, fmt=FrameFormat.B) == v.wire
    assert decode_telegram(v.wire) == t  # AUTO finds format B


def test_wrong_key_mode5() -> None:
    v = VECTORS["oms-profile-a-mode5"]
    with pytest.raises(WmbusRejected) as e:
        decode_telegram(v.wire, bytes(16))
    assert e.value.reason is LmnReason.WRONG_KEY


def test_wrong_key_or_altered_data_mode7_fails_the_mac() -> None:
    v = VECTORS["oms-profile-b-mode7-integrated"]
    with pytest.raises(WmbusRejected) as e:
        decode_telegram(v.wire, bytes(16))
    assert e.value.reason is LmnReason.BAD_MAC
    t = decode_telegram(v.wire, v.key)
    wire = bytearray(encode_telegram(t, v.key, FrameFormat.NONE))
    wire[-1] ^= 0x01  # one ciphertext bit
    with pytest.raises(WmbusRejected) as e:
        decode_telegram(bytes(wire), v.key, fmt=FrameFormat.NONE)
    assert e.value.reason is LmnReason.BAD_MAC


def test_replayed_message_counter_is_rejected() -> None:
    v = VECTORS["oms-profile-b-mode7-integrated"]
    counters = MemoryCounterTracker()
    t = decode_telegram(v.wire, v.key, counters=counters)
    assert counters.last_counter(t.meter) == 0x0AB3
    with pytest.raises(WmbusRejected) as e:
        decode_telegram(v.wire, v.key, counters=counters)
    assert e.value.reason is LmnReason.REPLAYED
    assert e.value.context["counter"] == 0x0AB3
    newer = encode_telegram(t.__class__(link=t.link, ell=t.ell,
                                        afl=t.afl.__class__(message_counter=0x0AB4, mcl=0x25),
                                        tpl=t.tpl, records=t.records), v.key)
    assert decode_telegram(newer, v.key, counters=counters).afl.message_counter == 0x0AB4  # type: ignore[union-attr]


def test_forged_counter_does_not_advance_the_tracker() -> None:
    v = VECTORS["oms-profile-b-mode7-integrated"]
    counters = MemoryCounterTracker()
    with pytest.raises(WmbusRejected):
        decode_telegram(v.wire, bytes(16), counters=counters)
    assert counters.last_counter(Address(manufacturer_code("ELS"), 0x12345678, 0x33, 3)) is None


def test_encrypted_telegram_without_key_is_unknown_meter() -> None:
    v = VECTORS["oms-profile-a-mode5"]
    with pytest.raises(WmbusRejected) as e:
        decode_telegram(v.wire)
    assert e.value.reason is LmnReason.UNKNOWN_METER
    with pytest.raises(WmbusRejected) as e:
        decode_telegram(v.wire, {"99999999": bytes(16)})
    assert e.value.reason is LmnReason.UNKNOWN_METER
    assert decode_telegram(v.wire, {"12345678": v.key}).records  # type: ignore[dict-item]


def test_block_crc_error_is_rejected() -> None:
    wire = bytearray(VECTORS["oms-profile-a-mode5"].wire)
    wire[14] ^= 0x10
    with pytest.raises(WmbusRejected) as e:
        decode_telegram(bytes(wire), VECTORS["oms-profile-a-mode5"].key, fmt=FrameFormat.A)
    assert e.value.reason is LmnReason.BAD_CRC
