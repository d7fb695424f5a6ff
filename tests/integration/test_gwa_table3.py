"""Seed 003 §5.9, table 3 ("Administration"), step by step, and the rejections of the admin
channel: a gateway in normal operation and the real GWA service over real TLS on 127.0.0.1.

Steps 3.5 and 3.7 (download and activation of new software) are the firmware update's and
are tested with it; here "the command" of steps 3.3/3.4 is a profile command.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "gwa"))
sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "gateway"))

from gwa_helpers import (
    GWA_ID,
    BackgroundEndpoint,
    GatewayUnderTest,
    ScriptedService,
    cached_validator,
    commission,
    communication_document,
    gateway_at_personalisation,
    gwa_keys,
)

from imsys.core.clock import SystemClock
from imsys.core.errors import TlsRejected
from imsys.crypto import cms
from imsys.gateway.admin import ConfigKind
from imsys.gateway.admin.administrator import (
    ADMINISTRATOR_ITEM,
    Administrator,
    current_administrator,
    set_administrator,
)
from imsys.gateway.admin.session import SessionReport, wakeup_receiver
from imsys.gateway.initial_config import GwaAddress
from imsys.gateway.logs import SystemEvent
from imsys.gateway.wakeup_listener import WakeupEvent, WakeupListener
from imsys.gwa.db import CommandStatus, Commissioning, GwaDatabase
from imsys.gwa.keys import DirectorySubCa, GwaKeys
from imsys.gwa.server import AdminEndpoint
from imsys.gwa.service import GwaService
from imsys.gwa.wakeup import send_wakeup
from imsys.pki import PkiDirectory
from imsys.wire.command import Command, CommandType, issue_command
from imsys.wire.wakeup import WakeupReason, make_wakeup

GATEWAY = "EIMS0000000401"


@pytest.fixture(scope="module")
def keys(pki: PkiDirectory, tmp_path_factory: pytest.TempPathFactory) -> GwaKeys:
    return gwa_keys(pki, tmp_path_factory.mktemp("gwa-keys"))


@pytest.fixture(scope="module")
def other_keys(pki: PkiDirectory, tmp_path_factory: pytest.TempPathFactory) -> GwaKeys:
    """Another, equally valid SM-PKI administrator."""
    return gwa_keys(pki, tmp_path_factory.mktemp("other-gwa-keys"), "GWA-Other-2")


@pytest.fixture(scope="module")
def service(pki: PkiDirectory, keys: GwaKeys,
            tmp_path_factory: pytest.TempPathFactory) -> ScriptedService:
    folder = tmp_path_factory.mktemp("gwa-db")
    return ScriptedService(GwaDatabase(f"sqlite:///{folder / 'gwa.db'}"), keys,
                           DirectorySubCa(pki), cached_validator(pki), SystemClock())


@pytest.fixture(scope="module")
def running(service: ScriptedService, pki: PkiDirectory) -> Iterator[BackgroundEndpoint]:
    with BackgroundEndpoint(service, pki) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def gateway(running: BackgroundEndpoint, pki: PkiDirectory, keys: GwaKeys,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayUnderTest]:
    gw = gateway_at_personalisation(tmp_path_factory.mktemp("gw") / "gw", GATEWAY, pki, keys,
                                    GwaAddress("127.0.0.1", running.port))
    commission(gw)
    yield gw
    gw.close()


def session(gateway: GatewayUnderTest) -> SessionReport:
    return asyncio.run(gateway.client().run_once())


def status(service: GwaService, command_id: Any) -> CommandStatus:
    row = service.db.command(command_id)
    assert row is not None
    return row.status


def resign(keys: GwaKeys) -> Callable[[bytes], bytes]:
    """Rewrite a command blob: same document, signed by ``keys``' SIG key."""
    def rewrite(blob: bytes) -> bytes:
        command = Command.decode(cms.verify(blob).content)
        return issue_command(command, keys.key("SIG"), keys.certificate("SIG"))
    return rewrite


