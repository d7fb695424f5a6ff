"""Meter ids (DIN 43863-5 style) and the FNN meter status word."""

from __future__ import annotations

import pytest

from imsys.core.errors import Reason, Rejected, UsageError
from imsys.meters import registers as R
from imsys.meters.ids import Medium, MeterId, make_meter_id
from imsys.meters.status import MeterStatus, check_meter_status, meter_status_hex


def test_make_meter_id():
    mid = make_meter_id(Medium.ELECTRICITY, "emh", 12345678)
    assert str(mid) == "1EMH0012345678"
    assert str(make_meter_id(Medium.GAS, "ITF", 42, block=3)) == "7ITF0300000042"


def test_server_id_matches_the_trudi_example():
    mid = MeterId.from_server_id(bytes.fromhex("0A01454D48000051971E"))
    assert str(mid) == "1EMH0005347102"
    assert mid.server_id.hex().upper() == "0A01454D48000051971E"


@pytest.mark.parametrize("text", ["", "1EMH001234567", "1EM00012345678", "XEMH0012345678", 12])
def test_malformed_ids_are_rejected(text):
    with pytest.raises(Rejected) as err:
        MeterId.parse(text)
    assert err.value.reason is Reason.MALFORMED


def test_invalid_id_fields_are_usage_errors():
    with pytest.raises(UsageError):
        make_meter_id(Medium.ELECTRICITY, "EM1", 1)
    with pytest.raises(UsageError):
        make_meter_id(Medium.ELECTRICITY, "EMH", 100_000_000)
    with pytest.raises(Rejected):
        MeterId.from_server_id(b"\x0a\x01EMH\x00\x00\x00")


def test_status_word_example_from_trudi_is_valid():
    flags = check_meter_status(0x00100504)
    assert MeterStatus.VOLTAGE_L3_PRESENT in flags and MeterStatus.MANIPULATION in flags
    assert meter_status_hex(0x00100504) == "00100504"


@pytest.mark.parametrize("word", [0x0, 0x100, 0x200004, 0x1, 0x1_0000_0000])
def test_status_words_outside_the_fnn_mask_are_refused(word):
    with pytest.raises(UsageError):
        check_meter_status(word)


def test_obis_hex():
    assert R.obis_hex(R.IMPORT_ENERGY) == "0100010800ff"
    assert R.obis_hex(R.VOLTAGE_L[1]) == "0100340700ff"
    assert R.obis_hex(R.ANGLE_I_U_L[2]) == "010051071aff"
    with pytest.raises(UsageError):
        R.obis_hex("1.8.0")


def test_register_divisor():
    assert R.register_divisor(R.POWER_SCALER, -1) == 36_000
    assert R.register_divisor(R.POWER_SCALER, -1, 40) == 1_440_000
    assert R.register_divisor(R.FLOW_SCALER, -3) == 3_600_000
    with pytest.raises(UsageError):
        R.register_divisor(R.POWER_SCALER, -5)
