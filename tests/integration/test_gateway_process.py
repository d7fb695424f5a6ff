"""One gateway process end to end on 127.0.0.1: a push meter over LMN-TLS, the evidence store,
TAF-7 evaluation on the simulated clock, sealed deliveries over WAN-TLS to a real EMT server
(worker process, as in test_emt_server.py) and the receipts back; ``status()`` reports it."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from imsys.core.clock import SimulatedClock
from imsys.crypto import SoftwareKey
from imsys.crypto.tls import TlsIdentity
from imsys.emt.server import EmtServer, ServerConfig, write_key_pair
from imsys.emt.storage import EmtStorage
from imsys.gateway.cli import gateway_app
from imsys.gateway.delivery import DeliveryState
from imsys.gateway.meter_profile import MeterProfile, MeterProtocol, tls_fingerprint
from imsys.gateway.process import (
    CONFIG_FILE,
    CONFIG_FORMAT,
    ConfigReason,
    ConfigRejected,
    GatewayConfig,
    GatewayProcess,
    status,
)
from imsys.gateway.store import Durability
from imsys.gateway.taf import EvaluationProfile, Taf
from imsys.meters.lmn_tls import LmnTlsConfig, PushMeter
from imsys.meters.settings import MeterSettings
from imsys.meters.simulator import MeterKind, MeterSimulator, ModelKind
from imsys.pki import PkiDirectory, pem

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
GATEWAY_ID = "EABC0012345678"
METER_ID = "1EMH0012345678"
EMT = "9900000000001"
Q = timedelta(minutes=15)
TIMEOUT = 15.0
# the EMT judges signing times against its real clock: simulate the recent past
START = datetime.fromtimestamp(
    (datetime.now(UTC).timestamp() // 900) * 900, UTC) - timedelta(hours=1)


def _write_pair(keys: Path, purpose: str, pair: tuple[SoftwareKey, x509.Certificate]) -> None:
    keys.mkdir(parents=True, exist_ok=True)
    (keys / f"{purpose}.key").write_bytes(pair[0].private_key_pem())
    (keys / f"{purpose}.pem").write_bytes(pem(pair[1]))


def state_dir(tmp: Path, pki: PkiDirectory, issue: Issue, emt_port: int,
              channels: tuple[str, ...]) -> Path:
    state = tmp / "gw"
    _write_pair(state / "keys", "tls", issue("gateway-tls", GATEWAY_ID, ca="sub-ca"))
    _write_pair(state / "keys", "sig", issue("gateway-sig", GATEWAY_ID, ca="sub-ca"))
    (state / "trust").mkdir()
    (state / "trust" / "root.pem").write_bytes(pem(pki.root.certificate))
    for name in ("sub-ca", "emt-ca"):
        (state / "trust" / f"{name}.pem").write_bytes(pem(pki.ca(name).certificate))
    (state / "emt").mkdir()
    for purpose in ("enc", "sig"):
        (state / "emt" / f"{purpose}.pem").write_bytes(
            pem(issue(f"emt-{purpose}", EMT, ca="emt-ca")[1]))
    _, meter_cert = issue("meter-tls", METER_ID, ca="sub-ca")
    meter = MeterProfile(meter_id=METER_ID, protocol=MeterProtocol.SML_TLS_PUSH,
                         tls_fingerprint=tls_fingerprint(meter_cert), channels=channels,
                         consumer_id="consumer-1")
    taf7 = EvaluationProfile(profile_id="TAF7-0001", taf=Taf.TAF7, meter_id=METER_ID,
                             registers=("1-0:1.8.0*255",), billing_period=None,
                             registration_period=Q, tariff_stages=(), tariff_calendar=None,
                             recipients=(EMT,), pseudonym=None, valid_from=START)
    config = {
        "format": CONFIG_FORMAT,
        "gateway_id": GATEWAY_ID,
        "usage_point_id": "DE0001",
        "lmn": {"listen": "127.0.0.1:0"},
        "emt": {"id": EMT, "url": f"https://127.0.0.1:{emt_port}/deliveries/v1",
                "enc_certificate": "emt/enc.pem", "sig_certificate": "emt/sig.pem"},
        "trust": {"anchors": ["trust/root.pem"],
                  "intermediates": ["trust/sub-ca.pem", "trust/emt-ca.pem"]},
        "meter_profiles": [meter.to_dict()],
        "evaluation_profiles": [taf7.to_dict()],
        "delivery_interval": 900,
    }
    (state / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return state


def start_emt(tmp: Path, pki: PkiDirectory, issue: Issue,
              port: int = 0) -> tuple[EmtServer, int, str]:
    keys = tmp / "emt-keys"
    for purpose in ("tls", "sig", "enc"):
        write_key_pair(keys, purpose, *issue(f"emt-{purpose}", EMT, ca="emt-ca"))
    url = f"sqlite:///{tmp / 'emt.db'}"
    server = EmtServer(ServerConfig(pki.path, EMT, url, workers=1, keys_dir=keys,
                                    port=port, served_gateways=(GATEWAY_ID,), idle_timeout=30))
    return server, server.start(), url


async def eventually(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def push_meter(pki: PkiDirectory, issue: Issue, sim: MeterSimulator, port: int,
               clock: SimulatedClock) -> PushMeter:
    key, cert = issue("meter-tls", METER_ID, ca="sub-ca")
    tls = LmnTlsConfig(TlsIdentity((cert, *pki.chain("sub-ca")), key), (pki.root.certificate,),
                       tuple(pki.ca(n).certificate for n in pki.settings["sub_cas"]))
    return PushMeter(sim, ("127.0.0.1", port), tls, clock=clock, poll=0.005)


def electricity(clock: SimulatedClock) -> tuple[MeterSimulator, tuple[str, ...]]:
    sim = MeterSimulator(METER_ID, MeterKind.ELECTRICITY, ModelKind.HOUSEHOLD_H0,
                         MeterSettings(seed=9), clock)
    return sim, tuple(r.obis for r in sim.snapshot_at(START).readings)


async def scenario(state: Path, pki: PkiDirectory, issue: Issue, clock: SimulatedClock,
                   sim: MeterSimulator) -> GatewayProcess:
    gateway = GatewayProcess(state, clock, poll=0.01, durability=Durability.NORMAL)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await asyncio.wait_for(gateway.ready.wait(), TIMEOUT)
    assert gateway.lmn_server is not None
    meter = push_meter(pki, issue, sim, gateway.lmn_server.port, clock)
    meter_task = asyncio.create_task(meter.run())
    server = gateway.lmn_server
    try:
        await eventually(lambda: server.stats.frames == 1)
        clock.advance(timedelta(seconds=10))  # past the TAF tolerance: evaluate, deliver
        await eventually(lambda: gateway.stats.acknowledged == 1)
        await asyncio.sleep(0.1)  # let the meter compute its next send instant first
        clock.advance(Q - timedelta(seconds=10))
        await eventually(lambda: server.stats.frames == 2)
        clock.advance(timedelta(seconds=10))
        await eventually(lambda: gateway.stats.acknowledged == 2)
    finally:
        meter.stop()
        stop.set()
        await asyncio.wait_for(meter_task, TIMEOUT)
        await asyncio.wait_for(task, TIMEOUT)
    return gateway


def test_table2_step_2_1_and_3_1_4_gateway_connects_to_the_emt_and_sends_at_once(
        pki: PkiDirectory, issue: Issue, tmp_path: Path) -> None:
    clock = SimulatedClock(START)
    sim, channels = electricity(clock)
    server, port, url = start_emt(tmp_path, pki, issue)
    try:
        state = state_dir(tmp_path, pki, issue, port, channels)
        gateway = asyncio.run(asyncio.wait_for(scenario(state, pki, issue, clock, sim), 60))
        emt_storage = EmtStorage(url, create=False)
        try:
            received = emt_storage.readings(meter=METER_ID)
        finally:
            emt_storage.dispose()
    finally:
        server.stop()
    assert gateway.stats.enqueued == 2 and gateway.stats.failed == 0
    assert len(received) == 2  # one TAF-7 value per registration period, each delivered once

    report = status(state)
    assert report.gateway_id == GATEWAY_ID
    assert report.readings == 2 * len(channels)
    assert report.chain_verified and report.chain_problem is None
    assert report.deliveries["acknowledged"] == 2
    assert report.deliveries["pending"] == report.deliveries["sent"] == 0
    assert report.last_emt_contact == START + Q + timedelta(seconds=10)
    (meter,) = report.meters
    assert meter.meter_id == METER_ID and meter.latest_at == START + Q and meter.latest_valid
    shown = CliRunner().invoke(gateway_app, ["status", "--state", str(state)])
    assert shown.exit_code == 0, shown.output
    assert "verified" in shown.output and "acknowledged 2" in shown.output


async def unreachable_then_up(state: Path, pki: PkiDirectory, issue: Issue,
                              clock: SimulatedClock, sim: MeterSimulator,
                              bring_up: Callable[[], object]) -> GatewayProcess:
    gateway = GatewayProcess(state, clock, poll=0.01, durability=Durability.NORMAL)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await asyncio.wait_for(gateway.ready.wait(), TIMEOUT)
    assert gateway.lmn_server is not None and gateway.queue is not None
    queue = gateway.queue
    meter = push_meter(pki, issue, sim, gateway.lmn_server.port, clock)
    meter_task = asyncio.create_task(meter.run())
    try:
        await eventually(lambda: gateway.lmn_server is not None
                         and gateway.lmn_server.stats.frames == 1)
        clock.advance(timedelta(seconds=10))
        await eventually(lambda: gateway.stats.last_error is not None)
        error = gateway.stats.last_error
        assert error is not None and error.startswith("connect to EMT")
        assert [i.state for i in queue.items()] == [DeliveryState.PENDING]  # kept
        await asyncio.get_running_loop().run_in_executor(None, bring_up)
        clock.advance(gateway.reconnect)  # the next connection attempt falls due
        await eventually(lambda: gateway.stats.acknowledged == 1)
    finally:
        meter.stop()
        stop.set()
        await asyncio.wait_for(meter_task, TIMEOUT)
        await asyncio.wait_for(task, TIMEOUT)
    return gateway


def test_table2_step_3_1_3_and_3_1_5_gateway_keeps_data_until_the_channel_exists(
        pki: PkiDirectory, issue: Issue, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a free port, nothing listening on it yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = SimulatedClock(START)
    sim, channels = electricity(clock)
    state = state_dir(tmp_path, pki, issue, port, channels)
    servers: list[EmtServer] = []
    try:
        gateway = asyncio.run(asyncio.wait_for(unreachable_then_up(
            state, pki, issue, clock, sim,
            lambda: servers.append(start_emt(tmp_path, pki, issue, port)[0])), 60))
    finally:
        for server in servers:
            server.stop()
    assert gateway.stats.enqueued == 1
    report = status(state)
    assert report.deliveries["acknowledged"] == 1 and report.chain_verified


def test_gateway_config_refuses_a_recipient_that_is_not_the_wired_emt(
        pki: PkiDirectory, issue: Issue, tmp_path: Path) -> None:
    state = state_dir(tmp_path, pki, issue, 4443, ("1-0:1.8.0*255",))
    doc = json.loads((state / CONFIG_FILE).read_text())
    doc["evaluation_profiles"][0]["recipients"] = ["9900000000002"]
    with pytest.raises(ConfigRejected) as caught:
        GatewayConfig.from_dict(doc, state)
    assert caught.value.reason is ConfigReason.BAD_VALUE
    doc["format"] = "imsys-gateway-config/0"
    with pytest.raises(ConfigRejected) as caught:
        GatewayConfig.from_dict(doc, state)
    assert caught.value.reason is ConfigReason.UNSUPPORTED_FORMAT


def test_gateway_status_command_shows_the_state(pki: PkiDirectory, issue: Issue,
                                                tmp_path: Path) -> None:
    state = state_dir(tmp_path, pki, issue, 9, ("1-0:1.8.0*255",))
    result = CliRunner().invoke(gateway_app, ["status", "--state", str(state)])
    assert result.exit_code == 1  # rejected: no database yet (never run)


def test_gateway_run_command_stops_cleanly_on_sigterm(pki: PkiDirectory, issue: Issue,
                                                       tmp_path: Path) -> None:
    state = state_dir(tmp_path, pki, issue, 9, ("1-0:1.8.0*255",))
    cmd = [sys.executable, "-c", "from imsys.gateway.cli import gateway_app; gateway_app()",
           "run", "--state", str(state), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (state / "gateway.db").exists():  # the process has opened its store
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped: " in out
    result = CliRunner().invoke(gateway_app, ["status", "--state", str(state)])
    assert result.exit_code == 0, result.output
    assert "verified" in result.output and "no reading yet" in result.output
