"""TR-03109-3 / TR-03116-3 cryptographic primitives (hazardous level).

Role packages should use the recipes in :mod:`imsys.crypto` (CMS seal/open, TLS contexts) and
the security module; this module holds the raw building blocks those recipes are made of:

* curves: brainpoolP256r1/P384r1/P512r1 for keys and certificates; NIST P-256/P-384 are
  accepted only as TLS key-exchange groups (see :mod:`imsys.crypto.tls`), never here;
* ECDSA with the hash matched to the curve (SHA-256/384/512), signatures DER-encoded;
* ECKA: ephemeral-static ECDH with the ANSI X9.63 KDF;
* AES-128/256 in GCM, and in CBC with AES-CMAC (encrypt-then-MAC), AES key wrap (RFC 3394).

Every check raises (:class:`~imsys.core.errors.KeyRejected`); nothing returns ``False``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import cmac, hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from imsys.core.errors import CmsRejected, KeyRejected, Reason, UsageError


@dataclass(frozen=True)
class CurveProfile:
    """One permitted signature/key-agreement curve and the hash matched to it."""

    name: str
    curve: type[ec.EllipticCurve]
    hash: type[hashes.HashAlgorithm]
    key_bits: int
    oid: str


BRAINPOOL_P256R1 = CurveProfile(
    "brainpoolP256r1", ec.BrainpoolP256R1, hashes.SHA256, 256, "1.3.36.3.3.2.8.1.1.7"
)
BRAINPOOL_P384R1 = CurveProfile(
    "brainpoolP384r1", ec.BrainpoolP384R1, hashes.SHA384, 384, "1.3.36.3.3.2.8.1.1.11"
)
BRAINPOOL_P512R1 = CurveProfile(
    "brainpoolP512r1", ec.BrainpoolP512R1, hashes.SHA512, 512, "1.3.36.3.3.2.8.1.1.13"
)

#: Curves permitted for keys and certificates (TR-03116-3: brainpool, ≥ 250 bit).
CURVES: dict[str, CurveProfile] = {
    c.name: c for c in (BRAINPOOL_P256R1, BRAINPOOL_P384R1, BRAINPOOL_P512R1)
}
DEFAULT_CURVE = BRAINPOOL_P256R1.name


# ``isinstance`` against cryptography's ABCs costs about a microsecond; opening a CMS message
# asks it a dozen times, so the concrete key classes seen are remembered.
_PUBLIC_KEY_TYPES: set[type] = set()
_KEY_TYPES: set[type] = set()
_ECDH = ec.ECDH()
_SHA256 = hashes.SHA256()
_HASHLIB_SHA2 = {"sha224": hashlib.sha224, "sha256": hashlib.sha256, "sha384": hashlib.sha384,
                 "sha512": hashlib.sha512}


def _is_public_key(obj: object) -> bool:
    kind = type(obj)
    if kind in _PUBLIC_KEY_TYPES:
        return True
    if isinstance(obj, ec.EllipticCurvePublicKey):
        _PUBLIC_KEY_TYPES.add(kind)
        _KEY_TYPES.add(kind)
        return True
    return False


def _is_key(obj: object) -> bool:
    kind = type(obj)
    if kind in _KEY_TYPES:
        return True
    if isinstance(obj, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        _KEY_TYPES.add(kind)
        return True
    return False


def curve_profile(curve: str | ec.EllipticCurve | ec.EllipticCurvePublicKey
                  | ec.EllipticCurvePrivateKey) -> CurveProfile:
    """The permitted profile for a curve name, curve object or key; ``KeyRejected`` otherwise."""
    if type(curve) is str:
        name = curve
    else:
        if _is_key(curve):
            curve = curve.curve  # type: ignore[union-attr]
        name = curve.name  # type: ignore[union-attr]
    try:
        return CURVES[name]
    except KeyError:
        raise KeyRejected(
            Reason.WRONG_CURVE,
            f"curve {name!r} is not permitted (brainpoolP256r1/P384r1/P512r1 only)",
            curve=name,
        ) from None


def check_public_key(key: object) -> ec.EllipticCurvePublicKey:
    """Return ``key`` if it is an EC public key on a permitted curve, else ``KeyRejected``."""
    _public_profile(key)
    return key  # type: ignore[return-value]


def _public_profile(key: object) -> CurveProfile:
    if not _is_public_key(key):
        raise KeyRejected(
            Reason.WRONG_CURVE, f"not an elliptic-curve key: {type(key).__name__}"
        )
    return curve_profile(key.curve.name)  # type: ignore[attr-defined]


def hash_for(curve: str | ec.EllipticCurve | ec.EllipticCurvePublicKey
             | ec.EllipticCurvePrivateKey) -> hashes.HashAlgorithm:
    """The hash TR-03116-3 pairs with the curve: SHA-256/384/512 for P256/P384/P512."""
    return curve_profile(curve).hash()


def generate_private_key(curve: str = DEFAULT_CURVE) -> ec.EllipticCurvePrivateKey:
    """A fresh key pair on a permitted curve (for CAs and software keys)."""
    return ec.generate_private_key(curve_profile(curve).curve())


# --------------------------------------------------------------------------- ECDSA


def ecdsa_sign(private_key: ec.EllipticCurvePrivateKey, data: bytes,
               hash_algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    """DER-encoded ECDSA signature over ``data`` with the curve's hash (or the one given)."""
    algorithm = hash_algorithm or hash_for(private_key)
    return private_key.sign(data, ec.ECDSA(algorithm))


