"""The GWA's admin-session endpoint: HTTP/1.1 over mutually authenticated WAN-TLS, asyncio.

The gateway connects (the GWA never does, seed 003 §5.3); after the handshake the client is
validated as ``gateway-pre-tls`` (personalisation) or ``gateway-tls`` (operation) against the
SM-PKI (CRL-aware, :func:`imsys.crypto.tls.check_peer`); its CN is the gateway id the session
is bound to. Framing is :class:`imsys.wire.admin_session.HttpParser`; every request is handed
to :class:`imsys.gwa.service.GwaService` in a worker thread (signatures, database). Status
codes: 200/204 as in docs/admin-protocol.md §3, 400 malformed, 403 wrong gateway or bad
result, 404 unknown path, 405 wrong method, 409 out of sequence, 413 too large, 415 wrong
media type, 500 a bug (logged). A 4xx other than 404/405/415 closes the connection.

The server's TLS key is ``GWADM_TLS`` from the GWA's security module
(:meth:`~imsys.secmod.SecurityModule.tls_private_key`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from imsys.core.errors import Rejected, TlsRejected
from imsys.crypto.tls import Interface, TlsIdentity, check_peer, server_context
from imsys.gwa.service import GwaReason, GwaRejected, GwaService, Session
from imsys.pki.validation import PathValidator
from imsys.wire.admin_session import (
    CMS_MEDIA_TYPE,
    COMMAND_PATH,
    HELLO_PATH,
    JSON_MEDIA_TYPE,
    REFUSAL_PATH,
    RESULT_PATH,
    Hello,
    HttpMessage,
    HttpParser,
    Refusal,
    SessionRejected,
    build_response,
)

__all__ = ["AdminEndpoint"]

log = logging.getLogger("imsys.gwa.server")

_ROUTES = {HELLO_PATH: ("POST", JSON_MEDIA_TYPE), COMMAND_PATH: ("GET", None),
           RESULT_PATH: ("POST", CMS_MEDIA_TYPE), REFUSAL_PATH: ("POST", JSON_MEDIA_TYPE)}
_STATUS = {GwaReason.WRONG_GATEWAY: 403, GwaReason.BAD_RESULT: 403,
           GwaReason.NO_SESSION: 409, GwaReason.NO_OUTSTANDING_COMMAND: 409,
           GwaReason.BAD_COMMAND: 400}


class _Reply(Exception):
    def __init__(self, status: int, code: str, close: bool = True) -> None:
        super().__init__(code)
        self.status, self.code, self.close = status, code, close


class AdminEndpoint:
    """``async with AdminEndpoint(service, validator) as endpoint: endpoint.port``."""

    def __init__(self, service: GwaService, validator: Callable[[], PathValidator], *,
                 host: str = "127.0.0.1", port: int = 0, threads: int = 4,
                 idle_timeout: float = 60.0, handshake_timeout: float = 15.0) -> None:
        self.service = service
        self.validator = validator
        self.host = host
        self.port = port
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="gwa-session")
        self._server: asyncio.base_events.Server | None = None
        self.sessions = 0

    def ssl_context(self) -> ssl.SSLContext:
        keys = self.service.keys
        validator = self.validator()
        identity = TlsIdentity((keys.certificate("TLS"), *keys.chain),
                               keys.secmod.tls_private_key("GWADM_TLS"))
        return server_context(Interface.WAN, identity, [keys.root],
                              intermediates=validator.intermediates)

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, ssl=self.ssl_context(),
            ssl_handshake_timeout=self.handshake_timeout)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> AdminEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                path = await self._call(check_peer, writer.get_extra_info("ssl_object"),
                                        self.validator(), ["gateway-pre-tls", "gateway-tls"])
            except (TlsRejected, Rejected) as exc:
                log.warning("admin session: TLS client refused (%s): %s", exc.reason.value,
                            exc.message)
                return
            self.sessions += 1
            await self._serve(reader, writer, path.identifier)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass
        except Exception:  # a bug: log it, drop this connection only
            log.exception("admin session handler failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer: str) -> None:
        parser = HttpParser("request")
        session: Session | None = None
        while True:
            data = await asyncio.wait_for(reader.read(65536), self.idle_timeout)
            if not data:
                return
            try:
                messages = parser.feed(data)
            except SessionRejected as exc:
                status = 413 if exc.reason.value == "too-large" else 400
                writer.write(build_response(status, f"{exc.reason.value}\n".encode(),
                                            content_type="text/plain", close=True))
                await writer.drain()
                return
            for message in messages:
                try:
                    session, response = await self._dispatch(message, peer, session)
                except _Reply as reply:
                    writer.write(build_response(reply.status, f"{reply.code}\n".encode(),
                                                content_type="text/plain", close=reply.close))
                    await writer.drain()
                    if reply.close:
                        return
                    continue
                writer.write(response)
                await writer.drain()
                if message.close:
                    return

    async def _dispatch(self, message: HttpMessage, peer: str, session: Session | None
                        ) -> tuple[Session | None, bytes]:
        route = _ROUTES.get(message.target)
        if route is None:
            raise _Reply(404, "not-found", close=False)
        method, media = route
        if message.method != method:
            raise _Reply(405, "method-not-allowed", close=False)
        if media is not None and message.media_type != media:
            raise _Reply(415, "unsupported-media-type", close=False)
        service = self.service
        try:
            if message.target == HELLO_PATH:
                if session is not None:
                    raise _Reply(409, "hello-twice")
                hello = Hello.decode(message.body)
                session, welcome = await self._call(service.open_session, peer, hello)
                return session, build_response(200, welcome.encode(),
                                               content_type=JSON_MEDIA_TYPE)
            if session is None:
                raise _Reply(409, GwaReason.NO_SESSION.value)
            if message.target == COMMAND_PATH:
                blob = await self._call(service.next_command, session)
                if blob is None:
                    return session, build_response(204)
                return session, build_response(200, blob, content_type=CMS_MEDIA_TYPE)
            if message.target == RESULT_PATH:
                ack = await self._call(service.record_result, session, message.body)
            else:
                ack = await self._call(service.record_refusal, session,
                                       Refusal.decode(message.body))
            return session, build_response(200, ack.encode(), content_type=JSON_MEDIA_TYPE)
        except SessionRejected as exc:
            log.warning("admin session of %s: %s", peer, exc)
            raise _Reply(400, exc.reason.value) from None
        except GwaRejected as exc:
            log.warning("admin session of %s: %s", peer, exc)
            raise _Reply(_STATUS.get(exc.reason, 400), exc.reason.value) from None
