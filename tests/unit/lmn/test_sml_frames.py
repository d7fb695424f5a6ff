"""Real meter frames from public sources decode to the expected values (tests/data/lmn/README.md).

One vector table drives decoding, re-encoding and the message-CRC behaviour. The EBZ and EMH dumps
were anonymised by the people who published them (server ids replaced), which broke their
message CRCs: imsys rejects them by default and reads them with ``verify_message_crc=False``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imsys.lmn.errors import LmnReason, SmlRejected
from imsys.lmn.sml import (
    CloseResponse,
    GetListResponse,
    OpenResponse,
    SecIndex,
    SmlFile,
    Unit,
    decode_frame,
    decode_messages,
    encode_frame,
)

DATA = Path(__file__).parents[2] / "data" / "lmn"


def _load(name: str) -> dict[str, bytes]:
    out = {}
    for line in (DATA / name).read_text().splitlines():
        if line and not line.startswith("#"):
            key, hexdata = line.split()
            out[key] = bytes.fromhex(hexdata)
    return out


FRAMES = _load("sml_frames.txt")
PAYLOADS = _load("sml_payloads.txt")

# id → (message CRCs intact?, {OBIS: (unit, scaler, raw value)})
EXPECTED: dict[str, tuple[bool, dict[str, tuple[int, int, int]]]] = {
    "smllib-frame1-dzg": (True, {
        "1-0:1.8.0*255": (Unit.WATT_HOUR, 3, 13391),
        "1-0:2.8.0*255": (Unit.WATT_HOUR, 3, 0),
    }),
    "smllib-frame2-hly": (True, {
        "1-0:1.8.0*255": (Unit.WATT_HOUR, -1, 44998962),
        "1-0:16.7.0*255": (Unit.WATT, 0, 137),
        "1-0:32.7.0*255": (Unit.VOLT, -1, 2344),
        "1-0:31.7.0*255": (Unit.AMPERE, -2, 41),
        "1-0:81.7.1*255": (Unit.DEGREE, 0, 240),
        "1-0:14.7.0*255": (Unit.HERTZ, -1, 500),
    }),
    "smllib-issue8-ok-ebz": (False, {
        "1-0:1.8.0*255": (Unit.WATT_HOUR, -5, 45009189911),
        "1-0:16.7.0*255": (Unit.WATT, -2, 35289),
    }),
    "smllib-issue8-err-ebz": (False, {
        "1-0:1.8.1*255": (Unit.WATT_HOUR, -5, 46076557063),
    }),
    "smllib-issue8-fixed-ebz": (False, {
        "1-0:1.8.1*255": (Unit.WATT_HOUR, -5, 0),
        "1-0:76.7.0*255": (Unit.WATT, -2, 106173),
    }),
}


@pytest.mark.parametrize("frame_id", sorted(EXPECTED))
def test_real_frame_decodes_to_expected_values(frame_id: str) -> None:
    crc_ok, expected = EXPECTED[frame_id]
    wire = FRAMES[frame_id]
    if not crc_ok:
        with pytest.raises(SmlRejected) as e:
            decode_frame(wire)
        assert e.value.reason is LmnReason.BAD_CRC
    f = decode_frame(wire, verify_message_crc=crc_ok)
    kinds = [type(m.body) for m in f.messages]
    assert kinds == [OpenResponse, GetListResponse, CloseResponse]
    got = {str(e.obis): (e.unit, e.scaler, e.value) for e in f.list_entries()}
    for obis, value in expected.items():
        assert got[obis] == value


@pytest.mark.parametrize("frame_id", sorted(FRAMES))
def test_real_frame_re_encodes_to_an_equal_file(frame_id: str) -> None:
    f = decode_frame(FRAMES[frame_id], verify_message_crc=False)
    again = encode_frame(f)
    assert decode_frame(again) == f
    assert encode_frame(decode_frame(again)) == again


def test_holley_bare_unsigned_time_reads_as_sec_index() -> None:
    f = decode_frame(FRAMES["smllib-frame2-hly"])
    entry = next(e for e in f.list_entries() if str(e.obis) == "1-0:1.8.0*255")
    assert entry.val_time == SecIndex(0x02DBA23D)
    assert entry.scaled_value == 4499896.2


def test_emh_payload_with_public_key_and_signature_entries() -> None:
    msgs = decode_messages(PAYLOADS["smllib-frame-only-emh"], verify_crc=False)
    f = SmlFile(msgs)
    values = {str(e.obis): e for e in f.list_entries()}
    assert values["129-129:199.130.3*255"].value == b"EMH"
    assert values["1-0:16.7.0*255"].scaled_value == -177.2
    assert len(values["129-129:199.130.5*255"].value) == 48  # the meter's public key
    assert values["1-0:1.8.0*255"].scaled_value == 11785433.3
