"""``imsys gateway``: run one gateway from its state directory and show its status
(docs/gateway-process.md)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from imsys.cli._common import console, err_console, handle_errors
from imsys.core.clock import Clock, ScaledClock, SharedClock, SystemClock
from imsys.gateway.commissioning import WanMedium, WanParameters
from imsys.gateway.device import DeviceSettings, is_device
from imsys.gateway.device_process import DeviceGatewayProcess
from imsys.gateway.initial_config import GwaAddress
from imsys.gateway.process import GatewayProcess, GatewayStatus, status
from imsys.pki import PkiDirectory
from imsys.system import factory

gateway_app = typer.Typer(name="gateway", help="Smart Meter Gateway: run it, look at it.",
                          no_args_is_help=True)

StateOpt = Annotated[Path, typer.Option(
    "--state", help="state directory (gateway.json, keys/, gateway.db)", file_okay=False)]


def _line(process: GatewayProcess, clock: Clock) -> Text:
    lmn = process.lmn_server
    frames = lmn.stats.frames if lmn is not None else 0
    stored = lmn.stats.stored if lmn is not None else 0
    port = lmn.port if lmn is not None and process.ready.is_set() else "-"
    s = process.stats
    text = Text.assemble(
        ("gateway ", "bold"), process.config.gateway_id if process.config else str(
            process.state_dir.name),
        f"  {clock.now():%Y-%m-%d %H:%M:%S}Z  LMN :{port}  frames {frames}  values {stored}  ",
        f"queued {s.enqueued}  acknowledged {s.acknowledged}  failed {s.failed}")
    if s.last_error:
        text.append(f"  last error: {s.last_error}", style="yellow")
    return text


async def _run(process: GatewayProcess, clock: Clock, quiet: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(process.run(stop))
    if quiet:
        await task
        return
    with err_console.status(_line(process, clock)) as live:
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            live.update(_line(process, clock))
    await task


@gateway_app.command("run")
@handle_errors
def run_command(
    state: StateOpt,
    speed: Annotated[float, typer.Option(
        "--speed", min=0.001, help="simulated seconds per real second (1 = real time)")] = 1.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no status line")] = False,
    clock_file: Annotated[Path | None, typer.Option(
        "--clock", help="a shared simulated clock file (imsys demo moves it; excludes --speed)",
        exists=True, dir_okay=False)] = None,
) -> None:
    """Run the gateway until Ctrl-C or SIGTERM: LMN endpoint, store, TAF, deliveries."""
    clock: Clock
    if clock_file is not None:
        if speed != 1.0:
            raise typer.BadParameter("--clock and --speed exclude each other")
        clock = SharedClock(clock_file)
    else:
        clock = SystemClock() if speed == 1.0 else ScaledClock(speed)
    kind = DeviceGatewayProcess if is_device(state) else GatewayProcess
    process = kind(state, clock, report_ticks=clock_file is not None)
    asyncio.run(_run(process, clock, quiet))
    s = process.stats
    console.print(f"stopped: {s.evaluations} evaluations, {s.enqueued} deliveries queued, "
                  f"{s.acknowledged} acknowledged, {s.failed} failed")


def _time(value: object) -> str:
    return "–" if value is None else f"{value:%Y-%m-%d %H:%M:%S}Z"


def status_table(report: GatewayStatus) -> Table:
    table = Table(title=f"gateway {report.gateway_id}", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value")
    table.add_row("phase", report.phase or "unknown (not commissioned here)")
    table.add_row("readings", str(report.readings))
    chain = "verified" if report.chain_verified else f"BROKEN ({report.chain_problem})"
    table.add_row("reading chain", Text(chain, style="green" if report.chain_verified else "red"))
    table.add_row("deliveries", ", ".join(f"{k} {v}" for k, v in report.deliveries.items()))
    table.add_row("last EMT contact", _time(report.last_emt_contact))
    table.add_row("last admin contact", _time(report.last_admin_contact))
    for m in report.meters:
        latest = ("no reading yet" if m.latest_at is None else
                  f"{m.latest_obis} = {m.latest_value}e{m.latest_scaler} at "
                  f"{_time(m.latest_at)} ({'valid' if m.latest_valid else 'INVALID'})")
        table.add_row(f"meter {m.meter_id}", f"{m.protocol}: {latest}")
    return table


@gateway_app.command("status")
@handle_errors
def status_command(state: StateOpt) -> None:
    """Show phase, meters, latest readings, delivery queue, chain check and last contact."""
    console.print(status_table(status(state)))


# --------------------------------------------------------------------------- production line

PinOpt = Annotated[str, typer.Option(
    envvar="IMSYS_LOCAL_PIN", prompt=True, hide_input=True,
    help="the local interface PIN of this role (or $IMSYS_LOCAL_PIN)")]


def _hostport(text: str | None, what: str) -> str | None:
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise typer.BadParameter(f"{what} is HOST:PORT")
    return text


@gateway_app.command("manufacture")
@handle_errors
def manufacture_command(
    state: StateOpt,
    gateway_id: Annotated[str, typer.Option("--id", help="the gateway id (e.g. EABC0012345678)")],
    pki: Annotated[Path, typer.Option("--pki", help="SM-PKI directory (root, Gütesiegel Sub-CA)",
                                      file_okay=False)],
    integrator_pin: Annotated[str, typer.Option(
        "--integrator-pin", envvar="IMSYS_INTEGRATOR_PIN", prompt=True, hide_input=True,
        help="the integrator's local-interface PIN (6-64 characters)")],
    installer_pin: Annotated[str, typer.Option(
        "--installer-pin", envvar="IMSYS_INSTALLER_PIN", prompt=True, hide_input=True,
        help="the installer's local-interface PIN (different from the integrator's)")],
    ca: Annotated[str, typer.Option("--ca", help="Sub-CA of the Gütesiegel certificates")
                  ] = "sub-ca",
    lmn: Annotated[str, typer.Option("--lmn", help="LMN-TLS endpoint HOST:PORT")
                   ] = "127.0.0.1:4059",
    wmbus: Annotated[str | None, typer.Option("--wmbus", help="wM-Bus UDP HOST:PORT")] = None,
    wakeup: Annotated[str | None, typer.Option("--wakeup", help="wake-up UDP HOST:PORT")
                      ] = None,
    han: Annotated[str | None, typer.Option("--han", help="technician diagnostics HOST:PORT")
                   ] = None,
    delivery_interval: Annotated[int, typer.Option("--delivery-interval", min=60)] = 900,
) -> None:
    """Production line: a new gateway in --state through pre-personalisation 1 and
    integration (seed 003 §2.3.1.1–§2.3.1.2)."""
    settings = DeviceSettings(gateway_id, lmn_listen=str(_hostport(lmn, "--lmn")),
                              wmbus_listen=_hostport(wmbus, "--wmbus"),
                              wakeup_listen=_hostport(wakeup, "--wakeup"),
                              han_listen=_hostport(han, "--han"),
                              delivery_interval=delivery_interval)
    phase = factory.manufacture(state, gateway_id, PkiDirectory.open(pki), SystemClock(),
                                integrator_pin=integrator_pin, installer_pin=installer_pin,
                                ca=ca, settings=settings)
    console.print(f"gateway {gateway_id} in {state}: phase {phase.value}")


@gateway_app.command("load-config")
@handle_errors
def load_config_command(
    state: StateOpt,
    document: Annotated[Path, typer.Argument(help="the initial configuration file the GWA "
                                                  "signed (imsys gwa initial-config)",
                                             exists=True, dir_okay=False)],
    pin: PinOpt,
) -> None:
    """Pre-personalisation 2 at the local interface with the integrator PIN (§2.3.1.3)."""
    phase = factory.load_initial_configuration(state, SystemClock(), document.read_bytes(),
                                               integrator_pin=pin)
    console.print(f"initial configuration loaded: phase {phase.value}")


@gateway_app.command("install")
@handle_errors
def install_command(
    state: StateOpt,
    pin: PinOpt,
    medium: Annotated[WanMedium, typer.Option("--wan", help="WAN medium")] = WanMedium.ETHERNET,
    gwa: Annotated[str | None, typer.Option(
        "--gwa", help="update the GWA's address HOST:PORT (if it changed)")] = None,
) -> None:
    """Installation at the local interface with the installer PIN (§2.3.2); the local
    interface is disabled for good afterwards."""
    address = None
    if _hostport(gwa, "--gwa") is not None:
        host, _, port = str(gwa).rpartition(":")
        address = GwaAddress(host, int(port))
    phase = factory.install(state, SystemClock(), installer_pin=pin,
                            wan=WanParameters(medium), gwa_address=address)
    console.print(f"installed: phase {phase.value}; the gateway now awaits its administrator "
                  f"(imsys gateway run --state {state})")


__all__ = ["gateway_app", "status_table"]
