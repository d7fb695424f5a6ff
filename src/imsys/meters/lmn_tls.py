"""A wired meter on the LMN: SML over mutually authenticated TLS (asyncio adapters, bytes only).

Two modes (TR-03109-1 knows both mappings, spec/facts.md §2.1/§4.1):

* **push** – :class:`PushMeter` is the TLS client. It connects to the gateway's LMN endpoint,
  checks the gateway's certificate (SM-PKI path, profile ``gateway-tls``), sends one SML frame at
  once and then one at every multiple of ``interval`` (UTC-aligned: 00:00, 00:15 … for 900 s),
  and reconnects with exponential backoff when the connection fails, is refused or ends.
* **pull** – :class:`PullMeter` is the TLS server. Each gateway connection is checked the same
  way; request frames are split with :class:`~imsys.lmn.sml.SmlStreamDecoder` and answered by
  :class:`~imsys.meters.lmn_payload.SmlResponder` (GetList, GetProfileList).

TLS follows the LMN policy of :mod:`imsys.crypto.tls` (TLS 1.2, ECDHE-ECDSA, brainpool groups,
maximum session age 744 h, checked with :func:`check_session_age` before every frame). A peer
that fails the handshake or :func:`check_peer` is disconnected without a byte of SML and counted in
:attr:`LinkStats.refused_peers`; the reason goes to the log.

Time: every deadline (send instants, backoff, session age) is read from the injected clock.
With a :class:`~imsys.core.clock.SimulatedClock` nothing happens until the caller advances it;
missed send instants are then sent one after the other (a jump of a day sends 96 frames, up to
``max_catch_up``). :class:`ScaledClock` runs real time ``speed`` times faster for network runs.
The loops poll the clock every ``poll`` real seconds at most.

Errors never end a run loop: network and TLS failures lead to a reconnect, a snapshot that cannot
be encoded is skipped, an unparseable request is answered with an SML attention response – each
with one log line and a counter in :class:`LinkStats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from imsys.core.clock import Clock, ScaledClock, next_boundary
from imsys.core.errors import ImsysError, Rejected, UsageError
from imsys.crypto.tls import (
    Interface,
    TlsIdentity,
    check_peer,
    check_session_age,
    client_context,
    server_context,
)
from imsys.lmn.errors import SmlRejected
from imsys.lmn.sml import SmlStreamDecoder
from imsys.meters.lmn_payload import SmlPushEncoder, SmlResponder
from imsys.meters.simulator import MeterSimulator, MeterSnapshot
from imsys.net import Listener, close_writer
from imsys.pki import PathValidator, load_certificates

log = logging.getLogger(__name__)

#: the certificate profile a meter demands from the gateway side of the LMN
GATEWAY_PROFILE = "gateway-tls"


# --------------------------------------------------------------------------- time


class Pacer:
    """Waits until the injected clock reaches a deadline; :meth:`wake` ends a wait early.

    The clock is polled at least every ``poll`` real seconds (a ``SimulatedClock`` moves only
    when its owner advances it); a :class:`ScaledClock`'s ``speed`` shortens the real waits.
    """

    def __init__(self, clock: Clock, poll: float = 0.1) -> None:
        if not poll > 0:
            raise UsageError("poll must be positive")
        self.clock = clock
        self.poll = poll
        self._event = asyncio.Event()

    @property
    def woken(self) -> bool:
        return self._event.is_set()

    def wake(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    async def sleep_for_real(self, seconds: float) -> None:
        """Wait ``seconds`` of real time (or until :meth:`wake`)."""
        if seconds > 0 and not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), seconds)

    async def sleep_until(self, deadline: datetime) -> None:
        """Return when ``clock.now() >= deadline`` or after :meth:`wake`."""
        speed = getattr(self.clock, "speed", 1.0)
        while not self._event.is_set():
            now = self.clock.now()
            if now >= deadline:
                return
            timeout = min((deadline - now).total_seconds() / speed, self.poll)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays on the injected clock: ``initial · factor^(attempt−1)``, capped.

    ``real_floor`` real seconds pass between two attempts in any case, so a fast
    :class:`ScaledClock` cannot turn the backoff into a reconnect storm.
    """

    initial: timedelta = timedelta(seconds=1)
    maximum: timedelta = timedelta(minutes=5)
    factor: float = 2.0
    real_floor: float = 0.1

    def delay(self, attempt: int) -> timedelta:
        if attempt <= 0:
            return self.initial
        return min(self.initial * self.factor ** (attempt - 1), self.maximum)


