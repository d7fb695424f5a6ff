"""``ModuleKey``: the :class:`~imsys.crypto.primitives.KeyHandle` of a key pair in the module."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from imsys.core.errors import UsageError
from imsys.crypto.primitives import hash_for

if TYPE_CHECKING:
    from imsys.secmod.base import SecurityModule


class ModuleKey:
    """A key pair inside a security module, seen from outside.

    It knows the module, the label and the object's identity, and the public key – never the
    private key. ``sign`` and ``exchange`` ask the module, which applies its access rules
    (system PIN) on every call. A handle to a deleted (or deleted and regenerated) key is
    refused with ``UNKNOWN_OBJECT``.
    """

    __slots__ = ("_curve", "_label", "_module", "_public", "_uid")

    def __init__(self, module: SecurityModule, label: str, uid: str,
                 public: ec.EllipticCurvePublicKey) -> None:
        self._module = module
        self._label = label
        self._uid = uid
        self._public = public
        self._curve = public.curve.name

    @property
    def label(self) -> str:
        return self._label

    @property
    def curve_name(self) -> str:
        return self._curve

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(self, data: bytes) -> bytes:
        """DER ECDSA signature over ``data``; the hash (matched to the curve) runs here."""
        algorithm = hash_for(self._curve)
        digest = hashes.Hash(algorithm)
        digest.update(data)
        return self._module._sign_digest_with(self._label, self._uid, digest.finalize())

    def sign_prehashed(self, digest: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        """DER ECDSA signature over a digest computed by the caller (as ``SoftwareKey``)."""
        if len(digest) != hash_algorithm.digest_size:
            raise UsageError(f"digest has {len(digest)} bytes, {hash_algorithm.name} "
                             f"has {hash_algorithm.digest_size}")
        return self._module._sign_digest_with(self._label, self._uid, digest)

    def exchange(self, peer: ec.EllipticCurvePublicKey) -> bytes:
        """ECDH shared secret Z with ``peer`` (``KeyRejected(WRONG_CURVE)`` for a bad peer)."""
        return self._module._exchange_with(self._label, self._uid, peer)

    def __repr__(self) -> str:
        return f"ModuleKey({self._label!r}, {self._curve})"
