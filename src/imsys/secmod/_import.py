"""The import-key wrapping profile ``imsys-secmod-import/1`` (seed 003 §2.3.1 note).

Keys brought into the module during pre-personalisation and integration travel wrapped for an
*import key*, an EC key pair generated in the module. The profile, built from public standards:

1. the sender makes an ephemeral key pair ``(e, E)`` on the import key's curve and computes
   ``Z = ECDH(e, ImportPub)`` (ECKA-DH, BSI TR-03111: the x coordinate);
2. ``KEK = X9.63-KDF-SHA256(Z, 32, SharedInfo)`` with
   ``SharedInfo = "imsys-secmod-import/1" || DER(keyCurve OID) || publicKey`` – this binds the
   claimed public key and curve of the wrapped key to the KEK;
3. ``wrappedKey = AES-256 key wrap with padding (RFC 5649) of the PKCS#8 DER`` (unencrypted
   ``PrivateKeyInfo``) of the private key;
4. the result is the DER of::

       ImportWrappedKey ::= SEQUENCE {
           version      INTEGER (1),
           ephemeralKey OCTET STRING,      -- E, uncompressed point on the import key's curve
           keyCurve     OBJECT IDENTIFIER, -- brainpool curve of the wrapped key
           publicKey    OCTET STRING,      -- uncompressed public point of the wrapped key
           wrappedKey   OCTET STRING }

The module reverses this; the PKCS#11 backend unwraps with ``C_UnwrapKey`` so the private key
appears in clear only inside the token.
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import core
from cryptography.hazmat.primitives import keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imsys.core.errors import KeyRejected, Reason, SecmodRejected
from imsys.crypto.primitives import (
    CURVES,
    curve_profile,
    ecdh,
    public_key_bytes,
    public_key_from_point,
    x963_kdf,
)

PROFILE = "imsys-secmod-import/1"
_VERSION = 1
_CURVE_BY_OID = {profile.oid: name for name, profile in CURVES.items()}


class _ImportWrappedKey(core.Sequence):
    _fields = [  # noqa: RUF012 - asn1crypto declares fields as a class list
        ("version", core.Integer),
        ("ephemeral_key", core.OctetString),
        ("key_curve", core.ObjectIdentifier),
        ("public_key", core.OctetString),
        ("wrapped_key", core.OctetString),
    ]


@dataclass(frozen=True)
class WrappedKey:
    """A parsed ``ImportWrappedKey``."""

    ephemeral: ec.EllipticCurvePublicKey
    key_curve: str
    public_key: ec.EllipticCurvePublicKey
    wrapped: bytes

    def kek(self, shared_secret: bytes) -> bytes:
        """The AES-256 key-encryption key from ``Z`` (step 2 of the profile)."""
        return x963_kdf(shared_secret, 32, _shared_info(self.key_curve, self.public_key))


def _shared_info(curve: str, public_key: ec.EllipticCurvePublicKey) -> bytes:
    oid = core.ObjectIdentifier(CURVES[curve].oid).dump()
    return PROFILE.encode("ascii") + oid + public_key_bytes(public_key)


def wrap_key_for_import(private_key: ec.EllipticCurvePrivateKey,
                        import_public_key: ec.EllipticCurvePublicKey) -> bytes:
    """Wrap ``private_key`` for a module's import key (sender side: integrator, tests).

    Both keys must be on permitted brainpool curves (``KeyRejected(WRONG_CURVE)`` otherwise).
    """
    key_curve = curve_profile(private_key).name
    import_curve = curve_profile(import_public_key)
    ephemeral = ec.generate_private_key(import_curve.curve())
    public_key = private_key.public_key()
    kek = x963_kdf(ecdh(ephemeral, import_public_key), 32, _shared_info(key_curve, public_key))
    pkcs8 = private_key.private_bytes(serialization.Encoding.DER,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    return _ImportWrappedKey({
        "version": _VERSION,
        "ephemeral_key": public_key_bytes(ephemeral.public_key()),
        "key_curve": CURVES[key_curve].oid,
        "public_key": public_key_bytes(public_key),
        "wrapped_key": keywrap.aes_key_wrap_with_padding(kek, pkcs8),
    }).dump()


def parse_wrapped_key(data: bytes, import_curve: str) -> WrappedKey:
    """Parse an ``ImportWrappedKey`` for an import key on ``import_curve``.

    ``SecmodRejected(MALFORMED)`` for bad encoding or points, ``(WRONG_CURVE)`` for a curve
    that is not permitted.
    """
    try:
        parsed = _ImportWrappedKey.load(bytes(data), strict=True)
        fields = parsed.native
    except (ValueError, TypeError) as exc:
        raise SecmodRejected(Reason.MALFORMED, "wrapped key is not an ImportWrappedKey") from exc
    if fields["version"] != _VERSION:
        raise SecmodRejected(Reason.MALFORMED, f"unknown import profile version "
                             f"{fields['version']}", version=fields["version"])
    oid = parsed["key_curve"].dotted
    if oid not in _CURVE_BY_OID:
        raise SecmodRejected(Reason.WRONG_CURVE, f"wrapped key on a curve not permitted: {oid}",
                             curve=oid)
    key_curve = _CURVE_BY_OID[oid]
    try:
        ephemeral = public_key_from_point(import_curve, fields["ephemeral_key"])
        public_key = public_key_from_point(key_curve, fields["public_key"])
    except KeyRejected as exc:
        raise SecmodRejected(Reason.MALFORMED, "invalid point in wrapped key") from exc
    return WrappedKey(ephemeral, key_curve, public_key, fields["wrapped_key"])
