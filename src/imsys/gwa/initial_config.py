"""GWA side of commissioning: the signed initial configuration file and the answer to the
security module's challenge (seed 003 §2.3.1.3, §2.3.3).

The document format (profile ``imsys-initial-config/1``) is defined once, in
:mod:`imsys.gateway.initial_config`; this module only fills and signs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from imsys.crypto import cms
from imsys.crypto.primitives import KeyHandle
from imsys.gateway.initial_config import CertifiedKey, GwaAddress, InitialConfiguration


@dataclass(frozen=True, slots=True)
class GwaCredentials:
    """The administrator's four SM-PKI certificates (GWADM_TLS/SIG/ENC/AUT_CRT) and the chain
    above them, root excluded (§2.3.1.3, Voraussetzungen)."""

    tls: x509.Certificate
    sig: x509.Certificate
    enc: x509.Certificate
    aut: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


def build_initial_configuration(*, gateway_id: str, administrator_id: str,
                                address: GwaAddress, credentials: GwaCredentials
                                ) -> InitialConfiguration:
    """The content of the initial configuration file for ``gateway_id``."""
    chain = tuple(credentials.chain)
    return InitialConfiguration(
        gateway_id, administrator_id, address,
        CertifiedKey(credentials.tls, chain), CertifiedKey(credentials.sig, chain),
        CertifiedKey(credentials.enc, chain), CertifiedKey(credentials.aut, chain))


def sign_initial_configuration(configuration: InitialConfiguration, signer: KeyHandle, *,
                               signing_time: datetime | None = None,
                               certificate: x509.Certificate | None = None,
                               extra_certificates: Sequence[x509.Certificate] = ()) -> bytes:
    """CMS SignedData over the canonical JSON, signed with GWADM_SIG_PRV (``signer``).

    ``certificate`` defaults to the file's own GWADM_SIG_CRT (tests pass another one to
    produce a forged file).
    """
    return cms.sign(configuration.encode(), signer, certificate or configuration.sig.certificate,
                    extra_certificates=extra_certificates, signing_time=signing_time)


def answer_admin_challenge(challenge: bytes, aut_key: KeyHandle) -> bytes:
    """The DER ECDSA signature of GWADM_AUT_PRV over the module's challenge (§2.3.3)."""
    return aut_key.sign(bytes(challenge))


__all__ = [
    "GwaCredentials",
    "answer_admin_challenge",
    "build_initial_configuration",
    "sign_initial_configuration",
]
