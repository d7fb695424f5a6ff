"""Seed 003 §7 (table 5): the administrator change between two running GWA services over real
TLS on 127.0.0.1, with a commissioned gateway process in between.

A commissions and runs the gateway; then (2.5) deletes the profiles N must not see and (2.6)
sends N's connection data and certificates, signed by A; the gateway checks that signature
(2.7) and N's certificates against the root with CRLs (2.8, 2.4), and connects to N (2.9); N
reads the configuration (2.10) and records its check (2.11), disconnects and wakes the gateway
(2.12); the gateway takes the wake-up as the take-over (2.13), connects to N, which configures
further (2.15). Afterwards A can do nothing: its wake-up and its commands are refused. Readings
and logs stay, their chains intact.

Not here: step 2.14's exchange of the GWADM public keys in the security module
(``admin-change.remove-old``) needs N authenticated to the module (GWADM_AUT), and the GWA can
authenticate only during personalisation so far – the handler's own tests authenticate
directly (tests/unit/gateway/admin/test_admin_change.py).
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "gwa"))

from gwa_helpers import (
    communication_document,
    gwa_keys,
    initial_configuration,
    new_service,
)

from imsys.core.clock import SystemClock
from imsys.gateway.admin.admin_change_handlers import sign_change_configuration
from imsys.gateway.admin.administrator import Administrator, current_administrator
from imsys.gateway.admin.config_store import ConfigKind
from imsys.gateway.device import DeviceSettings
from imsys.gateway.device_process import DeviceGatewayProcess
from imsys.gateway.initial_config import GwaAddress
from imsys.gateway.logs import GatewayLogs
from imsys.gateway.store import Database, ReadingStore
from imsys.gwa.db import CommandStatus
from imsys.gwa.db import Commissioning as GwaCommissioning
from imsys.gwa.keys import GwaKeys
from imsys.gwa.server import AdminEndpoint
from imsys.gwa.service import GwaService
from imsys.pki import PkiDirectory
from imsys.system.demo import copy_crls
from imsys.system.factory import install, load_initial_configuration, manufacture
from imsys.system.roles import free_port

GATEWAY = "EIMS0000000999"
PIN_I, PIN_E = "integrator-9999", "installer-9999"
TIMEOUT = 60.0
FINAL = {CommandStatus.OK, CommandStatus.FAILED, CommandStatus.REFUSED,
         CommandStatus.UNANSWERED, CommandStatus.NOT_ISSUED}


async def _until(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _administrator(keys: GwaKeys, port: int) -> Administrator:
    c, chain = keys.certificates, tuple(keys.chain)
    return Administrator(keys.administrator_id, GwaAddress("127.0.0.1", port),
                         {f"GWADM_{use}_CRT": (c[use], chain) for use in ("TLS", "SIG", "ENC",
                                                                           "AUT")})


def _wake(service: GwaService, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(service.wakeup_packet(GATEWAY), ("127.0.0.1", port))


def _sessions_closed(device) -> int:  # type: ignore[no-untyped-def]
    return sum("admin session closed" in e.text for e in device.logs.system.entries())


def _done(service: GwaService, commands: list) -> bool:  # type: ignore[type-arg]
    return all(service.db.command(c).status in FINAL for c in commands)  # type: ignore[union-attr]


def _status(service: GwaService, commands: list) -> list[str]:  # type: ignore[type-arg]
    rows = [service.db.command(c) for c in commands]
    return [r.status.value if r.status is CommandStatus.OK  # type: ignore[union-attr]
            else f"{r.status.value}: {r.detail} {r.result}" for r in rows]  # type: ignore[union-attr]


def test_table5_administrator_change_between_two_running_gwa_services(
        pki: PkiDirectory, tmp_path: Path) -> None:
    clock = SystemClock()
    keys_a = gwa_keys(pki, tmp_path / "a-keys", "GWA-Alt-A")
    keys_n = gwa_keys(pki, tmp_path / "n-keys", "GWA-Neu-N")
    gwa_a = new_service(pki, keys_a, f"sqlite:///{tmp_path / 'a.db'}", clock)
    gwa_n = new_service(pki, keys_n, f"sqlite:///{tmp_path / 'n.db'}", clock)
    state, wakeup = tmp_path / "gateway", free_port()

    async def scenario() -> None:
        async with AdminEndpoint(gwa_a, pki.validator) as end_a, \
                AdminEndpoint(gwa_n, pki.validator) as end_n:
            settings = DeviceSettings(GATEWAY, lmn_listen=f"127.0.0.1:{free_port()}",
                                      wakeup_listen=f"127.0.0.1:{wakeup}", wakeup_burst=5)
            manufacture(state, GATEWAY, pki, clock, integrator_pin=PIN_I, installer_pin=PIN_E,
                        settings=settings, kdf_log2_n=4)
            load_initial_configuration(state, clock, initial_configuration(
                keys_a, GATEWAY, GwaAddress("127.0.0.1", end_a.port)), integrator_pin=PIN_I)
            install(state, clock, installer_pin=PIN_E)
            copy_crls(pki.path, state / "crls")
            # 1.3/1.4: in normal operation, configured on A, with a profile N must not see
            gwa_a.enqueue([GATEWAY], "profile.communication.install",
                          {"profile": communication_document(pki, "EMT-A", "CP-A")})
            process = DeviceGatewayProcess(state, clock, poll=0.02)
            stop = asyncio.Event()
            task = asyncio.create_task(process.run(stop))
            try:
                await asyncio.wait_for(process.ready.wait(), TIMEOUT)
                row_a = lambda: gwa_a.db.gateway(GATEWAY)  # noqa: E731
                await _until(lambda: row_a() is not None and row_a().commissioning  # type: ignore[union-attr]
                             is GwaCommissioning.OPERATIONAL, "commissioning by A")
                _wake(gwa_a, wakeup)  # A's configuration
                device = process.device
                assert device is not None
                await _until(lambda: device.config.get(ConfigKind.COMMUNICATION_PROFILE,
                                                       "CP-A") is not None, "A's profile")

                # 2.1–2.3 (market communication): N's certificates and address reach A; N
                # adopts the gateway and queues its steps 2.10 and 2.11
                new = _administrator(keys_n, end_n.port)
                gwa_n.adopt(GATEWAY)
                n_steps = [gwa_n.enqueue([GATEWAY], "admin-change.read-configuration", {})[0],
                           gwa_n.enqueue([GATEWAY], "admin-change.check-result",
                                         {"result": "positive"})[0]]
                # 2.5, 2.6: A deletes the profiles and hands over N's data, signed (2.7)
                a_steps = [gwa_a.enqueue([GATEWAY], "admin-change.delete-profiles", {})[0],
                           gwa_a.enqueue([GATEWAY], "admin-change.prepare", {
                               "configuration": sign_change_configuration(
                                   GATEWAY, new, keys_a.key("SIG"), keys_a.certificate("SIG"))
                           })[0]]
                closed = _sessions_closed(device)
                _wake(gwa_a, wakeup)
                await _until(lambda: _done(gwa_a, a_steps), "A's steps 2.5–2.8")
                assert _status(gwa_a, a_steps) == ["ok", "ok"]
                assert device.config.get(ConfigKind.COMMUNICATION_PROFILE, "CP-A") is None
                # 2.9–2.11: the gateway connected to N on its own
                await _until(lambda: _done(gwa_n, n_steps), "N's steps 2.10–2.11")
                assert _status(gwa_n, n_steps) == ["ok", "ok"]
                read = gwa_n.db.command(n_steps[0])
                assert read is not None and read.result is not None
                assert "configuration" in read.result
                # 2.12/2.13: N ends the session and wakes the gateway: take-over; 2.14/2.15 in
                # N's next session
                await _until(lambda: _sessions_closed(device) >= closed + 2,
                             "the end of the session with N")
                n_after = [gwa_n.enqueue([GATEWAY], "monitoring.status", {})[0],
                           gwa_n.enqueue([GATEWAY], "profile.communication.install", {
                               "profile": communication_document(pki, "EMT-N", "CP-N")})[0]]
                _wake(gwa_n, wakeup)
                await _until(lambda: _done(gwa_n, n_after), "N's step 2.15")
                assert _status(gwa_n, n_after) == ["ok", "ok"]
                assert current_administrator(device.config, device.commissioning) \
                    .administrator_id == "GWA-Neu-N"
                # the end state: A can do nothing at all
                a_late = gwa_a.enqueue([GATEWAY], "monitoring.status", {})[0]
                _wake(gwa_a, wakeup)
                await asyncio.sleep(1.0)
                assert gwa_a.db.command(a_late).status is CommandStatus.QUEUED  # type: ignore[union-attr]
                texts = [e.text for e in device.logs.system.entries()]
                assert any("wake-up rejected" in t for t in texts)
            finally:
                stop.set()
                await asyncio.wait_for(task, TIMEOUT)

    asyncio.run(scenario())
    with Database(state / "gateway.db") as db:  # readings and logs kept, chains intact
        ReadingStore(db).verify_chain()
        GatewayLogs(db, clock).verify_all()
        texts = [r[0] for r in db.connection.execute(
            "SELECT text FROM log_entries WHERE log = 'system' ORDER BY record_number")]
    for step in ("2.5", "2.6-2.8", "2.10", "2.11", "2.13"):
        assert any(f"administrator change {step}" in t for t in texts), step
