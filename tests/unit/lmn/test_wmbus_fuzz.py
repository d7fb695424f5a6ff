"""Any bytes given to the wM-Bus decoder give a telegram or a WmbusRejected, nothing else."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_wmbus_roundtrip import telegrams
from wmbus_vectors import VECTORS

from imsys.lmn.errors import WmbusRejected
from imsys.lmn.wmbus import FrameFormat, MemoryCounterTracker, Telegram, decode_telegram
from imsys.lmn.wmbus import encode_telegram as enc

QUICK = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
LONG = settings(max_examples=20_000, deadline=None, suppress_health_check=list(HealthCheck))
KEYS = {"*": bytes(range(16))}


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, FrameFormat]:
    if draw(st.booleans()):
        v = draw(st.sampled_from(list(VECTORS.values())))
        wire, fmt = bytearray(v.wire), v.fmt
    else:
        t, key = draw(telegrams())
        fmt = draw(st.sampled_from([FrameFormat.A, FrameFormat.NONE]))
        try:
            wire = bytearray(enc(t, key, fmt))
        except Exception:
            return b"", fmt
    for _ in range(draw(st.integers(0, 3))):
        if not wire:
            break
        pos = draw(st.integers(0, len(wire) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            wire[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del wire[pos:]
        else:
            wire[pos:pos] = draw(st.binary(min_size=1, max_size=3))
    return bytes(wire), fmt


def _contract(data: bytes, fmt: FrameFormat) -> None:
    for f in (fmt, FrameFormat.AUTO, FrameFormat.NONE):
        with contextlib.suppress(WmbusRejected):
            assert isinstance(decode_telegram(data, KEYS, counters=MemoryCounterTracker(),
                                              fmt=f), Telegram)


@QUICK
@given(st.one_of(mutated(), st.tuples(st.binary(max_size=80),
                                      st.sampled_from(list(FrameFormat)))))
def test_decoder_only_rejects_with_wmbus_rejected(case: tuple[bytes, FrameFormat]) -> None:
    _contract(*case)


@pytest.mark.slow
@LONG
@given(st.one_of(mutated(), st.tuples(st.binary(max_size=300),
                                      st.sampled_from(list(FrameFormat)))))
def test_decoder_long_fuzz(case: tuple[bytes, FrameFormat]) -> None:
    _contract(*case)
