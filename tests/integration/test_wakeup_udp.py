"""The wake-up listener over real UDP on loopback: only a valid, fresh, GWA-signed packet makes
the gateway connect out, exactly once; everything else is logged with its reason."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from imsys.core.clock import SimulatedClock
from imsys.crypto import SoftwareKey
from imsys.gateway.wakeup_listener import (
    TokenBucket,
    WakeupEvent,
    WakeupListener,
    WakeupOutcome,
)
from imsys.wire.wakeup import WakeupDecision, WakeupReason, WakeupReceiver, make_wakeup

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
Pair = tuple[SoftwareKey, x509.Certificate]
GATEWAY = "EABC0012345678"
GWA = "GWA-One"
GWA_ADDRESS = "gwa-one.example:8443"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def gwa(issue: Issue) -> Pair:
    return issue("gwa-sig", GWA)


@pytest.fixture(scope="module")
def other_gwa(issue: Issue) -> Pair:
    return issue("gwa-sig", "GWA-Two")


def wakeup(key: SoftwareKey, **kwargs: object) -> bytes:
    fields: dict[str, object] = dict(issued_at=NOW)
    fields.update(kwargs)
    administrator = str(fields.pop("administrator", GWA))
    return make_wakeup(GATEWAY, administrator, key, **fields)  # type: ignore[arg-type]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the listener")
        await asyncio.sleep(0.01)


class Harness:
    """A listener on loopback, a sending socket, and what the gateway did."""

    def __init__(self, gwa: Pair, on_wakeup: Callable[[WakeupDecision], Awaitable[None]]
                 | None = None, **kwargs: object) -> None:
        self.decisions: list[WakeupDecision] = []
        self.events: list[WakeupEvent] = []
        receiver = WakeupReceiver(GATEWAY, gwa[1], GWA_ADDRESS, SimulatedClock(NOW))
        self.listener = WakeupListener(receiver, on_wakeup or self._connect,
                                       system_log=self.events.append,
                                       **kwargs)  # type: ignore[arg-type]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def _connect(self, decision: WakeupDecision) -> None:
        self.decisions.append(decision)

    async def __aenter__(self) -> Harness:
        await self.listener.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.listener.close()
        self.sock.close()

    async def send(self, *datagrams: bytes) -> None:
        before = len(self.events)
        for data in datagrams:
            self.sock.sendto(data, self.listener.address)
        await until(lambda: len(self.events) >= before + len(datagrams))
        await asyncio.sleep(0.05)  # let a scheduled connection callback run

    def reasons(self) -> list[WakeupReason | None]:
        return [e.reason for e in self.events]


def test_wakeup_udp_only_the_valid_packet_triggers_one_connection(
        gwa: Pair, other_gwa: Pair, caplog: pytest.LogCaptureFixture) -> None:
    valid = wakeup(gwa[0])
    stale = wakeup(gwa[0], issued_at=NOW - timedelta(minutes=10))
    foreign = wakeup(other_gwa[0])  # claims to be our GWA, signed by another one
    other_admin = wakeup(other_gwa[0], administrator="GWA-Two")

    async def scenario() -> Harness:
        async with Harness(gwa) as h:
            assert h.listener.address[0] == "127.0.0.1"
            await h.send(stale, foreign, other_admin, b"\x00garbage")
            assert h.decisions == []
            await h.send(valid)
            await h.send(valid)  # replayed
            await h.send(stale)
        return h

    with caplog.at_level(logging.INFO, logger="imsys.gateway.wakeup"):
        h = asyncio.run(scenario())
    assert len(h.decisions) == 1
    assert h.decisions[0].connect_to == GWA_ADDRESS
    assert h.reasons() == [WakeupReason.EXPIRED, WakeupReason.BAD_SIGNATURE,
                           WakeupReason.UNKNOWN_ADMINISTRATOR, WakeupReason.MALFORMED, None,
                           WakeupReason.REPLAYED_NONCE, WakeupReason.EXPIRED]
    assert [e.outcome for e in h.events].count(WakeupOutcome.CONNECT) == 1
    rejected = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == 6
    for reason in ("expired", "bad-signature", "unknown-administrator", "malformed",
                   "replayed-nonce"):
        assert any(reason in line and "127.0.0.1" in line for line in rejected), reason


def test_wakeup_udp_rate_limited_flood_cannot_make_the_gateway_connect_repeatedly(
        gwa: Pair) -> None:
    packets = [wakeup(gwa[0]) for _ in range(40)]  # distinct, valid, GWA-signed

    async def scenario() -> Harness:
        async with Harness(gwa, datagram_burst=10, datagram_rate=0.001, connect_burst=1,
                           connect_rate=0.001) as h:
            await h.send(*packets)
        return h

    h = asyncio.run(scenario())
    assert len(h.decisions) == 1
    outcomes = [e.outcome for e in h.events]
    assert outcomes.count(WakeupOutcome.CONNECT) == 1
    assert outcomes.count(WakeupOutcome.CONNECT_LIMITED) == 9
    assert h.reasons().count(WakeupReason.RATE_LIMITED) == 30


def test_wakeup_udp_coalesces_wakeups_while_connecting(gwa: Pair) -> None:
    calls: list[WakeupDecision] = []

    async def scenario() -> list[WakeupEvent]:
        release = asyncio.Event()

        async def slow_connect(decision: WakeupDecision) -> None:
            calls.append(decision)
            await release.wait()

        async with Harness(gwa, on_wakeup=slow_connect) as h:
            await h.send(wakeup(gwa[0]), wakeup(gwa[0]))
            release.set()
        return h.events

    events = asyncio.run(scenario())
    assert len(calls) == 1
    assert [e.outcome for e in events] == [WakeupOutcome.CONNECT, WakeupOutcome.COALESCED]


def test_wakeup_udp_listener_survives_a_failing_callback(gwa: Pair) -> None:
    calls: list[WakeupDecision] = []

    async def failing_connect(decision: WakeupDecision) -> None:
        calls.append(decision)
        raise ConnectionRefusedError("GWA unreachable")

    async def scenario() -> None:
        async with Harness(gwa, on_wakeup=failing_connect) as h:
            await h.send(wakeup(gwa[0]))
            await h.send(wakeup(gwa[0]))  # the listener still serves

    asyncio.run(scenario())
    assert len(calls) == 2


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=2, now=lambda: now[0])
    assert bucket.take() and bucket.take() and not bucket.take()
    now[0] += 0.5
    assert bucket.take() and not bucket.take()
    now[0] += 100
    assert bucket.take() and bucket.take() and not bucket.take()
