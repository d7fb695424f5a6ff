"""``imsys demo`` (the whole system on a stepped simulated clock) and ``imsys up``/``down``
(the same roles on the real clock until stopped). See docs/demo.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from imsys.cli._common import console, handle_errors
from imsys.emt.export import ExportFile
from imsys.gateway.logs import LogEntry
from imsys.system.demo import DemoOptions, DemoRun, run_demo
from imsys.system.report import DemoSummary, distribute, plot, summarise
from imsys.system.up import down, up

__all__ = ["register"]


def _entries(title: str, entries: list[LogEntry]) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False)
    for column in ("#", "time (UTC)", "level", "outcome", "text"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(str(e.record_number), f"{e.timestamp:%Y-%m-%d %H:%M:%S}", e.level.name,
                      e.outcome.name, escape(e.text))
    return table


def print_summary(run: DemoRun, summary: DemoSummary, files: list[Path],
                  exports: list[ExportFile]) -> None:
    console.rule("[bold]imsys demo – summary")
    console.print(f"window {run.start:%Y-%m-%d %H:%M}Z – {run.end:%Y-%m-%d %H:%M}Z, "
                  f"{len(run.households)} household(s), {run.steps} quarter-hour steps; "
                  f"setup {run.seconds.get('setup', 0):.0f} s, simulation "
                  f"{run.seconds.get('simulation', 0):.0f} s")
    counts = summary.emt_counts
    console.print(f"readings measured and stored by the gateways: {summary.measured}; "
                  f"deliveries acknowledged: {summary.delivered}; at the EMT: "
                  f"{counts.get('emt_deliveries', 0)} deliveries opened and verified, "
                  f"{counts.get('emt_readings', 0)} values stored, "
                  f"{counts.get('emt_rejections', 0)} rejected")
    gateways = Table("gateway", "commissioning", "readings", "hash chain", "deliveries",
                     "consumer-log transmissions")
    for g in summary.gateways:
        commissioning = ("provisioned directly" if g.phase is None
                         else f"{g.phase} after {g.commissioning_steps} steps")
        gateways.add_row(g.gateway_id, commissioning, str(g.readings),
                         "verified" if g.chain_verified else "[red]BROKEN",
                         ", ".join(f"{k} {v}" for k, v in g.deliveries.items() if v),
                         str(g.consumer_log_transmissions))
    console.print(gateways)
    console.print("deliveries at the EMT per evaluation profile: " + ", ".join(
        f"{profile} {n}" for profile, n in sorted(summary.profiles.items()))
        + " (TAF 1 delivers at the end of its monthly billing period; TAF 6 the billing-day "
          "value of each day)")
    energy = Table("meter", "role", "register", "in the window")
    for (meter, role, obis), value in sorted(summary.energy.items()):
        energy.add_row(meter, role, obis, f"{value:.3f} {summary.units[role]}")
    console.print(energy)
    for gateway, registers in summary.taf2.items():
        if registers:
            total = registers.get("1-0:1.8.0*255", 0.0)
            parts = sum(v for k, v in registers.items() if k != "1-0:1.8.0*255")
            console.print(f"TAF 2 registers of {gateway} (kWh): " + ", ".join(
                f"{k} = {v:.3f}" for k, v in registers.items())
                + f"  – stages + error = {parts:.3f}, total = {total:.3f}")
    for g in summary.gateways[:1]:
        console.print(_entries(f"Systemlog (system log) of {g.gateway_id}", g.system_log))
        console.print(_entries(f"Eichtechnisches Log (calibration log) of {g.gateway_id}",
                               g.calibration_log))
        console.print(_entries(f"Letztverbraucher-Log (consumer log) of {g.gateway_id}",
                               g.consumer_log))
    by_recipient: dict[str, list[str]] = {}
    for export in exports:
        by_recipient.setdefault(export.recipient_id, []).append(export.path.name)
    console.print(f"MSB distribution (§ 60 MsbG): {len(exports)} files in exports/ – " + "; ".join(
        f"{recipient}: {len(names)} ({', '.join(sorted({n.rsplit('.', 1)[1] for n in names}))})"
        for recipient, names in sorted(by_recipient.items())))
    for path in files:
        console.print(f"wrote {path.relative_to(run.out)}")


def demo(
    households: Annotated[int, typer.Option("--households", min=1, max=50,
                                            help="households (one gateway and three meters "
                                                 "each)")] = 2,
    days: Annotated[int, typer.Option("--days", min=1, max=31,
                                      help="simulated days (ending at the last midnight)")] = 1,
    hours: Annotated[int | None, typer.Option("--hours", min=1, max=744,
                                              help="simulate this many hours instead of days")
                     ] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="output folder (default ./imsys-demo-<time>)", file_okay=False)] = None,
    emt_db: Annotated[str | None, typer.Option(
        "--db", help="database URL for the EMT and the GWA (default: SQLite files in the "
                     "output folder; postgresql://… works)")] = None,
    direct: Annotated[bool, typer.Option(
        "--direct", help="provision the gateways directly (keys and profiles in files) "
                         "instead of the production line and commissioning through the GWA")
                      ] = False,
) -> None:
    """Run the whole iMSys on this machine: SM-PKI, GWA, EMT, gateways commissioned through
    every phase, meters, TAFs, deliveries."""
    options = DemoOptions(households=households, days=days, hours=hours, out=out,
                          emt_db=emt_db, commission=not direct)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        tasks: dict[str, int] = {}

        def progress(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done, total=total)

        run = run_demo(options, progress)
    summary = summarise(run)
    exports = distribute(run)
    files = plot(summary, run.out)
    print_summary(run, summary, files, exports)
    console.print(f"output folder: {run.out}")


DirOpt = Annotated[Path, typer.Option("--dir", help="the system's folder", file_okay=False)]


def up_command(
    folder: DirOpt = Path("imsys-system"),
    households: Annotated[int, typer.Option("--households", min=1, max=50,
                                            help="households on first start")] = 2,
) -> None:
    """Start the demo's roles on the real clock and leave them running (until imsys down)."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done, total=total)

        records = up(folder, households, progress)
    table = Table("role", "pid", "log")
    for r in records:
        table.add_row(r.name, str(r.pid), r.log)
    console.print(table)
    console.print(f"up: {len(records)} role processes in {folder.resolve()}; meters send every "
                  f"quarter hour, gateways deliver hourly. Stop with: imsys down --dir {folder}")


def down_command(folder: DirOpt = Path("imsys-system")) -> None:
    """Stop the roles imsys up started in --dir."""
    for record, how in down(folder):
        console.print(f"{record.name} (pid {record.pid}): {how}")


def register(app: typer.Typer) -> None:
    app.command("demo")(handle_errors(demo))
    app.command("up")(handle_errors(up_command))
    app.command("down")(handle_errors(down_command))
