"""decode(encode(x)) == x for every SML message type, and the bytes are stable (Hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lmn_strategies import bodies, messages, sml_files

from imsys.lmn.sml import (
    MESSAGE_TYPES,
    CrcKind,
    SmlFile,
    decode_frame,
    decode_messages,
    encode_frame,
    encode_messages,
)

BODIES = bodies()
FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_every_message_type_has_a_strategy() -> None:
    assert {k.cls.__name__ for k in MESSAGE_TYPES.values()} == set(BODIES)


@pytest.mark.parametrize("name", sorted(BODIES))
@FAST
@given(data=st.data())
def test_message_round_trip(name: str, data: st.DataObject) -> None:
    msg = data.draw(messages(BODIES[name]))
    crc = data.draw(st.sampled_from(list(CrcKind)))
    f = SmlFile((msg,), crc)
    wire = encode_frame(f)
    assert decode_frame(wire) == f
    assert decode_frame(wire).messages[0].tag == type(msg.body).TAG
    assert encode_frame(decode_frame(wire)) == wire
    assert decode_messages(encode_messages([msg], crc), crc) == (msg,)


@FAST
@given(sml_files())
def test_file_round_trip(f: SmlFile) -> None:
    wire = encode_frame(f)
    assert len(wire) % 4 == 0
    assert decode_frame(wire) == f
