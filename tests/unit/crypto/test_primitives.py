"""The hand-rolled fast paths of the primitives agree with cryptography's own and with the
plain paths beside them."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from hypothesis import given, settings
from hypothesis import strategies as st

from imsys.core.errors import KeyRejected, Reason
from imsys.crypto.primitives import (
    SoftwareKey,
    check_public_key,
    ecdh,
    ecdsa_verifier,
    ecdsa_verify,
    public_key_bytes,
    public_key_from_point,
    x963_kdf,
)

HASHES = [hashes.SHA1(), hashes.SHA224(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512()]


@settings(max_examples=60, deadline=None)
@given(z=st.binary(min_size=1, max_size=66), info=st.binary(max_size=64),
       length=st.integers(min_value=1, max_value=130), algorithm=st.sampled_from(HASHES))
def test_x963_kdf_matches_cryptography(z: bytes, info: bytes, length: int,
                                       algorithm: hashes.HashAlgorithm) -> None:
    assert x963_kdf(z, length, info, algorithm) == X963KDF(algorithm, length, info).derive(z)


def test_nist_keys_are_refused_for_key_agreement() -> None:
    own = SoftwareKey.generate()
    nist = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(KeyRejected) as exc:
        own.exchange(nist)
    assert exc.value.reason is Reason.WRONG_CURVE
    with pytest.raises(KeyRejected):
        check_public_key(b"not a key")


def test_curves_must_match_for_ecdh() -> None:
    own = ec.generate_private_key(ec.BrainpoolP256R1())
    other = ec.generate_private_key(ec.BrainpoolP384R1()).public_key()
    with pytest.raises(KeyRejected) as exc:
        ecdh(own, other)
    assert exc.value.reason is Reason.WRONG_CURVE


@pytest.mark.parametrize("curve", ["brainpoolP256r1", "brainpoolP384r1", "brainpoolP512r1"])
def test_ecdsa_verifier_agrees_with_ecdsa_verify(curve: str) -> None:
    key = SoftwareKey.generate(curve)
    other = SoftwareKey.generate(curve)
    verify = ecdsa_verifier(key.public_key())
    signature = key.sign(b"message")

    verify(signature, b"message")
    ecdsa_verify(key.public_key(), signature, b"message")
    for bad_signature, data in ((signature, b"massage"), (other.sign(b"message"), b"message"),
                                (b"\x30\x00", b"message"), (b"", b"message")):
        with pytest.raises(KeyRejected) as exc:
            verify(bad_signature, data)
        assert exc.value.reason is Reason.BAD_SIGNATURE
        with pytest.raises(KeyRejected):
            ecdsa_verify(key.public_key(), bad_signature, data)


def test_ecdsa_verifier_refuses_keys_off_the_permitted_curves() -> None:
    nist = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(KeyRejected) as exc:
        ecdsa_verifier(nist)
    assert exc.value.reason is Reason.WRONG_CURVE


@pytest.mark.parametrize("curve", ["brainpoolP256r1", "brainpoolP384r1", "brainpoolP512r1"])
def test_public_key_from_point_round_trips_on_each_curve(curve: str) -> None:
    keys = [SoftwareKey.generate(curve).public_key() for _ in range(2)]
    for key in keys:
        for encoding in (serialization.PublicFormat.UncompressedPoint,
                         serialization.PublicFormat.CompressedPoint):
            point = key.public_bytes(serialization.Encoding.X962, encoding)
            decoded = public_key_from_point(curve, point)
            assert decoded == key
            assert decoded.curve.name == curve
    # decoded keys share a curve object; keys and curves must still come out as encoded
    assert public_key_from_point(curve, public_key_bytes(keys[1])) != keys[0]


def test_public_key_from_point_refuses_bad_points_and_curves() -> None:
    point = public_key_bytes(SoftwareKey.generate("brainpoolP256r1").public_key())
    with pytest.raises(KeyRejected) as exc:
        public_key_from_point("brainpoolP256r1", point[:-1] + bytes((point[-1] ^ 1,)))
    assert exc.value.reason is Reason.MALFORMED
    with pytest.raises(KeyRejected) as exc:
        public_key_from_point("brainpoolP384r1", point)  # a 256-bit point is no P384 point
    assert exc.value.reason is Reason.MALFORMED
    with pytest.raises(KeyRejected) as exc:
        public_key_from_point("secp256r1", point)
    assert exc.value.reason is Reason.WRONG_CURVE
