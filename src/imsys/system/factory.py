"""The people who make a gateway before its administrator takes over (seed 003 §2.3.1–§2.3.2):
the manufacturer/integrator and the installer ("Erstkonfigurator"), as functions on a gateway
state directory.

* :func:`manufacture` – pre-personalisation 1 on the bare security module
  (``integrator-direct``: root certificate with its fingerprint, on-board ``*_PRE`` keys,
  requests, the Gütesiegel certificates from the SM-PKI), the local interface's two PINs, and
  integration through the local interface with the integrator PIN (system-PIN pairing, storage
  key). The gateway is then in pre-personalisation 2.
* :func:`load_initial_configuration` – pre-personalisation 2: the integrator loads the
  initial configuration file the GWA signed, through the PIN-protected local interface.
* :func:`install` – installation: the installer sets the WAN parameters (and, if needed, the
  GWA's address) and completes it; the local interface is disabled for good.

Every step goes through :class:`~imsys.gateway.commissioning.Commissioning` (and the
:class:`~imsys.gateway.local_interface.LocalInterface` where the seed says so), so each is
checked, persisted and logged exactly as on a real production line. After :func:`install` the
gateway waits for its administrator (§2.3.3, over the admin session).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from imsys.core.clock import Clock
from imsys.gateway.commissioning import (
    CompleteInstallation,
    CompleteIntegration,
    CompletePrePersonalisation1,
    CompletePrePersonalisation2,
    CreatePreCertificateRequests,
    GeneratePreKeys,
    GenerateStorageKey,
    ImportPreCertificates,
    ImportRootCertificate,
    LoadInitialConfiguration,
    PairSecurityModule,
    Phase,
    Role,
    SetWanParameters,
    UpdateGwaAddress,
    WanMedium,
    WanParameters,
)
from imsys.gateway.device import DeviceSettings, GatewayDevice
from imsys.gateway.initial_config import GwaAddress
from imsys.pki import PkiDirectory

__all__ = ["install", "load_initial_configuration", "manufacture"]


def manufacture(state_dir: Path, gateway_id: str, pki: PkiDirectory, clock: Clock, *,
                integrator_pin: str, installer_pin: str, ca: str = "sub-ca",
                settings: DeviceSettings | None = None, kdf_log2_n: int | None = None) -> Phase:
    """A new gateway in ``state_dir`` through pre-personalisation 1 and integration."""
    settings = settings or DeviceSettings(gateway_id)
    with GatewayDevice(state_dir, clock, create=settings, kdf_log2_n=kdf_log2_n) as device:
        c, direct = device.commissioning, Role.INTEGRATOR_DIRECT
        root = pki.root.certificate
        fingerprint = hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).digest()
        c.process_event(direct, ImportRootCertificate(root, fingerprint))
        c.process_event(direct, GeneratePreKeys())
        requests = c.process_event(direct, CreatePreCertificateRequests()).requests
        certificates = {use: pki.issue(f"gateway-pre-{use.lower()}", gateway_id, ca=ca,
                                       csr=requests[f"GW_WAN_{use}_CRT_PRE"])
                        for use in ("TLS", "SIG", "ENC")}
        c.process_event(direct, ImportPreCertificates(
            certificates["TLS"], certificates["SIG"], certificates["ENC"],
            tuple(pki.chain(ca)[:-1])))
        c.process_event(direct, CompletePrePersonalisation1())
        device.provision_local_interface(integrator_pin, installer_pin)
        local = device.local_interface()
        local.login(Role.INTEGRATOR, integrator_pin)
        local.submit(PairSecurityModule())
        local.submit(GenerateStorageKey())
        local.submit(CompleteIntegration())
        local.logout()
        return c.phase


def load_initial_configuration(state_dir: Path, clock: Clock, document: bytes, *,
                               integrator_pin: str) -> Phase:
    """Pre-personalisation 2 at the local interface: the GWA-signed initial configuration."""
    with GatewayDevice(state_dir, clock) as device:
        local = device.local_interface()
        local.login(Role.INTEGRATOR, integrator_pin)
        try:
            local.submit(LoadInitialConfiguration(document))
            local.submit(CompletePrePersonalisation2())
        finally:
            if local.session_role is not None:
                local.logout()
        return device.commissioning.phase


def install(state_dir: Path, clock: Clock, *, installer_pin: str,
            wan: WanParameters | None = None, gwa_address: GwaAddress | None = None) -> Phase:
    """Installation at the local interface; afterwards the interface is gone for good."""
    with GatewayDevice(state_dir, clock) as device:
        local = device.local_interface()
        local.login(Role.INSTALLER, installer_pin)
        local.submit(SetWanParameters(wan or WanParameters(WanMedium.ETHERNET)))
        if gwa_address is not None:
            local.submit(UpdateGwaAddress(gwa_address))
        local.submit(CompleteInstallation())  # disables the local interface
        return device.commissioning.phase
