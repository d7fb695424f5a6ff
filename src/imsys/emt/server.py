"""The EMT's network edge: HTTP/1.1 over mutually authenticated TLS, several worker processes.

The edge moves bytes and maps results to status codes; everything else is
:class:`imsys.emt.receiver.Receiver`.

* TLS: :func:`imsys.crypto.tls.server_context` with the WAN policy (TLS 1.2, brainpool, ECDHE-
  ECDSA suites), the EMT's TLS certificate, a client certificate required; after the handshake
  :func:`imsys.crypto.tls.check_peer` validates the client as ``gateway-tls`` (CRL-aware). The
  TLS peer's identifier is handed to the receiver, which requires it to be the signer.
* HTTP/1.1 (a deliberately small subset, written here): request line, headers up to
  ``max_header`` bytes, ``Content-Length`` bodies up to ``max_body`` bytes (no chunked transfer
  coding: 411/501), ``Expect: 100-continue`` answered, persistent connections (keep-alive)
  with an idle timeout, ``Connection: close`` honoured. Routes: ``POST /deliveries/v1``
  (``Content-Type: application/cms``) → 200 with the signed receipt (``application/cms``) or
  an opaque 4xx/503 code (:func:`imsys.wire.delivery.peer_response`); ``POST
  /deliveries/v1/batch`` (``application/vnd.imsys.delivery-batch+der``) → 200 with one signed
  batch receipt; in relay mode ``POST /relay/v1`` → the relay's receipt; ``GET /health`` → 200.
* Relay (seed 003 step 3.3): with ``forward_to`` the server takes relay envelopes
  (:mod:`imsys.emt.relay`) and a :class:`Forwarder` thread in the supervisor sends the outbox
  to the final recipients; with ``trusted_relays`` it accepts ``emt-tls`` clients with those
  ids and what they forward.
* Processes: :class:`EmtServer` reserves the port (bound, not listening, ``SO_REUSEPORT``) and
  spawns ``workers`` processes; each binds the same port with ``SO_REUSEPORT`` and listens, so
  the kernel spreads connections over them. Each worker runs one asyncio loop and a small thread
  pool for the receiver (cryptography and the database release the GIL in part). The database
  schema is created once by the parent before the workers start.

Key material of the EMT lives in a keys directory (default ``<pki>/participants/<emt id>``):
``tls.pem``/``tls.key``, ``sig.pem``/``sig.key``, ``enc.pem``/``enc.key`` (PEM, keys 0600).
:func:`provision_identity` creates them from the development PKI if missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import multiprocessing
import os
import queue
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from cryptography import x509

from imsys.core.clock import SystemClock
from imsys.core.errors import Reason, Rejected, TlsRejected, UsageError
from imsys.crypto.primitives import SoftwareKey
from imsys.crypto.tls import Interface, TlsIdentity, check_peer, client_context, server_context
from imsys.emt.receiver import EmtIdentity, Receiver, ReceiverPolicy
from imsys.emt.relay import ForwardResult, Relay, RelayPolicy, forward
from imsys.emt.storage import EmtStorage
from imsys.pki import PkiDirectory, load_certificate, pem
from imsys.pki.validation import PathValidator
from imsys.wire.delivery import (
    BATCH_MEDIA_TYPE,
    BATCH_PATH,
    DEFAULT_MAX_DELIVERY,
    HTTP_PATH,
    MEDIA_TYPE,
    RELAY_PATH,
    DeliveryRejected,
    decode_batch,
    peer_response,
)
from imsys.wire.receipt import ReceiptRejected

__all__ = [
    "EmtServer",
    "ForwardTarget",
    "Forwarder",
    "KeyMaterial",
    "ServerConfig",
    "load_identity",
    "provision_identity",
    "serve",
]

log = logging.getLogger("imsys.emt.server")

_PURPOSES = ("tls", "sig", "enc")


@dataclass(frozen=True)
class ForwardTarget:
    """A final recipient a relay forwards to: its id, address and SIG certificate (PEM file)
    that must sign its batch receipts."""

    emt_id: str
    host: str
    port: int
    sig_certificate: Path


@dataclass(frozen=True)
class ServerConfig:
    """Everything a worker process needs (picklable: paths and numbers only)."""

    pki_dir: Path
    emt_id: str
    db_url: str
    host: str = "127.0.0.1"
    port: int = 0
    workers: int = 1
    keys_dir: Path | None = None
    served_gateways: tuple[str, ...] | None = None
    max_body: int = DEFAULT_MAX_DELIVERY
    max_header: int = 16 * 1024
    idle_timeout: float = 30.0
    handshake_timeout: float = 15.0
    crl_refresh: float = 60.0
    threads: int = 8
    max_age: timedelta = timedelta(days=45)
    backlog: int = 2048
    #: relays (``emt-tls`` identifiers) whose forwarded deliveries this EMT accepts
    trusted_relays: tuple[str, ...] = ()
    #: relay mode (seed 003 step 3.3): take ``POST /relay/v1`` for these final recipients and
    #: forward to them (:class:`ForwardTarget`)
    forward_to: tuple[ForwardTarget, ...] = ()
    forward_interval: float = 1.0

    @property
    def keys(self) -> Path:
        return self.keys_dir or Path(self.pki_dir) / "participants" / self.emt_id


@dataclass(frozen=True)
class KeyMaterial:
    """The EMT's three key pairs with certificates, and the chain above its TLS certificate."""

    tls: tuple[SoftwareKey, x509.Certificate]
    sig: tuple[SoftwareKey, x509.Certificate]
    enc: tuple[SoftwareKey, x509.Certificate]


