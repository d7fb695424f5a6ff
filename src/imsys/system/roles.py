"""Role processes of a running system: start, watch, stop (SIGTERM, then SIGKILL).

Each role of ``imsys demo`` / ``imsys up`` is a separate ``imsys …`` process with its own log
file; nothing here talks to a role except through its network endpoints and files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from imsys.core.errors import ImsysError

__all__ = ["RoleFailed", "RoleProcess", "free_port", "imsys_command", "wait_for_port"]


class RoleFailed(ImsysError):
    """A role process ended (or never became ready) when it should be running."""


def imsys_command(*args: str) -> list[str]:
    """``imsys ARGS`` run with this interpreter (no dependence on PATH)."""
    return [sys.executable, "-m", "imsys", *args]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the role binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, process: RoleProcess | None = None) -> None:
    """Return once something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None:
            process.check()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise RoleFailed(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s"
                             + (f" ({process.name}; see {process.log_path})" if process else ""))
        time.sleep(0.05)


@dataclass
class RoleProcess:
    """One role as a child process whose output goes to ``log_path``."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    _popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> RoleProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "COLUMNS": "160", **self.env}
        self._popen = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=env,
                                       start_new_session=True)
        return self

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def check(self) -> None:
        """Raise :class:`RoleFailed` with the end of its log if the process has ended."""
        if self._popen is None:
            raise RoleFailed(f"{self.name} was never started")
        code = self._popen.poll()
        if code is not None:
            raise RoleFailed(f"{self.name} ended with exit code {code}; last lines of "
                             f"{self.log_path}:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def detach(self) -> None:
        """Leave the process running on its own (``imsys up``): forget it here."""
        self._popen = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
        popen = self._popen
        code = None
        if popen is not None:
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    popen.send_signal(signal.SIGTERM)
                try:
                    popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        popen.kill()
                    popen.wait(5)
            code = popen.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code
