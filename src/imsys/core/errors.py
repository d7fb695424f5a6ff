"""The error root of imsys.

Two kinds, as in h11: :class:`UsageError` means our caller misused an API (a bug on our side),
:class:`Rejected` means the input or the peer was invalid. Every ``Rejected`` carries a
:class:`Reason` and the identifiers involved (never secrets), so logs and tests can tell
rejections apart without parsing text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ImsysError(Exception):
    """Root of every error imsys raises on purpose."""


class UsageError(ImsysError):
    """The caller used an API wrongly (wrong state, wrong argument type, missing object)."""


class Reason(StrEnum):
    """Why something was rejected. One table for the trust layer; later layers extend it."""

    # encoding
    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"
    # keys and signatures
    WRONG_CURVE = "wrong-curve"
    BAD_SIGNATURE = "bad-signature"
    # certificates and paths
    WRONG_KEY_USAGE = "wrong-key-usage"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    REVOKED = "revoked"
    UNKNOWN_ISSUER = "unknown-issuer"
    NOT_A_CA = "not-a-ca"
    PATH_LENGTH_EXCEEDED = "path-length-exceeded"
    NAME_CHAINING = "name-chaining"
    CRL_UNAVAILABLE = "crl-unavailable"
    CRL_INVALID = "crl-invalid"
    WRONG_ROLE = "wrong-role"
    # CMS
    TAMPERED = "tampered"
    WRONG_RECIPIENT = "wrong-recipient"
    WRONG_CONTENT_TYPE = "wrong-content-type"
    SIGNER_MISMATCH = "signer-mismatch"
    # security module
    WRONG_PIN = "wrong-pin"
    PIN_LOCKED = "pin-locked"
    NOT_AUTHENTICATED = "not-authenticated"
    UNKNOWN_OBJECT = "unknown-object"
    OBJECT_EXISTS = "object-exists"
    ACCESS_DENIED = "access-denied"
    # TLS
    TLS_POLICY = "tls-policy"
    SESSION_EXPIRED = "session-expired"


class Rejected(ImsysError):
    """Input or a peer was refused. ``reason`` says why; ``context`` names what was involved."""

    def __init__(self, reason: Reason, message: str = "", **context: Any) -> None:
        self.reason = reason
        self.context = context
        self.message = message or reason.value
        super().__init__(f"{reason.value}: {self.message}" if message else reason.value)


class KeyRejected(Rejected):
    """A key or signature does not satisfy the TR-03116-3 profile or does not verify."""


class CertificateRejected(Rejected):
    """A certificate, CRL or certification path failed validation."""


class CmsRejected(Rejected):
    """A CMS message could not be opened or verified."""


class SecmodRejected(Rejected):
    """The security module refused an operation (PIN, authentication, access rule, object)."""


class TlsRejected(Rejected):
    """A TLS peer or session violated the TR-03116-3 policy."""
