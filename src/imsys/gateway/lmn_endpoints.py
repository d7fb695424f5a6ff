"""The gateway's LMN adapters (asyncio): they move bytes to :class:`~imsys.gateway.measurement.
Measurement` and nothing else (STYLE.md §2; seed 003 table 1 step 2.1).

* :class:`LmnTlsServer` – push meters (PUSH-Betrieb): mutually authenticated LMN-TLS
  (TR-03116-3 LMN policy, :func:`imsys.crypto.tls.server_context`); the client certificate must
  pass the SM-PKI path check with profile ``meter-tls`` and its common name must be the meter id
  of a wired meter profile, otherwise the connection is closed before a byte of SML is read
  (system log: ``TLS_FAILURE``). Frames are cut from the stream by :class:`SmlFrameSplitter` and
  handed to the core with the peer identity (common name, certificate fingerprint).
* :class:`LmnPullClient` – pull meters (PULL-Betrieb): at every multiple of the profile's read
  interval (UTC-aligned, and once at start) the gateway connects to the meter's endpoint,
  checks its certificate the same way, sends ``Open.Req``, ``GetList.Req`` or
  ``GetProfileList.Req`` (from the last stored registration period on) and ``Close.Req``, and
  hands the answer frame to the core.
* :class:`WmbusUdpReceiver` – the wireless LMN stand-in: one wM-Bus telegram per UDP datagram
  (what :class:`imsys.meters.radio.RadioMeter` sends).

Time comes from the injected clock (a ``SimulatedClock`` moves only when advanced; deadlines are
polled every ``poll`` real seconds). A refused frame is counted in :class:`EndpointStats` – the
core has logged it already; the connection stays open (the next frame may be fine), except when
the peer itself is refused. The core runs in the event loop's thread (the SQLite connection is
bound to it); one durable commit per frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from imsys.core.clock import Clock, next_boundary
from imsys.core.errors import ImsysError, Rejected, UsageError
from imsys.crypto.tls import (
    Interface,
    TlsIdentity,
    check_peer,
    check_session_age,
    client_context,
    peer_certificate,
    server_context,
)
from imsys.gateway.logs import Level, Outcome, SystemEvent
from imsys.gateway.measurement import (
    MAX_FRAME_SIZE,
    LmnFrame,
    Measurement,
    PeerIdentity,
    ReadingReason,
    ReadingRejected,
    Step,
    Transport,
    server_id_of,
)
from imsys.gateway.meter_profile import MeterProfile, MeterProtocol, PullRequest
from imsys.lmn.errors import SmlRejected
from imsys.lmn.sml import (
    CloseRequest,
    GetListRequest,
    GetProfileListRequest,
    OpenRequest,
    SmlMessage,
    SmlStreamDecoder,
    Timestamp,
    encode_frame,
)
from imsys.net import Listener, close_writer
from imsys.pki import PathValidator

log = logging.getLogger(__name__)

#: the certificate profile the gateway demands from a meter on the LMN
METER_PROFILE = "meter-tls"
#: the client id the gateway uses in SML requests
CLIENT_ID = b"imsys-gw"
#: the parameter tree path of the load profile in ``GetProfileList.Req`` (8181C78610FF)
PROFILE_PATH = (bytes.fromhex("8181c78610ff"),)


@dataclass(frozen=True)
class LmnTls:
    """The gateway's LMN-TLS identity, the SM-PKI trust anchors and the path validator."""

    identity: TlsIdentity
    trust_anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    validator: PathValidator | None = None

    def __post_init__(self) -> None:
        if self.validator is None:
            object.__setattr__(self, "validator", PathValidator(
                self.trust_anchors, self.intermediates, require_crl=False))

    def server(self) -> ssl.SSLContext:
        return server_context(Interface.LMN, self.identity, self.trust_anchors,
                              intermediates=self.intermediates)

    def client(self) -> ssl.SSLContext:
        return client_context(Interface.LMN, self.identity, self.trust_anchors,
                              intermediates=self.intermediates)


@dataclass
class EndpointStats:
    """What an adapter has done (read by tests and status displays)."""

    connects: int = 0
    refused_peers: int = 0
    frames: int = 0
    stored: int = 0
    rejected: int = 0
    errors: int = 0
    polls: int = 0
    last_error: str | None = None
    peers: list[str] = field(default_factory=list)

    def failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{what}: {exc}"


class SmlFrameSplitter:
    """Cut complete SML transport frames (raw bytes, for the core's digest) out of a stream.

    The framing is :class:`~imsys.lmn.sml.SmlStreamDecoder`'s (resynchronisation, bounded
    buffer, one rejection per broken frame); this only asks it for the frames' raw bytes.
    """

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self._decoder = SmlStreamDecoder(max_frame_size)

    def feed(self, data: bytes) -> list[bytes | SmlRejected]:
        self._decoder.feed(data)
        return list(self._decoder.raw_frames())


