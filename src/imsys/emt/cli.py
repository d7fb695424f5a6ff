"""``imsys emt``: run an EMT's delivery endpoint and look at what it received."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path

import typer
from rich.table import Table

from imsys.cli._common import console, handle_errors
from imsys.core.errors import UsageError
from imsys.emt.export import FORMATS, export_day, load_assignments
from imsys.emt.server import ForwardTarget, ServerConfig, provision_identity, serve
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
    trusted_relay: list[str] = typer.Option([], "--trusted-relay",
                                            help="Accept forwarded deliveries from this relay "
                                            "(its EMT id; repeatable)."),
    forward_to: list[str] = typer.Option([], "--forward-to",
                                         help="Relay mode: take POST /relay/v1 and forward to "
                                         "ID,HOST:PORT,SIG-CERT.pem (repeatable)."),
) -> None:
    """Run the delivery endpoint (POST /deliveries/v1 over mutually authenticated TLS)."""
    directory = PkiDirectory.open(pki)
    config = ServerConfig(pki, emt_id, db, host=host, port=port, workers=workers,
                          keys_dir=keys, served_gateways=tuple(gateway) or None,
                          max_age=timedelta(days=max_age_days),
                          trusted_relays=tuple(trusted_relay),
                          forward_to=tuple(parse_forward_target(t) for t in forward_to))
    if ca is not None and ca not in directory.ca_names:
        ca = None
    provision_identity(directory, emt_id, config.keys, ca=ca)
    serve(config, on_ready=lambda bound: console.print(
        f"EMT {emt_id} listening on https://{host}:{bound}/deliveries/v1 "
        f"({workers} worker{'s' if workers > 1 else ''}, db {db})"))


def parse_forward_target(text: str) -> ForwardTarget:
    """``ID,HOST:PORT,SIG-CERT.pem`` → :class:`ForwardTarget`."""
    parts = text.split(",")
    host, _, port = parts[1].rpartition(":") if len(parts) == 3 else ("", "", "")
    if len(parts) != 3 or not parts[0] or not host or not port.isdigit():
        raise UsageError(f"--forward-to is ID,HOST:PORT,SIG-CERT.pem, got {text!r}")
    return ForwardTarget(parts[0], host, int(port), Path(parts[2]))


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
        outbox = storage.relay_counts()
        if any(outbox.values()):
            console.print(f"relay outbox: {outbox['waiting']} waiting, {outbox['refused']} "
                          "refused by the final recipient")
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


@emt_app.command("export")
@handle_errors
def export_command(
    db: str = typer.Option(..., "--db", help="Database URL of the receiving EMT."),
    assignments: Path = typer.Option(..., "--assignments",
                                     help="Metering points and recipients (JSON, docs/msb.md)."),
    day: str = typer.Option(..., "--day", help="Local day the dispatches are due (YYYY-MM-DD): "
                            "the previous day's series, on the 1st the month, on 1 Jan the year."),
    sender: str = typer.Option(..., "--sender", help="The MSB's market partner id."),
    out: Path = typer.Option(Path("export"), "--out", help="Output directory."),
    formats: list[str] = typer.Option(list(FORMATS), "--format",
                                      help="mscons, csv, json (repeatable)."),
    history_days: int = typer.Option(28, "--history-days", min=0,
                                     help="Earlier days used for substitute values."),
) -> None:
    """Export what is due on a day per recipient: MSCONS, CSV, JSON (§ 60 MsbG)."""
    try:
        when = date.fromisoformat(day)
    except ValueError:
        raise UsageError(f"--day must be YYYY-MM-DD, got {day!r}") from None
    points = load_assignments(assignments)
    storage = EmtStorage(db, create=False)
    try:
        files = export_day(storage, points, when, sender_id=sender, out_dir=out,
                           formats=formats, history_days=history_days)
    finally:
        storage.dispose()
    table = Table("recipient", "kind", "format", "dispatches", "file")
    for item in files:
        table.add_row(item.recipient_id, item.kind.value, item.format, str(item.dispatches),
                      str(item.path))
    console.print(table)
    console.print(f"{len(files)} files written to {out}")
