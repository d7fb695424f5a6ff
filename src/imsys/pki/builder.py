"""Certificates, requests and CRLs signed through a :class:`~imsys.crypto.KeyHandle`.

``cryptography``'s builders need the private key object in process; imsys signs with keys that
live in a security module (the gateway's certificate requests, a CA key on a token). So the
to-be-signed structures are built with asn1crypto, signed by the key handle, and handed back as
``cryptography`` objects for everything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from asn1crypto import algos as a_algos
from asn1crypto import crl as a_crl
from asn1crypto import csr as a_csr
from asn1crypto import keys as a_keys
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imsys.core.errors import CertificateRejected, KeyRejected, Reason
from imsys.crypto.primitives import KeyHandle, check_public_key, curve_profile, ecdsa_verify
from imsys.pki.profiles import CertificateProfile

_SIG_ALG_BY_HASH = {"sha256": "sha256_ecdsa", "sha384": "sha384_ecdsa", "sha512": "sha512_ecdsa"}
REVOCATION_REASONS = (
    "unspecified", "key_compromise", "ca_compromise", "affiliation_changed", "superseded",
    "cessation_of_operation", "certificate_hold", "remove_from_crl", "privilege_withdrawn",
    "aa_compromise",
)


@dataclass(frozen=True)
class SubjectName:
    """Subject naming of the imsys profile: ``C=DE, O=<organisation>, OU=<role>, CN=<id>``.

    ``identifier`` is the participant's id: the gateway id (``EABC0012345678``), a market
    partner number, the administrator's or manufacturer's name.
    """

    identifier: str
    organization: str = "imsys"
    organizational_unit: str = ""
    country: str = "DE"

    def to_asn1(self) -> a_x509.Name:
        attrs: dict[str, str] = {"country_name": self.country}
        if self.organization:
            attrs["organization_name"] = self.organization
        if self.organizational_unit:
            attrs["organizational_unit_name"] = self.organizational_unit
        attrs["common_name"] = self.identifier
        return a_x509.Name.build(attrs, use_printable=True)


def _spki(public_key: ec.EllipticCurvePublicKey) -> a_keys.PublicKeyInfo:
    return a_keys.PublicKeyInfo.load(public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def key_identifier(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """RFC 5280 §4.2.1.2 method 1: SHA-1 over the subjectPublicKey bit string."""
    return hashlib.sha1(_spki(public_key)["public_key"].contents[1:]).digest()


def _signature_algorithm(
    key: KeyHandle | ec.EllipticCurvePublicKey,
) -> a_algos.SignedDigestAlgorithm:
    curve = key.curve_name if not isinstance(key, ec.EllipticCurvePublicKey) else key.curve.name
    return a_algos.SignedDigestAlgorithm(
        {"algorithm": _SIG_ALG_BY_HASH[curve_profile(curve).hash.name]})


def _time(when: datetime) -> a_x509.Time:
    return a_x509.Time({"utc_time": when} if when.year < 2050 else {"general_time": when})


def _ext(extn_id: str, value: object, critical: bool = False) -> dict[str, object]:
    return {"extn_id": extn_id, "critical": critical, "extn_value": value}


@dataclass(frozen=True)
class CertificateTemplate:
    """Everything that goes into one certificate besides the keys."""

    subject: SubjectName
    profile: CertificateProfile
    serial_number: int
    not_before: datetime
    not_after: datetime
    crl_urls: Sequence[str] = ()
    dns_names: Sequence[str] = ()
    ip_addresses: Sequence[str] = ()
    extra_policies: Sequence[str] = field(default_factory=tuple)


def build_certificate(template: CertificateTemplate, subject_key: ec.EllipticCurvePublicKey,
                      issuer_key: KeyHandle, issuer: x509.Certificate | None) -> x509.Certificate:
    """Sign a certificate for ``subject_key``; ``issuer=None`` makes it self-signed (root)."""
    check_public_key(subject_key)
    p = template.profile
    subject_name = template.subject.to_asn1()
    if issuer is None:
        issuer_name = subject_name
        authority_key_id = key_identifier(subject_key)
    else:
        issuer_name = a_x509.Name.load(issuer.subject.public_bytes())
        authority_key_id = key_identifier(issuer.public_key())  # type: ignore[arg-type]
    extensions = [
        _ext("basic_constraints",
             {"ca": p.is_ca, "path_len_constraint": p.path_length} if p.is_ca else {"ca": False},
             critical=True),
        _ext("key_usage", a_x509.KeyUsage(set(p.key_usage)), critical=True),
        _ext("key_identifier", key_identifier(subject_key)),
        _ext("authority_key_identifier", {"key_identifier": authority_key_id}),
        _ext("certificate_policies",
             [{"policy_identifier": oid} for oid in (p.policy_oid, *template.extra_policies)]),
    ]
    if p.extended_key_usage:
        extensions.append(_ext("extended_key_usage", list(p.extended_key_usage)))
    if template.crl_urls:
        extensions.append(_ext("crl_distribution_points", [
            {"distribution_point": a_x509.DistributionPointName(
                name="full_name",
                value=[a_x509.GeneralName(name="uniform_resource_identifier", value=url)
                       for url in template.crl_urls])}
        ]))
    alt_names = [a_x509.GeneralName(name="dns_name", value=n) for n in template.dns_names] + [
        a_x509.GeneralName(name="ip_address", value=ip) for ip in template.ip_addresses]
    if alt_names:
        extensions.append(_ext("subject_alt_name", alt_names))
    algorithm = _signature_algorithm(issuer_key)
    tbs = a_x509.TbsCertificate({
        "version": "v3",
        "serial_number": template.serial_number,
        "signature": algorithm,
        "issuer": issuer_name,
        "validity": {"not_before": _time(template.not_before),
                     "not_after": _time(template.not_after)},
        "subject": subject_name,
        "subject_public_key_info": _spki(subject_key),
        "extensions": extensions,
    })
    signature = issuer_key.sign(tbs.dump())
    certificate = a_x509.Certificate({
        "tbs_certificate": tbs, "signature_algorithm": algorithm, "signature_value": signature,
    })
    return x509.load_der_x509_certificate(certificate.dump())


# --------------------------------------------------------------------------- requests


def build_csr(key: KeyHandle, subject: SubjectName) -> x509.CertificateSigningRequest:
    """A PKCS#10 request signed by ``key`` (which may live in a security module)."""
    algorithm = _signature_algorithm(key)
    info = a_csr.CertificationRequestInfo({
        "version": "v1",
        "subject": subject.to_asn1(),
        "subject_pk_info": _spki(key.public_key()),
        "attributes": [],
    })
    request = a_csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": algorithm,
        "signature": key.sign(info.dump()),
    })
    return x509.load_der_x509_csr(request.dump())


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER request; ``CertificateRejected(MALFORMED)`` on garbage."""
    try:
        if data.lstrip().startswith(b"-----"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise CertificateRejected(Reason.MALFORMED, f"cannot parse request: {exc}") from exc


def verify_csr(csr: x509.CertificateSigningRequest) -> ec.EllipticCurvePublicKey:
    """Check the proof of possession; return the requested public key."""
    try:
        public_key = csr.public_key()
    except ValueError as exc:
        raise CertificateRejected(Reason.MALFORMED, f"unreadable request key: {exc}") from exc
    try:
        check_public_key(public_key)
    except KeyRejected as exc:
        raise CertificateRejected(exc.reason, exc.message) from exc
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    try:
        ecdsa_verify(public_key, csr.signature, csr.tbs_certrequest_bytes,
                     csr.signature_hash_algorithm)
    except KeyRejected as exc:
        raise CertificateRejected(
            Reason.BAD_SIGNATURE, "request signature (proof of possession) does not verify"
        ) from exc
    return public_key


# --------------------------------------------------------------------------- CRLs


@dataclass(frozen=True)
class RevokedEntry:
    serial_number: int
    revocation_date: datetime
    reason: str = "unspecified"

    def __post_init__(self) -> None:
        if self.reason not in REVOCATION_REASONS:
            raise CertificateRejected(
                Reason.MALFORMED,
                f"unknown revocation reason {self.reason!r}; "
                f"one of {', '.join(REVOCATION_REASONS)}",
            )


def build_crl(issuer_key: KeyHandle, issuer: x509.Certificate, revoked: Iterable[RevokedEntry],
              number: int, this_update: datetime, next_update: datetime
              ) -> x509.CertificateRevocationList:
    """A v2 CRL with CRL number and authority key identifier, signed by ``issuer_key``."""
    algorithm = _signature_algorithm(issuer_key)
    entries = []
    for entry in sorted(revoked, key=lambda e: e.serial_number):
        item: dict[str, object] = {
            "user_certificate": entry.serial_number,
            "revocation_date": _time(entry.revocation_date),
        }
        if entry.reason != "unspecified":
            item["crl_entry_extensions"] = [_ext("crl_reason", entry.reason)]
        entries.append(item)
    tbs = a_crl.TbsCertList({
        "version": "v2",
        "signature": algorithm,
        "issuer": a_x509.Name.load(issuer.subject.public_bytes()),
        "this_update": _time(this_update),
        "next_update": _time(next_update),
        "revoked_certificates": entries or None,
        "crl_extensions": [
            _ext("crl_number", number),
            _ext("authority_key_identifier",
                 {"key_identifier": key_identifier(issuer.public_key())}),  # type: ignore[arg-type]
        ],
    })
    if not entries:
        del tbs["revoked_certificates"]
    crl = a_crl.CertificateList({
        "tbs_cert_list": tbs,
        "signature_algorithm": algorithm,
        "signature": issuer_key.sign(tbs.dump()),
    })
    return x509.load_der_x509_crl(crl.dump())
