"""The HAN diagnostics endpoint for the service technician (seed 003 §6, table 4 steps 2.2–2.7).

A TLS server on the gateway's HAN interface (TR-03116-3 HAN policy, :mod:`imsys.crypto.tls`)
that demands a client certificate and accepts only a valid SM-PKI **technician** certificate
(profile ``technician-tls``: path to the root, CRL, role – :func:`~imsys.crypto.tls.check_peer`).
Every connection attempt, refusal, request and log-off is written to the system log.

Protocol: one JSON object per line in each direction. The technician sends
``{"request": "diagnostics"}`` (or ``meters``, ``certificates``, ``connections``, ``errors``,
``logout``) and gets ``{"ok": true, ...}``; anything else – readings, consumer data, any change
– is answered ``{"ok": false, "error": "read-only-diagnostics"}`` and logged. After ``logout``
the gateway closes the connection (step 2.7). Requests are at most 4096 bytes; a session ends
after :data:`IDLE_TIMEOUT` without a request.

The server runs one thread; the :class:`~imsys.gateway.diagnostics.DiagnosticsSources` are
made **in that thread** by ``sources_factory`` (SQLite connections belong to their thread), so
the process passes a factory that opens the gateway database. Binds to 127.0.0.1 by default.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

from imsys.core.errors import Rejected
from imsys.crypto.tls import Interface, TlsIdentity, check_peer, peer_certificate, server_context
from imsys.gateway.diagnostics import DiagnosticsRequest, DiagnosticsSession, DiagnosticsSources
from imsys.gateway.logs import Level, Outcome, SystemEvent
from imsys.pki.validation import PathValidator

__all__ = ["IDLE_TIMEOUT", "TECHNICIAN_PROFILE", "HanDiagnosticsServer", "TechnicianClient"]

log = logging.getLogger(__name__)
TECHNICIAN_PROFILE = "technician-tls"
IDLE_TIMEOUT = 120.0
MAX_LINE = 4096


class HanDiagnosticsServer:
    """Serves technicians one at a time (a gateway has one HAN diagnostics session)."""

    def __init__(self, identity: TlsIdentity, validator: PathValidator,
                 sources_factory: Callable[[], DiagnosticsSources], *,
                 host: str = "127.0.0.1", port: int = 0,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self._context = server_context(Interface.HAN, identity, validator.trust_anchors,
                                       intermediates=validator.intermediates)
        self._validator = validator
        self._factory = sources_factory
        self._idle = idle_timeout
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.sessions = 0

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> HanDiagnosticsServer:
        self._thread = threading.Thread(target=self._serve, name="imsys-han-diagnostics",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> HanDiagnosticsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ serving thread

    def _serve(self) -> None:
        try:
            src = self._factory()
        except Exception:
            log.exception("HAN diagnostics: cannot open the gateway's sources")
            self._ready.set()
            return
        self._ready.set()
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            try:
                self._session(src, raw)
            except Exception:  # one bad connection must not end the endpoint
                log.exception("HAN diagnostics session failed")
            finally:
                raw.close()

    def _session(self, src: DiagnosticsSources, raw: socket.socket) -> None:
        system = src.logs.system
        raw.settimeout(self._idle)
        try:
            conn = self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            system.append(Level.WARNING, Outcome.FAILURE,
                          "service technician refused: TLS handshake failed (no valid "
                          "SM-PKI client certificate)", event=SystemEvent.TLS_FAILURE)
            return
        with conn:
            try:
                check_peer(conn, self._validator, profile=TECHNICIAN_PROFILE)
            except Rejected as exc:
                system.append(Level.WARNING, Outcome.FAILURE,
                              "service technician refused: certificate not valid for "
                              "diagnostics", event=SystemEvent.TLS_FAILURE,
                              technician_serial=peer_certificate(conn).serial_number,
                              reason=exc.reason)
                _send(conn, {"ok": False, "error": "certificate-refused"})
                return
            self.sessions += 1
            session = DiagnosticsSession(src, peer_certificate(conn).serial_number)
            reader = conn.makefile("rb")
            try:
                while not session.closed:
                    try:
                        line = reader.readline(MAX_LINE + 1)
                    except (TimeoutError, OSError, ssl.SSLError):
                        break
                    if not line:
                        break
                    try:
                        request: Any = json.loads(line) if len(line) <= MAX_LINE else None
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        request = None
                    _send(conn, session.handle(request))
            finally:
                reader.close()
                session.close()


def _send(conn: ssl.SSLSocket, answer: dict[str, Any]) -> None:
    conn.sendall(json.dumps(answer, separators=(",", ":")).encode() + b"\n")


class TechnicianClient:
    """The technician's side (tests, and a CLI later): connect, ask, log off."""

    def __init__(self, address: tuple[str, int], identity: TlsIdentity,
                 validator: PathValidator, *, timeout: float = 10.0) -> None:
        from imsys.crypto.tls import client_context

        context = client_context(Interface.HAN, identity, validator.trust_anchors,
                                 intermediates=validator.intermediates)
        raw = socket.create_connection(address, timeout=timeout)
        self.conn = context.wrap_socket(raw)
        check_peer(self.conn, validator, profile="gateway-tls")
        self._reader = self.conn.makefile("rb")

    def ask(self, request: str | dict[str, Any]) -> dict[str, Any]:
        body = {"request": request} if isinstance(request, str) else request
        _send(self.conn, body)
        line = self._reader.readline()
        if not line:
            raise ConnectionError("the gateway closed the connection")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def logout(self) -> dict[str, Any]:
        answer = self.ask(DiagnosticsRequest.LOGOUT.value)
        self.close()
        return answer

    def close(self) -> None:
        self._reader.close()
        self.conn.close()

    def __enter__(self) -> TechnicianClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
