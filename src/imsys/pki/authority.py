"""A certification authority of the SM-PKI: Root-CA or Sub-CA.

Issues certificates from requests (the subject's key pair is generated where it is used – a
gateway's inside its security module – and only the request travels), renews, revokes and
signs CRLs. Its own key is a :class:`~imsys.crypto.KeyHandle`, so it may live in a security
module too. Bookkeeping (serials, what was issued, what was revoked) belongs to the caller:
:class:`imsys.pki.directory.PkiDirectory` keeps it on disk.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from imsys.core.clock import Clock, SystemClock
from imsys.core.errors import CertificateRejected, Reason, UsageError
from imsys.crypto.primitives import KeyHandle, check_public_key
from imsys.pki.builder import (
    CertificateTemplate,
    RevokedEntry,
    SubjectName,
    build_certificate,
    build_crl,
    verify_csr,
)
from imsys.pki.profiles import CertificateProfile, Role, profile


def new_serial() -> int:
    """An unpredictable positive 63-bit serial number (RFC 5280 §4.1.2.2)."""
    return secrets.randbits(63) | (1 << 62)


@dataclass(frozen=True)
class IssuanceRequest:
    """What the requester asks for; the CA fills in serial, validity and extensions."""

    profile: CertificateProfile
    identifier: str
    organization: str = "imsys"
    validity: timedelta | None = None
    dns_names: Sequence[str] = ()
    ip_addresses: Sequence[str] = ()


class CertificateAuthority:
    """One CA: its key handle, its certificate, where its CRL is published."""

    def __init__(self, name: str, key: KeyHandle, certificate: x509.Certificate, *,
                 crl_url: str | None = None, clock: Clock | None = None) -> None:
        if key.public_key().public_numbers() != certificate.public_key().public_numbers():  # type: ignore[union-attr]
            raise UsageError(f"CA {name}: key does not belong to its certificate")
        self.name = name
        self.key = key
        self.certificate = certificate
        self.crl_url = crl_url
        self._clock = clock or SystemClock()

    @classmethod
    def create_root(cls, name: str, key: KeyHandle, identifier: str, *,
                    organization: str = "imsys", crl_url: str | None = None,
                    clock: Clock | None = None, validity: timedelta | None = None
                    ) -> CertificateAuthority:
        """A self-signed Root-CA (``ROOT_WAN_SIG_CRT`` of seed 003)."""
        clock = clock or SystemClock()
        root_profile = profile("root")
        now = _second(clock.now())
        template = CertificateTemplate(
            SubjectName(identifier, organization, root_profile.organizational_unit),
            root_profile, new_serial(), now - timedelta(minutes=5),
            now + (validity or root_profile.validity))
        cert = build_certificate(template, key.public_key(), key, None)
        return cls(name, key, cert, crl_url=crl_url, clock=clock)

    def create_sub_ca(self, name: str, key: KeyHandle, identifier: str, *,
                      organization: str = "imsys", crl_url: str | None = None,
                      validity: timedelta | None = None) -> CertificateAuthority:
        """A Sub-CA certified by this (root) CA."""
        if self.profile_role is not Role.ROOT:
            raise UsageError("only the Root-CA certifies Sub-CAs in the SM-PKI")
        cert = self.issue_for_key(key.public_key(), IssuanceRequest(
            profile("sub-ca"), identifier, organization, validity))
        return CertificateAuthority(name, key, cert, crl_url=crl_url, clock=self._clock)

    @property
    def profile_role(self) -> Role:
        from imsys.pki.validation import certificate_profile

        found = certificate_profile(self.certificate)
        return found.role if found else Role.SUB_CA

    # ------------------------------------------------------------------ issuance

    def issue(self, csr: x509.CertificateSigningRequest, request: IssuanceRequest
              ) -> x509.Certificate:
        """Issue from a PKCS#10 request after checking its proof of possession."""
        return self.issue_for_key(verify_csr(csr), request)

    def issue_for_key(self, public_key: ec.EllipticCurvePublicKey, request: IssuanceRequest,
                      serial_number: int | None = None) -> x509.Certificate:
        check_public_key(public_key)
        p = request.profile
        if p.role is Role.ROOT:
            raise CertificateRejected(Reason.WRONG_ROLE, "a Root-CA certificate is self-signed")
        now = _second(self._clock.now())
        not_after = now + (request.validity or p.validity)
        # never beyond the issuer's own validity (RFC 5280 chaining; TR-03109-4 "Schalenmodell")
        not_after = min(not_after, self.certificate.not_valid_after_utc)
        if not_after <= now:
            raise CertificateRejected(Reason.EXPIRED, f"CA {self.name} has expired")
        template = CertificateTemplate(
            SubjectName(request.identifier, request.organization, p.organizational_unit),
            p, serial_number or new_serial(), now - timedelta(minutes=5), not_after,
            crl_urls=(self.crl_url,) if self.crl_url else (),
            dns_names=request.dns_names, ip_addresses=request.ip_addresses)
        return build_certificate(template, public_key, self.key, self.certificate)

    # ------------------------------------------------------------------ revocation

    def crl(self, revoked: Iterable[RevokedEntry], number: int,
            lifetime: timedelta = timedelta(days=7)) -> x509.CertificateRevocationList:
        now = _second(self._clock.now())
        return build_crl(self.key, self.certificate, revoked, number, now, now + lifetime)


def _second(when: datetime) -> datetime:
    return when.replace(microsecond=0)