@dataclass
class LinkStats:
    """What an adapter has done; read by the CLI status line and by tests."""

    state: str = "idle"
    frames_sent: int = 0
    requests_answered: int = 0
    connects: int = 0
    refused_peers: int = 0
    errors: int = 0
    last_error: str | None = None
    last_sent: datetime | None = None
    peers: list[str] = field(default_factory=list)

    def failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{what}: {exc}"


def parse_endpoint(text: str) -> tuple[str, int]:
    """``"127.0.0.1:4059"`` → ``("127.0.0.1", 4059)``; ``[::1]:4059`` for IPv6."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"not HOST:PORT: {text!r}")
    return host.strip("[]"), int(port)


# --------------------------------------------------------------------------- TLS set-up


@dataclass(frozen=True)
class LmnTlsConfig:
    """Own identity, trust anchors and the validator for the gateway's certificate."""

    identity: TlsIdentity
    trust_anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    validator: PathValidator | None = None
    peer_profile: str = GATEWAY_PROFILE

    def __post_init__(self) -> None:
        # the default validator has no CRLs: it checks path, role and key usage only
        if self.validator is None:
            object.__setattr__(self, "validator", PathValidator(
                self.trust_anchors, self.intermediates, require_crl=False))

    @classmethod
    def from_files(cls, cert: Path, key: Path, ca: Path,
                   crls: Sequence[Path] = (), clock: Clock | None = None) -> LmnTlsConfig:
        """From PEM files: certificate (chain), key, CA chain (Root + Sub-CAs), optional CRLs.

        Self-signed certificates in ``ca`` are the trust anchors, the others intermediates.
        Without CRLs revocation is not checked (logged once).
        """
        own = load_certificates(Path(cert).read_bytes())
        cas = load_certificates(Path(ca).read_bytes())
        if not own:
            raise UsageError(f"{cert}: no certificate")
        anchors = tuple(c for c in cas if c.issuer == c.subject)
        inter = tuple(c for c in cas if c.issuer != c.subject)
        if not anchors:
            raise UsageError(f"{ca}: no self-signed Root-CA certificate")
        chain = (*own, *(c for c in inter if c not in own))
        crl_list = [x509.load_der_x509_crl(data) if not data.startswith(b"-----")
                    else x509.load_pem_x509_crl(data)
                    for data in (Path(p).read_bytes() for p in crls)]
        if not crl_list:
            log.warning("no CRL given: the gateway certificate is checked without revocation")
        validator = PathValidator(anchors, inter, crl_list, clock=clock,
                                  require_crl=bool(crl_list))
        return cls(TlsIdentity(chain, Path(key)), anchors, inter, validator)

    def client(self) -> ssl.SSLContext:
        return client_context(Interface.LMN, self.identity, self.trust_anchors,
                              intermediates=self.intermediates)

    def server(self) -> ssl.SSLContext:
        return server_context(Interface.LMN, self.identity, self.trust_anchors,
                              intermediates=self.intermediates)


def _check_gateway(writer: asyncio.StreamWriter, config: LmnTlsConfig) -> str:
    """Run :func:`check_peer` (raises ``TlsRejected``); return the gateway's identifier."""
    ssl_obj = writer.get_extra_info("ssl_object")
    if ssl_obj is None:
        raise UsageError("not a TLS connection")
    assert config.validator is not None
    return check_peer(ssl_obj, config.validator, config.peer_profile).identifier


# --------------------------------------------------------------------------- push mode


