"""The Smart-Metering PKI: CAs, certificate profiles, CRLs and path validation."""

from imsys.pki.authority import CertificateAuthority, IssuanceRequest
from imsys.pki.builder import RevokedEntry, SubjectName, build_csr, load_csr, verify_csr
from imsys.pki.directory import PkiDirectory, load_certificate, load_certificates, parsed, pem
from imsys.pki.profiles import PROFILES, CertificateProfile, Purpose, Role, profile
from imsys.pki.validation import (
    HttpCrlSource,
    PathValidator,
    StaticCrlSource,
    ValidatedPath,
    certificate_profile,
)

__all__ = [
    "PROFILES",
    "CertificateAuthority",
    "CertificateProfile",
    "HttpCrlSource",
    "IssuanceRequest",
    "PathValidator",
    "PkiDirectory",
    "Purpose",
    "RevokedEntry",
    "Role",
    "StaticCrlSource",
    "SubjectName",
    "ValidatedPath",
    "build_csr",
    "certificate_profile",
    "load_certificate",
    "load_certificates",
    "load_csr",
    "parsed",
    "pem",
    "profile",
    "verify_csr",
]
