"""The ``imsys`` command line (Typer + Rich): one sub-command group per role.

Each role's commands live in their own module; :data:`COMMANDS` says where. ``imsys ROLE …``
imports only that role's module (a role process such as ``imsys meter run`` then starts in a
fraction of the time a full import takes); ``imsys --help`` and :data:`app` (for tests) load
them all.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import typer

from imsys import __version__
from imsys.cli._common import console

#: name -> (module, attribute): a Typer sub-app, or a ``register(app)`` function (``+``)
COMMANDS: dict[str, tuple[str, str]] = {
    "pki": ("imsys.cli.pki", "app"),
    "cms": ("imsys.cli.cms", "app"),
    "sml": ("imsys.lmn.cli", "sml_app"),
    "wmbus": ("imsys.lmn.cli", "wmbus_app"),
    "meter": ("imsys.meters.cli", "meter_app"),
    "emt": ("imsys.emt.cli", "emt_app"),
    "gateway": ("imsys.gateway.cli", "gateway_app"),
    "gwa": ("imsys.gwa.cli", "gwa_app"),
    "demo": ("imsys.cli.demo", "+register"),
    "up": ("imsys.cli.demo", "+register"),
    "down": ("imsys.cli.demo", "+register"),
}


def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens to stderr."),
) -> None:
    level = logging.INFO if verbose else getattr(logging, os.environ.get("IMSYS_LOG", "WARNING"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def version() -> None:
    """Print the imsys version."""
    console.print(f"imsys {__version__}")


def build_app(only: str | None = None) -> typer.Typer:
    """The root app with every command group, or with just ``only``."""
    root = typer.Typer(
        name="imsys",
        help="imsys – the German intelligent metering system (iMSys) on one machine.",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
    )
    root.callback()(_root)
    root.command()(version)
    registered: set[tuple[str, str]] = set()
    for name, (module, attribute) in COMMANDS.items():
        if only is not None and name != only:
            continue
        target = getattr(importlib.import_module(module), attribute.lstrip("+"))
        if attribute.startswith("+"):
            if (module, attribute) not in registered:
                target(root)
                registered.add((module, attribute))
        else:
            root.add_typer(target, name=name)
    return root


def __getattr__(name: str) -> Any:
    if name == "app":  # every command (tests, documentation)
        return build_app()
    raise AttributeError(name)


def main() -> None:
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    first = words[0] if words else None
    if first == "version":
        build_app(only="version")()  # no command group needed
    else:
        build_app(first if first in COMMANDS else None)()