def ecdsa_verify(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes,
                 hash_algorithm: hashes.HashAlgorithm | None = None) -> None:
    """Verify a DER ECDSA signature; raises ``KeyRejected(BAD_SIGNATURE)`` on failure."""
    profile = _public_profile(public_key)
    algorithm = hash_algorithm or profile.hash()
    try:
        public_key.verify(signature, data, ec.ECDSA(algorithm))
    except (InvalidSignature, ValueError) as exc:
        raise KeyRejected(Reason.BAD_SIGNATURE, "ECDSA signature does not verify") from exc


def ecdsa_verifier(public_key: ec.EllipticCurvePublicKey) -> Callable[[bytes, bytes], None]:
    """``verify(signature, data)`` for one key: :func:`ecdsa_verify` with the key checked and
    the algorithm built once (for keys that verify message after message, such as a signer
    certificate's). ``KeyRejected(WRONG_CURVE)`` here if the key is refused."""
    algorithm = ec.ECDSA(_public_profile(public_key).hash())
    check = public_key.verify

    def verify(signature: bytes, data: bytes) -> None:
        try:
            check(signature, data, algorithm)
        except (InvalidSignature, ValueError) as exc:
            raise KeyRejected(Reason.BAD_SIGNATURE, "ECDSA signature does not verify") from exc

    return verify


def raw_to_der_signature(raw: bytes) -> bytes:
    """PKCS#11 returns r||s; CMS and X.509 want DER ``Ecdsa-Sig-Value``."""
    if len(raw) % 2:
        raise KeyRejected(Reason.MALFORMED, "raw ECDSA signature has odd length")
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                int.from_bytes(raw[half:], "big"))


