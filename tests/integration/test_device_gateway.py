"""A gateway made on the production line runs as a process and is commissioned and
configured by a real GWA service over real TLS on 127.0.0.1 (seed 003 §2.3.3–§2.3.4, §5):

manufacture → initial configuration → installation (imsys.system.factory) → the process
connects to its GWA with the ``*_PRE`` keys (personalisation) and again with the operational
keys (time synchronisation, self-test) → the operator's commands (meter, communication and
evaluation profiles) arrive in the session a wake-up starts → the process configures itself
from them and its LMN endpoint accepts the meter the administrator registered.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "gwa"))

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from gwa_helpers import communication_document, gwa_keys, initial_configuration, new_service

from imsys.core.clock import SystemClock
from imsys.crypto.tls import TlsIdentity
from imsys.gateway.admin.config_store import ConfigKind
from imsys.gateway.commissioning import Phase
from imsys.gateway.device import DeviceSettings
from imsys.gateway.device_process import DeviceGatewayProcess
from imsys.gateway.initial_config import GwaAddress
from imsys.gateway.meter_profile import MeterProfile, MeterProtocol, tls_fingerprint
from imsys.gateway.store import Database, ReadingStore
from imsys.gateway.taf import EvaluationProfile, Taf
from imsys.gwa.db import CommandStatus
from imsys.gwa.db import Commissioning as GwaCommissioning
from imsys.gwa.server import AdminEndpoint
from imsys.meters.lmn_tls import LmnTlsConfig, PushMeter
from imsys.meters.settings import MeterSettings
from imsys.meters.simulator import MeterKind, MeterSimulator, ModelKind
from imsys.pki import PkiDirectory
from imsys.system.demo import copy_crls
from imsys.system.factory import install, load_initial_configuration, manufacture
from imsys.system.roles import free_port

GATEWAY, METER, EMT = "EIMS0000000777", "1EMH0000000777", "EMT-1"
INTEGRATOR, INSTALLER = "integrator-7777", "installer-7777"
TIMEOUT = 60.0


FINAL = {CommandStatus.OK, CommandStatus.FAILED, CommandStatus.REFUSED,
         CommandStatus.UNANSWERED, CommandStatus.NOT_ISSUED}


def _der64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


def _operator_commands(issue, pki: PkiDirectory) -> list[tuple[str, dict[str, object]]]:  # type: ignore[no-untyped-def]
    """One or more commands of every group but firmware and administrator change (their own
    tests: test_firmware_update.py, test_admin_change.py), in an order that works. Not here:
    ``key.certificate.renew`` – generating a key pair in operation needs the administrator's
    authentication to the security module, which the GWA service performs only during
    personalisation (the handler's own tests cover it)."""
    _, han = issue("consumer-tls", "LV-7-han")
    chain = [_der64(c) for c in pki.chain("sub-ca")[:-1]]
    return [
        ("consumer.create", {"consumer_id": "LV-7", "label": "Haushalt 7"}),
        ("consumer.update", {"consumer_id": "LV-7", "label": "Haushalt 7a"}),
        ("consumer.certificate.install", {"consumer_id": "LV-7", "certificate": _der64(han),
                                          "chain": chain}),
        ("consumer.credentials.set", {"consumer_id": "LV-7", "username": "lv7",
                                      "password": "correct horse battery"}),  # sealed
        ("device.cls.register", {"device_id": "CLS-7", "address": "127.0.0.1", "port": 5007}),
        ("device.display.register", {"device_id": "DISPLAY-7"}),
        ("device.assign", {"device_kind": "cls", "device_id": "CLS-7", "consumer_id": "LV-7"}),
        ("device.unassign", {"device_kind": "cls", "device_id": "CLS-7"}),
        ("device.cls.delete", {"device_id": "CLS-7"}),
        ("key.install", {"key_id": "HAN-KEY-7", "purpose": "han",
                         "key": base64.b64encode(bytes(range(16))).decode()}),  # sealed
        ("key.activate", {"key_id": "HAN-KEY-7"}),
        ("key.deactivate", {"key_id": "HAN-KEY-7"}),
        ("key.delete", {"key_id": "HAN-KEY-7"}),
        ("time.service.configure", {"servers": ["127.0.0.1"], "interval_s": 3600}),
        ("wakeup.configure", {"port": 4999}),
        ("monitoring.status", {}),
        ("monitoring.self-test", {}),
        ("monitoring.log.system", {"limit": 50}),
        ("monitoring.log.calibration", {}),
        ("profile.evaluation.delete", {"profile_id": "TAF7-0777"}),
    ]


async def _until(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_device_gateway_is_commissioned_and_configured_through_the_gwa(
        pki: PkiDirectory, issue, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clock = SystemClock()
    keys = gwa_keys(pki, tmp_path / "gwa-keys")
    service = new_service(pki, keys, f"sqlite:///{tmp_path / 'gwa.db'}", clock)
    state = tmp_path / "gateway"
    lmn, wakeup = free_port(), free_port()
    meter_key, meter_cert = issue("meter-tls", METER, ca="sub-ca")
    sim = MeterSimulator(METER, MeterKind.ELECTRICITY, ModelKind.HOUSEHOLD_H0,
                         MeterSettings(seed=7), clock)
    channels = tuple(r.obis for r in sim.snapshot_at(clock.now()).readings)
    meter = MeterProfile(meter_id=METER, protocol=MeterProtocol.SML_TLS_PUSH,
                         tls_fingerprint=tls_fingerprint(meter_cert), channels=channels,
                         consumer_id="consumer-7")
    taf7 = EvaluationProfile(profile_id="TAF7-0777", taf=Taf.TAF7, meter_id=METER,
                             registers=("1-0:1.8.0*255",), billing_period=None,
                             registration_period=timedelta(minutes=15), tariff_stages=(),
                             tariff_calendar=None,
                             recipients=(EMT,), pseudonym=None, valid_from=clock.now())

    async def scenario() -> None:
        async with AdminEndpoint(service, pki.validator) as endpoint:
            address = GwaAddress("127.0.0.1", endpoint.port)
            settings = DeviceSettings(GATEWAY, lmn_listen=f"127.0.0.1:{lmn}",
                                      wakeup_listen=f"127.0.0.1:{wakeup}")
            manufacture(state, GATEWAY, pki, clock, integrator_pin=INTEGRATOR,
                        installer_pin=INSTALLER, settings=settings, kdf_log2_n=4)
            load_initial_configuration(state, clock, initial_configuration(keys, GATEWAY,
                                                                           address),
                                       integrator_pin=INTEGRATOR)
            assert install(state, clock, installer_pin=INSTALLER) is Phase.PERSONALISATION
            copy_crls(pki.path, state / "crls")  # the gateway checks certificates with CRLs
            # the operator's configuration, queued before the gateway ever called
            service.enqueue([GATEWAY], "device.meter.register", {"profile": meter.to_dict()})
            service.enqueue([GATEWAY], "profile.communication.install",
                            {"profile": communication_document(pki, EMT)})
            service.enqueue([GATEWAY], "profile.communication.activate",
                            {"profile_id": "CP-1"})
            service.enqueue([GATEWAY], "profile.evaluation.install",
                            {"profile": taf7.to_dict()})
            service.enqueue([GATEWAY], "profile.evaluation.activate",
                            {"profile_id": "TAF7-0777"})

            process = DeviceGatewayProcess(state, clock, poll=0.02)
            stop = asyncio.Event()
            task = asyncio.create_task(process.run(stop))
            try:
                await asyncio.wait_for(process.ready.wait(), TIMEOUT)
                row = lambda: service.db.gateway(GATEWAY)  # noqa: E731
                await _until(lambda: row() is not None and row().commissioning  # type: ignore[union-attr]
                             is GwaCommissioning.OPERATIONAL, "commissioning")
                assert process.phase is Phase.OPERATION
                assert process.core is None  # no operator command yet: set-up only
                # table 3 step 3.1: the GWA wakes the gateway, which connects out to it
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.sendto(service.wakeup_packet(GATEWAY), ("127.0.0.1", wakeup))
                await _until(lambda: process.core is not None, "operation")
                assert process.device is not None
                assert [i.item_id for i in process.device.config.items(ConfigKind.METER)] \
                    == [METER]
                assert process.config is not None
                assert [e.profile_id for e in process.config.evaluation_profiles] == \
                    ["TAF7-0777"]
                # the meter the administrator registered is accepted on the LMN
                tls = LmnTlsConfig(TlsIdentity((meter_cert, *pki.chain("sub-ca")), meter_key),
                                   (pki.root.certificate,),
                                   tuple(pki.ca(n).certificate for n in pki.ca_names
                                         if n != "root"))
                push = PushMeter(sim, ("127.0.0.1", lmn), tls, clock=clock, poll=0.02)
                meter_task = asyncio.create_task(push.run())
                core = process.core
                await _until(lambda: ReadingStore(core.db).latest(METER, "1-0:1.8.0*255")
                             is not None, "the meter's first value")
                push.stop()
                await asyncio.wait_for(meter_task, TIMEOUT)

                # table 3 steps 2.1/2.2 and 5.x: the command groups through the real GWA
                queued = [service.enqueue([GATEWAY], kind, params)[0]
                          for kind, params in _operator_commands(issue, pki)]
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.sendto(service.wakeup_packet(GATEWAY), ("127.0.0.1", wakeup))
                await _until(lambda: all(service.db.command(c).status in FINAL  # type: ignore[union-attr]
                                         for c in queued), "the operator's commands")
                rows = [service.db.command(c) for c in queued]
                failed = [(r.type, r.detail, r.result) for r in rows  # type: ignore[union-attr]
                          if r.status is not CommandStatus.OK]  # type: ignore[union-attr]
                assert not failed
                results = {r.type: r.result for r in rows}  # type: ignore[union-attr]
                assert results["monitoring.self-test"]["passed"] is True
                assert results["monitoring.status"]["phase"] == "operation"
                assert "<" in results["monitoring.log.system"]["xml"]
            finally:
                stop.set()
                await asyncio.wait_for(task, TIMEOUT)

    asyncio.run(scenario())
    with Database(state / "gateway.db") as db:
        texts = [r[0] for r in db.connection.execute(
            "SELECT text FROM log_entries WHERE log = 'system' ORDER BY record_number")]
    assert any("wake-up" in t for t in texts)
    assert sum("admin session closed" in t for t in texts) >= 3