def _fingerprint(cert: x509.Certificate) -> bytes:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def _check_meter(ssl_obj: ssl.SSLObject, tls: LmnTls, core: Measurement,
                 expected: str | None = None) -> PeerIdentity:
    """SM-PKI check (``meter-tls``) and profile lookup of a meter peer; raises ``Rejected``."""
    assert tls.validator is not None
    meter_id = check_peer(ssl_obj, tls.validator, METER_PROFILE).identifier
    profile = core.registry.get(meter_id)
    if profile is None or not profile.protocol.wired or (
            expected is not None and meter_id != expected):
        raise ReadingRejected(ReadingReason.UNKNOWN_METER, Step.ACCEPT_KNOWN_METER,
                              "TLS peer is not a known wired meter")
    return PeerIdentity(meter_id, _fingerprint(peer_certificate(ssl_obj)))


def _log_refused_peer(core: Measurement, exc: BaseException) -> None:
    reason = exc.reason if isinstance(exc, Rejected) else None
    with contextlib.suppress(ImsysError):
        core.logs.system.append(Level.WARNING, Outcome.FAILURE,
                                "lmn: meter connection refused", event=SystemEvent.TLS_FAILURE,
                                reason=reason)


def _ingest(core: Measurement, frame: LmnFrame, stats: EndpointStats) -> None:
    stats.frames += 1
    try:
        result = core.ingest(frame)
    except ReadingRejected as exc:  # logged by the core already
        stats.rejected += 1
        log.info("lmn frame rejected: %s", exc.reason.value)
        return
    except (ImsysError, sqlite3.Error) as exc:  # the store itself failed: nothing was stored
        stats.failed("ingest", exc)
        log.exception("lmn frame could not be stored")
        return
    stats.stored += len(result.readings)


# --------------------------------------------------------------------------- push


