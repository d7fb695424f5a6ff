"""imsys ⇄ SmlLib (``pip install smllib``, the Python SML parser held up in design/STYLE.md).

* Real meter frames (tests/data/lmn) decode to the same values in imsys and SmlLib.
* Frames encoded by imsys are read by SmlLib's ``SmlStreamReader`` with identical values.

SmlLib reads only OpenResponse, GetListResponse and CloseResponse, needs 6-byte object names and a
value in every list entry, and removes escapes from unaligned positions too, so the generated data
keeps to that and avoids ``1B1B1B1B`` runs (imsys escapes aligned words only, as the transport
defines; see docs/lmn.md).
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imsys.lmn import sml

smllib_reader = pytest.importorskip("smllib.reader")
pytestmark = pytest.mark.interop

DATA = Path(__file__).parents[1] / "data" / "lmn"
FRAMES = {
    line.split()[0]: bytes.fromhex(line.split()[1])
    for line in (DATA / "sml_frames.txt").read_text().splitlines()
    if line and not line.startswith("#")
}


def _smllib_parse(wire: bytes, crc: str = "x25") -> list:
    reader = smllib_reader.SmlStreamReader(crc=crc)
    reader.add(wire)
    frame = reader.get_frame()
    assert frame is not None
    return frame.parse_frame()


def _time_value(t: object) -> object:
    if isinstance(t, sml.SecIndex):
        return t.value
    if isinstance(t, sml.Timestamp | sml.LocalTimestamp):
        return t.datetime
    return t


def _same_entry(mine: sml.ListEntry, theirs: object) -> None:
    assert theirs.obis == mine.obj_name.hex()  # type: ignore[attr-defined]
    assert theirs.status == mine.status  # type: ignore[attr-defined]
    assert theirs.unit == (None if mine.unit is None else int(mine.unit))  # type: ignore[attr-defined]
    assert theirs.scaler == mine.scaler  # type: ignore[attr-defined]
    tv = _time_value(mine.val_time)
    assert theirs.val_time == tv  # type: ignore[attr-defined]
    if isinstance(tv, datetime):
        assert theirs.val_time.utcoffset() == tv.utcoffset()  # type: ignore[attr-defined]
    v = mine.value
    if isinstance(v, bytes):
        # SmlLib shows alphanumeric ASCII octet strings as text
        text = v.decode(errors="ignore")
        expected = text if text.isalnum() else v.hex()
        assert theirs.value == expected  # type: ignore[attr-defined]
    elif isinstance(v, sml.SecIndex | sml.Timestamp | sml.LocalTimestamp):
        assert theirs.value == _time_value(v)  # type: ignore[attr-defined]
    else:
        assert theirs.value == v and type(theirs.value) is type(v)  # type: ignore[attr-defined]
    sig = mine.value_signature
    assert theirs.value_signature == (None if sig is None else sig.hex())  # type: ignore[attr-defined]
    if isinstance(v, int) and not isinstance(v, bool):  # SmlLib would "scale" booleans too
        theirs_scaled = theirs.get_value()  # type: ignore[attr-defined]
        assert math.isclose(theirs_scaled, mine.scaled_value, rel_tol=1e-12)  # type: ignore[arg-type]


@pytest.mark.parametrize("frame_id", sorted(FRAMES))
def test_real_frames_decode_identically(frame_id: str) -> None:
    wire = FRAMES[frame_id]
    mine = sml.decode_frame(wire, verify_message_crc=False)
    theirs = _smllib_parse(wire)
    assert len(theirs) == len(mine.messages)
    for m, t in zip(mine.messages, theirs, strict=True):
        assert t.transaction_id == m.transaction_id.hex()
        assert t.group_no == m.group_no and t.abort_on_error == m.abort_on_error
    mine_entries = list(mine.list_entries())
    theirs_entries = [e for t in theirs if hasattr(t.message_body, "val_list")
                      for e in t.message_body.val_list]
    assert len(mine_entries) == len(theirs_entries) > 0
    for a, b in zip(mine_entries, theirs_entries, strict=True):
        _same_entry(a, b)


def _no_escape(max_size: int = 20) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=max_size).filter(lambda b: b"\x1b\x1b\x1b\x1b" not in b)


_time = st.one_of(st.builds(sml.SecIndex, st.integers(0, 2**32 - 1)),
                  st.builds(sml.Timestamp, st.integers(0, 2**31 - 1)),
                  st.builds(sml.LocalTimestamp, st.integers(0, 2**31 - 1),
                            st.integers(-720, 720), st.sampled_from([0, 60])))
_value = st.one_of(st.booleans(), _no_escape().filter(bool),
                   st.integers(-(2**63), 2**64 - 1), _time)
_entry = st.builds(sml.ListEntry, st.binary(min_size=6, max_size=6).filter(
                       lambda b: b"\x1b\x1b\x1b\x1b" not in b),
                   st.none() | st.integers(0, 2**64 - 1),
                   st.none() | _time, st.none() | st.integers(0, 255),
                   st.none() | st.integers(-128, 127), _value,
                   st.none() | _no_escape().filter(bool))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(entries=st.lists(_entry, max_size=12), crc=st.sampled_from(list(sml.CrcKind)),
       server=_no_escape().filter(bool))
def test_frames_encoded_by_imsys_read_identically_in_smllib(
        entries: list[sml.ListEntry], crc: sml.CrcKind, server: bytes) -> None:
    f = sml.SmlFile((
        sml.SmlMessage(transaction_id=b"\x00\x01", body=sml.OpenResponse(
            req_file_id=b"\x00\x01", server_id=server, ref_time=sml.SecIndex(7), sml_version=1)),
        sml.SmlMessage(transaction_id=b"\x00\x02", body=sml.GetListResponse(
            server_id=server, act_sensor_time=sml.SecIndex(8), val_list=tuple(entries))),
        sml.SmlMessage(transaction_id=b"\x00\x03", body=sml.CloseResponse()),
    ), crc)
    theirs = _smllib_parse(sml.encode_frame(f), crc.value)
    assert [type(t.message_body).__name__ for t in theirs] == [
        "SmlOpenResponse", "SmlGetListResponse", "SmlCloseResponse"]
    assert theirs[0].message_body.server_id == server.hex()
    assert theirs[0].message_body.ref_time == 7
    got = theirs[1].message_body.val_list
    assert len(got) == len(entries)
    for a, b in zip(entries, got, strict=True):
        _same_entry(a, b)
