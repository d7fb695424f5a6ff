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
from imsys.gateway.device import is_device
from imsys.gateway.device_process import DeviceGatewayProcess
from imsys.gateway.process import GatewayProcess, GatewayStatus, status

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


__all__ = ["gateway_app", "status_table"]
