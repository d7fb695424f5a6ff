"""Properties of imsys.crypto.cms: round trips for any content, and the parser contract –
random or mutated bytes fail only with imsys' own ``Rejected`` errors, never anything else."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imsys.core.errors import Rejected
from imsys.crypto import cms
from imsys.crypto.primitives import SoftwareKey

Identity = tuple[SoftwareKey, x509.Certificate]

ROUND_TRIP = settings(max_examples=25, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@ROUND_TRIP
@given(content=st.binary(max_size=4096), key_bits=st.sampled_from([128, 256]))
def test_seal_then_open_returns_the_content(gateway_sig: Identity, emt_enc: Identity,
                                            content: bytes, key_bits: int) -> None:
    message = cms.seal(content, *gateway_sig, [emt_enc[1]], key_bits=key_bits)
    assert cms.open_sealed(message, *emt_enc).content == content


@ROUND_TRIP
@given(content=st.binary(max_size=4096), detached=st.booleans())
def test_sign_then_verify_returns_the_content(gateway_sig: Identity, content: bytes,
                                              detached: bool) -> None:
    message = cms.sign(content, *gateway_sig, detached=detached)
    verified = cms.verify(message, detached_content=content if detached else None)
    assert verified.content == content


@ROUND_TRIP
@given(content=st.binary(max_size=4096), authenticated=st.booleans())
def test_encrypt_then_decrypt_returns_the_content(emt_enc: Identity, content: bytes,
                                                  authenticated: bool) -> None:
    message = cms.encrypt(content, [emt_enc[1]], authenticated=authenticated)
    assert cms.decrypt(message, *emt_enc).content == content


@pytest.fixture(scope="module")
def openers(gateway_sig: Identity, emt_enc: Identity) -> dict[str, Callable[[bytes], object]]:
    return {
        "verify": lambda data: cms.verify(data),
        "verify-detached": lambda data: cms.verify(data, detached_content=b"x"),
        "decrypt": lambda data: cms.decrypt(data, *emt_enc),
        "open_sealed": lambda data: cms.open_sealed(data, *emt_enc,
                                                    signer_certificate=gateway_sig[1]),
    }


@pytest.fixture(scope="module")
def valid_messages(gateway_sig: Identity, emt_enc: Identity) -> list[bytes]:
    document = b"1-0:1.8.0*255 4711.0815 kWh"
    return [
        cms.sign(document, *gateway_sig),
        cms.sign(document, *gateway_sig, detached=True),
        cms.encrypt(document, [emt_enc[1]], authenticated=False),
        cms.seal(document, *gateway_sig, [emt_enc[1]]),
        cms.encrypt(cms.sign(document, *gateway_sig), [emt_enc[1]]),
    ]


def _only_rejections(opener: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(Rejected):
        opener(data)


@FUZZ
@given(data=st.binary(max_size=512), which=st.sampled_from(
    ["verify", "verify-detached", "decrypt", "open_sealed"]))
def test_random_bytes_are_only_rejected(openers: dict[str, Callable[[bytes], object]],
                                        data: bytes, which: str) -> None:
    _only_rejections(openers[which], data)


@st.composite
def mutations(draw: st.DrawFn, messages: list[bytes]) -> bytes:
    """A valid message with a few bytes flipped, replaced, inserted or cut."""
    data = bytearray(draw(st.sampled_from(messages)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.sampled_from([0x00, 0x30, 0x80, 0x81, 0x82, 0x84, 0xA0, 0xFF]))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and len(data) > 1:
            del data[at]
        elif kind == "truncate":
            del data[at:]
        if not data:
            break
    return bytes(data)


@FUZZ
@given(data=st.data(), which=st.sampled_from(
    ["verify", "verify-detached", "decrypt", "open_sealed"]))
def test_mutated_messages_are_only_rejected(openers: dict[str, Callable[[bytes], object]],
                                            valid_messages: list[bytes], data: st.DataObject,
                                            which: str) -> None:
    _only_rejections(openers[which], data.draw(mutations(valid_messages)))
