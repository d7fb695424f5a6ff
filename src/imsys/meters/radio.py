"""A wireless meter on the LMN: wM-Bus telegrams as UDP datagrams (asyncio adapter, bytes only).

The radio is a stand-in: each telegram (frame format A with block CRCs, exactly the bytes a
wM-Bus transceiver would put on air) becomes one UDP datagram to ``HOST:PORT`` on the loopback
interface, where the gateway's "radio" listens. Like a real ``SND_NR`` meter it sends without a
connection and without answers, one telegram per interval (UTC-aligned, one at start-up), with
the access number and the OMS message counter advancing per telegram (held by the
:class:`~imsys.meters.lmn_payload.WmbusEncoder`).

Time comes from the injected clock as in :mod:`.lmn_tls` (missed instants after a clock jump are
sent one after the other, up to ``max_catch_up``). A refused datagram (ICMP port unreachable
while nobody listens) or an encoding error is logged and counted; the loop goes on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import timedelta

from imsys.core.clock import Clock
from imsys.core.errors import ImsysError, UsageError
from imsys.meters.lmn_payload import WmbusEncoder
from imsys.meters.lmn_tls import LinkStats, Pacer, next_boundary
from imsys.meters.simulator import MeterSimulator, MeterSnapshot

log = logging.getLogger(__name__)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, meter: RadioMeter) -> None:
        self.meter = meter

    def error_received(self, exc: Exception) -> None:
        self.meter.stats.failed("radio", exc)
        log.warning("meter %s: datagram refused: %s", self.meter.simulator.meter_id, exc)

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        pass  # SND_NR meters do not listen


class RadioMeter:
    """A wireless meter that sends one wM-Bus telegram per interval as a UDP datagram."""

    def __init__(self, simulator: MeterSimulator, encoder: WmbusEncoder,
                 target: tuple[str, int], *, interval: timedelta = timedelta(seconds=900),
                 clock: Clock | None = None, send_on_start: bool = True, poll: float = 0.1,
                 max_catch_up: int = 35_136) -> None:
        if interval <= timedelta(0):
            raise UsageError("interval must be positive")
        self.simulator = simulator
        self.encoder = encoder
        self.target = target
        self.interval = interval
        self.clock: Clock = clock or simulator.clock
        self.send_on_start = send_on_start
        self.max_catch_up = max_catch_up
        self.stats = LinkStats()
        self._stopping = False
        self._pacer = Pacer(self.clock, poll)

    def stop(self) -> None:
        """Ask :meth:`run` to finish."""
        self._stopping = True
        self._pacer.wake()

    def _send(self, transport: asyncio.DatagramTransport,
              take: Callable[[], MeterSnapshot]) -> None:
        try:
            snap = take()
            telegram = self.encoder.encode(snap)
        except ImsysError as exc:
            self.stats.failed("encode", exc)
            log.error("meter %s: cannot encode a telegram: %s", self.simulator.meter_id, exc)
            return
        try:
            transport.sendto(telegram)
        except OSError as exc:
            self.stats.failed("radio", exc)
            log.warning("meter %s: cannot send: %s", self.simulator.meter_id, exc)
            return
        self.stats.frames_sent += 1
        self.stats.last_sent = snap.timestamp

    async def run(self) -> None:
        """Send telegrams until :meth:`stop`."""
        self._pacer = Pacer(self.clock, self._pacer.poll)  # bound to this event loop
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), remote_addr=self.target)
        self.stats.state = "sending"
        sim = self.simulator
        try:
            if self.send_on_start:
                self._send(transport, sim.sample)
            due = next_boundary(self.clock.now(), self.interval)
            while not self._stopping:
                await self._pacer.sleep_until(due)
                if self._stopping:
                    break
                now = self.clock.now()
                burst = 0
                while due <= now and burst < self.max_catch_up:
                    self._send(transport, functools.partial(sim.snapshot_at, due, captured_at=now))
                    due += self.interval
                    burst += 1
                    if burst % 64 == 0:
                        await asyncio.sleep(0)  # let the receiver drain its socket
                if due <= now:
                    log.warning("meter %s skipped %s of send instants", sim.meter_id, now - due)
                    due = next_boundary(now, self.interval)
        finally:
            transport.close()
            self.stats.state = "stopped"


__all__ = ["RadioMeter"]
