"""``imsys gwa``: run a gateway administrator and operate its fleet.

* ``imsys gwa init DIR --pki PKI --id GWA-ID`` – a GWA in ``DIR``: ``gwa.json``, its security
  module ``DIR/secmod`` (passphrase from ``$IMSYS_GWA_PASSPHRASE``) with GWADM_{TLS,SIG,ENC,AUT}
  generated on board and certified by the PKI's Sub-CA, and the database (SQLite
  ``DIR/gwa.db`` unless ``--db`` names another URL, e.g. ``postgresql://…``).
* ``imsys gwa serve DIR`` – the admin-session endpoint (TLS, for gateways) and the operator
  API (HTTP, OpenAPI at ``/docs``), both on 127.0.0.1 by default.
* ``imsys gwa gateways`` / ``command`` / ``wakeup`` – clients of the operator API
  (``--api http://127.0.0.1:8490``): the fleet table, a command to one or many gateways with a
  progress bar, a wake-up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from imsys.cli._common import console, handle_errors
from imsys.core.clock import Clock, SharedClock, SystemClock
from imsys.core.errors import UsageError
from imsys.pki import PkiDirectory
from imsys.secmod import SoftwareSecurityModule

gwa_app = typer.Typer(name="gwa", help="Gateway administrator: admin sessions, fleet, commands.",
                      no_args_is_help=True)
log = logging.getLogger("imsys.gwa.cli")

CONFIG_FORMAT = "imsys-gwa/1"
CONFIG_FILE = "gwa.json"
PASSPHRASE_ENV = "IMSYS_GWA_PASSPHRASE"
DEFAULT_API = "http://127.0.0.1:8490"


@dataclass(frozen=True)
class GwaConfig:
    """``DIR/gwa.json``."""

    administrator_id: str
    pki: Path
    db: str
    admin_host: str
    admin_port: int
    api_host: str
    api_port: int
    ca: str | None

    @classmethod
    def load(cls, folder: Path) -> GwaConfig:
        try:
            doc = json.loads((folder / CONFIG_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"no GWA in {folder} ({exc}); create one with `imsys gwa init`"
                             ) from exc
        if doc.get("format") != CONFIG_FORMAT:
            raise UsageError(f"{folder / CONFIG_FILE} is not {CONFIG_FORMAT}")
        return cls(doc["administrator_id"], Path(doc["pki"]), doc["db"], doc["admin_host"],
                   int(doc["admin_port"]), doc["api_host"], int(doc["api_port"]), doc["ca"])

    def save(self, folder: Path) -> None:
        doc = {"format": CONFIG_FORMAT, "administrator_id": self.administrator_id,
               "pki": str(self.pki), "db": self.db, "admin_host": self.admin_host,
               "admin_port": self.admin_port, "api_host": self.api_host,
               "api_port": self.api_port, "ca": self.ca}
        (folder / CONFIG_FILE).write_text(json.dumps(doc, indent=2) + "\n")


def _passphrase() -> bytes:
    value = os.environ.get(PASSPHRASE_ENV)
    if not value:
        raise UsageError(f"set {PASSPHRASE_ENV} to the passphrase of the GWA's security module")
    return value.encode()


def _loopback(host: str) -> str:
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise UsageError("the GWA binds to loopback only (127.0.0.1)")
    return host


@gwa_app.command("init")
@handle_errors
def init_command(
    folder: Path = typer.Argument(..., help="Directory of the new GWA."),
    pki: Path = typer.Option(..., "--pki", help="SM-PKI directory (Sub-CA, trust anchors)."),
    administrator_id: str = typer.Option(..., "--id", help="The administrator's identifier."),
    db: str | None = typer.Option(None, "--db", help="Database URL [default: DIR/gwa.db]."),
    admin_port: int = typer.Option(4443, "--admin-port", help="Admin-session TLS port."),
    api_port: int = typer.Option(8490, "--api-port", help="Operator API port."),
    ca: str | None = typer.Option(None, "--ca", help="Sub-CA that certifies the keys."),
) -> None:
    """Create the GWA: keys in its security module, certificates, database."""
    from imsys.gwa.db import GwaDatabase
    from imsys.gwa.keys import DirectorySubCa, provision_gwa_keys

    folder.mkdir(parents=True, exist_ok=True)
    if (folder / CONFIG_FILE).exists():
        raise UsageError(f"{folder} holds a GWA already")
    directory = PkiDirectory.open(pki)
    url = db or f"sqlite:///{(folder / 'gwa.db').resolve()}"
    module = SoftwareSecurityModule.create(folder / "secmod", _passphrase())
    try:
        keys = provision_gwa_keys(module, administrator_id, DirectorySubCa(directory, ca))
    finally:
        module.close()
    GwaDatabase(url).dispose()
    GwaConfig(administrator_id, pki.resolve(), url, "127.0.0.1", admin_port, "127.0.0.1",
              api_port, ca).save(folder)
    console.print(f"GWA {keys.administrator_id} in {folder}: GWADM_TLS/SIG/ENC/AUT certified, "
                  f"database {url}")


async def _serve(folder: Path, config: GwaConfig, ready: Any = None,
                 clock: Clock | None = None) -> None:
    import uvicorn

    from imsys.gwa.api import create_api
    from imsys.gwa.db import GwaDatabase
    from imsys.gwa.keys import DirectorySubCa, GwaKeys
    from imsys.gwa.server import AdminEndpoint
    from imsys.gwa.service import GwaService

    clock = clock or SystemClock()
    directory = PkiDirectory.open(config.pki, clock=clock)
    validator_state: dict[str, Any] = {"at": 0.0, "validator": None}

    def validator() -> Any:  # rebuilt every minute: fresh CRLs
        if validator_state["validator"] is None or time.monotonic() - validator_state["at"] > 60:
            validator_state["validator"] = directory.validator()
            validator_state["at"] = time.monotonic()
        return validator_state["validator"]

    module = SoftwareSecurityModule(folder / "secmod", _passphrase())
    db = GwaDatabase(config.db)
    service = GwaService(db, GwaKeys.load(module), DirectorySubCa(directory, config.ca),
                         validator, clock)
    endpoint = AdminEndpoint(service, validator, host=_loopback(config.admin_host),
                             port=config.admin_port)
    api = uvicorn.Server(uvicorn.Config(create_api(service), host=_loopback(config.api_host),
                                        port=config.api_port, log_level="warning"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    api.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    try:
        port = await endpoint.start()
        task = asyncio.create_task(api.serve())
        console.print(f"GWA {service.administrator_id}: admin sessions on "
                      f"https://{config.admin_host}:{port}, operator API on "
                      f"http://{config.api_host}:{config.api_port}/docs")
        if ready is not None:
            ready(port)
        await stop.wait()
        api.should_exit = True
        await task
    finally:
        await endpoint.close()
        db.dispose()
        module.close()


@gwa_app.command("initial-config")
@handle_errors
def initial_config_command(
    folder: Path = typer.Argument(..., help="Directory of the GWA."),
    gateway_id: str = typer.Argument(..., help="The gateway the file is for."),
    out: Path = typer.Option(..., "--out", help="Where to write the signed file.",
                             dir_okay=False),
) -> None:
    """The signed initial configuration file of a gateway (seed 003 §2.3.1.3): the GWA's
    certificates, its id and admin-session address, signed with GWADM_SIG."""
    from imsys.gateway.initial_config import GwaAddress
    from imsys.gwa import (
        GwaCredentials,
        build_initial_configuration,
        sign_initial_configuration,
    )
    from imsys.gwa.keys import GwaKeys
    from imsys.pki.directory import atomic_write

    config = GwaConfig.load(folder)
    module = SoftwareSecurityModule(folder / "secmod", _passphrase())
    try:
        keys = GwaKeys.load(module)
        c = keys.certificates
        document = sign_initial_configuration(build_initial_configuration(
            gateway_id=gateway_id, administrator_id=keys.administrator_id,
            address=GwaAddress(config.admin_host, config.admin_port),
            credentials=GwaCredentials(c["TLS"], c["SIG"], c["ENC"], c["AUT"], keys.chain)),
            keys.key("SIG"))
    finally:
        module.close()
    atomic_write(out, document)
    console.print(f"initial configuration for {gateway_id} ({len(document)} bytes) in {out}")


@gwa_app.command("serve")
@handle_errors
def serve_command(
    folder: Path = typer.Argument(..., help="Directory of the GWA."),
    clock_file: Path | None = typer.Option(
        None, "--clock", exists=True, dir_okay=False,
        help="A shared simulated clock file (imsys demo moves it): commands, wake-ups and "
             "certificates are dated by it."),
) -> None:
    """Run the admin-session endpoint and the operator API until SIGINT/SIGTERM."""
    clock = None if clock_file is None else SharedClock(clock_file)
    asyncio.run(_serve(folder, GwaConfig.load(folder), clock=clock))


# --------------------------------------------------------------------------- API clients


def _request(api: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{api.rstrip('/')}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise UsageError(f"operator API answered {exc.code}: {detail}") from None
    except urllib.error.URLError as exc:
        raise UsageError(f"operator API at {api} unreachable: {exc.reason}") from None


@gwa_app.command("gateways")
@handle_errors
def gateways_command(api: str = typer.Option(DEFAULT_API, "--api")) -> None:
    """The fleet: phase, commissioning, last contact, missed intervals, alarms."""
    rows = _request(api, "GET", "/api/v1/gateways")
    table = Table("gateway", "phase", "commissioning", "last contact", "missed", "errors",
                  "warnings", "pending")
    for row in rows:
        table.add_row(row["gateway_id"], row["phase"] or "-", row["commissioning"],
                      row["last_contact"] or "never", str(row["missed_intervals"]),
                      str(row["alarms"]["errors"]), str(row["alarms"]["warnings"]),
                      str(row["pending"]))
    console.print(table)


@gwa_app.command("command")
@handle_errors
def command_command(
    command_type: str = typer.Argument(..., help="Command type, e.g. profile.evaluation.install"),
    gateway: list[str] = typer.Option(..., "--gateway", help="Gateway id (repeatable)."),
    parameters: str = typer.Option("{}", "--parameters",
                                   help="JSON object, or @FILE with one."),
    api: str = typer.Option(DEFAULT_API, "--api"),
    wait: float = typer.Option(0.0, "--wait", help="Follow progress for up to SECONDS."),
) -> None:
    """Queue a command for one or many gateways; with --wait show a progress bar."""
    text = Path(parameters[1:]).read_text() if parameters.startswith("@") else parameters
    try:
        params = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--parameters is not JSON: {exc}") from None
    batch = _request(api, "POST", "/api/v1/commands",
                     {"gateways": gateway, "type": command_type, "parameters": params})
    console.print(f"batch {batch['batch']}: {batch['total']} command(s) queued")
    if wait <= 0:
        return
    deadline = time.monotonic() + wait
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console) as progress:
        task = progress.add_task(command_type, total=batch["total"])
        while time.monotonic() < deadline:
            state = _request(api, "GET", f"/api/v1/batches/{batch['batch']}")
            progress.update(task, completed=state["done"])
            if state["done"] >= state["total"]:
                break
            time.sleep(0.5)
    console.print(json.dumps(state["by_status"]))


@gwa_app.command("wakeup")
@handle_errors
def wakeup_command(
    gateway: str = typer.Argument(..., help="Gateway id."),
    address: str | None = typer.Option(None, "--address",
                                       help="Set the wake-up address HOST:PORT first."),
    api: str = typer.Option(DEFAULT_API, "--api"),
) -> None:
    """Send the signed wake-up datagram to a gateway."""
    if address is not None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError("--address is HOST:PORT")
        _request(api, "PUT", f"/api/v1/gateways/{gateway}",
                 {"wakeup_host": host, "wakeup_port": int(port)})
    sent = _request(api, "POST", f"/api/v1/gateways/{gateway}/wakeup")
    console.print(f"wake-up sent to {sent['address']}")
