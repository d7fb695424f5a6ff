"""Simulated meters on a real LMN: SML over mutually authenticated TLS on 127.0.0.1 (push and
pull) with session-PKI certificates, and wM-Bus telegrams as UDP datagrams.

The gateway side here is a small asyncio TLS peer built from ``server_context``/``client_context``
and ``SmlStreamDecoder`` – not the imsys gateway – so the meter adapters are tested alone.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imsys.core.clock import SimulatedClock
from imsys.core.errors import Reason, UsageError
from imsys.crypto.tls import Interface, TlsIdentity, check_peer, client_context, server_context
from imsys.lmn import sml
from imsys.lmn.wmbus import MemoryCounterTracker, SecurityMode, decode_telegram
from imsys.meters.cli import meter_app
from imsys.meters.ids import MeterId
from imsys.meters.lmn_payload import SmlResponder, WmbusEncoder, obis_bytes
from imsys.meters.lmn_tls import (
    Backoff,
    LmnTlsConfig,
    Pacer,
    PullMeter,
    PushMeter,
    ScaledClock,
    next_boundary,
    parse_endpoint,
)
from imsys.meters.radio import RadioMeter
from imsys.meters.settings import MeterSettings
from imsys.meters.simulator import MeterKind, MeterSimulator, ModelKind
from imsys.pki import PkiDirectory, pem

T0 = datetime(2024, 12, 31, 23, 0, tzinfo=UTC)
Q = timedelta(minutes=15)
METER_ID = "1EMH0012345678"
GATEWAY_ID = "EABC0012345678"
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
TIMEOUT = 15.0


# --------------------------------------------------------------------------- PKI


def _identity(pki: PkiDirectory, issue, profile: str, ident: str, ca: str = "sub-ca"
              ) -> TlsIdentity:
    key, cert = issue(profile, ident, ca=ca)
    return TlsIdentity((cert, *pki.chain(ca)), key)


def _anchors(pki: PkiDirectory) -> list:
    return [pki.root.certificate]


def _intermediates(pki: PkiDirectory) -> list:
    return [pki.ca(n).certificate for n in pki.settings["sub_cas"]]


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> PkiDirectory:
    """A second SM-PKI the meter does not trust."""
    return PkiDirectory.init(tmp_path_factory.mktemp("foreign") / "pki")


@pytest.fixture(scope="module")
def meter_tls(pki: PkiDirectory, issue) -> LmnTlsConfig:
    return LmnTlsConfig(_identity(pki, issue, "meter-tls", METER_ID), tuple(_anchors(pki)),
                        tuple(_intermediates(pki)), pki.validator())


def gateway_identity(pki: PkiDirectory, issue, foreign: PkiDirectory, who: str) -> TlsIdentity:
    if who == "gateway":
        return _identity(pki, issue, "gateway-tls", GATEWAY_ID)
    if who == "emt":  # right PKI, wrong role
        return _identity(pki, issue, "emt-tls", "9900000000001", "emt-ca")
    if who == "meter":  # right PKI, another meter pretending to be the gateway
        return _identity(pki, issue, "meter-tls", "1EMH0099999999")
    key, cert = foreign.issue_with_new_key("gateway-tls", GATEWAY_ID)
    return TlsIdentity((cert, *foreign.chain()), key)


def simulator(clock: SimulatedClock, model: ModelKind = ModelKind.HOUSEHOLD_H0,
              kind: MeterKind = MeterKind.ELECTRICITY, meter_id: str = METER_ID
              ) -> MeterSimulator:
    return MeterSimulator(meter_id, kind, model, MeterSettings(seed=9), clock)


def reference(model: ModelKind = ModelKind.HOUSEHOLD_H0, kind: MeterKind = MeterKind.ELECTRICITY,
              meter_id: str = METER_ID) -> MeterSimulator:
    """An independent simulator with the same epoch: what the meter must have sent."""
    return simulator(SimulatedClock(T0), model, kind, meter_id)


def values(file: sml.SmlFile) -> dict[str, tuple[int, int]]:
    return {str(e.obis): (e.value, e.scaler) for e in file.list_entries() if e.unit is not None}


async def eventually(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- gateway peers


@dataclass
class GatewayServer:
    """The gateway's LMN endpoint for push meters: collects SML files per connection."""

    context: ssl.SSLContext
    pki: PkiDirectory
    close_after: int | None = None
    files: list[sml.SmlFile] = field(default_factory=list)
    connections: int = 0
    peer_ids: list[str] = field(default_factory=list)
    raw_bytes: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            self.peer_ids.append(check_peer(writer.get_extra_info("ssl_object"),
                                            self.pki.validator(), "meter-tls").identifier)
            decoder = sml.SmlStreamDecoder()
            received = 0
            while data := await reader.read(65536):
                self.raw_bytes += len(data)
                decoder.feed(data)
                for item in decoder.frames():
                    assert isinstance(item, sml.SmlFile), item
                    self.files.append(item)
                    received += 1
                if self.close_after is not None and received >= self.close_after:
                    break
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


