"""CRL publication over HTTP (the SM-PKI's public CRL endpoint), on loopback by default.

``GET /<ca>.crl`` returns the CA's current CRL in DER (``application/pkix-crl``); a CRL that
is missing or about to expire is re-signed on the fly, so a long-running ``imsys up`` never
serves a stale list. ``GET /`` lists the CAs. Anything else is 404; nothing is writable.
"""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from imsys.core.errors import ImsysError
from imsys.pki.directory import PkiDirectory

log = logging.getLogger("imsys.pki.crl")


class CrlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, pki: PkiDirectory, host: str = "127.0.0.1", port: int = 0) -> None:
        self.pki = pki
        self._lock = threading.Lock()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def crl_bytes(self, name: str) -> bytes | None:
        if name not in self.pki.ca_names:
            return None
        with self._lock:
            return self.pki.crl_der(name)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="crl-server", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: CrlServer
    server_version = "imsys-crl/1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            body = "\n".join(f"{n}.crl" for n in self.server.pki.ca_names).encode() + b"\n"
            self._reply(HTTPStatus.OK, body, "text/plain")
            return
        name = path.removeprefix("/").removesuffix(".crl")
        try:
            body = self.server.crl_bytes(name) if path.endswith(".crl") else None
        except ImsysError as exc:
            log.error("CRL of %s could not be produced: %s", name, exc)
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, b"CRL unavailable\n", "text/plain")
            return
        if body is None:
            self._reply(HTTPStatus.NOT_FOUND, b"no such CRL\n", "text/plain")
            return
        self._reply(HTTPStatus.OK, body, "application/pkix-crl")

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.info("%s %s", self.address_string(), format % args)
