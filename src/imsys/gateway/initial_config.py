"""The initial configuration file of the SMGW-Admin (seed 003 §2.3.1.3, "Initiale
Konfigurationsdatei"), profile ``imsys-initial-config/1``, and its check by the gateway.

The seed asks for at least the administrator's communication parameters (SMGW-Admin-Adresse)
and the certificates GWADM_TLS/SIG/ENC/AUT_CRT "mit zugehöriger Zertifikatskette (aus der
SM-PKI) exklusive SM-PKI-Root-Zertifikat", signed with GWADM_SIG_PRV. The TR gives no byte
format; imsys defines this one (docs/commissioning.md):

* content: UTF-8 JSON (keys sorted, no insignificant white space)::

    {"profile": "imsys-initial-config/1",
     "gateway_id": "EABC0012345678",
     "administrator": {"id": "GWA-1", "address": {"host": "gwa.example", "port": 4443}},
     "certificates": {"GWADM_TLS_CRT": {"certificate": "<base64 DER>",
                                        "chain": ["<base64 DER Sub-CA>"]}, ...}}

  exactly the four certificate names; each chain excludes the root;
* container: CMS ``ContentInfo(SignedData)`` (id-data, content attached, signed attributes
  with signingTime) by GWADM_SIG_PRV, with GWADM_SIG_CRT as the signer certificate.

:func:`verify_initial_configuration` is the gateway's check (§2.3.1.3): size bound, CMS
structure, JSON profile, gateway id; every GWADM certificate against the root from the
security module (with its chain and profile ``gwa-*``); then the signature with *the validated*
GWADM_SIG_CRT. Only a configuration that passed all of it is returned – the caller stores
nothing before.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from imsys.core.errors import CertificateRejected, CmsRejected, KeyRejected, Reason
from imsys.crypto import cms
from imsys.gateway._commissioning_base import (
    CommissioningReason,
    CommissioningRejected,
    PkiTrust,
)
from imsys.pki import load_certificate

#: Profile name and version of the document.
PROFILE = "imsys-initial-config/1"
#: Largest document the gateway reads (CMS, bytes).
MAX_SIZE = 256 * 1024
#: The certificates the file carries, in the seed's order, with their imsys PKI profile.
CERTIFICATE_PROFILES: dict[str, str] = {
    "GWADM_TLS_CRT": "gwa-tls",
    "GWADM_SIG_CRT": "gwa-sig",
    "GWADM_ENC_CRT": "gwa-enc",
    "GWADM_AUT_CRT": "gwa-aut",
}
#: Most certificates in one chain (the SM-PKI has one Sub-CA level).
MAX_CHAIN = 4

_UNREADABLE = frozenset({Reason.MALFORMED, Reason.TRUNCATED, Reason.WRONG_CONTENT_TYPE})
_HOST = re.compile(r"^[A-Za-z0-9.:\-\[\]]{1,253}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")


def public_key_label(certificate_name: str) -> str:
    """The security-module label of the public key in ``GWADM_X_CRT``: ``GWADM_X_PUB``."""
    return certificate_name.removesuffix("_CRT") + "_PUB"


def _malformed(message: str, **context: Any) -> CommissioningRejected:
    return CommissioningRejected(CommissioningReason.MALFORMED, message, **context)


@dataclass(frozen=True, slots=True)
class GwaAddress:
    """The SMGW-Admin's address ("Kommunikationsparameter des SMGW-Admins"): host and port
    the gateway connects to over TLS (§2.3.3)."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not _HOST.match(self.host):
            raise _malformed("GWA host must be 1-253 characters of a host name or IP address")
        if isinstance(self.port, bool) or not isinstance(self.port, int) \
                or not 1 <= self.port <= 65535:
            raise _malformed("GWA port must be an integer 1..65535")

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port}

    @classmethod
    def from_json(cls, data: object) -> GwaAddress:
        if not isinstance(data, dict) or set(data) != {"host", "port"}:
            raise _malformed("address must be an object with exactly host and port")
        return cls(data["host"], data["port"])


