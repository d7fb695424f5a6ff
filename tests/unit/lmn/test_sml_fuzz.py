"""Any bytes fed to the SML decoders give frames or typed rejections – never another exception.

The default run is small; ``pytest -m slow`` runs the long fuzz (sizes in docs/lmn.md).
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lmn_strategies import sml_files

from imsys.lmn.errors import SmlRejected
from imsys.lmn.sml import SmlFile, SmlStreamDecoder, decode_frame, decode_messages, encode_frame
from imsys.lmn.sml.crc import sml_crc
from imsys.lmn.sml.transport import START

QUICK = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
LONG = settings(max_examples=20_000, deadline=None, suppress_health_check=list(HealthCheck))
LONG_STREAM = settings(max_examples=5_000, deadline=None, suppress_health_check=list(HealthCheck))

_TOKENS = [b"\x1b\x1b\x1b\x1b", b"\x01\x01\x01\x01", b"\x1a", b"\x00", b"\x01", b"\x76",
           b"\x72", b"\x62", b"\x63", b"\x77\x07", b"\xf1\x04", b"\x8f\xff"]
noise = st.lists(st.one_of(st.sampled_from(_TOKENS), st.binary(max_size=8)),
                 max_size=60).map(b"".join)


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid frame with bytes flipped, inserted or cut – CRC repaired half of the time."""
    wire = bytearray(encode_frame(draw(sml_files())))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = draw(st.integers(8, max(8, len(wire) - 9)))
        if op == "flip":
            wire[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            wire[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif len(wire) > 17:
            del wire[pos]
    if draw(st.booleans()) and len(wire) >= 10:
        wire[-2:] = sml_crc(bytes(wire[:-2])).to_bytes(2, "big")
    return bytes(wire)


def _decode_frame_contract(data: bytes) -> None:
    with contextlib.suppress(SmlRejected):
        assert isinstance(decode_frame(data), SmlFile)
    with contextlib.suppress(SmlRejected):
        decode_messages(data[8:], verify_crc=False)


def _stream_contract(chunks: list[bytes]) -> None:
    dec = SmlStreamDecoder(max_frame_size=256)
    for c in chunks:
        if not c:
            continue  # b"" would mean end of stream
        dec.feed(c)
        for item in dec.frames():
            assert isinstance(item, SmlFile | SmlRejected)
    dec.feed(b"")
    for item in dec.frames():
        assert isinstance(item, SmlFile | SmlRejected)
    assert dec.peak_buffered <= 256 + 8


@QUICK
@given(st.one_of(noise.map(lambda b: START + b), mutated_frames(), st.binary(max_size=64)))
def test_frame_decoder_only_rejects_with_sml_rejected(data: bytes) -> None:
    _decode_frame_contract(data)


@QUICK
@given(st.lists(st.one_of(noise, mutated_frames()), max_size=6))
def test_stream_decoder_only_yields_frames_or_rejections(chunks: list[bytes]) -> None:
    _stream_contract(chunks)


@pytest.mark.slow
@LONG
@given(st.one_of(noise.map(lambda b: START + b), mutated_frames(), st.binary(max_size=512)))
def test_frame_decoder_long_fuzz(data: bytes) -> None:
    _decode_frame_contract(data)


@pytest.mark.slow
@LONG_STREAM
@given(st.lists(st.one_of(noise, mutated_frames(), st.binary(max_size=300)), max_size=8))
def test_stream_decoder_long_fuzz(chunks: list[bytes]) -> None:
    _stream_contract(chunks)