def provision_identity(pki: PkiDirectory, emt_id: str, keys_dir: Path, *,
                       ca: str | None = None) -> KeyMaterial:
    """Load the EMT's keys from ``keys_dir``, issuing missing ones from the development PKI."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    for purpose in _PURPOSES:
        key_path, cert_path = keys_dir / f"{purpose}.key", keys_dir / f"{purpose}.pem"
        if key_path.exists() and cert_path.exists():
            continue
        key, cert = pki.issue_with_new_key(f"emt-{purpose}", emt_id, ca=ca)
        write_key_pair(keys_dir, purpose, key, cert)
    return load_identity(keys_dir)


def write_key_pair(keys_dir: Path, purpose: str, key: SoftwareKey,
                   cert: x509.Certificate) -> None:
    """Write ``<purpose>.key`` (0600) and ``<purpose>.pem``."""
    if purpose not in _PURPOSES:
        raise UsageError(f"purpose is one of {_PURPOSES}")
    keys_dir.mkdir(parents=True, exist_ok=True)
    key_path = keys_dir / f"{purpose}.key"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_key_pem())
    (keys_dir / f"{purpose}.pem").write_bytes(pem(cert))


def load_identity(keys_dir: Path) -> KeyMaterial:
    """Read the three key pairs from ``keys_dir``."""
    pairs = []
    for purpose in _PURPOSES:
        try:
            key = SoftwareKey.from_pem((keys_dir / f"{purpose}.key").read_bytes())
            cert = load_certificate((keys_dir / f"{purpose}.pem").read_bytes())
        except OSError as exc:
            raise UsageError(f"EMT key material missing in {keys_dir}: {exc}") from exc
        pairs.append((key, cert))
    return KeyMaterial(*pairs)


class _ValidatorSource:
    """A path validator from the PKI directory, rebuilt every ``refresh`` seconds (fresh CRLs)."""

    def __init__(self, pki_dir: Path, refresh: float) -> None:
        self._pki_dir = pki_dir
        self._refresh = refresh
        self._lock = threading.Lock()
        self._built = 0.0
        self._validator: PathValidator | None = None

    def __call__(self) -> PathValidator:
        now = time.monotonic()
        with self._lock:
            if self._validator is None or now - self._built >= self._refresh:
                self._validator = PkiDirectory.open(self._pki_dir).validator()
                self._built = now
            return self._validator


# --------------------------------------------------------------------------- HTTP subset


class _HttpError(Exception):
    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
            411: "Length Required", 413: "Content Too Large", 415: "Unsupported Media Type",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            501: "Not Implemented", 503: "Service Unavailable"}


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise _HttpError(400, "bad-request") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise _HttpError(400, "bad-request")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise _HttpError(400, "bad-request")
        key = name.lower()
        if key in headers and key in ("content-length", "content-type", "transfer-encoding"):
            raise _HttpError(400, "bad-request")
        headers[key] = value.strip()
    return parts[0], parts[1], parts[2], headers


async def _read_request(reader: asyncio.StreamReader, max_body: int,
                        writer: asyncio.StreamWriter | None = None) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise _HttpError(400, "bad-request") from None
        return None  # the client closed between requests
    except asyncio.LimitOverrunError:
        raise _HttpError(431, "bad-request") from None
    method, target, version, headers = _parse_head(head[:-4])
    if "transfer-encoding" in headers:
        raise _HttpError(501, "bad-request")
    length_text = headers.get("content-length")
    if length_text is None:
        if method == "POST":
            raise _HttpError(411, "bad-request")
        length = 0
    else:
        if not length_text.isdigit() or len(length_text) > 12:
            raise _HttpError(400, "bad-request")
        length = int(length_text)
    if length > max_body:
        raise _HttpError(413, "too-large")
    if length and writer is not None and headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl asks before large bodies
    body = await reader.readexactly(length) if length else b""
    connection = headers.get("connection", "").lower()
    keep_alive = (version == "HTTP/1.1" and "close" not in connection) or \
        (version == "HTTP/1.0" and "keep-alive" in connection)
    return _Request(method, target, headers, body, keep_alive)


def _response(status: int, body: bytes, content_type: str = "text/plain",
              close: bool = False) -> bytes:
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# --------------------------------------------------------------------------- worker


class _Worker:
    """One worker process: an asyncio TLS server on the shared port."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        material = load_identity(config.keys)
        pki = PkiDirectory.open(config.pki_dir)
        self.validators = _ValidatorSource(Path(config.pki_dir), config.crl_refresh)
        validator = self.validators()
        tls_key, tls_cert = material.tls
        chain = [c for c in validator.intermediates if c.subject == tls_cert.issuer]
        self.ssl_context = server_context(Interface.WAN, TlsIdentity((tls_cert, *chain), tls_key),
                                          [pki.root.certificate],
                                          intermediates=validator.intermediates)
        self.storage = EmtStorage(config.db_url, create=False)
        identity = EmtIdentity(config.emt_id, material.enc[0], material.enc[1],
                               material.sig[0], material.sig[1])
        served = None if config.served_gateways is None else frozenset(config.served_gateways)
        self.receiver = Receiver(identity, self.validators, self.storage, SystemClock(),
                                 ReceiverPolicy(served_gateways=served, max_age=config.max_age,
                                                max_size=config.max_body,
                                                trusted_relays=frozenset(config.trusted_relays)))
        self.relay = Relay(identity, self.validators, self.storage, SystemClock(), RelayPolicy(
            frozenset(t.emt_id for t in config.forward_to), served, max_age=config.max_age,
            max_size=config.max_body)) if config.forward_to else None
        self.executor = ThreadPoolExecutor(config.threads, thread_name_prefix="emt-receiver")

    async def run(self, ready: Callable[[], None]) -> None:
        config = self.config
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((config.host, config.port))
        sock.listen(config.backlog)
        server = await asyncio.start_server(
            self.handle, sock=sock, ssl=self.ssl_context, limit=config.max_header,
            ssl_handshake_timeout=config.handshake_timeout)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        ready()
        async with server:
            await stop.wait()
        self.executor.shutdown(wait=True, cancel_futures=False)
        self.storage.dispose()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            try:
                peer = self._peer(ssl_object)
            except (TlsRejected, Rejected) as exc:
                log.warning("TLS client refused (%s): %s", exc.reason.value, exc.message)
                return
            await self._serve_connection(reader, writer, peer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass  # the peer went away or stayed idle: nothing to answer
        except Exception:  # a bug or a broken PKI directory: log it, drop this connection only
            log.exception("connection handler failed")
        finally:
            writer.close()
            # at shutdown the loop cancels open connections: closing them is all that is left
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    def _peer(self, ssl_object: Any) -> str:
        """The TLS client: a gateway, or (``emt-tls``) one of the trusted relays."""
        if not self.config.trusted_relays:
            return check_peer(ssl_object, self.validators(), profile="gateway-tls").identifier
        path = check_peer(ssl_object, self.validators(), profile=("gateway-tls", "emt-tls"))
        relay = path.profile is not None and path.profile.name == "emt-tls"
        if relay and path.identifier not in self.config.trusted_relays:
            raise TlsRejected(Reason.WRONG_ROLE, "EMT client that is not a trusted relay",
                              peer=path.identifier)
        return path.identifier

    async def _serve_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter, peer: str) -> None:
        while True:
            try:
                request = await asyncio.wait_for(
                    _read_request(reader, self.config.max_body, writer),
                    self.config.idle_timeout)
            except _HttpError as exc:
                writer.write(_response(exc.status, exc.code.encode() + b"\n", close=True))
                await writer.drain()
                return
            if request is None:
                return
            response = await self._dispatch(request, peer)
            writer.write(response if request.keep_alive else _close(response))
            await writer.drain()
            if not request.keep_alive:
                return

    async def _dispatch(self, request: _Request, peer: str) -> bytes:
        if request.target == "/health":
            return _response(200 if request.method == "GET" else 405, b"ok\n")
        if request.target == RELAY_PATH and self.relay is not None:
            return await self._dispatch_relay(request, peer)
        if request.target not in (HTTP_PATH, BATCH_PATH):
            return _response(404, b"not-found\n")
        if request.method != "POST":
            return _response(405, b"bad-request\n")
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.target == BATCH_PATH:
            if media != BATCH_MEDIA_TYPE:
                return _response(415, b"bad-request\n")
            return await self._dispatch_batch(request.body, peer)
        if media != MEDIA_TYPE:
            return _response(415, b"bad-request\n")
        loop = asyncio.get_running_loop()
        try:
            accepted = await loop.run_in_executor(self.executor, lambda: self.receiver.receive(
                request.body, tls_peer=peer))
        except DeliveryRejected as exc:
            status, code = peer_response(exc.reason)
            return _response(status, code.value.encode() + b"\n")
        except Exception:  # a bug: log it, tell the peer to retry later
            log.exception("receiver failed")
            return _response(500, b"unavailable\n")
        return _response(200, accepted.receipt, MEDIA_TYPE)

    async def _dispatch_relay(self, request: _Request, peer: str) -> bytes:
        """``POST /relay/v1``: check, keep for forwarding, answer with the relay's receipt."""
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method != "POST":
            return _response(405, b"bad-request\n")
        if media != MEDIA_TYPE:
            return _response(415, b"bad-request\n")
        relay = self.relay
        assert relay is not None
        loop = asyncio.get_running_loop()
        try:
            accepted = await loop.run_in_executor(self.executor, lambda: relay.accept(
                request.body, tls_peer=peer))
        except DeliveryRejected as exc:
            status, code = peer_response(exc.reason)
            return _response(status, code.value.encode() + b"\n")
        except Exception:  # a bug: log it, tell the peer to retry later
            log.exception("relay failed")
            return _response(500, b"unavailable\n")
        return _response(200, accepted.receipt, MEDIA_TYPE)

    async def _dispatch_batch(self, body: bytes, peer: str) -> bytes:
        """``POST /deliveries/v1/batch``: one batch receipt for all deliveries (200), or a
        refusal of the request as a whole (not a ``DeliveryBatch``: 400)."""
        try:
            sealed = decode_batch(body, max_size=self.config.max_body)
        except DeliveryRejected as exc:
            log.warning("batch refused (%s): %s; tls_peer=%s", exc.reason.value, exc.message,
                        peer)
            status, code = peer_response(exc.reason)
            return _response(status, code.value.encode() + b"\n")
        loop = asyncio.get_running_loop()
        try:
            accepted = await loop.run_in_executor(
                self.executor, lambda: self.receiver.receive_batch(sealed, tls_peer=peer))
        except Exception:  # a bug: log it, tell the peer to retry later
            log.exception("receiver failed on a batch")
            return _response(500, b"unavailable\n")
        return _response(200, accepted.receipt, MEDIA_TYPE)