class PushMeter:
    """A meter that connects to the gateway and pushes one SML frame per interval."""

    def __init__(self, simulator: MeterSimulator, gateway: tuple[str, int], tls: LmnTlsConfig, *,
                 encoder: SmlPushEncoder | None = None,
                 interval: timedelta = timedelta(seconds=900), clock: Clock | None = None,
                 backoff: Backoff | None = None, send_on_connect: bool = True,
                 poll: float = 0.1, connect_timeout: float = 10.0,
                 max_catch_up: int = 35_136) -> None:
        if interval <= timedelta(0):
            raise UsageError("interval must be positive")
        self.simulator = simulator
        self.encoder = encoder or SmlPushEncoder(simulator.meter_id)
        self.gateway = gateway
        self.tls = tls
        self.interval = interval
        self.clock: Clock = clock or simulator.clock
        self.backoff = backoff or Backoff()
        self.send_on_connect = send_on_connect
        self.connect_timeout = connect_timeout
        self.max_catch_up = max_catch_up
        self.stats = LinkStats()
        self._context = tls.client()
        self._stopping = False
        self._pacer = Pacer(self.clock, poll)
        self._session_frames = 0

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask :meth:`run` to finish (closes the connection); call it from the loop's thread."""
        self._stopping = True
        self._pacer.wake()

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        """Connect, push, reconnect – until :meth:`stop`."""
        self._pacer = Pacer(self.clock, self._pacer.poll)  # bound to this event loop
        attempt = 0
        while not self._stopping:
            self._session_frames = 0
            try:
                await self._session()
                attempt = 0
            except Rejected as exc:
                self.stats.refused_peers += 1
                self.stats.failed("gateway refused", exc)
                log.warning("meter %s refuses gateway %s:%d: %s", self.simulator.meter_id,
                            *self.gateway, exc)
                attempt += 1
            except ssl.SSLCertVerificationError as exc:
                self.stats.refused_peers += 1
                self.stats.failed("gateway certificate", exc)
                log.warning("meter %s: gateway %s:%d certificate not from the SM-PKI: %s",
                            self.simulator.meter_id, *self.gateway, exc.verify_message)
                attempt += 1
            except (OSError, ssl.SSLError, TimeoutError, EOFError) as exc:
                self.stats.failed("connection", exc)
                log.warning("meter %s: connection to %s:%d failed: %s", self.simulator.meter_id,
                            *self.gateway, exc or type(exc).__name__)
                attempt += 1
            except ImsysError as exc:  # a bug on our side: logged, and the loop goes on
                self.stats.failed("internal", exc)
                log.exception("meter %s: push session failed", self.simulator.meter_id)
                attempt += 1
            if self._stopping:
                break
            if self._session_frames:  # the link worked: start the backoff afresh
                attempt = min(attempt, 1)
            self.stats.state = "backoff"
            self._pacer.clear()
            deadline = self.clock.now() + self.backoff.delay(attempt)
            await self._pacer.sleep_for_real(self.backoff.real_floor)
            await self._pacer.sleep_until(deadline)
        self.stats.state = "stopped"

    async def _session(self) -> None:
        """One connection, until it ends (raises on failure)."""
        self.stats.state = "connecting"
        host, port = self.gateway
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=self._context,
                                    ssl_handshake_timeout=self.connect_timeout),
            self.connect_timeout)
        try:
            peer = _check_gateway(writer, self.tls)
            self.stats.connects += 1
            self.stats.state = "connected"
            self.stats.peers.append(peer)
            log.info("meter %s connected to gateway %s (%s:%d)", self.simulator.meter_id, peer,
                     host, port)
            await self._push(reader, writer)
        finally:
            await close_writer(writer)

    async def _push(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pacer = self._pacer
        pacer.clear()
        closed = False

        async def watch() -> None:
            nonlocal closed
            try:
                while await reader.read(4096):
                    pass  # a push meter ignores what the gateway says
            except (OSError, ssl.SSLError):
                pass
            closed = True
            pacer.wake()

        watcher = asyncio.create_task(watch())
        opened_at = self.clock.now()
        sim = self.simulator
        try:
            if self.send_on_connect:
                await self._send(writer, sim.sample)
            due = next_boundary(self.clock.now(), self.interval)
            while not self._stopping:
                await pacer.sleep_until(due)
                if self._stopping:
                    break
                if closed:
                    raise EOFError("the gateway closed the connection")
                now = self.clock.now()
                try:
                    check_session_age(opened_at, now, Interface.LMN)
                except Rejected as exc:
                    log.info("meter %s: %s; reconnecting", self.simulator.meter_id, exc)
                    return
                burst = 0
                while due <= now and burst < self.max_catch_up:
                    await self._send(writer, functools.partial(sim.snapshot_at, due,
                                                               captured_at=now))
                    due += self.interval
                    burst += 1
                if due <= now:  # the clock jumped further than we catch up
                    log.warning("meter %s skipped %s of send instants", self.simulator.meter_id,
                                now - due)
                    due = next_boundary(now, self.interval)
        finally:
            watcher.cancel()

    async def _send(self, writer: asyncio.StreamWriter,
                    take: Callable[[], MeterSnapshot]) -> None:
        """Encode one snapshot and write it; an encoding error skips the frame (logged)."""
        try:
            snap = take()
            frame = self.encoder.frame(snap)
        except ImsysError as exc:
            self.stats.failed("encode", exc)
            log.error("meter %s: cannot encode a frame: %s", self.simulator.meter_id, exc)
            return
        writer.write(frame)
        await writer.drain()
        self._session_frames += 1
        self.stats.frames_sent += 1
        self.stats.last_sent = snap.timestamp


# --------------------------------------------------------------------------- pull mode


class PullMeter:
    """A meter that listens for the gateway and answers SML requests."""

    def __init__(self, responder: SmlResponder, listen: tuple[str, int], tls: LmnTlsConfig, *,
                 clock: Clock | None = None, max_frame_size: int = 64 * 1024,
                 handshake_timeout: float = 10.0) -> None:
        self.responder = responder
        self.listen = listen
        self.tls = tls
        self.clock: Clock = clock or responder.simulator.clock
        self.max_frame_size = max_frame_size
        self.handshake_timeout = handshake_timeout
        self.stats = LinkStats()
        self._context = tls.server()
        self._stopped: asyncio.Event | None = None
        # TLS is started inside the handler, so a failed handshake (a peer outside the SM-PKI)
        # is seen, logged and counted like any other refusal
        self._listener = Listener(self._handle, listen, "the meter")

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return self._listener.port

    async def start(self) -> None:
        self._stopped = asyncio.Event()
        await self._listener.start()
        self.stats.state = "listening"
        log.info("meter %s listens on %s:%d", self.responder.meter_id, self.listen[0],
                 self.port)

    async def run(self) -> None:
        """Listen until :meth:`stop`."""
        if not self._listener.listening:
            await self.start()
        assert self._stopped is not None
        await self._stopped.wait()
        await self.close()

    def stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()

    async def close(self) -> None:
        await self._listener.close()
        self.stats.state = "stopped"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        meter = self.responder.meter_id
        try:
            await writer.start_tls(self._context, ssl_handshake_timeout=self.handshake_timeout)
            peer = _check_gateway(writer, self.tls)
        except (Rejected, ssl.SSLError) as exc:
            self.stats.refused_peers += 1
            self.stats.failed("gateway refused", exc)
            log.warning("meter %s refuses a gateway connection: %s", meter, exc)
            await close_writer(writer)
            return
        except (OSError, TimeoutError) as exc:
            self.stats.failed("handshake", exc)
            log.warning("meter %s: TLS handshake with a gateway failed: %s", meter, exc)
            await close_writer(writer)
            return
        self.stats.connects += 1
        self.stats.peers.append(peer)
        self.stats.state = "connected"
        self._listener.connections.add(writer)
        opened_at = self.clock.now()
        decoder = SmlStreamDecoder(self.max_frame_size)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                decoder.feed(data)
                for item in decoder.frames():
                    check_session_age(opened_at, self.clock.now(), Interface.LMN)
                    if isinstance(item, SmlRejected):
                        self.stats.failed("request", item)
                        log.warning("meter %s: unparseable request frame: %s", meter, item)
                        writer.write(self.responder.reject(item))
                    else:
                        try:
                            answer = self.responder.respond_frame(item)
                        except ImsysError as exc:
                            self.stats.failed("answer", exc)
                            log.error("meter %s: cannot answer a request: %s", meter, exc)
                            continue
                        writer.write(answer)
                        self.stats.requests_answered += 1
                await writer.drain()
        except Rejected as exc:  # session older than the LMN limit
            log.info("meter %s closes the session: %s", meter, exc)
        except (OSError, ssl.SSLError) as exc:
            self.stats.failed("connection", exc)
            log.warning("meter %s: gateway connection failed: %s", meter, exc)
        finally:
            self._listener.connections.discard(writer)
            await close_writer(writer)
            if not self._listener.connections and self.stats.state == "connected":
                self.stats.state = "listening"


__all__ = [
    "GATEWAY_PROFILE",
    "Backoff",
    "LinkStats",
    "LmnTlsConfig",
    "Pacer",
    "PullMeter",
    "PushMeter",
    "ScaledClock",
    "next_boundary",
    "parse_endpoint",
]
