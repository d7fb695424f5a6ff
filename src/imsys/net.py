"""Asyncio edge helpers shared by the roles' network adapters (bytes move; no logic here).

The LMN endpoints of gateway and meter start TLS inside the connection handler (so a failed
handshake is seen, counted and logged like any other refusal); :class:`Listener` holds what
they share: the server, the open connections, the bound port, an orderly close.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable

from imsys.core.errors import UsageError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def close_writer(writer: asyncio.StreamWriter, timeout: float = 2.0) -> None:
    """Close a stream without letting a peer that vanished mid-close raise."""
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), timeout)


class Listener:
    """A plain TCP server whose handler does the TLS, plus its open connections."""

    def __init__(self, handler: Handler, listen: tuple[str, int], name: str) -> None:
        self._handler = handler
        self.listen = listen
        self.name = name
        self.connections: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            raise UsageError(f"{self.name} is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        host, port = self.listen
        self._server = await asyncio.start_server(self._handler, host, port)

    async def close(self) -> None:
        """Stop accepting, close every open connection, wait for the server to finish."""
        if self._server is not None:
            self._server.close()
            for writer in list(self.connections):
                writer.close()
            await self._server.wait_closed()