def der_to_raw_signature(der: bytes, key_bits: int) -> bytes:
    r, s = decode_dss_signature(der)
    size = (key_bits + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


# --------------------------------------------------------------------------- ECKA / KDF


def ecdh(private_key: ec.EllipticCurvePrivateKey, peer: ec.EllipticCurvePublicKey) -> bytes:
    """The shared secret Z (x coordinate) of ECDH; both keys on the same permitted curve."""
    _public_profile(peer)
    if peer.curve.name != private_key.curve.name:
        raise KeyRejected(
            Reason.WRONG_CURVE,
            f"peer key on {peer.curve.name}, own key on {private_key.curve.name}",
        )
    return private_key.exchange(_ECDH, peer)


def x963_kdf(shared_secret: bytes, length: int, shared_info: bytes = b"",
             hash_algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    """ANSI X9.63 key derivation (SHA-256 unless another hash is given).

    SHA-2 runs straight on hashlib (``K_i = H(Z || i || SharedInfo)``, i a 32-bit counter from
    1): building cryptography's X963KDF object cost more than the hashing itself, once per
    opened message. Other hashes go through cryptography; a test checks both agree.
    """
    new = _HASHLIB_SHA2.get((hash_algorithm or _SHA256).name)
    if new is not None:
        block = new(shared_secret + b"\0\0\0\1" + shared_info).digest()
        if length <= len(block):  # one block: CMS key-encryption keys, all TR-03109 KEKs
            return block[:length]
        blocks = [block]
        produced = len(block)
        counter = 2
        while produced < length:
            block = new(shared_secret + counter.to_bytes(4, "big") + shared_info).digest()
            blocks.append(block)
            produced += len(block)
            counter += 1
        return b"".join(blocks)[:length]
    return X963KDF(
        algorithm=hash_algorithm or hashes.SHA256(), length=length, sharedinfo=shared_info
    ).derive(shared_secret)


# --------------------------------------------------------------------------- AES


def _check_aes_key(key: bytes) -> None:
    if len(key) not in (16, 32):
        raise UsageError(f"AES key must be 128 or 256 bit, got {len(key) * 8}")


def aes_gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"",
                    tag_length: int = 16) -> tuple[bytes, bytes]:
    """AES-GCM; returns ``(ciphertext, tag)``."""
    _check_aes_key(key)
    if tag_length == 16:
        out = AESGCM(key).encrypt(nonce, plaintext, aad or None)
        return out[:-16], out[-16:]
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    if aad:
        encryptor.authenticate_additional_data(aad)
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return ciphertext, encryptor.tag[:tag_length]


def aes_gcm_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, tag: bytes,
                    aad: bytes = b"") -> bytes:
    """AES-GCM decryption; ``CmsRejected(TAMPERED)`` if the tag does not match."""
    if len(key) not in (16, 32):  # _check_aes_key, inline: CMS opens call this per message
        _check_aes_key(key)
    try:
        if len(tag) == 16:
            return AESGCM(key).decrypt(nonce, ciphertext + tag, aad or None)
        decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce, tag, min_tag_length=len(tag))
                           ).decryptor()
        if aad:
            decryptor.authenticate_additional_data(aad)
        return decryptor.update(ciphertext) + decryptor.finalize()
    except (InvalidTag, ValueError) as exc:
        raise CmsRejected(Reason.TAMPERED, "AES-GCM authentication tag does not match") from exc


def _pkcs7_pad(data: bytes) -> bytes:
    n = 16 - len(data) % 16
    return data + bytes([n]) * n


def _pkcs7_unpad(data: bytes) -> bytes:
    if not data or len(data) % 16:
        raise CmsRejected(Reason.MALFORMED, "CBC ciphertext is not a whole number of blocks")
    n = data[-1]
    if not 1 <= n <= 16 or data[-n:] != bytes([n]) * n:
        raise CmsRejected(Reason.TAMPERED, "bad CBC padding")
    return data[:-n]


def aes_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """AES-CBC with PKCS#7 padding (as CMS uses it)."""
    _check_aes_key(key)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(_pkcs7_pad(plaintext)) + encryptor.finalize()


