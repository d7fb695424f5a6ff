"""Commissioning, gateway side (seed 003 §2.3): one test per step the gateway performs.

The seed's key-material summaries after §2.3.1 and §2.3.3 are the oracle
(commissioning_helpers.MODULE_* / GATEWAY_*).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from commissioning_helpers import (
    GATEWAY_2_3_1,
    GATEWAY_2_3_3,
    GATEWAY_ID,
    GWA_ADDRESS,
    MODULE_2_3_1,
    MODULE_2_3_3,
    Gwa,
    IssueFn,
    commissioned_to_installation,
    fingerprint,
    installation,
    integration,
    listing,
    new_commissioning,
    open_module,
    personalisation,
    pre_personalisation_1,
    pre_personalisation_2,
)
from cryptography.hazmat.primitives import serialization

from imsys.core.clock import SimulatedClock
from imsys.core.errors import UsageError
from imsys.crypto import SoftwareKey
from imsys.crypto.primitives import ecdsa_verify
from imsys.gateway import Database, Durability, SystemLog
from imsys.gateway.commissioning import (
    TRANSITIONS,
    AuthenticateAdministrator,
    Commissioning,
    CommissioningLogRecord,
    CommissioningReason,
    CommissioningRejected,
    CompleteInstallation,
    CompleteIntegration,
    CompletePersonalisation,
    CompletePrePersonalisation1,
    CompletePrePersonalisation2,
    CreateOperationalCertificateRequests,
    CreatePreCertificateRequests,
    Event,
    ExportOperationalPublicKeys,
    ExportPrePublicKeys,
    GenerateOperationalKeys,
    GeneratePreKeys,
    GenerateStorageKey,
    ImportOperationalCertificates,
    ImportPreCertificates,
    ImportRootCertificate,
    JsonFileState,
    LoadInitialConfiguration,
    MemoryState,
    PairSecurityModule,
    Phase,
    ReadSystemLog,
    RequestAdminChallenge,
    Role,
    RunSelfTest,
    SetWanParameters,
    SmPkiTrust,
    StartIntegration,
    StateTableState,
    SynchroniseTime,
    UpdateGwaAddress,
    WanMedium,
    WanParameters,
    roles_in_phase,
    system_log_hook,
)
from imsys.gateway.initial_config import GwaAddress
from imsys.gateway.logs import Outcome
from imsys.gateway.store import StateTable
from imsys.pki import PkiDirectory, load_csr, verify_csr
from imsys.secmod import SecurityModule

R = CommissioningReason


@pytest.fixture
def module(tmp_path: Path) -> Iterator[SecurityModule]:
    m = open_module(tmp_path)
    yield m
    m.close()


@pytest.fixture(scope="session")
def gwa(pki: PkiDirectory, issue: IssueFn) -> Gwa:
    return Gwa(pki, issue)


@pytest.fixture(scope="session")
def foreign_pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDirectory:
    """Another PKI whose root the gateway does not trust."""
    return PkiDirectory.init(tmp_path_factory.mktemp("foreign") / "pki")


@pytest.fixture
def records() -> list[CommissioningLogRecord]:
    return []


@pytest.fixture
def c(module: SecurityModule, records: list[CommissioningLogRecord]) -> Commissioning:
    return new_commissioning(module, log=records.append)


@contextmanager
def rejected(reason: CommissioningReason
             ) -> Iterator[pytest.ExceptionInfo[CommissioningRejected]]:
    """Expect a :class:`CommissioningRejected` with exactly ``reason``."""
    with pytest.raises(CommissioningRejected) as info:
        yield info
    assert info.value.reason is reason, info.value


def public_bytes(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.X962,  # type: ignore[attr-defined]
                            serialization.PublicFormat.UncompressedPoint)


# --------------------------------------------------------------------------- the table


def test_phases_follow_the_seed_order() -> None:
    assert [p.value for p in Phase] == [
        "pre_personalisation_1", "integration", "pre_personalisation_2", "installation",
        "personalisation", "operation"]


def test_each_phase_has_only_its_own_roles() -> None:
    assert roles_in_phase(Phase.PRE_PERSONALISATION_1) == {Role.INTEGRATOR,
                                                           Role.INTEGRATOR_DIRECT}
    assert roles_in_phase(Phase.INTEGRATION) == {Role.INTEGRATOR}
    assert roles_in_phase(Phase.PRE_PERSONALISATION_2) == {Role.INTEGRATOR}
    assert roles_in_phase(Phase.INSTALLATION) == {Role.INSTALLER}
    assert roles_in_phase(Phase.PERSONALISATION) == {Role.ADMINISTRATOR}
    assert roles_in_phase(Phase.OPERATION) == {Role.ADMINISTRATOR}


def sample_events(pki: PkiDirectory) -> list[Event]:
    root = pki.root.certificate
    return [
        ImportRootCertificate(root, fingerprint(root)), GeneratePreKeys(), ExportPrePublicKeys(),
        CreatePreCertificateRequests(), ImportPreCertificates(root, root, root),
        CompletePrePersonalisation1(), StartIntegration(), PairSecurityModule(),
        GenerateStorageKey(), CompleteIntegration(), LoadInitialConfiguration(b"x"),
        CompletePrePersonalisation2(), SetWanParameters(WanParameters(WanMedium.ETHERNET)),
        ReadSystemLog(),
        UpdateGwaAddress(GWA_ADDRESS), CompleteInstallation(), RequestAdminChallenge(),
        AuthenticateAdministrator(b"x"), GenerateOperationalKeys(),
        ExportOperationalPublicKeys(), CreateOperationalCertificateRequests(),
        ImportOperationalCertificates(root, root, root), CompletePersonalisation(),
        SynchroniseTime(datetime.now(UTC)), RunSelfTest(),
    ]


def test_every_event_type_of_the_table_has_a_sample(pki: PkiDirectory) -> None:
    assert {t for _, t in TRANSITIONS} == {type(e) for e in sample_events(pki)}


def assert_pairs_outside_the_table_are_refused(c: Commissioning, module: SecurityModule,
                                               pki: PkiDirectory) -> None:
    phase = c.phase
    before_state, before_objects = c.state.to_json(), listing(module)
    for event in sample_events(pki):
        if (phase, type(event)) in TRANSITIONS:
            continue
        for role in Role:
            with rejected(R.WRONG_PHASE):
                c.process_event(role, event)
    assert c.state.to_json() == before_state
    assert listing(module) == before_objects


def test_every_pair_not_in_the_table_is_refused_in_every_phase(
        c: Commissioning, module: SecurityModule, pki: PkiDirectory, gwa: Gwa) -> None:
    assert_pairs_outside_the_table_are_refused(c, module, pki)
    pre_personalisation_1(c, pki)
    assert_pairs_outside_the_table_are_refused(c, module, pki)  # integration
    integration(c)
    assert_pairs_outside_the_table_are_refused(c, module, pki)  # pre-personalisation 2
    pre_personalisation_2(c, gwa)
    assert_pairs_outside_the_table_are_refused(c, module, pki)  # installation
    installation(c)
    assert_pairs_outside_the_table_are_refused(c, module, pki)  # personalisation
    personalisation(c, pki, gwa)
    assert c.phase is Phase.OPERATION
    assert_pairs_outside_the_table_are_refused(c, module, pki)


def test_refusals_are_logged_and_change_nothing(c: Commissioning, module: SecurityModule,
                                                records: list[CommissioningLogRecord]) -> None:
    before = c.state.to_json()
    with rejected(R.WRONG_ROLE):
        c.process_event(Role.INSTALLER, GeneratePreKeys())
    with rejected(R.WRONG_PHASE):
        c.process_event(Role.INTEGRATOR, CompleteInstallation())
    assert c.state.to_json() == before and listing(module) == {}
    assert [(r.outcome, r.step.value, r.role, r.reason) for r in records] == [
        (Outcome.FAILURE, "generate-pre-keys", Role.INSTALLER, R.WRONG_ROLE),
        (Outcome.FAILURE, "complete-installation", Role.INTEGRATOR, R.WRONG_PHASE),
    ]


def test_steps_done_are_logged_to_the_system_log(module: SecurityModule, tmp_path: Path,
                                                 pki: PkiDirectory) -> None:
    db = Database(tmp_path / "gw.db", durability=Durability.OFF)
    log = SystemLog(db, SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC)))
    c = new_commissioning(module, log=system_log_hook(log))
    root = pki.root.certificate
    c.process_event(Role.INTEGRATOR, ImportRootCertificate(root, fingerprint(root)))
    with pytest.raises(CommissioningRejected):
        c.process_event(Role.INSTALLER, GeneratePreKeys())
    texts = [e.text for e in log.entries()]
    assert texts == [
        "commissioning step done (step=import-root-certificate, role=integrator, "
        "phase=pre_personalisation_1)",
        "commissioning step refused (step=generate-pre-keys, role=installer, "
        "phase=pre_personalisation_1, reason=wrong-role)",
    ]


# --------------------------------------------------------------------------- §2.3.1.1


def test_pre_personalisation_1_imports_root_certificate(c: Commissioning,
                                                        module: SecurityModule,
                                                        pki: PkiDirectory) -> None:
    root = pki.root.certificate
    c.process_event(Role.INTEGRATOR_DIRECT, ImportRootCertificate(root, fingerprint(root)))
    assert module.certificate("ROOT_WAN_SIG_CRT") == root


def test_pre_personalisation_1_refuses_root_certificate_whose_fingerprint_differs(
        c: Commissioning, module: SecurityModule, pki: PkiDirectory,
        foreign_pki: PkiDirectory) -> None:
    with rejected(R.FINGERPRINT_MISMATCH):
        c.process_event(Role.INTEGRATOR, ImportRootCertificate(
            foreign_pki.root.certificate, fingerprint(pki.root.certificate)))
    sub_ca = pki.ca().certificate  # not self-signed: no trust anchor
    with rejected(R.CERTIFICATE_INVALID):
        c.process_event(Role.INTEGRATOR, ImportRootCertificate(sub_ca, fingerprint(sub_ca)))
    assert listing(module) == {}


def test_pre_personalisation_1_generates_pre_keys_on_board_and_exports_public_keys(
        c: Commissioning, module: SecurityModule) -> None:
    generated = c.process_event(Role.INTEGRATOR, GeneratePreKeys()).public_keys
    exported = c.process_event(Role.INTEGRATOR, ExportPrePublicKeys()).public_keys
    assert sorted(exported) == ["GW_WAN_ENC_PUB_PRE", "GW_WAN_SIG_PUB_PRE",
                                "GW_WAN_TLS_PUB_PRE"]
    for name, key in exported.items():
        assert public_bytes(key) == public_bytes(generated[name])
        label = name.replace("_PUB", "")
        assert public_bytes(module.public_key(label)) == public_bytes(key)
    with rejected(R.ALREADY_DONE):
        c.process_event(Role.INTEGRATOR, GeneratePreKeys())


def test_pre_personalisation_1_creates_certificate_requests_for_the_gateway(
        c: Commissioning, module: SecurityModule) -> None:
    with rejected(R.OUT_OF_ORDER):
        c.process_event(Role.INTEGRATOR, CreatePreCertificateRequests())
    c.process_event(Role.INTEGRATOR, GeneratePreKeys())
    requests = c.process_event(Role.INTEGRATOR, CreatePreCertificateRequests()).requests
    for use in ("TLS", "SIG", "ENC"):
        csr = load_csr(requests[f"GW_WAN_{use}_CRT_PRE"].public_bytes(
            serialization.Encoding.DER))
        assert public_bytes(verify_csr(csr)) == public_bytes(
            module.public_key(f"GW_WAN_{use}_PRE"))
        assert GATEWAY_ID in csr.subject.rfc4514_string()


def test_pre_personalisation_1_imports_pre_certificates(c: Commissioning,
                                                        module: SecurityModule,
                                                        pki: PkiDirectory) -> None:
    pre_personalisation_1(c, pki, Role.INTEGRATOR_DIRECT, complete=False)
    for use in ("TLS", "SIG", "ENC"):
        cert = module.certificate(f"GW_WAN_{use}_CRT_PRE")
        assert public_bytes(cert.public_key()) == public_bytes(
            module.public_key(f"GW_WAN_{use}_PRE"))
    assert c.process_event(Role.INTEGRATOR_DIRECT,
                           CompletePrePersonalisation1()).phase is Phase.INTEGRATION


def _prepared_for_pre_certificates(c: Commissioning, pki: PkiDirectory) -> dict[str, object]:
    root = pki.root.certificate
    c.process_event(Role.INTEGRATOR, ImportRootCertificate(root, fingerprint(root)))
    return dict(c.process_event(Role.INTEGRATOR, GeneratePreKeys()).public_keys)


def test_pre_personalisation_1_refuses_pre_certificates_of_wrong_profile_key_or_root(
        c: Commissioning, module: SecurityModule, pki: PkiDirectory,
        foreign_pki: PkiDirectory) -> None:
    keys = _prepared_for_pre_certificates(c, pki)
    before = listing(module)
    chain = tuple(pki.chain()[:-1])

    def pre(use: str, profile: str | None = None, key: object = None,
            ca: PkiDirectory = pki) -> object:
        return ca.issue(profile or f"gateway-pre-{use.lower()}", GATEWAY_ID,
                        public_key=key or keys[f"GW_WAN_{use}_PUB_PRE"])

    tls, sig, enc = pre("TLS"), pre("SIG"), pre("ENC")
    cases = [
        (R.CERTIFICATE_INVALID, (pre("TLS", "gateway-tls"), sig, enc)),  # operational profile
        (R.CERTIFICATE_INVALID, (tls, pre("SIG", "gateway-pre-enc"), enc)),  # wrong purpose
        (R.KEY_MISMATCH, (tls, sig, pre("ENC", key=SoftwareKey.generate().public_key()))),
        (R.CERTIFICATE_INVALID, (tls, sig, pre("ENC", ca=foreign_pki))),  # other root
        (R.WRONG_GATEWAY, (tls, pki.issue("gateway-pre-sig", "EOTHER0000000001",
                                          public_key=keys["GW_WAN_SIG_PUB_PRE"]), enc)),
    ]
    for reason, (a, b, e) in cases:
        with rejected(reason):
            c.process_event(Role.INTEGRATOR, ImportPreCertificates(a, b, e, chain))  # type: ignore[arg-type]
        assert listing(module) == before
    c.process_event(Role.INTEGRATOR, ImportPreCertificates(tls, sig, enc, chain))  # type: ignore[arg-type]
    assert {n for n in listing(module) if n.endswith("_CRT_PRE")} == {
        "GW_WAN_TLS_CRT_PRE", "GW_WAN_SIG_CRT_PRE", "GW_WAN_ENC_CRT_PRE"}


def test_pre_personalisation_1_cannot_be_completed_before_all_its_tasks(
        c: Commissioning, pki: PkiDirectory) -> None:
    _prepared_for_pre_certificates(c, pki)
    with rejected(R.OUT_OF_ORDER):
        c.process_event(Role.INTEGRATOR, CompletePrePersonalisation1())


# --------------------------------------------------------------------------- §2.3.1.2


def test_integration_pairs_gateway_and_security_module_with_system_pin(
        tmp_path: Path, pki: PkiDirectory) -> None:
    module = open_module(tmp_path)
    state = JsonFileState(tmp_path / "commissioning.json")
    c = Commissioning(module, SmPkiTrust(), state, gateway_id=GATEWAY_ID)
    pre_personalisation_1(c, pki)
    assert not module.paired
    c.process_event(Role.INTEGRATOR, PairSecurityModule())
    assert module.paired and module.pin_verified
    pin = c.state.system_pin
    assert pin is not None and len(pin) == 48
    assert listing(module)["GW_SYSTEM_PIN"].value == "pin-reference"
    with rejected(R.ALREADY_DONE):
        c.process_event(Role.INTEGRATOR, PairSecurityModule())
    # the gateway restarts: it unlocks its module with the stored system PIN
    module.close()
    module = open_module(tmp_path)
    assert not module.pin_verified
    again = Commissioning(module, SmPkiTrust(), state)
    assert module.pin_verified and again.phase is Phase.INTEGRATION
    again.process_event(Role.INTEGRATOR, GenerateStorageKey())  # needs the system PIN
    module.close()


def test_integration_refuses_a_module_paired_with_another_gateway(
        c: Commissioning, module: SecurityModule) -> None:
    c.process_event(Role.INTEGRATOR, StartIntegration())
    module.set_system_pin("another gateway's PIN")
    with rejected(R.SECURITY_MODULE):
        c.process_event(Role.INTEGRATOR, PairSecurityModule())
    assert c.state.system_pin is None and c.state.pending_system_pin is None


def test_integration_generates_storage_encryption_key(c: Commissioning,
                                                      module: SecurityModule) -> None:
    c.process_event(Role.INTEGRATOR, StartIntegration())
    with rejected(R.OUT_OF_ORDER):
        c.process_event(Role.INTEGRATOR, CompleteIntegration())
    c.process_event(Role.INTEGRATOR, PairSecurityModule())
    c.process_event(Role.INTEGRATOR, GenerateStorageKey())
    sealed = module.encrypt_with("GW_STORAGE_ENC", b"reading")
    assert module.decrypt_with("GW_STORAGE_ENC", sealed) == b"reading"
    assert c.key_material() == {"GW_SYSTEM_PIN": GATEWAY_2_3_1["GW_SYSTEM_PIN"],
                                "GW_STORAGE_ENC": GATEWAY_2_3_1["GW_STORAGE_ENC"]}


def test_integration_before_pre_personalisation_1_then_only_through_the_local_interface(
        c: Commissioning, module: SecurityModule, pki: PkiDirectory, gwa: Gwa) -> None:
    assert c.process_event(Role.INTEGRATOR, StartIntegration()).phase is Phase.INTEGRATION
    c.process_event(Role.INTEGRATOR, PairSecurityModule())
    c.process_event(Role.INTEGRATOR, GenerateStorageKey())
    after = c.process_event(Role.INTEGRATOR, CompleteIntegration())
    assert after.phase is Phase.PRE_PERSONALISATION_1
    root = pki.root.certificate
    with rejected(R.WRONG_ROLE):  # the module is built in: no direct access any more
        c.process_event(Role.INTEGRATOR_DIRECT, ImportRootCertificate(root, fingerprint(root)))
    pre_personalisation_1(c, pki, complete=False)
    assert c.process_event(Role.INTEGRATOR,
                           CompletePrePersonalisation1()).phase is Phase.PRE_PERSONALISATION_2
    pre_personalisation_2(c, gwa)
    assert listing(module) == MODULE_2_3_1
    assert c.key_material() == GATEWAY_2_3_1


def test_integration_cannot_interrupt_pre_personalisation_1(c: Commissioning,
                                                            pki: PkiDirectory) -> None:
    root = pki.root.certificate
    c.process_event(Role.INTEGRATOR, ImportRootCertificate(root, fingerprint(root)))
    with rejected(R.OUT_OF_ORDER):
        c.process_event(Role.INTEGRATOR, StartIntegration())


# --------------------------------------------------------------------------- §2.3.1.3


def test_pre_personalisation_2_needs_pre_personalisation_1_and_integration(
        c: Commissioning, pki: PkiDirectory, gwa: Gwa) -> None:
    with rejected(R.WRONG_PHASE):
        c.process_event(Role.INTEGRATOR, LoadInitialConfiguration(gwa.document()))
    pre_personalisation_1(c, pki)
    with rejected(R.WRONG_PHASE):
        c.process_event(Role.INTEGRATOR, LoadInitialConfiguration(gwa.document()))


def test_pre_personalisation_2_loads_initial_config_and_imports_gwa_public_keys(
        c: Commissioning, module: SecurityModule, pki: PkiDirectory, gwa: Gwa) -> None:
    pre_personalisation_1(c, pki)
    integration(c)
    c.process_event(Role.INTEGRATOR, LoadInitialConfiguration(gwa.document()))
    for use in ("tls", "sig", "enc", "aut"):
        label = f"GWADM_{use.upper()}_PUB"
        assert public_bytes(module.public_key(label)) == public_bytes(gwa.keys[use].public_key())
        cert, chain = c.gwa_certificate(f"GWADM_{use.upper()}_CRT")
        assert cert == gwa.certificates[use] and chain == gwa.chain
    assert c.gwa_address == GWA_ADDRESS
    with rejected(R.ALREADY_DONE):
        c.process_event(Role.INTEGRATOR, LoadInitialConfiguration(gwa.document()))


def _at_pre_personalisation_2(c: Commissioning, pki: PkiDirectory) -> None:
    pre_personalisation_1(c, pki)
    integration(c)


def test_pre_personalisation_2_refuses_config_not_signed_by_gwa(
        c: Commissioning, module: SecurityModule, pki: PkiDirectory, gwa: Gwa,
        issue: IssueFn) -> None:
    from imsys.gwa import sign_initial_configuration

    _at_pre_personalisation_2(c, pki)
    before_state, before_objects = c.state.to_json(), listing(module)
    other_key, other_cert = issue("gwa-sig", "GWA-Intruder")
    forged = sign_initial_configuration(gwa.configuration(), other_key, certificate=other_cert)
    with rejected(R.SIGNATURE_INVALID):
        c.process_event(Role.INTEGRATOR, LoadInitialConfiguration(forged))
    tampered = bytearray(gwa.document())
    at = tampered.find(b"gwa.example.test")
    tampered[at:at + 3] = b"evl"
    with rejected(R.SIGNATURE_INVALID):
        c.process_event(Role.INTEGRATOR, LoadInitialConfiguration(bytes(tampered)))
    assert c.state.to_json() == before_state and listing(module) == before_objects


def test_pre_personalisation_2_refuses_gwa_certificates_not_from_the_sm_pki(
        c: Commissioning, module: SecurityModule, pki: PkiDirectory, gwa: Gwa,
        foreign_pki: PkiDirectory, issue: IssueFn) -> None:
    from imsys.gwa import sign_initial_configuration

    _at_pre_personalisation_2(c, pki)
    before_objects = listing(module)
    _, foreign_tls = foreign_pki.issue_with_new_key("gwa-tls", "GWA-Test-1")
    document = sign_initial_configuration(gwa.configuration(tls=foreign_tls), gwa.keys["sig"])
    with rejected(R.CERTIFICATE_INVALID):
        c.process_event(Role.INTEGRATOR, LoadInitialConfiguration(document))
    _, emt_cert = issue("emt-enc", "EMT-1")  # SM-PKI, but not an administrator certificate
    document = sign_initial_configuration(gwa.configuration(enc=emt_cert), gwa.keys["sig"])
    with rejected(R.CERTIFICATE_INVALID):
        c.process_event(Role.INTEGRATOR, LoadInitialConfiguration(document))
    assert listing(module) == before_objects and c.key_material() == {
        "GW_SYSTEM_PIN": GATEWAY_2_3_1["GW_SYSTEM_PIN"],
        "GW_STORAGE_ENC": GATEWAY_2_3_1["GW_STORAGE_ENC"]}


def test_pre_personalisation_2_refuses_config_for_another_gateway(
        c: Commissioning, pki: PkiDirectory, gwa: Gwa) -> None:
    _at_pre_personalisation_2(c, pki)
    with rejected(R.WRONG_GATEWAY):
        c.process_event(Role.INTEGRATOR,
                        LoadInitialConfiguration(gwa.document("EOTHER0000000001")))


def test_pre_personalisation_2_end_deletes_import_keys_and_leaves_the_seed_s_material(
        c: Commissioning, module: SecurityModule, pki: PkiDirectory, gwa: Gwa) -> None:
    module.generate_import_key("GW_IMPORT_1")  # brought in at production (§2.3.1 Hinweis)
    _at_pre_personalisation_2(c, pki)
    c.process_event(Role.INTEGRATOR, LoadInitialConfiguration(gwa.document()))
    answer = c.process_event(Role.INTEGRATOR, CompletePrePersonalisation2())
    assert answer.deleted_import_keys == ("GW_IMPORT_1",)
    assert answer.phase is Phase.INSTALLATION
    assert listing(module) == MODULE_2_3_1
    assert c.key_material() == GATEWAY_2_3_1
    assert module.phase.value == "operation"  # the module's integration phase is over


# --------------------------------------------------------------------------- §2.3.2


def test_installation_installer_pin_has_no_integrator_rights(
        c: Commissioning, module: SecurityModule, pki: PkiDirectory, gwa: Gwa) -> None:
    _at_pre_personalisation_2(c, pki)
    with rejected(R.WRONG_ROLE):  # installer in the integrator's phase
        c.process_event(Role.INSTALLER, LoadInitialConfiguration(gwa.document()))
    pre_personalisation_2(c, gwa)
    before = listing(module)
    root = pki.root.certificate
    for event in (ImportRootCertificate(root, fingerprint(root)), GeneratePreKeys(),
                  LoadInitialConfiguration(gwa.document()), PairSecurityModule(),
                  GenerateStorageKey()):
        with rejected(R.WRONG_PHASE):
            c.process_event(Role.INSTALLER, event)
    with rejected(R.WRONG_ROLE):  # and the integrator has no installer rights either
        c.process_event(Role.INTEGRATOR, CompleteInstallation())
    assert listing(module) == before


def test_installation_sets_wan_parameters_and_updates_gwa_address(
        c: Commissioning, pki: PkiDirectory, gwa: Gwa) -> None:
    commissioned_to_installation(c, pki, gwa)
    parameters = WanParameters(WanMedium.ETHERNET, "192.0.2.10/24", "192.0.2.1",
                               ("192.0.2.53",))
    c.process_event(Role.INSTALLER, SetWanParameters(parameters))
    new_address = GwaAddress("gwa2.example.test", 443)
    c.process_event(Role.INSTALLER, UpdateGwaAddress(new_address))
    assert c.state.wan_parameters == parameters and c.gwa_address == new_address
    with pytest.raises(CommissioningRejected, match="malformed"):
        WanParameters(WanMedium.ETHERNET, "not-an-ip")
    with pytest.raises(CommissioningRejected, match="malformed"):
        WanParameters(WanMedium.DSL, apn="internet")


def test_installation_allows_diagnosis_with_read_access_to_the_system_log(
        module: SecurityModule, tmp_path: Path, pki: PkiDirectory, gwa: Gwa) -> None:
    db = Database(tmp_path / "gw.db", durability=Durability.OFF)
    log = SystemLog(db, SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC)))
    c = new_commissioning(module, log=system_log_hook(log), system_log=log)
    commissioned_to_installation(c, pki, gwa)
    written = len(log.entries())
    entries = c.process_event(Role.INSTALLER, ReadSystemLog(limit=3)).log_entries
    assert [e.record_number for e in entries] == [written - 2, written - 1, written]
    assert len(log.entries()) == written + 1  # the read itself is logged, nothing else changes
    with rejected(R.WRONG_ROLE):
        c.process_event(Role.ADMINISTRATOR, ReadSystemLog())


def test_installation_end_disables_the_local_interface_for_good(
        c: Commissioning, pki: PkiDirectory, gwa: Gwa) -> None:
    commissioned_to_installation(c, pki, gwa)
    assert c.local_interface_enabled
    installation(c)
    assert c.phase is Phase.PERSONALISATION and not c.local_interface_enabled


# --------------------------------------------------------------------------- §2.3.3


def _at_personalisation(c: Commissioning, pki: PkiDirectory, gwa: Gwa) -> None:
    commissioned_to_installation(c, pki, gwa)
    installation(c)


def test_personalisation_generates_operational_keys_only_after_admin_authentication(
        c: Commissioning, module: SecurityModule, pki: PkiDirectory, gwa: Gwa) -> None:
    _at_personalisation(c, pki, gwa)
    with rejected(R.NOT_AUTHENTICATED):
        c.process_event(Role.ADMINISTRATOR, GenerateOperationalKeys())
    assert "GW_WAN_TLS" not in listing(module)
    gwa.login(c)
    keys = c.process_event(Role.ADMINISTRATOR, GenerateOperationalKeys()).public_keys
    exported = c.process_event(Role.ADMINISTRATOR, ExportOperationalPublicKeys()).public_keys
    assert sorted(keys) == ["GW_WAN_ENC_PUB", "GW_WAN_SIG_PUB", "GW_WAN_TLS_PUB"]
    assert {n: public_bytes(k) for n, k in keys.items()} == {
        n: public_bytes(k) for n, k in exported.items()}


def test_personalisation_refuses_an_administrator_without_gwadm_aut(
        c: Commissioning, pki: PkiDirectory, gwa: Gwa) -> None:
    _at_personalisation(c, pki, gwa)
    challenge = c.process_event(Role.ADMINISTRATOR, RequestAdminChallenge()).challenge
    assert challenge is not None and len(challenge) == 32
    with rejected(R.NOT_AUTHENTICATED):  # signed with the GWA's SIG key, not AUT
        c.process_event(Role.ADMINISTRATOR,
                        AuthenticateAdministrator(gwa.keys["sig"].sign(challenge)))
    with rejected(R.NOT_AUTHENTICATED):
        c.process_event(Role.ADMINISTRATOR, GenerateOperationalKeys())


def test_personalisation_imports_operational_certificates_and_leaves_the_seed_s_material(
        c: Commissioning, module: SecurityModule, pki: PkiDirectory, gwa: Gwa) -> None:
    _at_personalisation(c, pki, gwa)
    personalisation(c, pki, gwa)
    assert c.phase is Phase.OPERATION
    assert listing(module) == MODULE_2_3_3  # operational certificates are not in the module
    assert c.key_material() == GATEWAY_2_3_3
    assert not module.admin_authenticated  # the TLS channel is closed
    sig = c.operational_certificate("GW_WAN_SIG_CRT")
    ecdsa_verify(sig.public_key(), module.key("GW_WAN_SIG").sign(b"reading"), b"reading")  # type: ignore[arg-type]


def test_personalisation_refuses_operational_certificates_of_the_pre_profile(
        c: Commissioning, module: SecurityModule, pki: PkiDirectory, gwa: Gwa) -> None:
    _at_personalisation(c, pki, gwa)
    gwa.login(c)
    keys = c.process_event(Role.ADMINISTRATOR, GenerateOperationalKeys()).public_keys
    chain = tuple(pki.chain()[:-1])
    certs = {use: pki.issue(f"gateway-pre-{use.lower()}", GATEWAY_ID,
                            public_key=keys[f"GW_WAN_{use}_PUB"])  # type: ignore[arg-type]
             for use in ("TLS", "SIG", "ENC")}
    with rejected(R.CERTIFICATE_INVALID):
        c.process_event(Role.ADMINISTRATOR, ImportOperationalCertificates(
            certs["TLS"], certs["SIG"], certs["ENC"], chain))
    with rejected(R.OUT_OF_ORDER):
        c.process_event(Role.ADMINISTRATOR, CompletePersonalisation())
    assert c.key_material() == GATEWAY_2_3_1


# --------------------------------------------------------------------------- §2.3.4


def test_operation_accepts_time_synchronisation_and_self_test(
        c: Commissioning, pki: PkiDirectory, gwa: Gwa) -> None:
    _at_personalisation(c, pki, gwa)
    with rejected(R.WRONG_PHASE):
        c.process_event(Role.ADMINISTRATOR, SynchroniseTime(datetime.now(UTC)))
    personalisation(c, pki, gwa)
    c.process_event(Role.ADMINISTRATOR,
                    SynchroniseTime(datetime.now(UTC) + timedelta(seconds=30)))
    offset = c.state.time_offset_seconds
    assert offset is not None and 25 < offset < 35
    c.process_event(Role.ADMINISTRATOR, RunSelfTest())
    with rejected(R.WRONG_ROLE):
        c.process_event(Role.INSTALLER, RunSelfTest())


# --------------------------------------------------------------------------- persistence


def test_commissioning_state_survives_a_restart_in_the_gateway_state_table(
        tmp_path: Path, pki: PkiDirectory, gwa: Gwa) -> None:
    module = open_module(tmp_path)
    table = StateTable(Database(tmp_path / "gw.db", durability=Durability.OFF))
    c = Commissioning(module, SmPkiTrust(), StateTableState(table, "commissioning"),
                      gateway_id=GATEWAY_ID)
    commissioned_to_installation(c, pki, gwa)
    module.close()
    module = open_module(tmp_path)
    again = Commissioning(module, SmPkiTrust(), StateTableState(table, "commissioning"))
    assert again.phase is Phase.INSTALLATION and again.key_material() == GATEWAY_2_3_1
    assert again.state == c.state
    with pytest.raises(UsageError, match="not EOTHER"):
        Commissioning(module, SmPkiTrust(), StateTableState(table, "commissioning"),
                      gateway_id="EOTHER0000000001")
    module.close()


def test_a_new_commissioning_needs_a_gateway_id(module: SecurityModule) -> None:
    with pytest.raises(UsageError):
        Commissioning(module, SmPkiTrust(), MemoryState())


def test_the_document_shows_the_table_and_diagram_generated_from_the_code() -> None:
    from imsys.gateway.commissioning_diagram import markdown_table, mermaid

    doc = (Path(__file__).parents[3] / "docs" / "commissioning.md").read_text()

    def block(name: str) -> str:
        begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
        return doc[doc.index(begin) + len(begin):doc.index(end)]

    assert block("commissioning-table") == markdown_table()
    assert block("commissioning-diagram") == f"```mermaid\n{mermaid()}```\n"
    assert mermaid().count("-->") == 1 + sum(
        sum(t is not p for t in rule.targets) for (p, _), rule in TRANSITIONS.items())


def test_events_validate_on_construction(pki: PkiDirectory) -> None:
    root = pki.root.certificate
    bad: list[object] = [
        lambda: ImportRootCertificate(root, b"short"),
        lambda: ImportRootCertificate(b"not a certificate", bytes(32)),  # type: ignore[arg-type]
        lambda: ImportPreCertificates(root, root, b"x"),  # type: ignore[arg-type]
        lambda: ImportOperationalCertificates(root, root, root, [root]),  # type: ignore[arg-type]
        lambda: LoadInitialConfiguration("text"),  # type: ignore[arg-type]
        lambda: AuthenticateAdministrator(bytes(200)),
        lambda: SynchroniseTime(datetime(2026, 1, 1)),
        lambda: SetWanParameters("ethernet"),  # type: ignore[arg-type]
        lambda: UpdateGwaAddress(("gwa", 443)),  # type: ignore[arg-type]
        lambda: WanParameters(WanMedium.LTE, dns=["192.0.2.53"]),  # type: ignore[arg-type]
    ]
    for make in bad:
        with rejected(R.MALFORMED):
            make()  # type: ignore[operator]


def test_process_event_refuses_what_is_no_event(c: Commissioning) -> None:
    with pytest.raises(UsageError):
        c.process_event(Role.INTEGRATOR, "GeneratePreKeys")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        c.process_event("integrator", GeneratePreKeys())  # type: ignore[arg-type]


class FailingSave(MemoryState):
    """A MemoryState whose next save fails once ``armed`` (a crash before the write)."""

    armed = False

    def save(self, document: dict[str, object]) -> None:
        if self.armed and document.get("system_pin") is not None:
            raise OSError("power cut")
        super().save(document)  # type: ignore[arg-type]


def test_integration_pairing_survives_a_crash_before_the_state_write(
        tmp_path: Path) -> None:
    module = open_module(tmp_path)
    state = FailingSave()
    c = Commissioning(module, SmPkiTrust(), state, gateway_id=GATEWAY_ID)
    c.process_event(Role.INTEGRATOR, StartIntegration())
    state.armed = True
    with pytest.raises(OSError):
        c.process_event(Role.INTEGRATOR, PairSecurityModule())
    assert module.paired  # the module knows the PIN, the stored state only as pending
    module.close()
    state.armed = False
    module = open_module(tmp_path)
    again = Commissioning(module, SmPkiTrust(), state)
    assert module.pin_verified and again.state.system_pin is not None
    assert again.state.pending_system_pin is None
    again.process_event(Role.INTEGRATOR, GenerateStorageKey())
    module.close()


PKCS11_FLOW = textwrap.dedent("""
    import sys
    from pathlib import Path

    sys.path.insert(0, sys.argv[2])
    from commissioning_helpers import (GATEWAY_2_3_1, GATEWAY_2_3_3, MODULE_2_3_1,
        MODULE_2_3_3, Gwa, commissioned_to_installation, installation, listing,
        new_commissioning, personalisation)
    from imsys.pki import PkiDirectory
    from imsys.secmod._softhsm import softhsm_token
    from imsys.secmod.pkcs11 import Pkcs11SecurityModule

    tmp = Path(sys.argv[1])
    module = Pkcs11SecurityModule(*softhsm_token(tmp / "hsm", "imsys-commissioning"),
                                  kdf_log2_n=4)
    pki = PkiDirectory.init(tmp / "pki")
    gwa = Gwa(pki, pki.issue_with_new_key)
    c = new_commissioning(module)
    commissioned_to_installation(c, pki, gwa)
    assert listing(module) == MODULE_2_3_1, listing(module)
    assert c.key_material() == GATEWAY_2_3_1
    installation(c)
    personalisation(c, pki, gwa)
    assert listing(module) == MODULE_2_3_3, listing(module)
    assert c.key_material() == GATEWAY_2_3_3
    module.close()
    print("commissioned on PKCS#11")
""")


def test_the_seed_s_key_material_on_a_pkcs11_token(tmp_path: Path) -> None:
    """The whole §2.3 on SoftHSM2, in a child process (SoftHSM2 sees only the tokens that
    existed when this process loaded it; the secmod tests own that one)."""
    from imsys.secmod._softhsm import find_pkcs11_library

    missing = ("python-pkcs11" if importlib.util.find_spec("pkcs11") is None
               else "SoftHSM2" if find_pkcs11_library() is None
               or shutil.which("softhsm2-util") is None else None)
    if missing:
        if os.environ.get("IMSYS_REQUIRE_PKCS11") == "1":
            pytest.fail(f"IMSYS_REQUIRE_PKCS11=1 but {missing} is missing", pytrace=False)
        pytest.skip(f"{missing} is not installed")
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    result = subprocess.run([sys.executable, "-c", PKCS11_FLOW, str(tmp_path),
                             str(Path(__file__).parent)], capture_output=True, text=True,
                            timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "commissioned on PKCS#11"
