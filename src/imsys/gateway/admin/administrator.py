"""Who the gateway's current administrator is: the one source both the admin session and the
administrator change (seed 003 §7) use.

After commissioning the administrator is the one named in the signed initial configuration
(seed 003 §2.3.1.3). An administrator change replaces it by writing :func:`set_administrator`
(configuration kind ``setting``, item ``administrator``); from then on that record wins.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from imsys.core.errors import UsageError
from imsys.gateway.admin.config_store import ConfigKind, ConfigStore
from imsys.gateway.initial_config import CERTIFICATE_PROFILES, GwaAddress

__all__ = ["ADMINISTRATOR_ITEM", "Administrator", "current_administrator", "set_administrator"]

ADMINISTRATOR_ITEM = "administrator"
NAMES = tuple(CERTIFICATE_PROFILES)  # GWADM_TLS_CRT, GWADM_SIG_CRT, GWADM_ENC_CRT, GWADM_AUT_CRT


@dataclass(frozen=True)
class Administrator:
    """The current SMGW-Admin: id, address and GWADM certificates (each with its chain up to,
    not including, the root)."""

    administrator_id: str
    address: GwaAddress
    certificates: dict[str, tuple[x509.Certificate, tuple[x509.Certificate, ...]]]

    def certificate(self, name: str) -> x509.Certificate:
        return self.certificates[name][0]

    @property
    def sig(self) -> x509.Certificate:
        return self.certificate("GWADM_SIG_CRT")

    @property
    def tls(self) -> x509.Certificate:
        return self.certificate("GWADM_TLS_CRT")

    @property
    def enc(self) -> x509.Certificate:
        return self.certificate("GWADM_ENC_CRT")

    def to_json(self) -> dict[str, object]:
        def der(cert: x509.Certificate) -> str:
            return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

        return {"administrator_id": self.administrator_id, "address": self.address.to_json(),
                "certificates": {name: {"certificate": der(cert), "chain": [der(c) for c in chain]}
                                 for name, (cert, chain) in self.certificates.items()}}

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> Administrator:
        def cert(text: object) -> x509.Certificate:
            return x509.load_der_x509_certificate(base64.b64decode(str(text)))

        certificates = doc["certificates"]
        if not isinstance(certificates, dict):
            raise UsageError("administrator certificates must be an object")
        return cls(str(doc["administrator_id"]), GwaAddress.from_json(doc["address"]),
                   {name: (cert(item["certificate"]), tuple(cert(c) for c in item["chain"]))
                    for name, item in certificates.items()})


def current_administrator(config: ConfigStore, commissioning: object | None) -> Administrator:
    """The administrator record of an administrator change, else the one of the initial
    configuration held by ``commissioning`` (an ``imsys.gateway.commissioning.Commissioning``).
    ``UsageError`` when the gateway has neither (not yet through pre-personalisation 2)."""
    item = config.get(ConfigKind.SETTING, ADMINISTRATOR_ITEM)
    if item is not None:
        return Administrator.from_json(item.document)
    state = getattr(commissioning, "state", None)
    initial = getattr(state, "initial_configuration", None)
    if initial is None:
        raise UsageError("the gateway has no administrator yet (no initial configuration)")
    certificates = {name: (item.certificate, item.chain) for name, item in initial.certificates()}
    return Administrator(initial.administrator_id, initial.address, certificates)


def set_administrator(config: ConfigStore, administrator: Administrator) -> None:
    """Make ``administrator`` the current one (used by the administrator change only)."""
    missing = set(NAMES) - set(administrator.certificates)
    if missing:
        raise UsageError(f"administrator lacks {sorted(missing)}")
    config.put(ConfigKind.SETTING, ADMINISTRATOR_ITEM, administrator.to_json())
