"""The hand-rolled fast paths of the primitives agree with cryptography's own."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from hypothesis import given, settings
from hypothesis import strategies as st

from imsys.core.errors import KeyRejected, Reason
from imsys.crypto.primitives import SoftwareKey, check_public_key, ecdh, x963_kdf

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