def _close(response: bytes) -> bytes:
    head, sep, body = response.partition(b"\r\n\r\n")
    return head + b"\r\nConnection: close" + sep + body


def _worker_main(config: ServerConfig, index: int, reports: Any) -> None:
    logging.basicConfig(level=os.environ.get("IMSYS_LOG", "WARNING"),
                        format=f"%(asctime)s worker{index} %(levelname)s %(name)s: %(message)s")
    try:
        worker = _Worker(config)
    except Exception as exc:
        reports.put(("error", index, f"{type(exc).__name__}: {exc}"))
        return
    try:
        asyncio.run(worker.run(lambda: reports.put(("ready", index, ""))))
    except Exception as exc:  # pragma: no cover - reported to the parent
        reports.put(("error", index, f"{type(exc).__name__}: {exc}"))


# --------------------------------------------------------------------------- relay forwarding


class Forwarder:
    """Relay mode: one thread in the supervisor that forwards the outbox to each final
    recipient every ``forward_interval`` seconds – over mutually authenticated TLS with the
    relay's own TLS identity (the final recipient lists it in ``trusted_relays``), the server
    validated as ``emt-tls`` with the final recipient's id, ``POST /deliveries/v1/batch``, the
    batch receipt verified against the final recipient's SIG certificate."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        material = load_identity(config.keys)
        self.pki = PkiDirectory.open(config.pki_dir)
        validator = self.pki.validator()
        tls_key, tls_cert = material.tls
        chain = [c for c in validator.intermediates if c.subject == tls_cert.issuer]
        self.context = client_context(Interface.WAN, TlsIdentity((tls_cert, *chain), tls_key),
                                      [self.pki.root.certificate],
                                      intermediates=validator.intermediates)
        self.storage = EmtStorage(config.db_url, create=False)
        self.targets = [(t, load_certificate(t.sig_certificate.read_bytes()))
                        for t in config.forward_to]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def forward_once(self) -> list[ForwardResult]:
        """Forward everything waiting (batch after batch) to every final recipient; a failure
        towards one is logged and retried at the next turn."""
        results = []
        for target, sig_certificate in self.targets:
            try:
                while True:
                    result = forward(self.storage, target.emt_id,
                                     lambda body, t=target: self._post(t, body),
                                     sig_certificate, validator=self.pki.validator())
                    results.append(result)
                    if result.acknowledged + result.refused == 0:
                        break
            except (OSError, ssl.SSLError, TlsRejected, ReceiptRejected) as exc:
                log.warning("forwarding to %s failed: %s", target.emt_id, exc)
        return results

    def _post(self, target: ForwardTarget, body: bytes) -> bytes:
        connection = http.client.HTTPSConnection(target.host, target.port, context=self.context,
                                                 timeout=60)
        try:
            connection.connect()
            server = check_peer(cast(ssl.SSLSocket, connection.sock), self.pki.validator(),
                                profile="emt-tls")
            if server.identifier != target.emt_id:
                raise TlsRejected(Reason.WRONG_ROLE, "the server is another EMT",
                                  expected=target.emt_id, got=server.identifier)
            connection.request("POST", BATCH_PATH, body, {"Content-Type": BATCH_MEDIA_TYPE})
            response = connection.getresponse()
            data = response.read()
            if response.status != 200:
                raise ConnectionError(f"{target.emt_id} answered {response.status}: "
                                      f"{data[:40]!r}")
            return data
        finally:
            connection.close()

    def _run(self) -> None:
        while not self._stop.wait(self.config.forward_interval):
            self.forward_once()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="imsys-emt-forwarder",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        self.storage.dispose()


# --------------------------------------------------------------------------- supervisor


class EmtServer:
    """Start and stop the worker processes behind one port."""

    def __init__(self, config: ServerConfig) -> None:
        if config.workers < 1:
            raise UsageError("at least one worker")
        self.config = config
        self.port = config.port
        self._reserve: socket.socket | None = None
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self.forwarder: Forwarder | None = None

    def start(self, timeout: float = 120.0) -> int:
        """Create the schema, spawn the workers, wait until all listen; returns the port."""
        load_identity(self.config.keys)  # fail early in the parent
        storage = EmtStorage(self.config.db_url)
        storage.dispose()
        reserve = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserve.bind((self.config.host, self.config.port))
        self._reserve = reserve
        self.port = reserve.getsockname()[1]
        config = replace(self.config, port=self.port)
        context = multiprocessing.get_context("spawn")
        reports = context.Queue()
        for index in range(config.workers):
            process = context.Process(target=_worker_main, args=(config, index, reports),
                                      name=f"imsys-emt-worker-{index}", daemon=True)
            process.start()
            self._processes.append(process)
        deadline = time.monotonic() + timeout
        ready = 0
        while ready < config.workers:
            try:
                kind, index, message = reports.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise UsageError("EMT workers did not start in time") from None
            if kind == "error":
                self.stop()
                raise UsageError(f"EMT worker {index} failed: {message}")
            ready += 1
        if config.forward_to:
            self.forwarder = Forwarder(config)
            self.forwarder.start()
        return self.port

    def stop(self, timeout: float = 10.0) -> None:
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder = None
        for process in self._processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self._processes:
            process.join(timeout)
            if process.is_alive():  # pragma: no cover - stuck worker
                process.kill()
                process.join()
        self._processes.clear()
        if self._reserve is not None:
            self._reserve.close()
            self._reserve = None

    @property
    def alive(self) -> int:
        return sum(p.is_alive() for p in self._processes)

    def __enter__(self) -> EmtServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(config: ServerConfig, on_ready: Callable[[int], None] | None = None) -> None:
    """Run the server until SIGINT/SIGTERM (the ``imsys emt serve`` command)."""
    server = EmtServer(config)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT,
                                                                      signal.SIGTERM)}
    try:
        port = server.start()
        if on_ready is not None:
            on_ready(port)
        while not stop.wait(1.0):
            if server.alive < config.workers:
                log.error("a worker process ended; stopping")
                break
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
