"""The SML fast paths decode and encode exactly like the general code (Hypothesis).

* ``_decode_fast`` (common encodings inline) and learned file layouts (``_layout.py``) against
  ``_decode_general``: same objects of the same types, and where the general decoder rejects, the
  fast paths give way to it (so the error is the general one);
* the stream decoder's one-chunk-one-frame path against byte-wise feeding;
* the list-entry writer against the general writer, including its errors.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lmn_strategies import bodies, list_entries, messages, sml_files
from test_sml_frames import FRAMES, PAYLOADS

from imsys.core.errors import UsageError
from imsys.lmn.errors import LmnReason, SmlRejected
from imsys.lmn.sml import (
    CrcKind,
    ListEntry,
    SecIndex,
    SmlFile,
    SmlStreamDecoder,
    Timestamp,
    decode_frame,
    decode_messages,
    encode_frame,
    encode_messages,
)
from imsys.lmn.sml import _codec as c
from imsys.lmn.sml import message as m
from imsys.lmn.sml._layout import apply_layout, compile_layout
from imsys.lmn.sml.crc import sml_crc
from imsys.lmn.sml.transport import frame_payload
from imsys.lmn.sml.units import Unit

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
FEWER = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
BODIES = bodies()


def typed(x: Any) -> Any:
    """A structure that compares equal only if the types match too (True ≠ 1, Unit ≠ int)."""
    if isinstance(x, tuple | list):
        return (type(x).__name__, *map(typed, x))
    if hasattr(x, "__dataclass_fields__"):
        return (type(x).__name__, *(typed(getattr(x, k)) for k in x.__dataclass_fields__))
    return (type(x).__name__, x)


def general(buf: bytes, verify: bool) -> Any:
    try:
        return typed(m._decode_general(buf, None, verify))
    except (SmlRejected, IndexError) as exc:
        return type(exc)


@st.composite
def pushes(draw: st.DrawFn) -> SmlFile:
    """Files shaped like meter pushes: Open.Res, GetList.Res, Close.Res."""
    msgs = (draw(messages(BODIES["OpenResponse"])), draw(messages(BODIES["GetListResponse"])),
            draw(messages(BODIES["CloseResponse"])))
    return SmlFile(msgs, CrcKind.X25)


def _structural(layout: Any, n: int) -> list[bool]:
    return [bool((layout.mask >> (8 * (n - 1 - k))) & 0xFF) for k in range(n)]


def _fix_crcs(buf: bytearray, layout: Any) -> None:
    for s, e in layout.crcs:
        buf[e + 1 : e + 3] = sml_crc(bytes(buf[s:e])).to_bytes(2, "big")


# --------------------------------------------------------------------------- decoding


@FAST
@given(sml_files())
def test_fast_decoder_gives_the_general_result(f: SmlFile) -> None:
    body = encode_messages(f.messages, f.crc)
    try:
        got = typed(m._decode_fast(body, None, True, None))
    except (m._Slow, SmlRejected, IndexError):
        return  # left to the general decoder
    assert got == general(body, True)


@FEWER
@given(pushes(), st.randoms(use_true_random=False))
def test_layout_decodes_like_the_general_decoder(f: SmlFile, rnd: random.Random) -> None:
    body = encode_messages(f.messages)
    layout = compile_layout(body)
    assume(layout is not None)
    assert typed(apply_layout(body, layout, None, True, m._new_message)) == typed(f.messages)
    structural = _structural(layout, len(body))
    for _ in range(15):
        buf = bytearray(body)
        for _ in range(rnd.randint(1, 5)):
            k = rnd.randrange(len(buf))
            if structural[k] and rnd.random() < 0.7:
                continue  # mostly value bytes, sometimes structure
            buf[k] = rnd.randrange(256)
        if rnd.random() < 0.8:
            _fix_crcs(buf, layout)
        for verify in (True, False):
            got = apply_layout(bytes(buf), layout, None, verify, m._new_message)
            if got is not None:  # taken: exactly what the general decoder makes of these bytes
                assert typed(got) == general(bytes(buf), verify)


@pytest.mark.parametrize("frame_id", sorted(FRAMES))
def test_real_frames_get_layouts_that_follow_their_values(frame_id: str) -> None:
    payload = frame_payload(FRAMES[frame_id])[0]
    layout = compile_layout(payload)
    assert layout is not None
    structural = _structural(layout, len(payload))
    rnd = random.Random(frame_id)
    for _ in range(200):
        buf = bytearray(payload)
        for k in rnd.sample(range(len(buf)), 4):
            if not structural[k]:
                buf[k] = rnd.randrange(256)
        got = apply_layout(bytes(buf), layout, None, False, m._new_message)
        assert got is not None
        assert typed(got) == general(bytes(buf), False)


def test_layout_refuses_another_structure_and_bad_crcs() -> None:
    payload = frame_payload(FRAMES["smllib-frame1-dzg"])[0]
    layout = compile_layout(payload)
    assert layout is not None
    structural = _structural(layout, len(payload))
    for k in (k for k in range(len(payload)) if structural[k]):
        buf = bytearray(payload)
        buf[k] ^= 0x01
        assert apply_layout(bytes(buf), layout, None, False, m._new_message) is None
    buf = bytearray(payload)
    e = layout.crcs[1][1]
    buf[e + 1] ^= 0x80
    assert apply_layout(bytes(buf), layout, None, True, m._new_message) is None
    assert apply_layout(payload + b"\x00", layout, None, False, m._new_message) is None
    assert apply_layout(b"\x00" + payload[1:], layout, None, False, m._new_message) is None


def test_uncovered_files_get_no_layout() -> None:
    assert compile_layout(PAYLOADS["smllib-frame-only-emh"]) is not None
    req = encode_messages([m.SmlMessage(transaction_id=b"t",
                                        body=m.GetListRequest(client_id=b"c"))])
    assert compile_layout(req) is None
    assert compile_layout(b"") is None
    assert compile_layout(b"\x76\x01") is None


@pytest.fixture
def fresh_layouts() -> Any:
    saved = dict(m._LAYOUTS), m._misses
    m._LAYOUTS.clear()
    m._misses = 0
    yield m
    m._LAYOUTS.clear()
    m._LAYOUTS.update(saved[0])
    m._misses = saved[1]


def test_decoder_learns_and_uses_a_layout_and_errors_stay_the_same(fresh_layouts: Any) -> None:
    wire = FRAMES["smllib-frame1-dzg"]
    payload = frame_payload(wire)[0]
    first = decode_frame(wire)
    for _ in range(m.LEARN_EVERY):
        assert decode_frame(wire) == first
    assert len(m._LAYOUTS[len(payload)]) == 1
    assert typed(decode_frame(wire)) == typed(first)
    # the same length and structure, a flipped transaction id byte: the message CRC fails as it
    # does without layouts, and without the CRC check the general decoder's result comes out
    buf = bytearray(payload)
    buf[3] ^= 0x01
    with pytest.raises(SmlRejected) as exc:
        decode_messages(bytes(buf))
    assert exc.value.reason is LmnReason.BAD_CRC
    assert exc.value.context["message_index"] == 0
    assert typed(decode_messages(bytes(buf), verify_crc=False)) == general(bytes(buf), False)


def test_layout_cache_is_bounded(fresh_layouts: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(m, "LEARN_EVERY", 1)
    monkeypatch.setattr(m, "MAX_LAYOUTS", 4)
    base = decode_frame(FRAMES["smllib-frame1-dzg"])
    gl = base.messages[1].body
    for k in range(20):
        val = (*gl.val_list, ListEntry(b"\x01\x02", value=b"v" * (k + 1)))
        msg = m.SmlMessage(transaction_id=b"x", body=m.GetListResponse(
            server_id=gl.server_id, val_list=val))
        f = SmlFile((base.messages[0], msg, base.messages[2]))
        for _ in range(3):  # three of each length: learned, then a second layout refused
            assert decode_frame(encode_frame(f)) == f
        assert len(m._LAYOUTS) <= 4
        assert all(len(v) <= m.LAYOUTS_PER_LENGTH for v in m._LAYOUTS.values())
    assert len(m._LAYOUTS) == 4


def test_learning_can_be_switched_off(fresh_layouts: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(m, "LEARN_LAYOUTS", False)
    for _ in range(3 * m.LEARN_EVERY):
        decode_frame(FRAMES["smllib-frame1-dzg"])
    assert not m._LAYOUTS


# --------------------------------------------------------------------------- stream


@FEWER
@given(st.lists(pushes(), min_size=1, max_size=4))
def test_whole_frame_chunks_and_byte_wise_feeding_agree(files: list[SmlFile]) -> None:
    wires = [encode_frame(f) for f in files]
    whole, bytewise = SmlStreamDecoder(), SmlStreamDecoder()
    got_whole, got_bytes = [], []
    for w in wires:
        whole.feed(w)
        got_whole += list(whole.frames())
        for k in range(len(w)):
            bytewise.feed(w[k : k + 1])
        got_bytes += list(bytewise.frames())
    assert got_whole == got_bytes == [decode_frame(w) for w in wires]
    assert whole.peak_buffered == max(map(len, wires))
    raw = SmlStreamDecoder()
    for w in wires:
        raw.feed(w)
    assert list(raw.raw_frames()) == wires


def test_whole_frame_chunk_after_end_of_stream_is_refused() -> None:
    dec = SmlStreamDecoder()
    dec.feed(b"")
    with pytest.raises(UsageError):
        dec.feed(FRAMES["smllib-frame1-dzg"])


def test_too_large_whole_frame_chunk_is_rejected() -> None:
    wire = FRAMES["smllib-frame1-dzg"]
    dec = SmlStreamDecoder(max_frame_size=len(wire) - 4)
    dec.feed(wire)
    item = dec.next_frame()
    assert isinstance(item, SmlRejected)
    assert item.reason is LmnReason.TOO_LARGE


# --------------------------------------------------------------------------- encoding


def _written(fn: Any, *args: Any) -> Any:
    out: c.Out = []
    try:
        fn(out, *args)
    except UsageError as exc:
        return ("UsageError", str(exc))
    except (TypeError, ValueError, IndexError) as exc:  # whatever the general writer raises
        return (type(exc).__name__, str(exc))
    return b"".join(out)


@FAST
@given(st.lists(list_entries(), max_size=8))
def test_list_entry_writer_matches_the_general_writer(entries: list[ListEntry]) -> None:
    expected = b"".join(_written(c.w_list_entry_general, e) for e in entries)
    assert _written(c.w_list_entries, entries) == expected


ODD = [None, True, False, -1, 0, 1, 255, 256, 2**32, 2**64 - 1, 2**64, -(2**63) - 1, 1.5, "7",
       b"", b"x", b"y" * 15, Unit.WATT, SecIndex(5), Timestamp(2**33)]


@pytest.mark.parametrize("field", range(7))
def test_list_entry_writer_keeps_the_errors_of_the_general_writer(field: int) -> None:
    base = [b"\x01\x00\x01\x08\x00\xff", 5, None, Unit.WATT_HOUR, -1, 12345, None]
    for v in ODD:
        e = ListEntry(*base[:field], v, *base[field + 1 :])
        assert _written(c.w_list_entries, [e]) == _written(c.w_list_entry_general, e), e


@pytest.mark.parametrize("v", [0, 1, 127, 128, 255, 256, 2**15, 2**16 - 1, 2**16, 2**24,
                               2**32 - 1, 2**32, 2**56, 2**64 - 1, -1, -128, -129, -(2**15),
                               -(2**15) - 1, -(2**31), -(2**63), 2**63 - 1])
def test_number_writers_give_the_shortest_encoding(v: int) -> None:
    for bits in (8, 16, 32, 64):
        if v >= 0:
            ok = v.bit_length() <= bits
            want = (bytes((0x61 + max(1, (v.bit_length() + 7) // 8),))
                    + v.to_bytes(max(1, (v.bit_length() + 7) // 8), "big"))
            fn = c._uint_bytes
            if ok:
                assert fn(v, bits) == want
            else:
                with pytest.raises(UsageError):
                    fn(v, bits)
        n = ((v if v >= 0 else ~v).bit_length() + 8) // 8
        if n * 8 <= bits:
            assert c._int_bytes(v, bits) == bytes((0x51 + n,)) + v.to_bytes(n, "big", signed=True)
        else:
            with pytest.raises(UsageError):
                c._int_bytes(v, bits)