# --------------------------------------------------------------------------- push


async def _push_scenario(pki, issue, foreign, meter_tls) -> None:
    ctx = server_context(Interface.LMN, gateway_identity(pki, issue, foreign, "gateway"),
                         _anchors(pki), intermediates=_intermediates(pki))
    gw = GatewayServer(ctx, pki)
    port = await gw.start()
    clock = SimulatedClock(T0)
    sim = simulator(clock)
    meter = PushMeter(sim, ("127.0.0.1", port), meter_tls, clock=clock, poll=0.005)
    task = asyncio.create_task(meter.run())
    try:
        await eventually(lambda: len(gw.files) == 1)  # one frame on connect
        assert meter.stats.state == "connected"
        assert meter.stats.peers == [GATEWAY_ID] and gw.peer_ids == [METER_ID]
        clock.advance(Q)
        await eventually(lambda: len(gw.files) == 2)
        clock.advance(timedelta(hours=1, minutes=7))  # the clock jumps: four instants missed
        await eventually(lambda: len(gw.files) == 6)
        await asyncio.sleep(0.05)
        assert len(gw.files) == 6
    finally:
        meter.stop()
        await asyncio.wait_for(task, TIMEOUT)
        await gw.close()
    ref = reference()
    stamps = []
    for f in gw.files:
        body = f.messages[1].body
        assert isinstance(body, sml.GetListResponse)
        assert body.server_id == MeterId.parse(METER_ID).server_id
        when = body.act_sensor_time.datetime  # type: ignore[union-attr]
        stamps.append(when)
        assert values(f) == {r.obis: (r.value, r.scaler) for r in ref.snapshot_at(when).readings}
    assert stamps == [T0 + k * Q for k in range(6)]
    assert meter.stats.frames_sent == 6 and meter.stats.state == "stopped"


def test_push_meter_sends_simulator_values_over_lmn_tls(pki, issue, foreign, meter_tls) -> None:
    run(_push_scenario(pki, issue, foreign, meter_tls))


async def _reconnect_scenario(pki, issue, foreign, meter_tls) -> None:
    ctx = server_context(Interface.LMN, gateway_identity(pki, issue, foreign, "gateway"),
                         _anchors(pki), intermediates=_intermediates(pki))
    gw = GatewayServer(ctx, pki, close_after=1)  # hangs up after every first frame
    port = await gw.start()
    clock = SimulatedClock(T0)
    meter = PushMeter(simulator(clock), ("127.0.0.1", port), meter_tls, clock=clock, poll=0.005,
                      backoff=Backoff(timedelta(seconds=10), timedelta(minutes=1)))
    task = asyncio.create_task(meter.run())
    try:
        await eventually(lambda: gw.connections == 1 and meter.stats.state == "backoff")
        await asyncio.sleep(0.1)
        assert gw.connections == 1  # the backoff runs on the injected clock
        clock.advance(timedelta(seconds=10))
        await eventually(lambda: gw.connections == 2 and len(gw.files) == 2)
    finally:
        meter.stop()
        await asyncio.wait_for(task, TIMEOUT)
        await gw.close()
    assert meter.stats.connects == 2
    assert meter.stats.errors >= 1 and "closed" in (meter.stats.last_error or "")


