"""The gateway's PIN-protected local interface (seed 003 §2.3, Hinweis; §2.3.1.3; §2.3.2)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from commissioning_helpers import (
    GATEWAY_2_3_1,
    MODULE_2_3_1,
    Gwa,
    IssueFn,
    fingerprint,
    integration,
    listing,
    new_commissioning,
    open_module,
    pre_personalisation_1,
)

from imsys.core.errors import UsageError
from imsys.gateway.commissioning import (
    Commissioning,
    CommissioningLogRecord,
    CommissioningReason,
    CommissioningRejected,
    CompleteInstallation,
    CompletePrePersonalisation2,
    GeneratePreKeys,
    ImportRootCertificate,
    JsonFileState,
    LoadInitialConfiguration,
    MemoryState,
    Phase,
    Role,
    SetWanParameters,
    UpdateGwaAddress,
    WanMedium,
    WanParameters,
)
from imsys.gateway.initial_config import GwaAddress
from imsys.gateway.local_interface import LocalInterface
from imsys.gateway.logs import Outcome
from imsys.pki import PkiDirectory
from imsys.secmod import SecurityModule

R = CommissioningReason
INTEGRATOR_PIN = "integrator-123456"
INSTALLER_PIN = "installer-654321"


class RecordingState(MemoryState):
    """A MemoryState that remembers every document saved."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: list[dict[str, Any]] = []

    def save(self, document: dict[str, Any]) -> None:
        super().save(document)
        self.saved.append(document)


@pytest.fixture
def module(tmp_path: Path) -> Iterator[SecurityModule]:
    m = open_module(tmp_path)
    yield m
    m.close()


@pytest.fixture(scope="session")
def gwa(pki: PkiDirectory, issue: IssueFn) -> Gwa:
    return Gwa(pki, issue)


@pytest.fixture
def records() -> list[CommissioningLogRecord]:
    return []


@pytest.fixture
def c(module: SecurityModule, records: list[CommissioningLogRecord]) -> Commissioning:
    return new_commissioning(module, log=records.append)


@pytest.fixture
def li_state() -> RecordingState:
    state = RecordingState()
    LocalInterface.provision(state, integrator_pin=INTEGRATOR_PIN, installer_pin=INSTALLER_PIN,
                             kdf_log2_n=4)
    return state


@pytest.fixture
def li(c: Commissioning, li_state: RecordingState,
       records: list[CommissioningLogRecord]) -> LocalInterface:
    return LocalInterface(c, li_state, log=records.append)


@contextmanager
def rejected(reason: CommissioningReason
             ) -> Iterator[pytest.ExceptionInfo[CommissioningRejected]]:
    """Expect a :class:`CommissioningRejected` with exactly ``reason``."""
    with pytest.raises(CommissioningRejected) as info:
        yield info
    assert info.value.reason is reason, info.value


def to_installation(c: Commissioning, li: LocalInterface, pki: PkiDirectory, gwa: Gwa) -> None:
    li.login(Role.INTEGRATOR, INTEGRATOR_PIN)
    pre_personalisation_1(c, pki)
    integration(c)
    li.submit(LoadInitialConfiguration(gwa.document()))
    li.submit(CompletePrePersonalisation2())


def test_provisioning_needs_two_different_pins_and_happens_once(li_state: MemoryState) -> None:
    with pytest.raises(UsageError):
        LocalInterface.provision(MemoryState(), integrator_pin="same-pin",
                                 installer_pin="same-pin")
    with pytest.raises(UsageError):
        LocalInterface.provision(MemoryState(), integrator_pin="12345", installer_pin="654321")
    with pytest.raises(UsageError):
        LocalInterface.provision(li_state, integrator_pin="another-1",
                                 installer_pin="another-2")
    document = li_state.load()
    assert document is not None
    assert INTEGRATOR_PIN not in str(document) and INSTALLER_PIN not in str(document)


def test_pre_personalisation_2_through_the_local_interface_with_the_integrator_pin(
        c: Commissioning, li: LocalInterface, module: SecurityModule, pki: PkiDirectory,
        gwa: Gwa) -> None:
    pre_personalisation_1(c, pki)
    integration(c)
    with rejected(R.NO_SESSION):
        li.submit(LoadInitialConfiguration(gwa.document()))
    li.login(Role.INTEGRATOR, INTEGRATOR_PIN)
    assert li.session_role is Role.INTEGRATOR
    li.submit(LoadInitialConfiguration(gwa.document()))
    li.submit(CompletePrePersonalisation2())
    assert c.phase is Phase.INSTALLATION
    assert li.session_role is None  # the integrator has nothing left to do here
    assert listing(module) == MODULE_2_3_1 and c.key_material() == GATEWAY_2_3_1


