"""The gateway's LMN on 127.0.0.1 (seed 003 table 1, end to end): real LMN-TLS with session-PKI
certificates for a push meter (``PushMeter``) and a pull meter (``PullMeter``), a wireless
``RadioMeter`` over UDP; every value ends up in the evidence store and the chain verifies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from imsys.core.clock import SimulatedClock
from imsys.crypto.tls import TlsIdentity
from imsys.gateway.lmn_endpoints import (
    LmnPullClient,
    LmnTls,
    LmnTlsServer,
    SmlFrameSplitter,
    WmbusUdpReceiver,
)
from imsys.gateway.logs import SystemEvent
from imsys.gateway.measurement import Measurement
from imsys.gateway.meter_profile import MeterProfile, MeterProtocol, tls_fingerprint
from imsys.gateway.store import Database, Durability, ReadingSource
from imsys.lmn.errors import SmlRejected
from imsys.lmn.wmbus import SecurityMode
from imsys.meters.lmn_payload import SmlPushEncoder, SmlResponder, WmbusEncoder
from imsys.meters.lmn_tls import LmnTlsConfig, PullMeter, PushMeter
from imsys.meters.radio import RadioMeter
from imsys.meters.settings import MeterSettings
from imsys.meters.simulator import MeterKind, MeterSimulator, ModelKind
from imsys.pki import PkiDirectory

T0 = datetime(2024, 12, 31, 23, 0, tzinfo=UTC)
Q = timedelta(minutes=15)
PUSH_ID = "1EMH0012345678"
PULL_ID = "1EMH0012345679"
GAS_ID = "7ELS0087654321"
GATEWAY_ID = "EABC0012345678"
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
TIMEOUT = 20.0


def _identity(pki: PkiDirectory, issue, profile: str, ident: str) -> TlsIdentity:
    key, cert = issue(profile, ident, ca="sub-ca")
    return TlsIdentity((cert, *pki.chain("sub-ca")), key)


def _anchors(pki: PkiDirectory) -> tuple:
    return (pki.root.certificate,)


def _intermediates(pki: PkiDirectory) -> tuple:
    return tuple(pki.ca(n).certificate for n in pki.settings["sub_cas"])


def meter_tls(pki: PkiDirectory, issue, meter_id: str) -> LmnTlsConfig:
    return LmnTlsConfig(_identity(pki, issue, "meter-tls", meter_id), _anchors(pki),
                        _intermediates(pki), pki.validator())


def gateway_tls(pki: PkiDirectory, issue) -> LmnTls:
    return LmnTls(_identity(pki, issue, "gateway-tls", GATEWAY_ID), _anchors(pki),
                  _intermediates(pki), pki.validator())


def wired_profile(issue, meter_id: str, channels: tuple[str, ...], **kw: Any) -> MeterProfile:
    _, cert = issue("meter-tls", meter_id, ca="sub-ca")
    return MeterProfile(meter_id=meter_id, tls_fingerprint=tls_fingerprint(cert),
                        channels=channels, consumer_id="consumer-1", **kw)


def electricity(clock: SimulatedClock, meter_id: str) -> MeterSimulator:
    return MeterSimulator(meter_id, MeterKind.ELECTRICITY, ModelKind.HOUSEHOLD_H0,
                          MeterSettings(seed=9), clock)


def channels_of(sim: MeterSimulator) -> tuple[str, ...]:
    return tuple(r.obis for r in sim.snapshot_at(T0).readings)


async def eventually(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 90))


def test_frame_splitter_cuts_frames_from_a_stream_and_skips_garbage() -> None:
    clock = SimulatedClock(T0)
    enc = SmlPushEncoder(PUSH_ID)
    frames = [enc.frame(electricity(clock, PUSH_ID).sample()) for _ in range(3)]
    stream = b"noise" + frames[0] + frames[1][:-9] + frames[2]
    splitter = SmlFrameSplitter()
    out = []
    for k in range(0, len(stream), 7):
        out += splitter.feed(stream[k:k + 7])
    assert out[0] == frames[0] and out[-1] == frames[2]
    assert len(out) == 3 and isinstance(out[1], SmlRejected)


# --------------------------------------------------------------------------- push


async def _push(pki: PkiDirectory, issue, db_path: Path) -> None:
    clock = SimulatedClock(T0)
    sim = electricity(clock, PUSH_ID)
    profile = wired_profile(issue, PUSH_ID, channels_of(sim), protocol=MeterProtocol.SML_TLS_PUSH)
    db = Database(db_path)
    core = Measurement(db, clock, [profile])
    server = LmnTlsServer(core, gateway_tls(pki, issue), ("127.0.0.1", 0))
    await server.start()
    meter = PushMeter(sim, ("127.0.0.1", server.port), meter_tls(pki, issue, PUSH_ID),
                      clock=clock, poll=0.005)
    # a meter of the SM-PKI without a meter profile
    stranger_sim = electricity(clock, "1EMH0099999999")
    stranger = PushMeter(stranger_sim, ("127.0.0.1", server.port),
                         meter_tls(pki, issue, "1EMH0099999999"), clock=clock, poll=0.005)
    tasks = [asyncio.create_task(meter.run()), asyncio.create_task(stranger.run())]
    try:
        await eventually(lambda: server.stats.frames == 1 and server.stats.refused_peers >= 1)
        await asyncio.sleep(0.1)  # let the meter compute its next send instant first
        clock.advance(Q)
        await eventually(lambda: server.stats.frames == 2)
    finally:
        meter.stop()
        stranger.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
        await server.close()
    n = len(profile.channels)
    assert server.stats.stored == 2 * n and server.stats.rejected == 0
    assert server.stats.peers == [PUSH_ID]
    stored = list(core.store.iter_readings(PUSH_ID))
    assert len(stored) == 2 * n and {s.source for s in stored} == {ReadingSource.LMN_SML}
    assert {s.reading.timestamp for s in stored} == {T0, T0 + Q}
    assert all(s.reading.valid for s in stored)
    core.store.verify_chain()
    refused = [e for e in core.logs.system.entries() if e.event is SystemEvent.TLS_FAILURE]
    assert refused and "1EMH0099999999" not in refused[0].text
    assert core.store.count() == 2 * n  # nothing from the stranger
    db.close()


def test_gateway_stores_values_pushed_over_lmn_tls(pki, issue, tmp_path: Path) -> None:
    run(_push(pki, issue, tmp_path / "gw.db"))


# --------------------------------------------------------------------------- pull


async def _pull(pki: PkiDirectory, issue, db_path: Path) -> None:
    clock = SimulatedClock(T0)
    sim = electricity(clock, PULL_ID)
    meter = PullMeter(SmlResponder(sim), ("127.0.0.1", 0), meter_tls(pki, issue, PULL_ID),
                      clock=clock)
    await meter.start()
    meter_task = asyncio.create_task(meter.run())
    profile = wired_profile(issue, PULL_ID, ("1-0:1.8.0*255", "1-0:2.8.0*255"),
                            protocol=MeterProtocol.SML_TLS_PULL,
                            endpoint=f"127.0.0.1:{meter.port}")
    db = Database(db_path, durability=Durability.OFF)
    core = Measurement(db, clock, [profile])
    client = LmnPullClient(core, gateway_tls(pki, issue), poll=0.005)
    clock.advance(timedelta(hours=1))
    task = asyncio.create_task(client.run())
    try:
        await eventually(lambda: client.stats.stored == 10)  # 5 periods × 2 registers
        clock.advance(Q)
        await eventually(lambda: client.stats.stored == 12)
    finally:
        client.stop()
        await asyncio.wait_for(task, TIMEOUT)
        meter.stop()
        await asyncio.wait_for(meter_task, TIMEOUT)
    assert client.stats.rejected == 0 and client.stats.peers[0] == PULL_ID
    stored = list(core.store.iter_readings(PULL_ID, "1-0:1.8.0*255"))
    assert [s.reading.timestamp for s in stored] == [T0 + k * Q for k in range(6)]
    ref = electricity(SimulatedClock(T0), PULL_ID).series(T0, T0 + 5 * Q, Q)
    assert [s.reading.value for s in stored] == [int(v) for v in
                                                 ref.registers["1-0:1.8.0*255"]]
    core.store.verify_chain()
    db.close()


def test_gateway_polls_a_pull_meter_over_lmn_tls(pki, issue, tmp_path: Path) -> None:
    run(_pull(pki, issue, tmp_path / "gw.db"))


# --------------------------------------------------------------------------- radio


@pytest.mark.parametrize("mode", [SecurityMode.AES_CBC_IV, SecurityMode.AES_CBC_NO_IV])
def test_gateway_stores_wireless_mbus_telegrams(mode: SecurityMode, tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = SimulatedClock(T0)
        profile = MeterProfile(
            meter_id=GAS_ID, aes_key=KEY, channels=("7-0:3.0.0*255", "7-0:3.1.0*255"),
            consumer_id="consumer-2",
            protocol=(MeterProtocol.WMBUS_MODE5 if mode is SecurityMode.AES_CBC_IV
                      else MeterProtocol.WMBUS_MODE7))
        db = Database(tmp_path / "gw.db", durability=Durability.OFF)
        core = Measurement(db, clock, [profile])
        receiver = WmbusUdpReceiver(core, ("127.0.0.1", 0))
        await receiver.start()
        sim = MeterSimulator(GAS_ID, MeterKind.GAS, ModelKind.GAS_HEATING, MeterSettings(seed=3),
                             clock)
        enc = WmbusEncoder(GAS_ID, MeterKind.GAS, key=KEY, mode=mode, long_header=True)
        meter = RadioMeter(sim, enc, ("127.0.0.1", receiver.port), clock=clock, poll=0.005)
        task = asyncio.create_task(meter.run())
        try:
            await eventually(lambda: receiver.stats.frames == 1)
            await asyncio.sleep(0.1)  # let the meter compute its next send instant first
            clock.advance(timedelta(hours=1))
            await eventually(lambda: receiver.stats.frames == 5)
        finally:
            meter.stop()
            await asyncio.wait_for(task, TIMEOUT)
            receiver.close()
        assert receiver.stats.rejected == 0 and receiver.stats.stored == 10
        stored = list(core.store.iter_readings(GAS_ID, "7-0:3.0.0*255"))
        ref = MeterSimulator(GAS_ID, MeterKind.GAS, ModelKind.GAS_HEATING, MeterSettings(seed=3),
                             SimulatedClock(T0))
        assert [s.reading.value for s in stored] == [
            ref.snapshot_at(T0 + k * Q).value("7-0:3.0.0*255") for k in range(5)]
        assert {s.source for s in stored} == {ReadingSource.WMBUS}
        core.store.verify_chain()
        db.close()

    run(scenario())


def test_pull_request_frame_asks_for_the_profile_from_the_last_period_or_the_list(issue
                                                                                  ) -> None:
    from imsys.gateway.lmn_endpoints import request_frame
    from imsys.gateway.meter_profile import PullRequest
    from imsys.lmn import sml

    profile = wired_profile(issue, PULL_ID, ("1-0:1.8.0*255",),
                            protocol=MeterProtocol.SML_TLS_PULL, endpoint="127.0.0.1:4059")
    file = sml.decode_frame(request_frame(profile, T0, 7))
    bodies = [m.body for m in file.messages]
    assert isinstance(bodies[0], sml.OpenRequest) and isinstance(bodies[2], sml.CloseRequest)
    assert isinstance(bodies[1], sml.GetProfileListRequest)
    assert bodies[1].begin_time == sml.Timestamp(int(T0.timestamp()))
    listing = MeterProfile.from_dict({**profile.to_dict(),
                                      "pull_request": PullRequest.GET_LIST.value})
    body = sml.decode_frame(request_frame(listing, None, 8)).messages[1].body
    assert isinstance(body, sml.GetListRequest)