def test_push_meter_reconnects_with_backoff(pki, issue, foreign, meter_tls) -> None:
    run(_reconnect_scenario(pki, issue, foreign, meter_tls))


async def _refused_gateway(pki, issue, foreign, meter_tls, who: str) -> None:
    ctx = server_context(Interface.LMN, gateway_identity(pki, issue, foreign, who),
                         _anchors(foreign if who == "foreign" else pki),
                         intermediates=() if who == "foreign" else _intermediates(pki))
    gw = GatewayServer(ctx, pki)
    port = await gw.start()
    clock = SimulatedClock(T0)
    meter = PushMeter(simulator(clock), ("127.0.0.1", port), meter_tls, clock=clock, poll=0.005)
    task = asyncio.create_task(meter.run())
    try:
        await eventually(lambda: meter.stats.refused_peers >= 1)
        clock.advance(timedelta(seconds=5))  # backoff over: tries again, refuses again
        await eventually(lambda: meter.stats.refused_peers >= 2)
    finally:
        meter.stop()
        await asyncio.wait_for(task, TIMEOUT)
        await gw.close()
    assert gw.files == [] and gw.raw_bytes == 0
    assert meter.stats.frames_sent == 0 and meter.stats.connects == 0
    assert meter.stats.state == "stopped"


@pytest.mark.parametrize("who", ["emt", "meter", "foreign"])
def test_push_meter_refuses_a_gateway_with_the_wrong_role_or_pki(pki, issue, foreign, meter_tls,
                                                                 who: str, caplog) -> None:
    run(_refused_gateway(pki, issue, foreign, meter_tls, who))
    assert "refuses gateway" in caplog.text or "not from the SM-PKI" in caplog.text


# --------------------------------------------------------------------------- pull


def _request_frame(*bodies: object) -> bytes:
    msgs = [sml.SmlMessage(transaction_id=b"t0", body=sml.OpenRequest(
        client_id=b"\x01\x02\x03\x04\x05\x06", req_file_id=b"f1"))]
    msgs += [sml.SmlMessage(transaction_id=f"t{k}".encode(), body=b)  # type: ignore[arg-type]
             for k, b in enumerate(bodies, 1)]
    msgs.append(sml.SmlMessage(transaction_id=b"t9", body=sml.CloseRequest()))
    return sml.encode_frame(msgs)


