"""A small HTTPS update server (seed 003 table 3 step 3.5) and the gateway's download client.

The server serves the package files of one folder under ``/firmware/<name>`` over TLS with
the TR-03116-3 WAN policy (:mod:`imsys.crypto.tls`): it presents a manufacturer (or GWA) TLS
certificate and demands a gateway TLS certificate of the SM-PKI, checked with
:func:`~imsys.crypto.tls.check_peer` (profile ``gateway-tls``) before anything is sent. It
binds to 127.0.0.1 by default.

:func:`download` is the gateway's side: it checks the server against the SM-PKI (profile
``manufacturer-tls`` or ``gwa-tls``), streams the body into a file with a size limit and
returns the SHA-256 of what it wrote.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import logging
import re
import ssl
import threading
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from cryptography import x509

from imsys.core.errors import Rejected
from imsys.crypto.tls import Interface, TlsIdentity, check_peer, client_context, server_context
from imsys.firmware.image import MAX_IMAGE_SIZE, FirmwareReason, FirmwareRejected
from imsys.pki.validation import PathValidator

__all__ = ["SERVER_PROFILES", "UpdateServer", "download"]

log = logging.getLogger(__name__)
_NAME = re.compile(r"^/firmware/([A-Za-z0-9][A-Za-z0-9._-]{0,127})$")
#: Whom the gateway accepts as update server.
SERVER_PROFILES = ("manufacturer-tls", "gwa-tls")
_CHUNK = 64 * 1024


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("update server: " + format, *args)

    def do_GET(self) -> None:
        try:
            check_peer(cast(ssl.SSLSocket, self.connection), self.server.validator,
                       profile="gateway-tls")
        except Rejected as exc:
            log.warning("update server refused a client: %s", exc)
            self.send_error(403, "client certificate refused")
            return
        match = _NAME.match(urllib.parse.urlsplit(self.path).path)
        path = None if match is None else self.server.folder / match.group(1)
        if path is None or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.server.served.append(match.group(1) if match else "")
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    folder: Path
    validator: PathValidator
    served: list[str]


class UpdateServer:
    """HTTPS update server on ``host:port`` (port 0: any free port); use as a context
    manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self, folder: Path, identity: TlsIdentity, validator: PathValidator, *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.folder = Path(folder)
        self._context = server_context(Interface.WAN, identity, validator.trust_anchors,
                                       intermediates=validator.intermediates)
        self._server = _Server((host, port), _Handler)
        self._server.folder = self.folder
        self._server.validator = validator
        self._server.served = []
        self._server.socket = self._context.wrap_socket(self._server.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def served(self) -> list[str]:
        return self._server.served

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def url(self, name: str) -> str:
        host, port = self.address
        return f"https://{host}:{port}/firmware/{name}"

    def start(self) -> UpdateServer:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="imsys-update-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> UpdateServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def download(url: str, target: Path, identity: TlsIdentity,
             trust_anchors: Sequence[x509.Certificate], validator: PathValidator, *,
             intermediates: Sequence[x509.Certificate] = (),
             max_size: int = MAX_IMAGE_SIZE + 65536, timeout: float = 30.0) -> str:
    """Fetch ``url`` (``https://host:port/path``) into ``target`` over SM-PKI TLS; returns
    ``sha256:<hex>`` of the body. ``TlsRejected`` for a server outside the SM-PKI,
    ``FirmwareRejected(DOWNLOAD_FAILED)`` for a bad status or an oversized body."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.port is None:
        raise FirmwareRejected(FirmwareReason.MALFORMED, "update URL must be https://host:port/…")
    context = client_context(Interface.WAN, identity, trust_anchors, intermediates=intermediates)
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context,
                                             timeout=timeout)
    try:
        connection.connect()
        sock = cast(ssl.SSLSocket, connection.sock)
        check_peer(sock, validator, profile=list(SERVER_PROFILES))
        connection.request("GET", parts.path or "/")
        response = connection.getresponse()
        if response.status != 200:
            raise FirmwareRejected(FirmwareReason.DOWNLOAD_FAILED,
                                   f"update server answered {response.status}",
                                   status=response.status)
        digest = hashlib.sha256()
        size = 0
        with open(target, "wb") as handle:
            while chunk := response.read(_CHUNK):
                size += len(chunk)
                if size > max_size:
                    raise FirmwareRejected(FirmwareReason.DOWNLOAD_FAILED, "package too large")
                digest.update(chunk)
                handle.write(chunk)
            handle.flush()
        return "sha256:" + digest.hexdigest()
    finally:
        connection.close()
