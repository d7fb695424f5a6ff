"""The ``imsys`` command line (Typer + Rich): one sub-command group per role."""

from __future__ import annotations

import logging
import os

import typer

from imsys import __version__
from imsys.cli._common import console
from imsys.cli.cms import app as cms_app
from imsys.cli.demo import register as register_demo
from imsys.cli.pki import app as pki_app
from imsys.emt.cli import emt_app
from imsys.gateway.cli import gateway_app
from imsys.lmn.cli import sml_app, wmbus_app
from imsys.meters.cli import meter_app

app = typer.Typer(
    name="imsys",
    help="imsys – the German intelligent metering system (iMSys) on one machine.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(pki_app, name="pki")
app.add_typer(cms_app, name="cms")


app.add_typer(sml_app, name="sml")
app.add_typer(wmbus_app, name="wmbus")
app.add_typer(meter_app, name="meter")
app.add_typer(emt_app, name="emt")
app.add_typer(gateway_app, name="gateway")
register_demo(app)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens to stderr."),
) -> None:
    level = logging.INFO if verbose else getattr(logging, os.environ.get("IMSYS_LOG", "WARNING"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def version() -> None:
    """Print the imsys version."""
    console.print(f"imsys {__version__}")


def main() -> None:
    app()
