"""The GWA's own keys in its security module, and the Sub-CA port it has certificates issued by.

Labels in the GWA's module (seed 003 names without ``_PRV``/``_PUB``, as on the gateway):
key pairs ``GWADM_TLS``, ``GWADM_SIG``, ``GWADM_ENC``, ``GWADM_AUT``; certificates
``GWADM_{TLS,SIG,ENC,AUT}_CRT``; the chain above them ``GWADM_CHAIN_1`` (Sub-CA) …; the SM-PKI
root ``ROOT_WAN_SIG_CRT``. :func:`provision_gwa_keys` generates the key pairs on board, sends
requests to the Sub-CA (:class:`SubCaPort`) and stores what comes back; :meth:`GwaKeys.load`
reads them at start. The TLS key reaches OpenSSL through
:meth:`~imsys.secmod.SecurityModule.tls_private_key` (software module only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from imsys.core.errors import UsageError
from imsys.pki import PkiDirectory, SubjectName, build_csr
from imsys.pki.validation import common_name
from imsys.secmod import ModuleKey, SecurityModule

__all__ = ["USES", "DirectorySubCa", "GwaKeys", "SubCaPort", "provision_gwa_keys"]

USES = ("TLS", "SIG", "ENC", "AUT")
ROOT_LABEL = "ROOT_WAN_SIG_CRT"
_CHAIN = "GWADM_CHAIN_{}"


class SubCaPort(Protocol):
    """The SM-PKI Sub-CA as the GWA sees it: it turns requests into certificates."""

    def issue(self, profile: str, identifier: str,
              request: x509.CertificateSigningRequest) -> x509.Certificate:
        """A certificate of ``profile`` (``gateway-tls``, ``gwa-sig``…) for ``identifier``."""
        ...

    def chain(self) -> tuple[x509.Certificate, ...]:
        """The certificates above the issued ones, root last."""
        ...


class DirectorySubCa:
    """:class:`SubCaPort` over the development PKI (:class:`~imsys.pki.PkiDirectory`)."""

    def __init__(self, pki: PkiDirectory, ca: str | None = None) -> None:
        self.pki = pki
        self.ca = ca

    def issue(self, profile: str, identifier: str,
              request: x509.CertificateSigningRequest) -> x509.Certificate:
        return self.pki.issue(profile, identifier, csr=request, ca=self.ca)

    def chain(self) -> tuple[x509.Certificate, ...]:
        return tuple(self.pki.chain(self.ca))


@dataclass(frozen=True)
class GwaKeys:
    """The administrator's identity: id, module, certificates and chain (root excluded)."""

    administrator_id: str
    secmod: SecurityModule
    certificates: dict[str, x509.Certificate]  # by use: TLS, SIG, ENC, AUT
    chain: tuple[x509.Certificate, ...]
    root: x509.Certificate

    def key(self, use: str) -> ModuleKey:
        return self.secmod.key(f"GWADM_{use}")

    def certificate(self, use: str) -> x509.Certificate:
        return self.certificates[use]

    @classmethod
    def load(cls, secmod: SecurityModule) -> GwaKeys:
        """Read the keys and certificates :func:`provision_gwa_keys` stored."""
        try:
            certificates = {use: secmod.certificate(f"GWADM_{use}_CRT") for use in USES}
            for use in USES:
                secmod.key(f"GWADM_{use}")
            root = secmod.certificate(ROOT_LABEL)
        except Exception as exc:
            raise UsageError(f"the GWA's security module is not provisioned: {exc}") from exc
        chain: list[x509.Certificate] = []
        while secmod.has(_CHAIN.format(len(chain) + 1)):
            chain.append(secmod.certificate(_CHAIN.format(len(chain) + 1)))
        names = {common_name(cert) for cert in certificates.values()}
        if len(names) != 1:
            raise UsageError("the GWA certificates name different administrators")
        return cls(names.pop(), secmod, certificates, tuple(chain), root)


def provision_gwa_keys(secmod: SecurityModule, administrator_id: str,
                       subca: SubCaPort) -> GwaKeys:
    """Generate GWADM_{TLS,SIG,ENC,AUT} in ``secmod``, have them certified, store it all."""
    chain = subca.chain()
    if not chain:
        raise UsageError("the Sub-CA gave no chain")
    for use in USES:
        label = f"GWADM_{use}"
        if not secmod.has(label):
            secmod.generate_key_pair(label)
        if not secmod.has(f"{label}_CRT"):
            request = build_csr(secmod.key(label), SubjectName(administrator_id))
            secmod.import_certificate(f"{label}_CRT",
                                      subca.issue(f"gwa-{use.lower()}", administrator_id,
                                                  request))
    for index, cert in enumerate(chain[:-1], start=1):
        if not secmod.has(_CHAIN.format(index)):
            secmod.import_certificate(_CHAIN.format(index), cert)
    if not secmod.has(ROOT_LABEL):
        secmod.import_certificate(ROOT_LABEL, chain[-1])
    return GwaKeys.load(secmod)
