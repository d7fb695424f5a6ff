"""Helpers for the commissioning tests (seed 003 §2.3): the GWA, the integrator's steps, and
the seed's key-material summaries as the oracle.

Provenance of the oracle: seeds/003_7a790ea296d9c4d2.txt, "Zusammenfassung des am Ende dieser
Phase vorliegenden Schlüssel- und Zertifikatsmaterials" after §2.3.1.3 and after §2.3.3, both
lists ("Im Sicherheitsmodul", "Im Smart Meter Gateway"). Key pairs are written as the seed
names them (private, public) and mapped with the security module's label convention.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from imsys.crypto import SoftwareKey
from imsys.gateway.commissioning import (
    GWA_ADDRESS_ITEM,
    AuthenticateAdministrator,
    Commissioning,
    CompleteInstallation,
    CompleteIntegration,
    CompletePersonalisation,
    CompletePrePersonalisation1,
    CompletePrePersonalisation2,
    CreateOperationalCertificateRequests,
    CreatePreCertificateRequests,
    GatewayItem,
    GenerateOperationalKeys,
    GeneratePreKeys,
    GenerateStorageKey,
    ImportOperationalCertificates,
    ImportPreCertificates,
    ImportRootCertificate,
    LoadInitialConfiguration,
    MemoryState,
    PairSecurityModule,
    RequestAdminChallenge,
    Role,
    SetWanParameters,
    SmPkiTrust,
    WanMedium,
    WanParameters,
)
from imsys.gateway.initial_config import GwaAddress, InitialConfiguration
from imsys.gwa import (
    GwaCredentials,
    answer_admin_challenge,
    build_initial_configuration,
    sign_initial_configuration,
)
from imsys.pki import PkiDirectory
from imsys.secmod import (
    STORAGE_KEY_LABEL,
    SYSTEM_PIN_LABEL,
    ObjectKind,
    SecurityModule,
    SoftwareSecurityModule,
    key_pair_label,
)

GATEWAY_ID = "EIMS0012345678"
GWA_ID = "GWA-Test-1"
GWA_ADDRESS = GwaAddress("gwa.example.test", 4443)
PASSPHRASE = b"secmod store passphrase"
TEST_KDF_LOG2_N = 4

IssueFn = Callable[..., tuple[SoftwareKey, x509.Certificate]]
K, P, C = ObjectKind.KEY_PAIR, ObjectKind.PUBLIC_KEY, ObjectKind.CERTIFICATE

#: §2.3.1 "Im Sicherheitsmodul".
MODULE_2_3_1: dict[str, ObjectKind] = {
    SYSTEM_PIN_LABEL: ObjectKind.PIN_REFERENCE,  # Gateway-System-PIN (Referenzwert)
    STORAGE_KEY_LABEL: ObjectKind.SECRET,  # ggf. Schlüssel für die Speicherverschlüsselung
    "ROOT_WAN_SIG_CRT": C,
    key_pair_label("GW_WAN_TLS_PRV_PRE"): K,
    key_pair_label("GW_WAN_SIG_PRV_PRE"): K,
    key_pair_label("GW_WAN_ENC_PRV_PRE"): K,
    "GW_WAN_TLS_CRT_PRE": C,
    "GW_WAN_SIG_CRT_PRE": C,
    "GW_WAN_ENC_CRT_PRE": C,
    "GWADM_TLS_PUB": P,
    "GWADM_SIG_PUB": P,
    "GWADM_ENC_PUB": P,
    "GWADM_AUT_PUB": P,
}
#: §2.3.3 "Im Sicherheitsmodul": plus the Gateway-Betriebsschlüsselpaare.
MODULE_2_3_3: dict[str, ObjectKind] = {
    **MODULE_2_3_1,
    key_pair_label("GW_WAN_TLS_PRV"): K,
    key_pair_label("GW_WAN_SIG_PRV"): K,
    key_pair_label("GW_WAN_ENC_PRV"): K,
}
#: §2.3.1 "Im Smart Meter Gateway".
GATEWAY_2_3_1: dict[str, GatewayItem] = {
    SYSTEM_PIN_LABEL: GatewayItem.SYSTEM_PIN,
    STORAGE_KEY_LABEL: GatewayItem.STORAGE_KEY,
    "GWADM_TLS_CRT": GatewayItem.CERTIFICATE_WITH_CHAIN,
    "GWADM_SIG_CRT": GatewayItem.CERTIFICATE_WITH_CHAIN,
    "GWADM_ENC_CRT": GatewayItem.CERTIFICATE_WITH_CHAIN,
    "GWADM_AUT_CRT": GatewayItem.CERTIFICATE_WITH_CHAIN,
    GWA_ADDRESS_ITEM: GatewayItem.COMMUNICATION_PARAMETERS,  # SMGW-Admin-Adresse
}
#: §2.3.3 "Im Smart Meter Gateway": plus the Betriebszertifikate.
GATEWAY_2_3_3: dict[str, GatewayItem] = {
    **GATEWAY_2_3_1,
    "GW_WAN_TLS_CRT": GatewayItem.CERTIFICATE,
    "GW_WAN_SIG_CRT": GatewayItem.CERTIFICATE,
    "GW_WAN_ENC_CRT": GatewayItem.CERTIFICATE,
}


def listing(module: SecurityModule) -> dict[str, ObjectKind]:
    return {info.label: info.kind for info in module.objects()}


def fingerprint(certificate: x509.Certificate) -> bytes:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()


def open_module(directory: Path) -> SecurityModule:
    store = directory / "secmod"
    if not store.exists():
        SoftwareSecurityModule.create(store, PASSPHRASE, kdf_log2_n=TEST_KDF_LOG2_N).close()
    return SoftwareSecurityModule(store, PASSPHRASE)


@dataclass
class Gwa:
    """The SMGW-Admin: four software keys with SM-PKI certificates."""

    pki: PkiDirectory
    issue: IssueFn
    keys: dict[str, SoftwareKey] = field(default_factory=dict)
    certificates: dict[str, x509.Certificate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for use in ("tls", "sig", "enc", "aut"):
            key, cert = self.issue(f"gwa-{use}", GWA_ID)
            self.keys[use], self.certificates[use] = key, cert

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return tuple(self.pki.chain()[:-1])  # Sub-CA, root excluded

    def credentials(self, **replace: x509.Certificate) -> GwaCredentials:
        certs = {**self.certificates, **replace}
        return GwaCredentials(certs["tls"], certs["sig"], certs["enc"], certs["aut"],
                              self.chain)

    def configuration(self, gateway_id: str = GATEWAY_ID, **replace: x509.Certificate
                      ) -> InitialConfiguration:
        return build_initial_configuration(gateway_id=gateway_id, administrator_id=GWA_ID,
                                           address=GWA_ADDRESS,
                                           credentials=self.credentials(**replace))

    def document(self, gateway_id: str = GATEWAY_ID) -> bytes:
        return sign_initial_configuration(self.configuration(gateway_id), self.keys["sig"])

    def login(self, commissioning: Commissioning) -> None:
        """§2.3.3: authenticate to the gateway's security module with GWADM_AUT."""
        challenge = commissioning.process_event(Role.ADMINISTRATOR,
                                                RequestAdminChallenge()).challenge
        assert challenge is not None
        commissioning.process_event(Role.ADMINISTRATOR, AuthenticateAdministrator(
            answer_admin_challenge(challenge, self.keys["aut"])))