def aes_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    _check_aes_key(key)
    if len(iv) != 16:
        raise CmsRejected(Reason.MALFORMED, "CBC IV must be 16 bytes")
    if not ciphertext or len(ciphertext) % 16:
        raise CmsRejected(Reason.MALFORMED, "CBC ciphertext is not a whole number of blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return _pkcs7_unpad(decryptor.update(ciphertext) + decryptor.finalize())


def aes_cmac(key: bytes, data: bytes) -> bytes:
    _check_aes_key(key)
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def aes_cmac_verify(key: bytes, data: bytes, tag: bytes) -> None:
    _check_aes_key(key)
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(data)
    try:
        if len(tag) == 16:
            mac.verify(tag)
            return
        full = mac.finalize()
    except InvalidSignature as exc:
        raise CmsRejected(Reason.TAMPERED, "AES-CMAC does not match") from exc
    # truncated MAC (e.g. 8 bytes, as OMS uses): compare the prefix in constant time
    import hmac

    if not tag or not hmac.compare_digest(full[: len(tag)], tag):
        raise CmsRejected(Reason.TAMPERED, "AES-CMAC does not match")


def aes_cbc_cmac_encrypt(enc_key: bytes, mac_key: bytes, iv: bytes, plaintext: bytes,
                         aad: bytes = b"") -> tuple[bytes, bytes]:
    """Encrypt-then-MAC: AES-CBC, then AES-CMAC over ``aad || iv || ciphertext``."""
    ciphertext = aes_cbc_encrypt(enc_key, iv, plaintext)
    return ciphertext, aes_cmac(mac_key, aad + iv + ciphertext)


def aes_cbc_cmac_decrypt(enc_key: bytes, mac_key: bytes, iv: bytes, ciphertext: bytes,
                         tag: bytes, aad: bytes = b"") -> bytes:
    aes_cmac_verify(mac_key, aad + iv + ciphertext, tag)
    return aes_cbc_decrypt(enc_key, iv, ciphertext)


def aes_key_wrap(kek: bytes, key: bytes) -> bytes:
    _check_aes_key(kek)
    return keywrap.aes_key_wrap(kek, key)


def aes_key_unwrap(kek: bytes, wrapped: bytes) -> bytes:
    _check_aes_key(kek)
    try:
        return keywrap.aes_key_unwrap(kek, wrapped)
    except (keywrap.InvalidUnwrap, ValueError) as exc:
        raise CmsRejected(
            Reason.WRONG_RECIPIENT, "key unwrap failed (wrong key or tampered wrap)"
        ) from exc


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


# --------------------------------------------------------------------------- key handles


@runtime_checkable
class KeyHandle(Protocol):
    """A private key that signs and agrees keys without ever showing its private part.

    The security module's keys and :class:`SoftwareKey` both satisfy this protocol; CMS, PKI and
    TLS code only ever see a ``KeyHandle``.
    """

    @property
    def curve_name(self) -> str: ...

    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def sign(self, data: bytes) -> bytes:
        """DER ECDSA signature over ``data`` with the hash matched to the curve."""
        ...

    def exchange(self, peer: ec.EllipticCurvePublicKey) -> bytes:
        """ECDH shared secret Z with ``peer``."""
        ...


class SoftwareKey:
    """A :class:`KeyHandle` over an in-process private key.

    Used by CAs, by the PEM-file CLI tools and in tests. Roles that model the SMGW use the
    security module instead.
    """

    __slots__ = ("_key",)

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        curve_profile(private_key)
        self._key = private_key

    @classmethod
    def generate(cls, curve: str = DEFAULT_CURVE) -> SoftwareKey:
        return cls(generate_private_key(curve))

    @classmethod
    def from_pem(cls, data: bytes, password: bytes | None = None) -> SoftwareKey:
        try:
            key = serialization.load_pem_private_key(data, password)
        except (ValueError, TypeError) as exc:
            raise KeyRejected(Reason.MALFORMED, f"cannot read private key: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyRejected(Reason.WRONG_CURVE, f"not an EC key: {type(key).__name__}")
        return cls(key)

    @property
    def curve_name(self) -> str:
        return self._key.curve.name

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        return ecdsa_sign(self._key, data)

    def sign_prehashed(self, digest: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

        return self._key.sign(digest, ec.ECDSA(Prehashed(hash_algorithm)))

    def exchange(self, peer: ec.EllipticCurvePublicKey) -> bytes:
        return ecdh(self._key, peer)

    def private_key_pem(self, password: bytes | None = None) -> bytes:
        """PEM of the private key – only for keys that are *meant* to live in files (CA, CLI)."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password
            else serialization.NoEncryption()
        )
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def __repr__(self) -> str:
        return f"SoftwareKey({self.curve_name})"


def public_key_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    """Uncompressed SEC1 point (``04 || x || y``)."""
    return key.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint)


#: One curve object per permitted curve, shared by the keys decoded from points (curve objects
#: hold no state).
_CURVE_OBJECTS: dict[str, ec.EllipticCurve] = {name: c.curve() for name, c in CURVES.items()}


def public_key_from_point(curve: str, point: bytes) -> ec.EllipticCurvePublicKey:
    """The public key of an encoded point (SEC1, uncompressed or compressed) on a permitted
    curve; ``KeyRejected(MALFORMED)`` if the point is not on it."""
    curve_object = _CURVE_OBJECTS.get(curve) if type(curve) is str else None
    if curve_object is None:
        curve_object = curve_profile(curve).curve()
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve_object, point)
    except ValueError as exc:
        raise KeyRejected(Reason.MALFORMED, f"invalid point on {curve}") from exc