@dataclass(frozen=True, slots=True)
class CertifiedKey:
    """One administrator certificate with its chain up to, not including, the root."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.certificate, x509.Certificate) or not all(
                isinstance(c, x509.Certificate) for c in self.chain):
            raise _malformed("certificates must be x509.Certificate objects")
        if len(self.chain) > MAX_CHAIN:
            raise _malformed(f"a chain has at most {MAX_CHAIN} certificates")
        if any(c.subject == c.issuer for c in self.chain):
            raise _malformed("a chain excludes the root certificate (§2.3.1.3)")

    def to_json(self) -> dict[str, Any]:
        return {"certificate": _b64(self.certificate),
                "chain": [_b64(c) for c in self.chain]}

    @classmethod
    def from_json(cls, data: object, name: str) -> CertifiedKey:
        if not isinstance(data, dict) or set(data) != {"certificate", "chain"} \
                or not isinstance(data["chain"], list):
            raise _malformed(f"{name} must be an object with certificate and chain (a list)",
                             certificate=name)
        if len(data["chain"]) > MAX_CHAIN:
            raise _malformed(f"{name}: a chain has at most {MAX_CHAIN} certificates",
                             certificate=name)
        return cls(_certificate(data["certificate"], name),
                   tuple(_certificate(c, name) for c in data["chain"]))


def _b64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


def _certificate(value: object, name: str) -> x509.Certificate:
    if not isinstance(value, str):
        raise _malformed(f"{name}: certificates are base64 DER strings", certificate=name)
    try:
        der = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _malformed(f"{name}: bad base64", certificate=name) from exc
    if der.lstrip().startswith(b"-----"):
        raise _malformed(f"{name}: DER expected, not PEM", certificate=name)
    try:
        return load_certificate(der)
    except CertificateRejected as exc:
        raise _malformed(f"{name}: {exc.message}", certificate=name) from exc


@dataclass(frozen=True, slots=True)
class InitialConfiguration:
    """The content of the initial configuration file (profile ``imsys-initial-config/1``)."""

    gateway_id: str
    administrator_id: str
    address: GwaAddress
    tls: CertifiedKey
    sig: CertifiedKey
    enc: CertifiedKey
    aut: CertifiedKey

    def __post_init__(self) -> None:
        for field, value in (("gateway_id", self.gateway_id),
                             ("administrator_id", self.administrator_id)):
            if not isinstance(value, str) or not _ID.match(value):
                raise _malformed(f"{field} must match {_ID.pattern}")
        if not isinstance(self.address, GwaAddress):
            raise _malformed("address must be a GwaAddress")

    def certificates(self) -> Iterator[tuple[str, CertifiedKey]]:
        """``(GWADM_TLS_CRT, …)``, …, in the seed's order."""
        yield from zip(CERTIFICATE_PROFILES, (self.tls, self.sig, self.enc, self.aut),
                       strict=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": PROFILE,
            "gateway_id": self.gateway_id,
            "administrator": {"id": self.administrator_id, "address": self.address.to_json()},
            "certificates": {name: item.to_json() for name, item in self.certificates()},
        }

    def encode(self) -> bytes:
        """The canonical JSON bytes (the content that is signed)."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, content: bytes) -> InitialConfiguration:
        """Parse the JSON content; :class:`CommissioningRejected` (``MALFORMED``) otherwise."""
        try:
            data = json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _malformed("the content is not UTF-8 JSON") from exc
        if not isinstance(data, dict):
            raise _malformed("the content is not a JSON object")
        if data.get("profile") != PROFILE:
            raise _malformed(f"unknown profile {data.get('profile')!r}, expected {PROFILE}")
        if set(data) != {"profile", "gateway_id", "administrator", "certificates"}:
            raise _malformed("fields must be exactly profile, gateway_id, administrator, "
                             "certificates")
        admin = data["administrator"]
        if not isinstance(admin, dict) or set(admin) != {"id", "address"}:
            raise _malformed("administrator must be an object with exactly id and address")
        certificates = data["certificates"]
        if not isinstance(certificates, dict) or set(certificates) != set(CERTIFICATE_PROFILES):
            raise _malformed("certificates must be exactly " + ", ".join(CERTIFICATE_PROFILES))
        items = [CertifiedKey.from_json(certificates[name], name)
                 for name in CERTIFICATE_PROFILES]
        return cls(data["gateway_id"], admin["id"], GwaAddress.from_json(admin["address"]),
                   *items)


@dataclass(frozen=True, slots=True)
class VerifiedInitialConfiguration:
    """An initial configuration that passed :func:`verify_initial_configuration`."""

    configuration: InitialConfiguration
    signing_time: datetime | None


def verify_initial_configuration(document: bytes, *, anchor: x509.Certificate,
                                 trust: PkiTrust, gateway_id: str,
                                 max_size: int = MAX_SIZE) -> VerifiedInitialConfiguration:
    """The gateway's check of a signed initial configuration file (seed 003 §2.3.1.3).

    Order: size; CMS structure (and a first signature check against the embedded signer, only
    to read the content); profile and ``gateway_id``; each GWADM certificate against
    ``anchor`` (ROOT_WAN_SIG_CRT from the security module) with its chain and its ``gwa-*``
    profile; the signature again with the validated GWADM_SIG_CRT as the required signer.

    Rejected (:class:`CommissioningRejected`): ``MALFORMED``, ``WRONG_GATEWAY``,
    ``CERTIFICATE_INVALID`` (context ``certificate``, ``pki_reason``), ``SIGNATURE_INVALID``
    (context ``cms_reason``).
    """
    if not isinstance(document, bytes | bytearray | memoryview):
        raise _malformed("the initial configuration file must be bytes")
    document = bytes(document)
    if len(document) > max_size:
        raise _malformed(f"the initial configuration file exceeds {max_size} bytes",
                         size=len(document))
    try:
        envelope = cms.verify(document, max_size=max_size)
    except (CmsRejected, KeyRejected) as exc:
        reason = (CommissioningReason.MALFORMED if exc.reason in _UNREADABLE
                  else CommissioningReason.SIGNATURE_INVALID)
        raise CommissioningRejected(reason, f"not a valid signed document: {exc}",
                                    cms_reason=exc.reason.value) from exc
    if envelope.content_type != cms.DATA:
        raise _malformed("the signed content must be id-data")
    configuration = InitialConfiguration.decode(envelope.content)
    if configuration.gateway_id != gateway_id:
        raise CommissioningRejected(CommissioningReason.WRONG_GATEWAY,
                                    "the initial configuration is for another gateway",
                                    gateway=gateway_id, document_gateway=configuration.gateway_id)
    for name, item in configuration.certificates():
        try:
            trust.validate(item.certificate, anchor=anchor, profile=CERTIFICATE_PROFILES[name],
                           chain=item.chain)
        except CertificateRejected as exc:
            raise CommissioningRejected(CommissioningReason.CERTIFICATE_INVALID,
                                        f"{name}: {exc.message}", certificate=name,
                                        pki_reason=exc.reason.value) from exc
    try:
        verified = cms.verify(document, signer_certificate=configuration.sig.certificate,
                              max_size=max_size)
    except (CmsRejected, KeyRejected) as exc:
        raise CommissioningRejected(CommissioningReason.SIGNATURE_INVALID,
                                    "the file is not signed with GWADM_SIG_CRT of its "
                                    "administrator", cms_reason=exc.reason.value) from exc
    return VerifiedInitialConfiguration(configuration, verified.signing_time)


__all__ = [
    "CERTIFICATE_PROFILES",
    "MAX_SIZE",
    "PROFILE",
    "CertifiedKey",
    "GwaAddress",
    "InitialConfiguration",
    "VerifiedInitialConfiguration",
    "public_key_label",
    "verify_initial_configuration",
]
