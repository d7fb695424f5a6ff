"""The communication profile ("Kommunikationsprofil", seed 003 §5.1 Profilverwaltung): to which
external market participant (EMT) the gateway sends, where, and with which certificates.

A :class:`CommunicationProfile` is validated on construction; its document (format
:data:`PROFILE_FORMAT`) is what ``profile.communication.install`` carries and what the
configuration store keeps::

    {"format": "imsys-communication-profile/1", "profile_id": "CP-1", "emt_id": "EMT-1",
     "url": "https://emt.example:8443/deliveries/v1",
     "enc_certificate": "<b64 DER>", "sig_certificate": "<b64 DER>", "chain": ["<b64 DER>"]}

The certificates are the EMT's ``emt-enc`` (deliveries are sealed for it) and ``emt-sig``
(receipts are signed with it); their CN must be ``emt_id``. Path validation against the
gateway's root is the handler's job (it holds the anchor), not this document's.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from imsys.core.errors import CertificateRejected, Rejected
from imsys.pki.directory import parsed
from imsys.pki.validation import common_name

__all__ = ["PROFILE_FORMAT", "CommunicationProfile", "CommunicationProfileReason",
           "CommunicationProfileRejected"]

PROFILE_FORMAT = "imsys-communication-profile/1"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$")
_KEYS = frozenset({"format", "profile_id", "emt_id", "url", "enc_certificate",
                   "sig_certificate", "chain"})


class CommunicationProfileReason(StrEnum):
    MALFORMED = "malformed"
    UNSUPPORTED_FORMAT = "unsupported-format"
    BAD_URL = "bad-url"
    BAD_CERTIFICATE = "bad-certificate"


class CommunicationProfileRejected(Rejected):
    """A communication profile was refused; ``reason`` is a
    :class:`CommunicationProfileReason`."""

    reason: CommunicationProfileReason  # type: ignore[assignment]

    def __init__(self, reason: CommunicationProfileReason, message: str = "",
                 **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


def _certificate(value: object, name: str) -> x509.Certificate:
    try:
        if not isinstance(value, str):
            raise ValueError("not text")
        return parsed(x509.load_der_x509_certificate(base64.b64decode(value, validate=True)))
    except (ValueError, binascii.Error, x509.InvalidVersion, CertificateRejected):
        raise CommunicationProfileRejected(CommunicationProfileReason.BAD_CERTIFICATE,
                                           f"{name} is not a base64 DER certificate") from None


def _der(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


@dataclass(frozen=True)
class CommunicationProfile:
    profile_id: str
    emt_id: str
    url: str
    enc_certificate: x509.Certificate
    sig_certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        bad = CommunicationProfileReason.MALFORMED
        for name in ("profile_id", "emt_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _ID.match(value):
                raise CommunicationProfileRejected(bad, f"{name} must match {_ID.pattern}")
        url = urlsplit(self.url) if isinstance(self.url, str) else None
        try:
            port = None if url is None else url.port
        except ValueError:
            port = None
        if url is None or url.scheme != "https" or not url.hostname or port is None \
                or url.query or url.fragment:
            raise CommunicationProfileRejected(CommunicationProfileReason.BAD_URL,
                                               "url is https://host:port[/path]",
                                               profile_id=self.profile_id)
        for name in ("enc_certificate", "sig_certificate"):
            cert = getattr(self, name)
            if not isinstance(cert, x509.Certificate) or common_name(cert) != self.emt_id:
                raise CommunicationProfileRejected(
                    CommunicationProfileReason.BAD_CERTIFICATE,
                    f"{name} must be a certificate of {self.emt_id}", profile_id=self.profile_id)
        if not isinstance(self.chain, tuple) or len(self.chain) > 4:
            raise CommunicationProfileRejected(bad, "chain is at most 4 certificates")

    def to_dict(self) -> dict[str, Any]:
        return {"format": PROFILE_FORMAT, "profile_id": self.profile_id, "emt_id": self.emt_id,
                "url": self.url, "enc_certificate": _der(self.enc_certificate),
                "sig_certificate": _der(self.sig_certificate),
                "chain": [_der(c) for c in self.chain]}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> CommunicationProfile:
        if not isinstance(document, Mapping):
            raise CommunicationProfileRejected(CommunicationProfileReason.MALFORMED,
                                               "a communication profile is an object")
        if document.get("format") != PROFILE_FORMAT:
            raise CommunicationProfileRejected(CommunicationProfileReason.UNSUPPORTED_FORMAT,
                                               "unknown profile format")
        if set(document) != _KEYS:
            raise CommunicationProfileRejected(
                CommunicationProfileReason.MALFORMED, "unknown or missing fields",
                unknown=sorted(set(document) - _KEYS), missing=sorted(_KEYS - set(document)))
        chain = document["chain"]
        if not isinstance(chain, list):
            raise CommunicationProfileRejected(CommunicationProfileReason.MALFORMED,
                                               "chain is a list")
        return cls(document["profile_id"], document["emt_id"], document["url"],
                   _certificate(document["enc_certificate"], "enc_certificate"),
                   _certificate(document["sig_certificate"], "sig_certificate"),
                   tuple(_certificate(c, "chain") for c in chain))
