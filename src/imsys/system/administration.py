"""The demo's gateway administrator: a GWA made for the run, the production line for its
gateways, and the operator's side of the configuration (through the GWA's operator API).

* :func:`init_gwa` – what ``imsys gwa init`` does, with the PKI's clock before the simulated
  window (the GWADM certificates must be valid throughout it);
* :func:`produce_gateway` – manufacture, initial configuration (signed by the GWA's SIG key,
  before the GWA process holds its security module), installation with the GWA's address;
* :class:`OperatorApi` – the operator API client: wake-up addresses, command batches, the
  fleet view, wake-ups;
* :func:`configuration_commands` – the commands that give a gateway its meters, the EMT's
  communication profile and the TAF 1/2/6/7 evaluation profiles.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from imsys.core.clock import Clock, SimulatedClock
from imsys.core.errors import UsageError
from imsys.gateway.admin.communication_profile import CommunicationProfile
from imsys.gateway.device import DeviceSettings
from imsys.gateway.initial_config import GwaAddress
from imsys.gateway.meter_profile import MeterProfile, MeterProtocol, tls_fingerprint
from imsys.gwa import GwaCredentials, build_initial_configuration, sign_initial_configuration
from imsys.gwa.cli import GwaConfig
from imsys.gwa.db import GwaDatabase
from imsys.gwa.keys import DirectorySubCa, GwaKeys, provision_gwa_keys
from imsys.pki import PkiDirectory, load_certificate
from imsys.secmod import SoftwareSecurityModule
from imsys.system.factory import install, load_initial_configuration, manufacture
from imsys.system.provision import EMT_ID, Household, evaluation_profiles

__all__ = ["GWA_ID", "OperatorApi", "configuration_commands", "init_gwa", "produce_gateway"]

GWA_ID = "GWA-DEMO-1"
INTEGRATOR_PIN, INSTALLER_PIN = "integrator-2026", "installer-2026"


def init_gwa(folder: Path, pki_path: Path, not_before: datetime, passphrase: bytes, *,
             admin_port: int, api_port: int, db: str | None = None) -> GwaKeys:
    """A GWA in ``folder`` (``gwa.json``, security module, database), as ``imsys gwa init``."""
    folder.mkdir(parents=True, exist_ok=True)
    pki = PkiDirectory.open(pki_path, clock=SimulatedClock(not_before))
    url = db or f"sqlite:///{(folder / 'gwa.db').resolve()}"
    module = SoftwareSecurityModule.create(folder / "secmod", passphrase)
    try:
        keys = provision_gwa_keys(module, GWA_ID, DirectorySubCa(pki, "sub-ca"))
    finally:
        module.close()
    GwaDatabase(url).dispose()
    GwaConfig(GWA_ID, pki_path.resolve(), url, "127.0.0.1", admin_port, "127.0.0.1", api_port,
              "sub-ca").save(folder)
    return keys


def initial_configurations(folder: Path, passphrase: bytes, gateway_ids: list[str],
                           address: GwaAddress) -> dict[str, bytes]:
    """The signed initial configuration file of each gateway (§2.3.1.3), made by the GWA."""
    module = SoftwareSecurityModule(folder / "secmod", passphrase)
    try:
        keys = GwaKeys.load(module)
        c = keys.certificates
        credentials = GwaCredentials(c["TLS"], c["SIG"], c["ENC"], c["AUT"], keys.chain)
        return {gid: sign_initial_configuration(build_initial_configuration(
            gateway_id=gid, administrator_id=keys.administrator_id, address=address,
            credentials=credentials), keys.key("SIG")) for gid in gateway_ids}
    finally:
        module.close()


def produce_gateway(state: Path, settings: DeviceSettings, pki: PkiDirectory, clock: Clock,
                    document: bytes, address: GwaAddress) -> None:
    """§2.3.1 and §2.3.2 on the production line; afterwards the gateway awaits its GWA."""
    manufacture(state, settings.gateway_id, pki, clock, integrator_pin=INTEGRATOR_PIN,
                installer_pin=INSTALLER_PIN, settings=settings)
    load_initial_configuration(state, clock, document, integrator_pin=INTEGRATOR_PIN)
    install(state, clock, installer_pin=INSTALLER_PIN, gwa_address=address)


def configuration_commands(home: Household, meters_dir: Path, emt_keys: Path, emt_port: int,
                           chain: tuple[x509.Certificate, ...], valid_from: datetime
                           ) -> list[tuple[str, dict[str, Any]]]:
    """(command type, parameters) that configure ``home``'s gateway, in order."""
    commands: list[tuple[str, dict[str, Any]]] = []
    for meter in home.meters:
        if meter.wired:
            cert = load_certificate((meters_dir / meter.meter_id / "cert.pem").read_bytes())
            profile = MeterProfile(meter_id=meter.meter_id, protocol=MeterProtocol.SML_TLS_PUSH,
                                   tls_fingerprint=tls_fingerprint(cert), channels=meter.channels,
                                   read_interval=meter.interval, consumer_id=home.consumer_id)
        else:
            profile = MeterProfile(meter_id=meter.meter_id, protocol=MeterProtocol.WMBUS_MODE5,
                                   aes_key=meter.aes_key, channels=meter.channels,
                                   read_interval=meter.interval, consumer_id=home.consumer_id)
        commands.append(("device.meter.register", {"profile": profile.to_dict()}))
    communication = CommunicationProfile(
        "CP-EMT-1", EMT_ID, f"https://127.0.0.1:{emt_port}/deliveries/v1",
        load_certificate((emt_keys / "enc.pem").read_bytes()),
        load_certificate((emt_keys / "sig.pem").read_bytes()), chain)
    commands.append(("profile.communication.install", {"profile": communication.to_dict()}))
    commands.append(("profile.communication.activate", {"profile_id": "CP-EMT-1"}))
    for evaluation in evaluation_profiles(home, valid_from):
        commands.append(("profile.evaluation.install", {"profile": evaluation.to_dict()}))
        commands.append(("profile.evaluation.activate", {"profile_id": evaluation.profile_id}))
    return commands


class OperatorApi:
    """The GWA's operator API over HTTP on 127.0.0.1 (docs/gwa.md)."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise UsageError(f"GWA operator API: {method} {path} answered {exc.code}: "
                             f"{detail}") from None

    def wait_until_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.request("GET", "/api/v1/gateways")
                return
            except (OSError, UsageError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def set_wakeup(self, gateway_id: str, host: str, port: int) -> None:
        self.request("PUT", f"/api/v1/gateways/{gateway_id}",
                     {"wakeup_host": host, "wakeup_port": port})

    def command(self, gateways: list[str], command_type: str, parameters: dict[str, Any]
                ) -> str:
        return str(self.request("POST", "/api/v1/commands", {
            "gateways": gateways, "type": command_type, "parameters": parameters})["batch"])

    def batch(self, batch: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/batches/{batch}"))

    def gateways(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v1/gateways"))

    def wakeup(self, gateway_id: str) -> None:
        self.request("POST", f"/api/v1/gateways/{gateway_id}/wakeup")

