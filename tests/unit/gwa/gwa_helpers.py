"""Helpers for the GWA and admin-session tests: a GWA (keys in its own software security
module, database, service, TLS endpoint) and gateways brought to the installation phase's end
by the local commissioning steps (seed 003 §2.3.1–§2.3.2), as the commissioning tests do.

Used by tests/unit/gwa, tests/unit/gateway/test_admin_session*.py, tests/integration/test_gwa_*
and bench/gwa_fleet.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from imsys.core.clock import Clock, SystemClock
from imsys.gateway.admin import AdminContext, ConfigStore
from imsys.gateway.admin.session import AdminSessionClient
from imsys.gateway.commissioning import (
    Commissioning,
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
    Role,
    SetWanParameters,
    SmPkiTrust,
    StateTableState,
    WanMedium,
    WanParameters,
    system_log_hook,
)
from imsys.gateway.initial_config import GwaAddress
from imsys.gateway.logs import GatewayLogs
from imsys.gateway.store import Database, Durability, StateTable
from imsys.gwa import GwaCredentials, build_initial_configuration, sign_initial_configuration
from imsys.gwa.db import GwaDatabase
from imsys.gwa.keys import DirectorySubCa, GwaKeys, provision_gwa_keys
from imsys.gwa.server import AdminEndpoint
from imsys.gwa.service import GwaService
from imsys.pki import PkiDirectory
from imsys.pki.validation import PathValidator
from imsys.secmod import SecurityModule, SoftwareSecurityModule

PASSPHRASE = b"gwa test passphrase"
KDF_LOG2_N = 4
GWA_ID = "GWA-Test-1"


def software_module(folder: Path) -> SecurityModule:
    if not (folder / "secmod.json").exists():
        SoftwareSecurityModule.create(folder, PASSPHRASE, kdf_log2_n=KDF_LOG2_N).close()
    return SoftwareSecurityModule(folder, PASSPHRASE)


def gwa_keys(pki: PkiDirectory, folder: Path, administrator_id: str = GWA_ID) -> GwaKeys:
    """A GWA security module with GWADM_{TLS,SIG,ENC,AUT} certified by the Sub-CA."""
    return provision_gwa_keys(software_module(folder), administrator_id, DirectorySubCa(pki))


def cached_validator(pki: PkiDirectory) -> Any:
    validator = pki.validator()

    def get() -> PathValidator:
        return validator

    return get


def new_service(pki: PkiDirectory, keys: GwaKeys, db_url: str, clock: Clock | None = None
                ) -> GwaService:
    return GwaService(GwaDatabase(db_url), keys, DirectorySubCa(pki), cached_validator(pki),
                      clock or SystemClock())


def endpoint(service: GwaService, pki: PkiDirectory) -> AdminEndpoint:
    return AdminEndpoint(service, cached_validator(pki))


def _fingerprint(certificate: x509.Certificate) -> bytes:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()


@dataclass
class GatewayUnderTest:
    """One gateway: database, logs, configuration store, security module, commissioning."""

    gateway_id: str
    folder: Path
    db: Database
    secmod: SecurityModule
    commissioning: Commissioning
    context: AdminContext
    extras: dict[str, Any] = field(default_factory=dict)

    def client(self, **kwargs: Any) -> AdminSessionClient:
        return AdminSessionClient(self.context, **kwargs)

    def close(self) -> None:
        self.secmod.close()
        self.db.close()


def open_gateway(folder: Path, gateway_id: str, clock: Clock | None = None) -> GatewayUnderTest:
    """Open (or create) the gateway kept in ``folder``."""
    clock = clock or SystemClock()
    folder.mkdir(parents=True, exist_ok=True)
    secmod = software_module(folder / "secmod")
    db = Database(folder / "gateway.db", durability=Durability.NORMAL)
    logs = GatewayLogs(db, clock)
    commissioning = Commissioning(secmod, SmPkiTrust(clock=clock),
                                  StateTableState(StateTable(db), "commissioning"),
                                  gateway_id=gateway_id, clock=clock,
                                  log=system_log_hook(logs.system), system_log=logs.system)
    context = AdminContext(gateway_id, db, logs, clock, ConfigStore(db), folder, secmod,
                           commissioning)
    return GatewayUnderTest(gateway_id, folder, db, secmod, commissioning, context)


def initial_configuration(keys: GwaKeys, gateway_id: str, address: GwaAddress) -> bytes:
    certs = keys.certificates
    credentials = GwaCredentials(certs["TLS"], certs["SIG"], certs["ENC"], certs["AUT"],
                                 keys.chain)
    configuration = build_initial_configuration(gateway_id=gateway_id,
                                                administrator_id=keys.administrator_id,
                                                address=address, credentials=credentials)
    return sign_initial_configuration(configuration, keys.key("SIG"))


def gateway_at_personalisation(folder: Path, gateway_id: str, pki: PkiDirectory,
                               keys: GwaKeys | None, address: GwaAddress,
                               clock: Clock | None = None, *,
                               document: bytes | None = None) -> GatewayUnderTest:
    """§2.3.1 (pre-personalisation 1, integration, pre-personalisation 2) and §2.3.2
    (installation) through the local steps; the gateway is then in phase personalisation.
    ``document`` is the signed initial configuration (default: made with ``keys``)."""
    if document is None:
        assert keys is not None
        document = initial_configuration(keys, gateway_id, address)
    gateway = open_gateway(folder, gateway_id, clock)
    c, role = gateway.commissioning, Role.INTEGRATOR
    root = pki.root.certificate
    c.process_event(role, ImportRootCertificate(root, _fingerprint(root)))
    c.process_event(role, GeneratePreKeys())
    requests = c.process_event(role, CreatePreCertificateRequests()).requests
    certs = {use: pki.issue(f"gateway-pre-{use.lower()}", gateway_id,
                            csr=requests[f"GW_WAN_{use}_CRT_PRE"]) for use in ("TLS", "SIG",
                                                                               "ENC")}
    c.process_event(role, ImportPreCertificates(certs["TLS"], certs["SIG"], certs["ENC"],
                                                tuple(pki.chain()[:-1])))
    c.process_event(role, CompletePrePersonalisation1())
    c.process_event(role, PairSecurityModule())
    c.process_event(role, GenerateStorageKey())
    c.process_event(role, CompleteIntegration())
    c.process_event(role, LoadInitialConfiguration(document))
    c.process_event(role, CompletePrePersonalisation2())
    c.process_event(Role.INSTALLER, SetWanParameters(WanParameters(WanMedium.LTE,
                                                                   apn="smgw.apn.test")))
    c.process_event(Role.INSTALLER, CompleteInstallation())
    return gateway


# --------------------------------------------------------------------------- documents

METER_KEY = bytes(range(16))


def meter_document(meter_id: str = "7ELS0087654321", consumer_id: str = "consumer-1"
                   ) -> dict[str, Any]:
    """A wireless (OMS mode 5) meter profile: it carries the AES key, so it travels sealed."""
    from imsys.gateway.meter_profile import MeterProfile, MeterProtocol

    return MeterProfile(meter_id=meter_id, protocol=MeterProtocol.WMBUS_MODE5,
                        aes_key=METER_KEY, channels=("7-0:3.0.0*255",),
                        consumer_id=consumer_id).to_dict()


def evaluation_document(profile_id: str = "TP-7", meter_id: str = "7ELS0087654321",
                        recipient: str = "EMT-1") -> dict[str, Any]:
    """A TAF 7 evaluation profile (15-minute registration) for ``meter_id``."""
    from datetime import UTC, datetime, timedelta

    from imsys.gateway.taf import EvaluationProfile, Taf

    return EvaluationProfile(profile_id=profile_id, taf=Taf.TAF7, meter_id=meter_id,
                             registers=("7-0:3.0.0*255",), billing_period=None,
                             registration_period=timedelta(minutes=15), tariff_stages=(),
                             tariff_calendar=None, recipients=(recipient,), pseudonym=None,
                             valid_from=datetime(2025, 1, 1, tzinfo=UTC)).to_dict()


def communication_document(pki: PkiDirectory, emt_id: str = "EMT-1",
                           profile_id: str = "CP-1") -> dict[str, Any]:
    """A communication profile with the EMT's ``emt-enc``/``emt-sig`` certificates."""
    from imsys.gateway.admin.communication_profile import CommunicationProfile

    ca = "emt-ca" if "emt-ca" in pki.ca_names else None
    enc = pki.issue_with_new_key("emt-enc", emt_id, ca=ca)[1]
    sig = pki.issue_with_new_key("emt-sig", emt_id, ca=ca)[1]
    return CommunicationProfile(profile_id, emt_id, "https://127.0.0.1:9443/deliveries/v1",
                                enc, sig, tuple(pki.chain(ca)[:-1])).to_dict()


