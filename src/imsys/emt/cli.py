"""``imsys emt``: run an EMT's delivery endpoint and look at what it received."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path

import typer
from rich.table import Table

from imsys.cli._common import console, handle_errors
from imsys.core.errors import UsageError
from imsys.emt.server import ServerConfig, provision_identity, serve
from imsys.emt.storage import EmtStorage
from imsys.pki import PkiDirectory

emt_app = typer.Typer(name="emt", help="External market participant: receive deliveries.",
                      no_args_is_help=True)
log = logging.getLogger("imsys.emt.cli")


@emt_app.command("serve")
@handle_errors
def serve_command(
    pki: Path = typer.Option(..., "--pki", help="SM-PKI directory (trust anchors, CRLs)."),
    emt_id: str = typer.Option(..., "--id", help="This EMT's identifier."),
    db: str = typer.Option("sqlite:///emt.db", "--db",
                           help="Database URL: sqlite:///file.db or postgresql://…"),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8443, "--port"),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes on one port."),
    keys: Path | None = typer.Option(None, "--keys",
                                     help="Key directory [default: <pki>/participants/<id>]."),
    ca: str | None = typer.Option("emt-ca", "--ca",
                                  help="Sub-CA that issues missing EMT certificates."),
    gateway: list[str] = typer.Option([], "--gateway",
                                      help="Serve only these gateways (repeatable)."),
    max_age_days: int = typer.Option(45, "--max-age-days",
                                     help="Oldest signing time accepted."),
) -> None:
    """Run the delivery endpoint (POST /deliveries/v1 over mutually authenticated TLS)."""
    directory = PkiDirectory.open(pki)
    config = ServerConfig(pki, emt_id, db, host=host, port=port, workers=workers,
                          keys_dir=keys, served_gateways=tuple(gateway) or None,
                          max_age=timedelta(days=max_age_days))
    if ca is not None and ca not in directory.ca_names:
        ca = None
    provision_identity(directory, emt_id, config.keys, ca=ca)
    serve(config, on_ready=lambda bound: console.print(
        f"EMT {emt_id} listening on https://{host}:{bound}/deliveries/v1 "
        f"({workers} worker{'s' if workers > 1 else ''}, db {db})"))


@emt_app.command("show")
@handle_errors
def show_command(
    db: str = typer.Option(..., "--db", help="Database URL."),
    gateway: str | None = typer.Option(None, "--gateway"),
    meter: str | None = typer.Option(None, "--meter", help="Meter id or pseudonym."),
    day: str | None = typer.Option(None, "--day", help="YYYY-MM-DD (UTC)."),
    readings: bool = typer.Option(False, "--readings", help="List the values too."),
    rejections: bool = typer.Option(False, "--rejections", help="List refused deliveries."),
) -> None:
    """Show received deliveries (and their values or the rejections)."""
    try:
        when = date.fromisoformat(day) if day else None
    except ValueError:
        raise UsageError(f"--day must be YYYY-MM-DD, got {day!r}") from None
    storage = EmtStorage(db, create=False)
    try:
        counts = storage.counts()
        console.print(f"{counts['emt_deliveries']} deliveries, {counts['emt_readings']} "
                      f"readings, {counts['emt_rejections']} rejections")
        table = Table("received", "delivery", "gateway", "meter", "profile", "billing",
                      "readings")
        for row in storage.deliveries(gateway=gateway, meter=meter, day=when):
            meter_text = row["meter"] + (" (pseudonym)" if row["pseudonymised"] else "")
            table.add_row(f"{row['received_at']:%Y-%m-%d %H:%M:%S}", row["delivery_id"],
                          row["gateway_id"], meter_text, row["profile_id"],
                          "yes" if row["billing_relevant"] else "no",
                          str(row["reading_count"]))
        console.print(table)
        if readings:
            values = Table("gateway", "meter", "OBIS", "time (UTC)", "value", "scaler", "uom",
                           "PTB")
            for row in storage.readings(gateway=gateway, meter=meter, day=when):
                values.add_row(row["gateway_id"], row["meter"], row["obis"],
                               f"{row['timestamp']:%Y-%m-%d %H:%M:%S}", str(row["value"]),
                               str(row["scaler"]), str(row["uom"]),
                               "" if row["status_ptb"] is None else str(row["status_ptb"]))
            console.print(values)
        if rejections:
            refused = Table("time (UTC)", "reason", "gateway", "digest")
            for row in storage.rejections():
                refused.add_row(f"{row['at']:%Y-%m-%d %H:%M:%S}", row["reason"],
                                row["gateway_id"] or "", row["digest"][:16])
            console.print(refused)
    finally:
        storage.dispose()
