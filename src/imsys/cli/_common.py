"""Helpers shared by the sub-commands: consoles, error mapping, file loading."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from imsys.core.errors import ImsysError, Rejected, UsageError

console = Console()
err_console = Console(stderr=True)
log = logging.getLogger("imsys.cli")

P = ParamSpec("P")
R = TypeVar("R")

#: exit codes: 1 = something was rejected (a check failed), 2 = wrong use
EXIT_REJECTED = 1
EXIT_USAGE = 2


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Map imsys errors to a one-line message and an exit code, and log them."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except Rejected as exc:
            log.warning("%s rejected: %s", func.__name__, exc)
            err_console.print(f"[bold red]rejected[/] ({exc.reason.value}): {exc.message}",
                              soft_wrap=True)
            raise typer.Exit(EXIT_REJECTED) from exc
        except (UsageError, ImsysError) as exc:
            log.warning("%s failed: %s", func.__name__, exc)
            err_console.print(f"[bold red]error[/]: {exc}")
            raise typer.Exit(EXIT_USAGE) from exc
        except OSError as exc:
            log.warning("%s failed: %s", func.__name__, exc)
            err_console.print(f"[bold red]error[/]: {exc}")
            raise typer.Exit(EXIT_USAGE) from exc

    return wrapper


def read_file(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from exc


def default_pki_dir() -> Path:
    return Path(os.environ.get("IMSYS_PKI", "pki"))


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write atomically: a failed command never leaves a half-written output file."""
    from imsys.pki.directory import atomic_write

    atomic_write(Path(path), data, mode)