# --------------------------------------------------------------------------- databases


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database per test on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gwa.db'}"
        return
    yield request.getfixturevalue("postgres_database")  # tests/conftest.py


# --------------------------------------------------------------------------- a running GWA


class BackgroundEndpoint:
    """The GWA's admin-session endpoint on its own event loop in a thread, so tests can run
    gateways with ``asyncio.run`` while the GWA keeps serving."""

    def __init__(self, service: GwaService, pki: PkiDirectory) -> None:
        self.endpoint = endpoint(service, pki)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.endpoint.port

    def __enter__(self) -> BackgroundEndpoint:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.endpoint.start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.endpoint.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class ScriptedService(GwaService):
    """A GWA service whose next command blobs a test can rewrite (``rewrite`` functions are
    applied in turn) and which keeps every blob it handed out (``sent``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rewrite: list[Callable[[bytes], bytes]] = []
        self.sent: list[bytes] = []

    def next_command(self, session: Any) -> bytes | None:
        blob = super().next_command(session)
        if blob is not None and self.rewrite:
            blob = self.rewrite.pop(0)(blob)
        if blob is not None:
            self.sent.append(blob)
        return blob


def commission(gateway: GatewayUnderTest) -> list[Any]:
    """Personalisation and normal-operation set-up through the running GWA (two sessions)."""
    return asyncio.run(gateway.client().run())