class LmnTlsServer:
    """The LMN-TLS endpoint for push meters (the gateway is the TLS server)."""

    def __init__(self, core: Measurement, tls: LmnTls, listen: tuple[str, int], *,
                 clock: Clock | None = None, handshake_timeout: float = 10.0,
                 max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self.core = core
        self.tls = tls
        self.listen = listen
        self.clock: Clock = clock or core.clock
        self.handshake_timeout = handshake_timeout
        self.max_frame_size = max_frame_size
        self.stats = EndpointStats()
        self._context = tls.server()
        # TLS starts inside the handler, so a failed handshake is seen, counted and logged
        self._listener = Listener(self._handle, listen, "the LMN endpoint")

    @property
    def port(self) -> int:
        return self._listener.port

    async def start(self) -> None:
        await self._listener.start()

    async def close(self) -> None:
        await self._listener.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await writer.start_tls(self._context, ssl_handshake_timeout=self.handshake_timeout)
            peer = _check_meter(writer.get_extra_info("ssl_object"), self.tls, self.core)
        except (Rejected, ssl.SSLError, OSError, TimeoutError) as exc:
            self.stats.refused_peers += 1
            self.stats.failed("meter refused", exc)
            log.warning("gateway refuses an LMN connection: %s", exc)
            _log_refused_peer(self.core, exc)
            await close_writer(writer)
            return
        self.stats.connects += 1
        self.stats.peers.append(peer.meter_id)
        self._listener.connections.add(writer)
        opened_at = self.clock.now()
        splitter = SmlFrameSplitter(self.max_frame_size)
        try:
            while data := await reader.read(65536):
                for item in splitter.feed(data):
                    check_session_age(opened_at, self.clock.now(), Interface.LMN)
                    if isinstance(item, SmlRejected):
                        self.stats.rejected += 1
                        self.stats.failed("frame", item)
                        continue
                    _ingest(self.core, LmnFrame(Transport.SML, item, self.clock.now(), peer),
                            self.stats)
        except Rejected as exc:  # session older than the LMN limit: the meter reconnects
            log.info("gateway closes an LMN session: %s", exc)
        except (OSError, ssl.SSLError) as exc:
            self.stats.failed("connection", exc)
        finally:
            self._listener.connections.discard(writer)
            await close_writer(writer)


# --------------------------------------------------------------------------- pull


def request_frame(profile: MeterProfile, begin: datetime | None, file_number: int) -> bytes:
    """The SML request file of one poll: ``Open.Req``, the profile's request, ``Close.Req``."""
    fid = file_number.to_bytes(4, "big")
    server_id = server_id_of(profile.meter_id)
    body: GetListRequest | GetProfileListRequest
    if profile.pull_request is PullRequest.GET_LIST:
        body = GetListRequest(client_id=CLIENT_ID, server_id=server_id)
    else:
        body = GetProfileListRequest(
            server_id=server_id, parameter_tree_path=PROFILE_PATH,
            begin_time=None if begin is None else Timestamp(int(begin.timestamp())))
    return encode_frame([
        SmlMessage(transaction_id=fid + b"\x00", body=OpenRequest(
            client_id=CLIENT_ID, req_file_id=fid, server_id=server_id)),
        SmlMessage(transaction_id=fid + b"\x01", body=body),
        SmlMessage(transaction_id=fid + b"\x02", body=CloseRequest()),
    ])


class LmnPullClient:
    """Polls every pull meter of the registry at its read interval (the gateway is TLS client)."""

    def __init__(self, core: Measurement, tls: LmnTls, *, clock: Clock | None = None,
                 poll: float = 0.1, timeout: float = 10.0,
                 max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if not poll > 0:
            raise UsageError("poll must be positive")
        self.core = core
        self.tls = tls
        self.clock: Clock = clock or core.clock
        self.poll = poll
        self.timeout = timeout
        self.max_frame_size = max_frame_size
        self.stats = EndpointStats()
        self._context = tls.client()
        self._stopping = asyncio.Event()
        self._file = 1

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Poll until :meth:`stop`."""
        self._stopping = asyncio.Event()
        meters = [p for p in self.core.registry if p.protocol is MeterProtocol.SML_TLS_PULL]
        await asyncio.gather(*(self._meter_loop(p) for p in meters))

    async def _meter_loop(self, profile: MeterProfile) -> None:
        due = self.clock.now()
        while not self._stopping.is_set():
            started = self.clock.now()
            if started >= due:
                await self.poll_once(profile)
                # the next boundary after the poll's start: a clock that jumped meanwhile
                # makes the next poll come at once (it continues from the last stored period)
                due = next_boundary(started, profile.read_interval)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.poll)

    async def poll_once(self, profile: MeterProfile) -> None:
        """One request/answer exchange with a pull meter (errors are counted, not raised)."""
        self.stats.polls += 1
        assert profile.endpoint is not None
        host, _, port = profile.endpoint.rpartition(":")
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                host.strip("[]"), int(port), ssl=self._context,
                ssl_handshake_timeout=self.timeout), self.timeout)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            self.stats.failed("connect", exc)
            log.warning("gateway cannot reach pull meter: %s", exc)
            return
        try:
            try:
                peer = _check_meter(writer.get_extra_info("ssl_object"), self.tls, self.core,
                                    profile.meter_id)
            except Rejected as exc:
                self.stats.refused_peers += 1
                self.stats.failed("meter refused", exc)
                _log_refused_peer(self.core, exc)
                return
            self.stats.connects += 1
            self.stats.peers.append(peer.meter_id)
            last = self.core.last_accepted(profile.meter_id)
            begin = None if last is None else last + timedelta(seconds=1)
            writer.write(request_frame(profile, begin, self._file))
            self._file = (self._file + 1) & 0xFFFFFFFF
            await writer.drain()
            answer = await self._answer(reader)
            if answer is not None:
                _ingest(self.core, LmnFrame(Transport.SML, answer, self.clock.now(), peer),
                        self.stats)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            self.stats.failed("exchange", exc)
        finally:
            await close_writer(writer)

    async def _answer(self, reader: asyncio.StreamReader) -> bytes | None:
        splitter = SmlFrameSplitter(self.max_frame_size)
        while True:
            data = await asyncio.wait_for(reader.read(65536), self.timeout)
            if not data:
                return None
            for item in splitter.feed(data):
                if isinstance(item, SmlRejected):
                    self.stats.rejected += 1
                    self.stats.failed("frame", item)
                    return None
                return item


# --------------------------------------------------------------------------- wM-Bus


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, receiver: WmbusUdpReceiver) -> None:
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        r = self.receiver
        _ingest(r.core, LmnFrame(Transport.WMBUS, data, r.clock.now()), r.stats)

    def error_received(self, exc: Exception) -> None:
        self.receiver.stats.failed("radio", exc)


class WmbusUdpReceiver:
    """Receives wM-Bus telegrams as UDP datagrams and hands each to the core."""

    def __init__(self, core: Measurement, listen: tuple[str, int], *,
                 clock: Clock | None = None) -> None:
        self.core = core
        self.listen = listen
        self.clock: Clock = clock or core.clock
        self.stats = EndpointStats()
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def port(self) -> int:
        if self._transport is None:
            raise UsageError("the receiver is not listening")
        return int(self._transport.get_extra_info("sockname")[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=self.listen)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


__all__ = [
    "CLIENT_ID",
    "METER_PROFILE",
    "PROFILE_PATH",
    "EndpointStats",
    "LmnPullClient",
    "LmnTls",
    "LmnTlsServer",
    "SmlFrameSplitter",
    "WmbusUdpReceiver",
    "request_frame",
]
