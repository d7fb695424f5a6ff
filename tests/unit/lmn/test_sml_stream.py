"""SmlStreamDecoder: chunking, resynchronisation after garbage, bounded memory, end of stream."""

from __future__ import annotations

import os
import random

import pytest
from test_sml_frames import FRAMES

from imsys.core.errors import UsageError
from imsys.lmn.errors import LmnReason, SmlRejected
from imsys.lmn.sml import (
    OpenResponse,
    SmlFile,
    SmlMessage,
    SmlStreamDecoder,
    decode_frame,
    encode_frame,
)
from imsys.lmn.sml.transport import ESC, START

GOOD = FRAMES["smllib-frame2-hly"]
DZG = FRAMES["smllib-frame1-dzg"]


def _drain(dec: SmlStreamDecoder) -> list[SmlFile | SmlRejected]:
    return list(dec.frames())


def test_frames_arrive_in_any_chunking() -> None:
    stream = GOOD + DZG + GOOD
    rnd = random.Random(7)
    for _ in range(20):
        dec = SmlStreamDecoder()
        got: list[SmlFile | SmlRejected] = []
        i = 0
        while i < len(stream):
            n = rnd.randint(1, 97)
            dec.feed(stream[i : i + n])
            got += _drain(dec)
            i += n
        assert got == [decode_frame(GOOD), decode_frame(DZG), decode_frame(GOOD)]


def test_resync_after_garbage() -> None:
    dec = SmlStreamDecoder()
    dec.feed(os.urandom(300).replace(b"\x1b", b"\x00") + GOOD[:123])  # garbage, then a cut frame
    dec.feed(b"\x55" * 17 + DZG + b"\x1b\x1b\x1b" + GOOD)
    got = _drain(dec)
    assert isinstance(got[0], SmlRejected) and got[0].reason is LmnReason.TRUNCATED
    assert got[1:] == [decode_frame(DZG), decode_frame(GOOD)]
    assert dec.garbage_bytes >= 300


def test_corrupted_frame_yields_one_error_and_decoding_continues() -> None:
    bad = bytearray(GOOD)
    bad[100] ^= 0x40
    dec = SmlStreamDecoder()
    dec.feed(bytes(bad) + DZG)
    got = _drain(dec)
    assert isinstance(got[0], SmlRejected) and got[0].reason is LmnReason.BAD_CRC
    assert got[1] == decode_frame(DZG)


def test_unknown_escape_in_stream() -> None:
    dec = SmlStreamDecoder()
    dec.feed(START + b"\x76\x05\x00\x00" + ESC + b"\x03\x00\x00\x00" + DZG)
    got = _drain(dec)
    assert isinstance(got[0], SmlRejected) and got[0].reason is LmnReason.BAD_ESCAPE
    assert got[1] == decode_frame(DZG)


def test_bounded_memory_under_endless_frame() -> None:
    dec = SmlStreamDecoder(max_frame_size=1024)
    endless = START + b"\x00\x11\x22\x33" * 250_000  # 1 MB without an end sequence
    dec.feed(endless)
    for _ in range(100):
        dec.feed(b"\x1b\x1b\x1b\x1b\x01\x01\x01\x01" + b"\x1b" * 3000)
    dec.feed(DZG)
    assert dec.peak_buffered <= 1024 + 8
    got = _drain(dec)
    assert got[-1] == decode_frame(DZG)
    assert all(isinstance(g, SmlRejected) for g in got[:-1])
    assert {g.reason for g in got[:-1] if isinstance(g, SmlRejected)} <= {
        LmnReason.TOO_LARGE, LmnReason.TRUNCATED}


def test_bounded_memory_under_random_input() -> None:
    dec = SmlStreamDecoder(max_frame_size=512)
    rnd = random.Random(3)
    alphabet = [b"\x1b\x1b\x1b\x1b", b"\x01\x01\x01\x01", b"\x1a", b"\x00", b"\x76"]
    for _ in range(2000):
        dec.feed(b"".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 64))))
        for item in dec.frames():
            assert isinstance(item, SmlFile | SmlRejected)
    assert dec.peak_buffered <= 512 + 8


def test_end_of_stream_inside_a_frame() -> None:
    dec = SmlStreamDecoder()
    dec.feed(GOOD[:200])
    assert dec.next_frame() is None
    dec.feed(b"")
    got = _drain(dec)
    assert len(got) == 1 and isinstance(got[0], SmlRejected)
    assert got[0].reason is LmnReason.TRUNCATED
    with pytest.raises(UsageError):
        dec.feed(b"more")


def test_oversized_complete_frame_is_refused() -> None:
    dec = SmlStreamDecoder(max_frame_size=64)
    dec.feed(DZG + DZG)
    got = _drain(dec)
    assert got and all(isinstance(g, SmlRejected) for g in got)
    assert dec.peak_buffered <= 64 + 8


def test_doubled_escape_fed_byte_by_byte() -> None:
    # 1b×8 at an unaligned start: the aligned word inside it is doubled by the encoder. Fed one
    # byte at a time, the scanner once resumed inside the doubled pair and read its second word
    # as an escape of its own ("unknown escape sequence 1b1b1b1b 1b1b6200").
    f = SmlFile((SmlMessage(transaction_id=ESC + ESC,
                            body=OpenResponse(req_file_id=b"f", server_id=b"s")),))
    wire = encode_frame(f)
    for size in (1, 2, 3, 5):
        dec = SmlStreamDecoder()
        for k in range(0, len(wire), size):
            dec.feed(wire[k : k + size])
        assert _drain(dec) == [f]