async def _ask(port: int, context: ssl.SSLContext, frame: bytes) -> sml.SmlFile | None:
    """Send one request frame; the answer, or None if the meter closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(frame)
        await writer.drain()
        decoder = sml.SmlStreamDecoder()
        while True:
            data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
            if not data:
                return None
            decoder.feed(data)
            item = decoder.next_frame()
            if item is not None:
                assert isinstance(item, sml.SmlFile), item
                return item
    finally:
        writer.close()


async def _pull_scenario(pki, issue, foreign, meter_tls) -> None:
    clock = SimulatedClock(T0)
    sim = simulator(clock, ModelKind.PROSUMER)
    meter = PullMeter(SmlResponder(sim), ("127.0.0.1", 0), meter_tls, clock=clock)
    await meter.start()
    task = asyncio.create_task(meter.run())
    gw_ctx = client_context(Interface.LMN, gateway_identity(pki, issue, foreign, "gateway"),
                            _anchors(pki), intermediates=_intermediates(pki))
    try:
        clock.advance(timedelta(days=1, hours=2, minutes=40))
        now = clock.now()
        begin = T0 + timedelta(hours=22)
        frame = _request_frame(
            sml.GetListRequest(client_id=b"\x01\x02\x03\x04\x05\x06"),
            sml.GetProfileListRequest(begin_time=sml.Timestamp(int(begin.timestamp())),
                                      parameter_tree_path=(bytes.fromhex("8181c78610ff"),)))
        answer = await _ask(meter.port, gw_ctx, frame)
        assert answer is not None
        # garbage in: an attention response, the connection stays usable
        broken = bytearray(frame)
        broken[-1] ^= 0xFF
        attention = await _ask(meter.port, gw_ctx, bytes(broken))
    finally:
        meter.stop()
        await asyncio.wait_for(task, TIMEOUT)
    ref = reference(ModelKind.PROSUMER)
    bodies = [m.body for m in answer.messages]
    assert isinstance(bodies[0], sml.OpenResponse) and isinstance(bodies[-1], sml.CloseResponse)
    assert isinstance(bodies[1], sml.GetListResponse)
    assert values(answer) == {r.obis: (r.value, r.scaler)
                              for r in ref.snapshot_at(now).readings}
    periods = [b for b in bodies if isinstance(b, sml.GetProfileListResponse)]
    series = ref.series(begin, T0 + timedelta(days=1, hours=2, minutes=30), Q)
    assert len(periods) == len(series.times) == 19
    for k, p in enumerate(periods):
        assert p.val_time == sml.Timestamp(int((begin + k * Q).timestamp()))
        got = {e.obj_name: e.value for e in p.period_list}
        assert got == {obis_bytes(o): int(v[k]) for o, v in series.registers.items()}
    assert attention is not None
    att = attention.messages[0].body
    assert isinstance(att, sml.AttentionResponse)
    assert att.attention_number == sml.AttentionNumber.UNPARSEABLE.value
    assert meter.stats.requests_answered == 1 and meter.stats.errors == 1
    assert meter.stats.peers == [GATEWAY_ID, GATEWAY_ID] and meter.stats.state == "stopped"


def test_pull_meter_answers_get_list_and_get_profile_list(pki, issue, foreign, meter_tls) -> None:
    run(_pull_scenario(pki, issue, foreign, meter_tls))


async def _pull_refuses(pki, issue, foreign, meter_tls, who: str) -> None:
    clock = SimulatedClock(T0)
    meter = PullMeter(SmlResponder(simulator(clock)), ("127.0.0.1", 0), meter_tls, clock=clock)
    await meter.start()
    task = asyncio.create_task(meter.run())
    ctx = client_context(Interface.LMN, gateway_identity(pki, issue, foreign, who),
                         _anchors(pki), intermediates=_intermediates(pki))
    answer: sml.SmlFile | None = None
    try:
        clock.advance(Q)
        try:
            answer = await _ask(meter.port, ctx, _request_frame(
                sml.GetListRequest(client_id=b"\x01\x02\x03\x04\x05\x06")))
        except (OSError, ssl.SSLError):
            answer = None  # the handshake itself failed (foreign PKI)
        await eventually(lambda: meter.stats.refused_peers == 1)
    finally:
        meter.stop()
        await asyncio.wait_for(task, TIMEOUT)
    assert answer is None
    assert meter.stats.requests_answered == 0 and meter.stats.connects == 0


@pytest.mark.parametrize("who", ["emt", "meter", "foreign"])
def test_pull_meter_refuses_a_gateway_with_the_wrong_role_or_pki(pki, issue, foreign, meter_tls,
                                                                 who: str) -> None:
    run(_pull_refuses(pki, issue, foreign, meter_tls, who))


# --------------------------------------------------------------------------- radio


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        self.datagrams.append(data)


async def _radio_scenario(mode: SecurityMode) -> None:
    loop = asyncio.get_running_loop()
    transport, rx = await loop.create_datagram_endpoint(_Collector, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    clock = SimulatedClock(T0)
    gas_id = "7ELS0087654321"
    sim = simulator(clock, ModelKind.GAS_HEATING, MeterKind.GAS, gas_id)
    enc = WmbusEncoder(gas_id, MeterKind.GAS, key=KEY, mode=mode, long_header=True)
    meter = RadioMeter(sim, enc, ("127.0.0.1", port), clock=clock, poll=0.005)
    task = asyncio.create_task(meter.run())
    try:
        await eventually(lambda: len(rx.datagrams) == 1)
        clock.advance(timedelta(hours=1))
        await eventually(lambda: len(rx.datagrams) == 5)
    finally:
        meter.stop()
        await asyncio.wait_for(task, TIMEOUT)
        transport.close()
    ref = reference(ModelKind.GAS_HEATING, MeterKind.GAS, gas_id)
    counters = MemoryCounterTracker()
    for k, data in enumerate(rx.datagrams):
        t = decode_telegram(data, KEY, counters=counters)
        assert t.tpl.access_number == k
        snap = ref.snapshot_at(T0 + k * Q)
        volume = next(r for r in t.records if r.info.quantity == "volume" and r.storage == 0)
        assert (volume.value, volume.info.exponent) == (snap.value("7-0:3.0.0*255"), -3)
        flags = next(r for r in t.records if r.info.quantity == "error flags")
        assert flags.value == snap.status
    assert meter.stats.frames_sent == 5


@pytest.mark.parametrize("mode", [SecurityMode.AES_CBC_IV, SecurityMode.AES_CBC_NO_IV])
def test_wireless_meter_datagrams_arrive_and_decode(mode: SecurityMode) -> None:
    run(_radio_scenario(mode))


async def _radio_without_listener() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = SimulatedClock(T0)
    gas_id = "7ELS0087654321"
    sim = simulator(clock, ModelKind.GAS_HEATING, MeterKind.GAS, gas_id)
    meter = RadioMeter(sim, WmbusEncoder(gas_id, MeterKind.GAS, key=KEY), ("127.0.0.1", port),
                       clock=clock, poll=0.005)
    task = asyncio.create_task(meter.run())
    for _ in range(3):
        await asyncio.sleep(0.05)
        clock.advance(Q)
    await asyncio.sleep(0.05)
    meter.stop()
    await asyncio.wait_for(task, TIMEOUT)
    assert meter.stats.frames_sent >= 3  # nobody listens: ICMP refusals are logged, not raised


def test_wireless_meter_survives_a_missing_receiver() -> None:
    run(_radio_without_listener())


# --------------------------------------------------------------------------- time helpers


def test_scaled_clock_next_boundary_backoff_and_endpoints() -> None:
    base = SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC))
    clock = ScaledClock(900, T0, base=base)
    assert clock.now() == T0
    base.advance(timedelta(seconds=2))
    assert clock.now() == T0 + 2 * Q
    assert next_boundary(T0, Q) == T0 + Q
    assert next_boundary(T0 + timedelta(seconds=1), Q) == T0 + Q
    assert next_boundary(T0 - timedelta(seconds=1), Q) == T0
    b = Backoff(timedelta(seconds=1), timedelta(seconds=30))
    assert [b.delay(k).total_seconds() for k in range(8)] == [1, 1, 2, 4, 8, 16, 30, 30]
    assert parse_endpoint("127.0.0.1:4059") == ("127.0.0.1", 4059)
    assert parse_endpoint("[::1]:1") == ("::1", 1)
    for bad in ("127.0.0.1", "host:port", ":80", "h:70000"):
        with pytest.raises(UsageError):
            parse_endpoint(bad)
    with pytest.raises(UsageError):
        ScaledClock(0)


def test_pacer_wakes_on_deadline_and_on_request() -> None:
    async def scenario() -> None:
        clock = SimulatedClock(T0)
        pacer = Pacer(clock, poll=0.005)
        waiter = asyncio.create_task(pacer.sleep_until(T0 + Q))
        await asyncio.sleep(0.03)
        assert not waiter.done()
        clock.advance(Q)
        await asyncio.wait_for(waiter, 1)
        waiter = asyncio.create_task(pacer.sleep_until(T0 + timedelta(days=1)))
        pacer.wake()
        await asyncio.wait_for(waiter, 1)
        assert pacer.woken

    run(scenario())


# --------------------------------------------------------------------------- the CLI's run


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory: pytest.TempPathFactory, pki: PkiDirectory, issue
              ) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("meter-pem")
    key, cert = issue("meter-tls", METER_ID)
    files = {"cert": folder / "meter.pem", "key": folder / "meter.key", "ca": folder / "ca.pem",
             "crl": folder / "sub-ca.crl", "root-crl": folder / "root.crl"}
    files["cert"].write_bytes(pem(cert))
    files["key"].write_bytes(key.private_key_pem())
    files["ca"].write_bytes(b"".join(pem(c) for c in (*_intermediates(pki), pki.root.certificate)))
    files["crl"].write_bytes(pki.crl_der("sub-ca"))
    files["root-crl"].write_bytes(pem(pki.crl("root")))
    return files


def _threaded_gateway(context: ssl.SSLContext, frames: list[sml.SmlFile]
                      ) -> tuple[int, threading.Thread]:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    def serve() -> None:
        sock.settimeout(TIMEOUT)
        try:
            conn, _ = sock.accept()
            conn.settimeout(TIMEOUT)
            with context.wrap_socket(conn, server_side=True) as tls:
                decoder = sml.SmlStreamDecoder()
                while data := tls.recv(65536):
                    decoder.feed(data)
                    frames.extend(f for f in decoder.frames() if isinstance(f, sml.SmlFile))
        except (OSError, ssl.SSLError):
            pass
        finally:
            sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


def test_cli_run_push_sends_frames_at_speed(pki, issue, foreign, pem_files) -> None:
    ctx = server_context(Interface.LMN, gateway_identity(pki, issue, foreign, "gateway"),
                         _anchors(pki), intermediates=_intermediates(pki))
    frames: list[sml.SmlFile] = []
    port, thread = _threaded_gateway(ctx, frames)
    result = CliRunner().invoke(meter_app, [
        "run", "--kind", "electricity", "--profile", "h0", "--id", METER_ID, "--mode", "push",
        "--gateway", f"127.0.0.1:{port}", "--cert", str(pem_files["cert"]),
        "--key", str(pem_files["key"]), "--ca", str(pem_files["ca"]),
        "--crl", str(pem_files["crl"]), "--crl", str(pem_files["root-crl"]),
        "--speed", "1800", "--duration", "2.5", "--quiet"])
    thread.join(TIMEOUT)
    assert result.exit_code == 0, result.output
    assert "stopped:" in result.output
    assert 2 <= len(frames) <= 7
    stamps = [f.messages[1].body.act_sensor_time.value for f in frames]  # type: ignore[union-attr]
    assert all(s % 900 == 0 for s in stamps[1:])


def test_cli_run_wireless_sends_datagrams() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(TIMEOUT)
        port = rx.getsockname()[1]
        result = CliRunner().invoke(meter_app, [
            "run", "--kind", "water", "--udp", f"127.0.0.1:{port}", "--key-hex", KEY.hex(),
            "--mode7", "--speed", "1800", "--duration", "1.6", "--start", "2025-06-01T08:00"])
        assert result.exit_code == 0, result.output
        datagrams = []
        rx.settimeout(0.2)
        try:
            while True:
                datagrams.append(rx.recv(512))
        except TimeoutError:
            pass
    assert len(datagrams) >= 2
    counters = MemoryCounterTracker()
    ts = [decode_telegram(d, KEY, counters=counters) for d in datagrams]
    assert [t.afl.message_counter for t in ts] == list(range(1, len(ts) + 1))  # type: ignore[union-attr]
    assert {t.meter.id_text for t in ts} == {"12345678"}


def test_cli_run_refuses_incomplete_options(pem_files) -> None:
    r = CliRunner().invoke(meter_app, ["run", "--mode", "push", "--gateway", "127.0.0.1:1"])
    assert r.exit_code == 2 and "--cert" in r.output
    r = CliRunner().invoke(meter_app, [
        "run", "--mode", "pull", "--gateway", "127.0.0.1:1", "--cert", str(pem_files["cert"]),
        "--key", str(pem_files["key"]), "--ca", str(pem_files["ca"])])
    assert r.exit_code == 2 and "--listen" in r.output
    r = CliRunner().invoke(meter_app, ["run", "--kind", "gas", "--udp", "nohost",
                                       "--key-hex", KEY.hex()])
    assert r.exit_code == 2 and "HOST:PORT" in r.output
    r = CliRunner().invoke(meter_app, ["run", "--id", "XYZ", "--udp", "127.0.0.1:9"])
    assert r.exit_code == 1 and Reason.MALFORMED.value in r.output
