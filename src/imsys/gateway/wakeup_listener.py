"""The gateway's UDP wake-up listener: an asyncio adapter around
:class:`imsys.wire.wakeup.WakeupReceiver`.

It moves datagrams into the core and nothing else: the core decides, the adapter only

* drops datagrams beyond a token bucket before they cost a signature check
  (``RATE_LIMITED``; logged once per burst plus a count of the drops);
* calls ``on_wakeup(decision)`` – "connect to the GWA now" – for an accepted packet, at most
  one call in flight at a time (a wake-up that arrives while the gateway is already connecting
  is coalesced into that connection) and no more often than a second token bucket allows;
* logs every rejection with its reason through :mod:`logging` (logger
  ``imsys.gateway.wakeup``) and, when given, through a ``system_log`` hook that receives a
  :class:`WakeupEvent` per datagram (the gateway writes it to its system log).

It never answers the sender: a refused packet is silently dropped (the peer learns nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from imsys.core.errors import UsageError
from imsys.wire.wakeup import WakeupDecision, WakeupReason, WakeupReceiver, WakeupRejected

__all__ = [
    "TokenBucket",
    "WakeupEvent",
    "WakeupListener",
    "WakeupOutcome",
]

logger = logging.getLogger("imsys.gateway.wakeup")


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; :meth:`take` spends one if there is
    one. ``now`` is a monotonic time source in seconds (injectable for tests)."""

    def __init__(self, rate: float, burst: int, now: Callable[[], float] = time.monotonic
                 ) -> None:
        if rate <= 0 or burst < 1:
            raise UsageError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._now = now
        self._tokens = float(burst)
        self._stamp = now()

    def take(self) -> bool:
        """Spend one token; False (and nothing spent) if the bucket is empty."""
        now = self._now()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class WakeupOutcome(StrEnum):
    """What the listener did with one datagram."""

    CONNECT = "connect"  # accepted; on_wakeup called
    COALESCED = "coalesced"  # accepted while a connection was in progress; no new call
    CONNECT_LIMITED = "connect-limited"  # accepted, but connections are rate-limited now
    REJECTED = "rejected"  # refused by the core or dropped by the datagram bucket


@dataclass(frozen=True, slots=True)
class WakeupEvent:
    """One line for the system log: the outcome, the reason of a rejection, the sender."""

    outcome: WakeupOutcome
    reason: WakeupReason | None
    peer: str
    message: str = ""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, listener: WakeupListener) -> None:
        self._listener = listener

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._listener._datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        logger.warning("wake-up socket error: %s", exc)


class WakeupListener:
    """Listens for wake-up datagrams on ``host``:``port`` (default loopback, ephemeral port).

    ``on_wakeup`` is awaited for each accepted wake-up (subject to coalescing and the connect
    bucket); its exceptions are logged, never raised into the event loop. Use as
    ``async with WakeupListener(...) as listener:`` or call :meth:`start` / :meth:`close`.
    """

    def __init__(self, receiver: WakeupReceiver,
                 on_wakeup: Callable[[WakeupDecision], Awaitable[None]], *,
                 host: str = "127.0.0.1", port: int = 0,
                 datagram_rate: float = 20.0, datagram_burst: int = 20,
                 connect_rate: float = 1 / 30, connect_burst: int = 2,
                 system_log: Callable[[WakeupEvent], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.receiver = receiver
        self.on_wakeup = on_wakeup
        self.host = host
        self.port = port
        self.system_log = system_log
        self._datagrams = TokenBucket(datagram_rate, datagram_burst, monotonic)
        self._connects = TokenBucket(connect_rate, connect_burst, monotonic)
        self._transport: asyncio.DatagramTransport | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._dropped = 0

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); only after :meth:`start`."""
        if self._transport is None:
            raise UsageError("the listener is not started")
        sockname = self._transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    async def start(self) -> tuple[str, int]:
        """Bind the socket; returns the bound address."""
        if self._transport is not None:
            raise UsageError("the listener is already started")
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self.port))
        self._transport = transport
        logger.info("wake-up listener on %s:%d", *self.address)
        return self.address

    async def close(self) -> None:
        """Close the socket and wait for a connection callback still running."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        task, self._connecting = self._connecting, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> WakeupListener:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ datagram path

    def _emit(self, event: WakeupEvent) -> None:
        if self.system_log is None:
            return
        try:
            self.system_log(event)
        except Exception:
            logger.exception("wake-up system-log hook failed")

    def _datagram(self, data: bytes, addr: Any) -> None:
        peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
        if not self._datagrams.take():
            # the log gets the first drop of a burst and then a count (a flood must not flood
            # the log); the system-log hook gets every one
            if self._dropped == 0:
                logger.warning("wake-up rejected: %s (datagram rate exceeded) from %s",
                               WakeupReason.RATE_LIMITED.value, peer)
            self._dropped += 1
            self._emit(WakeupEvent(WakeupOutcome.REJECTED, WakeupReason.RATE_LIMITED, peer,
                                   "datagram rate exceeded"))
            return
        if self._dropped:
            logger.warning("wake-up rejected: %s (%d datagrams dropped by the rate limit)",
                           WakeupReason.RATE_LIMITED.value, self._dropped)
            self._dropped = 0
        try:
            decision = self.receiver.accept(data)
        except WakeupRejected as exc:
            logger.warning("wake-up rejected: %s (%s) from %s", exc.reason.value, exc.message,
                           peer)
            self._emit(WakeupEvent(WakeupOutcome.REJECTED, exc.reason, peer, exc.message))
            return
        except Exception:  # a bug in the core must not close the socket
            logger.exception("wake-up core failed on a datagram from %s", peer)
            return
        if self._connecting is not None and not self._connecting.done():
            logger.info("wake-up from %s accepted; connection already in progress", peer)
            self._emit(WakeupEvent(WakeupOutcome.COALESCED, None, peer))
            return
        if not self._connects.take():
            logger.warning("wake-up from %s accepted but connections are rate-limited", peer)
            self._emit(WakeupEvent(WakeupOutcome.CONNECT_LIMITED, None, peer))
            return
        logger.info("wake-up accepted from %s: connecting to %s", peer, decision.connect_to)
        self._emit(WakeupEvent(WakeupOutcome.CONNECT, None, peer))
        self._connecting = asyncio.get_running_loop().create_task(self._connect(decision))

    async def _connect(self, decision: WakeupDecision) -> None:
        try:
            await self.on_wakeup(decision)
        except Exception:
            logger.exception("connecting to the GWA after a wake-up failed")
