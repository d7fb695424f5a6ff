"""A tiny SM-PKI for the CMS tests, built once per session (brainpool key generation and
signing cost about a millisecond each).

Identities are ``(SoftwareKey, certificate)`` pairs: a CA on brainpoolP256r1, the gateway's
SIG certificates and EMT ENC certificates on each permitted curve, a second ENC identity that
no test message is addressed to, and certificates whose keys the profile refuses.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import NameOID

from imsys.crypto.primitives import CURVES, SoftwareKey, generate_private_key

Identity = tuple[SoftwareKey, x509.Certificate]

_NOW = datetime(2025, 1, 1, tzinfo=UTC)
_SERIALS = itertools.count(0x1000)
_SIG_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False)
_ENC_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False)
_CA_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "imsys test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, public_key: CertificateIssuerPublicKeyTypes,
                 usage: x509.KeyUsage, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Name],
                 *, ca: bool = False) -> x509.Certificate:
    issuer_key, issuer_name = issuer
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(next(_SERIALS))
        .not_valid_before(_NOW - timedelta(days=1))
        .not_valid_after(_NOW + timedelta(days=730))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


@pytest.fixture(scope="session")
def ca_key() -> ec.EllipticCurvePrivateKey:
    return generate_private_key("brainpoolP256r1")


@pytest.fixture(scope="session")
def ca_certificate(ca_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    return _certificate("Test Sub-CA", ca_key.public_key(), _CA_USAGE,
                        (ca_key, _name("Test Sub-CA")), ca=True)


def _identity(ca_key: ec.EllipticCurvePrivateKey, ca_certificate: x509.Certificate,
              subject: str, curve: str, usage: x509.KeyUsage) -> Identity:
    key = SoftwareKey.generate(curve)
    certificate = _certificate(subject, key.public_key(), usage,
                               (ca_key, ca_certificate.subject))
    return key, certificate


@pytest.fixture(scope="session")
def signers(ca_key: ec.EllipticCurvePrivateKey,
            ca_certificate: x509.Certificate) -> dict[str, Identity]:
    """The gateway's SIG identity on each permitted curve."""
    return {curve: _identity(ca_key, ca_certificate, f"gateway SIG {curve}", curve, _SIG_USAGE)
            for curve in CURVES}


@pytest.fixture(scope="session")
def recipients(ca_key: ec.EllipticCurvePrivateKey,
               ca_certificate: x509.Certificate) -> dict[str, Identity]:
    """An EMT ENC identity on each permitted curve."""
    return {curve: _identity(ca_key, ca_certificate, f"EMT ENC {curve}", curve, _ENC_USAGE)
            for curve in CURVES}


@pytest.fixture(scope="session")
def gateway_sig(signers: dict[str, Identity]) -> Identity:
    return signers["brainpoolP256r1"]


@pytest.fixture(scope="session")
def emt_enc(recipients: dict[str, Identity]) -> Identity:
    return recipients["brainpoolP256r1"]


@pytest.fixture(scope="session")
def other_sig(ca_key: ec.EllipticCurvePrivateKey, ca_certificate: x509.Certificate) -> Identity:
    """A second SIG identity (another market participant)."""
    return _identity(ca_key, ca_certificate, "EMT SIG", "brainpoolP256r1", _SIG_USAGE)


@pytest.fixture(scope="session")
def stranger_enc(ca_key: ec.EllipticCurvePrivateKey,
                 ca_certificate: x509.Certificate) -> Identity:
    """An ENC identity that no test message is addressed to."""
    return _identity(ca_key, ca_certificate, "stranger ENC", "brainpoolP256r1", _ENC_USAGE)


@pytest.fixture(scope="session")
def nist_certificate(ca_key: ec.EllipticCurvePrivateKey,
                     ca_certificate: x509.Certificate) -> x509.Certificate:
    """An ENC certificate on NIST P-256, a curve the profile refuses for keys."""
    key = ec.generate_private_key(ec.SECP256R1())
    return _certificate("NIST ENC", key.public_key(), _ENC_USAGE,
                        (ca_key, ca_certificate.subject))


@pytest.fixture(scope="session")
def rsa_certificate(ca_key: ec.EllipticCurvePrivateKey,
                    ca_certificate: x509.Certificate) -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _certificate("RSA ENC", key.public_key(), _ENC_USAGE,
                        (ca_key, ca_certificate.subject))