def test_installer_cannot_log_in_during_the_integrator_phases(
        li: LocalInterface) -> None:
    with rejected(R.WRONG_PHASE):
        li.login(Role.INSTALLER, INSTALLER_PIN)
    assert li.failures(Role.INSTALLER) == 0 and li.session_role is None


def test_installation_installer_pin_has_no_integrator_rights(
        c: Commissioning, li: LocalInterface, module: SecurityModule, pki: PkiDirectory,
        gwa: Gwa) -> None:
    to_installation(c, li, pki, gwa)
    with rejected(R.WRONG_PHASE):  # the integrator PIN is of no use any more
        li.login(Role.INTEGRATOR, INTEGRATOR_PIN)
    with rejected(R.WRONG_PIN):  # the integrator PIN is not the installer's
        li.login(Role.INSTALLER, INTEGRATOR_PIN)
    li.login(Role.INSTALLER, INSTALLER_PIN)
    before = listing(module)
    root = pki.root.certificate
    for event in (ImportRootCertificate(root, fingerprint(root)), GeneratePreKeys(),
                  LoadInitialConfiguration(gwa.document())):
        with rejected(R.WRONG_PHASE):
            li.submit(event)
    assert listing(module) == before
    li.submit(SetWanParameters(WanParameters(WanMedium.ETHERNET)))
    li.submit(UpdateGwaAddress(GwaAddress("192.0.2.80", 4443)))
    assert c.gwa_address == GwaAddress("192.0.2.80", 4443)


def test_local_interface_is_disabled_for_good_at_the_end_of_installation(
        c: Commissioning, li: LocalInterface, li_state: RecordingState, pki: PkiDirectory,
        gwa: Gwa) -> None:
    to_installation(c, li, pki, gwa)
    li.login(Role.INSTALLER, INSTALLER_PIN)
    assert li.enabled
    li.submit(CompleteInstallation())
    assert c.phase is Phase.PERSONALISATION
    assert not li.enabled and li.session_role is None
    document = li_state.load()
    assert document is not None and document["disabled"] is True and document["pins"] == {}
    for role, pin in ((Role.INSTALLER, INSTALLER_PIN), (Role.INTEGRATOR, INTEGRATOR_PIN)):
        with rejected(R.LOCAL_INTERFACE_DISABLED):
            li.login(role, pin)
    # a restarted gateway keeps it disabled
    again = LocalInterface(c, li_state)
    with rejected(R.LOCAL_INTERFACE_DISABLED):
        again.login(Role.INSTALLER, INSTALLER_PIN)
    with rejected(R.LOCAL_INTERFACE_DISABLED):
        again.submit(CompleteInstallation())


def test_repeated_wrong_pins_lock_the_role_for_good(tmp_path: Path, c: Commissioning,
                                                    records: list[CommissioningLogRecord]
                                                    ) -> None:
    state = JsonFileState(tmp_path / "local-interface.json")
    LocalInterface.provision(state, integrator_pin=INTEGRATOR_PIN,
                             installer_pin=INSTALLER_PIN, kdf_log2_n=4)
    li = LocalInterface(c, state, log=records.append)
    remaining = []
    for _ in range(3):
        with rejected(R.WRONG_PIN) as info:
            li.login(Role.INTEGRATOR, "wrong-pin-000")
        remaining.append(info.value.context["remaining"])
    assert remaining == [2, 1, 0]
    with rejected(R.PIN_LOCKED):
        li.login(Role.INTEGRATOR, INTEGRATOR_PIN)
    # the counter survives a restart
    with rejected(R.PIN_LOCKED):
        LocalInterface(c, state).login(Role.INTEGRATOR, INTEGRATOR_PIN)
    assert [(r.step.value, r.outcome, r.reason) for r in records] == [
        ("local-login", Outcome.FAILURE, R.WRONG_PIN)] * 3 + [
        ("local-login", Outcome.FAILURE, R.PIN_LOCKED)]


def test_a_correct_pin_resets_the_counter_which_is_stored_before_the_comparison(
        li: LocalInterface, li_state: RecordingState) -> None:
    with rejected(R.WRONG_PIN):
        li.login(Role.INTEGRATOR, "wrong-pin-000")
    li_state.saved.clear()
    li.login(Role.INTEGRATOR, INTEGRATOR_PIN)
    assert [d["failures"]["integrator"] for d in li_state.saved] == [2, 0]
    assert li.failures(Role.INTEGRATOR) == 0


def test_only_integrator_and_installer_use_the_local_interface(li: LocalInterface) -> None:
    for role in (Role.ADMINISTRATOR, Role.INTEGRATOR_DIRECT):
        with pytest.raises(UsageError):
            li.login(role, INTEGRATOR_PIN)


def test_an_unprovisioned_local_interface_cannot_be_used(c: Commissioning) -> None:
    with pytest.raises(UsageError):
        LocalInterface(c, MemoryState())