def new_commissioning(module: SecurityModule, *, state: MemoryState | None = None,
                      log: Callable[..., None] | None = None, **kw: object) -> Commissioning:
    extra = {} if log is None else {"log": log}
    return Commissioning(module, SmPkiTrust(), state or MemoryState(), gateway_id=GATEWAY_ID,
                         **extra, **kw)  # type: ignore[arg-type]


def pre_personalisation_1(c: Commissioning, pki: PkiDirectory,
                          role: Role = Role.INTEGRATOR, *, complete: bool = True) -> None:
    root = pki.root.certificate
    c.process_event(role, ImportRootCertificate(root, fingerprint(root)))
    c.process_event(role, GeneratePreKeys())
    requests = c.process_event(role, CreatePreCertificateRequests()).requests
    certs = {use: pki.issue(f"gateway-pre-{use.lower()}", GATEWAY_ID,
                            csr=requests[f"GW_WAN_{use}_CRT_PRE"])
             for use in ("TLS", "SIG", "ENC")}
    c.process_event(role, ImportPreCertificates(certs["TLS"], certs["SIG"], certs["ENC"],
                                                tuple(pki.chain()[:-1])))
    if complete:
        c.process_event(role, CompletePrePersonalisation1())


def integration(c: Commissioning) -> None:
    c.process_event(Role.INTEGRATOR, PairSecurityModule())
    c.process_event(Role.INTEGRATOR, GenerateStorageKey())
    c.process_event(Role.INTEGRATOR, CompleteIntegration())


def pre_personalisation_2(c: Commissioning, gwa: Gwa) -> None:
    c.process_event(Role.INTEGRATOR, LoadInitialConfiguration(gwa.document()))
    c.process_event(Role.INTEGRATOR, CompletePrePersonalisation2())


def installation(c: Commissioning) -> None:
    c.process_event(Role.INSTALLER, SetWanParameters(WanParameters(WanMedium.LTE,
                                                                   apn="smgw.apn.test")))
    c.process_event(Role.INSTALLER, CompleteInstallation())


def personalisation(c: Commissioning, pki: PkiDirectory, gwa: Gwa) -> None:
    admin = Role.ADMINISTRATOR
    gwa.login(c)
    c.process_event(admin, GenerateOperationalKeys())
    requests = c.process_event(admin, CreateOperationalCertificateRequests()).requests
    certs = {use: pki.issue(f"gateway-{use.lower()}", GATEWAY_ID,
                            csr=requests[f"GW_WAN_{use}_CRT"]) for use in ("TLS", "SIG", "ENC")}
    c.process_event(admin, ImportOperationalCertificates(certs["TLS"], certs["SIG"],
                                                         certs["ENC"], tuple(pki.chain()[:-1])))
    c.process_event(admin, CompletePersonalisation())


def commissioned_to_installation(c: Commissioning, pki: PkiDirectory, gwa: Gwa) -> None:
    pre_personalisation_1(c, pki)
    integration(c)
    pre_personalisation_2(c, gwa)