async def _wake(gateway: GatewayUnderTest, send: Callable[[tuple[str, int]], None],
                events: list[WakeupEvent], *, expect_session: bool) -> list[SessionReport]:
    reports: list[SessionReport] = []
    done = asyncio.Event()

    async def on_wakeup(_: object) -> None:
        reports.append(await gateway.client().run_once())
        done.set()

    async with WakeupListener(wakeup_receiver(gateway.context), on_wakeup,
                              system_log=events.append) as listener:
        send(listener.address)
        if expect_session:
            await asyncio.wait_for(done.wait(), 20)
        else:
            await asyncio.sleep(0.5)
    return reports


def _udp(packet: bytes) -> Callable[[tuple[str, int]], None]:
    def send(address: tuple[str, int]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(packet, address)
    return send


# --------------------------------------------------------------------------- table 3


def test_table3_step_1_1_administration_data_available(
        service: ScriptedService, gateway: GatewayUnderTest) -> None:
    """1.1: the GWA has what it needs: the gateway in its inventory (operational, its ENC
    certificate to seal for) and a queue that takes only well-formed commands."""
    row = service.db.gateway(GATEWAY)
    assert row is not None and row.commissioning is Commissioning.OPERATIONAL
    assert row.enc_certificate is not None
    from imsys.gwa.service import GwaRejected

    with pytest.raises(GwaRejected):
        service.enqueue([GATEWAY], "no.such.command", {})
    with pytest.raises(GwaRejected):  # the driver's commands are not the operator's
        service.enqueue([GATEWAY], "commissioning.self-test", {})


def test_table3_step_2_1_gwa_sends_commands_and_data(
        service: ScriptedService, gateway: GatewayUnderTest, pki: PkiDirectory) -> None:
    """2.1: commands and administration data go to the gateway in the session it opens."""
    before = service.db.gateway(GATEWAY)
    command_id = service.enqueue([GATEWAY], "profile.communication.install",
                                 {"profile": communication_document(pki, profile_id="CP-21")})[0]
    assert status(service, command_id) is CommandStatus.QUEUED
    report = session(gateway)
    assert report.executed == 1 and status(service, command_id) is CommandStatus.OK
    row = service.db.command(command_id)
    assert row is not None and before is not None and row.sequence == before.next_sequence
    assert gateway.context.config.get(ConfigKind.COMMUNICATION_PROFILE, "CP-21") is not None


def test_table3_step_2_2_gateway_executes_only_after_checking_the_signature(
        service: ScriptedService, gateway: GatewayUnderTest) -> None:
    """2.2: a command whose signature does not verify is not executed."""
    command_id = service.enqueue([GATEWAY], "profile.communication.delete",
                                 {"profile_id": "CP-21"})[0]

    def tamper(blob: bytes) -> bytes:
        at = blob.index(b"CP-21")
        return blob[:at] + b"CP-22" + blob[at + 5:]

    service.rewrite.append(tamper)
    report = session(gateway)
    assert (report.executed, report.refused) == (0, ["bad-signature"])
    assert status(service, command_id) is CommandStatus.REFUSED
    assert gateway.context.config.get(ConfigKind.COMMUNICATION_PROFILE, "CP-21") is not None
    last = [e for e in gateway.context.logs.system.entries()
            if e.event == SystemEvent.INPUT_REJECTED][-1]
    assert "admin command refused" in last.text and "bad-signature" in last.text


def test_table3_step_2_3_self_test_after_commissioning(
        service: ScriptedService, gateway: GatewayUnderTest) -> None:
    """2.3: the gateway ran its self-test; the GWA holds the signed, verified result."""
    tests = [c for c in service.db.commands(gateway_id=GATEWAY)
             if c.type == CommandType.COMMISSIONING_SELF_TEST.value]
    assert [c.status for c in tests] == [CommandStatus.OK]
    assert tests[0].result is not None and tests[0].result["self_test"] == "passed"
    assert service.db.result_cms(tests[0].command_id) is not None


def test_table3_step_3_1_wakeup(service: ScriptedService, gateway: GatewayUnderTest) -> None:
    """3.1: the GWA's signed wake-up makes the gateway open a session."""
    contacts = service.db.gateway(GATEWAY).contacts  # type: ignore[union-attr]
    events: list[WakeupEvent] = []

    def send(address: tuple[str, int]) -> None:
        service.db.update_gateway(GATEWAY, wakeup_host=address[0], wakeup_port=address[1])
        assert send_wakeup(service, GATEWAY) == address

    reports = asyncio.run(_wake(gateway, send, events, expect_session=True))
    assert len(reports) == 1 and [e.outcome.value for e in events] == ["connect"]
    assert service.db.gateway(GATEWAY).contacts == contacts + 1  # type: ignore[union-attr]


def test_table3_step_3_2_gateway_opens_tls_only_to_its_administrator(
        service: ScriptedService, gateway: GatewayUnderTest, other_keys: GwaKeys,
        pki: PkiDirectory, tmp_path: Path) -> None:
    """3.2: the gateway builds the TLS channel to its GWA – and refuses a server that is not
    its GWA (another valid administrator's certificate) before any command."""
    before = session(gateway)
    assert before.session_id is not None
    rogue = GwaService(GwaDatabase(f"sqlite:///{tmp_path / 'rogue.db'}"), other_keys,
                       DirectorySubCa(pki), cached_validator(pki), SystemClock())
    current = current_administrator(gateway.context.config, gateway.commissioning)

    async def scenario() -> None:
        async with AdminEndpoint(rogue, cached_validator(pki)) as endpoint:
            set_administrator(gateway.context.config, Administrator(
                current.administrator_id, GwaAddress("127.0.0.1", endpoint.port),
                current.certificates))
            try:
                with pytest.raises(TlsRejected):
                    await gateway.client().run_once()
            finally:
                gateway.context.config.delete(ConfigKind.SETTING, ADMINISTRATOR_ITEM)

    asyncio.run(scenario())
    assert rogue.db.gateways() == []  # the rogue never got a hello
    entries = gateway.context.logs.system.entries()
    assert any(e.event == SystemEvent.TLS_FAILURE for e in entries)


def test_table3_step_3_3_gwa_sends_a_signed_command(
        service: ScriptedService, gateway: GatewayUnderTest) -> None:
    """3.3: the command travels as CMS SignedData by GWADM_SIG, sequence numbers increase."""
    ids = service.enqueue([GATEWAY, GATEWAY], "profile.communication.activate",
                          {"profile_id": "CP-21"})
    sent = len(service.sent)
    session(gateway)
    blobs = service.sent[sent:]
    assert len(blobs) == 2
    commands = [Command.decode(cms.verify(b, signer_certificate=service.keys.certificate("SIG"))
                               .content) for b in blobs]
    assert [c.command_id for c in commands] == ids
    assert commands[1].sequence == commands[0].sequence + 1
    assert all(c.administrator_id == GWA_ID for c in commands)
    # the hello of this session reported step 3.2's refused TLS server as an alarm
    row = service.db.gateway(GATEWAY)
    assert row is not None and (row.alarm_errors, row.alarm_warnings) == (1, 0)
    assert row.last_error_at is not None


def test_table3_step_3_4_gateway_refuses_a_command_signed_by_another_gwa(
        service: ScriptedService, gateway: GatewayUnderTest, other_keys: GwaKeys) -> None:
    """3.4: the signature is verified against the current GWA's certificate: a command signed
    by another (valid) administrator is refused and not executed."""
    command_id = service.enqueue([GATEWAY], "profile.communication.delete",
                                 {"profile_id": "CP-21"})[0]
    service.rewrite.append(resign(other_keys))
    report = session(gateway)
    assert report.refused == ["signer-not-current-administrator"] and report.executed == 0
    assert status(service, command_id) is CommandStatus.REFUSED
    assert gateway.context.config.get(ConfigKind.COMMUNICATION_PROFILE, "CP-21") is not None


def test_table3_step_3_6_gateway_closes_the_tls_channel(
        service: ScriptedService, gateway: GatewayUnderTest) -> None:
    """3.6: when the GWA has nothing more the gateway closes the channel (and a closed
    personalisation channel was followed by a new one with the operational keys)."""
    report = session(gateway)
    assert report.executed == 0
    texts = [e.text for e in gateway.context.logs.system.entries()
             if e.event == SystemEvent.ADMIN_SESSION]
    assert texts[-1].startswith("admin session closed")
    row = service.db.gateway(GATEWAY)  # step 3.4's refusal, reported at this hello
    assert row is not None and (row.alarm_errors, row.alarm_warnings) == (0, 1)
    phases = [c.type for c in service.db.commands(gateway_id=GATEWAY)][:8]
    assert phases[5] == CommandType.COMMISSIONING_COMPLETE_PERSONALISATION.value
    assert phases[6] == CommandType.COMMISSIONING_SYNCHRONISE_TIME.value


# --------------------------------------------------------------------------- rejections


def test_replayed_command_is_refused(service: ScriptedService, gateway: GatewayUnderTest) -> None:
    """A command the gateway executed before, sent again (same bytes), is refused."""
    executed = [blob for blob in service.sent]
    old = executed[-3]  # a command of an earlier session that was executed
    command_id = service.enqueue([GATEWAY], "profile.communication.activate",
                                 {"profile_id": "CP-21"})[0]
    service.rewrite.append(lambda _: old)
    report = session(gateway)
    assert report.refused == ["replayed"] and report.executed == 0
    assert status(service, command_id) is CommandStatus.REFUSED


def test_stale_wakeup_causes_no_session(service: ScriptedService,
                                        gateway: GatewayUnderTest) -> None:
    contacts = service.db.gateway(GATEWAY).contacts  # type: ignore[union-attr]
    stale = make_wakeup(GATEWAY, GWA_ID, service.keys.key("SIG"),
                        issued_at=datetime.now(UTC).replace(microsecond=0)
                        - timedelta(minutes=10))
    events: list[WakeupEvent] = []
    reports = asyncio.run(_wake(gateway, _udp(stale), events, expect_session=False))
    assert reports == []
    assert [(e.outcome.value, e.reason) for e in events] == [("rejected", WakeupReason.EXPIRED)]
    assert service.db.gateway(GATEWAY).contacts == contacts  # type: ignore[union-attr]


def test_replayed_wakeup_causes_no_second_session_even_after_a_restart(
        service: ScriptedService, gateway: GatewayUnderTest) -> None:
    packet = service.wakeup_packet(GATEWAY)
    events: list[WakeupEvent] = []
    first = asyncio.run(_wake(gateway, _udp(packet), events, expect_session=True))
    assert len(first) == 1
    # a new listener and receiver (as after a restart): the nonce is in the database
    replay_events: list[WakeupEvent] = []
    again = asyncio.run(_wake(gateway, _udp(packet), replay_events, expect_session=False))
    assert again == []
    assert [(e.outcome.value, e.reason) for e in replay_events] == [
        ("rejected", WakeupReason.REPLAYED_NONCE)]


def test_wakeup_signed_by_another_gwa_is_refused(
        gateway: GatewayUnderTest, other_keys: GwaKeys) -> None:
    forged = make_wakeup(GATEWAY, GWA_ID, other_keys.key("SIG"),
                         issued_at=datetime.now(UTC).replace(microsecond=0))
    events: list[WakeupEvent] = []
    assert asyncio.run(_wake(gateway, _udp(forged), events, expect_session=False)) == []
    assert [e.reason for e in events] == [WakeupReason.BAD_SIGNATURE]
