"""Command line: ``imsys meter run`` and ``imsys meter record`` (Typer app ``meter_app``).

``run`` puts one simulated meter on the LMN: a wired meter speaks SML over mutually
authenticated TLS, pushing to the gateway (``--mode push --gateway HOST:PORT``) or answering it
(``--mode pull --listen HOST:PORT``); a wireless meter (``--udp HOST:PORT``) sends wM-Bus
telegrams as UDP datagrams. ``--speed N`` runs simulated time N times faster than real time.
Ctrl-C (or SIGTERM) stops it cleanly; a Rich status line shows what it does.

``record`` runs the same simulator on a simulated clock, without a network, and writes its first
``--count`` payloads: raw SML transport frames one after another (electricity; read them with
``imsys sml decode``) or wM-Bus telegrams in the binary capture format of
:mod:`imsys.lmn.wmbus.stream` (gas, water, heat; ``imsys wmbus decode``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from imsys.core.clock import Clock, SharedClock, SimulatedClock
from imsys.core.errors import ImsysError, Rejected
from imsys.lmn.wmbus import SecurityMode
from imsys.lmn.wmbus.stream import write_capture
from imsys.meters.ids import MeterId
from imsys.meters.lmn_payload import SmlPushEncoder, SmlResponder, WmbusEncoder
from imsys.meters.lmn_tls import (
    LinkStats,
    LmnTlsConfig,
    PullMeter,
    PushMeter,
    ScaledClock,
    parse_endpoint,
)
from imsys.meters.radio import RadioMeter
from imsys.meters.settings import MeterSettings
from imsys.meters.simulator import MeterKind, MeterSimulator, ModelKind

log = logging.getLogger(__name__)
console = Console()
err_console = Console(stderr=True)

meter_app = typer.Typer(help="Simulated meters on the LMN: run one, or record its payloads.",
                        no_args_is_help=True)

#: ``--profile`` names of the electricity models
PROFILES: dict[str, ModelKind] = {
    "h0": ModelKind.HOUSEHOLD_H0,
    "h25": ModelKind.HOUSEHOLD_H25,
    "g0": ModelKind.BUSINESS_G0,
    "g25": ModelKind.BUSINESS_G25,
    "pv": ModelKind.PV,
    "heatpump": ModelKind.HEAT_PUMP,
    "ev": ModelKind.EV,
    "prosumer": ModelKind.PROSUMER,
}
#: the model of each non-electricity kind (``--profile`` does not apply)
KIND_MODELS: dict[MeterKind, ModelKind] = {
    MeterKind.GAS: ModelKind.GAS_HEATING,
    MeterKind.WATER: ModelKind.WATER,
    MeterKind.HEAT: ModelKind.DISTRICT_HEAT,
}
DEFAULT_IDS: dict[MeterKind, str] = {
    MeterKind.ELECTRICITY: "1EMH0012345678",
    MeterKind.GAS: "7ELS0012345678",
    MeterKind.WATER: "8DME0012345678",
    MeterKind.HEAT: "6KAM0012345678",
}
#: kinds that ``record`` writes as wM-Bus telegrams (the others as SML frames)
WIRELESS_KINDS = frozenset(KIND_MODELS)
DEFAULT_START = "2025-01-01T00:00:00+01:00"

EXIT_REJECTED = 1
EXIT_USAGE = 2


class LinkMode(StrEnum):
    PUSH = "push"
    PULL = "pull"




def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err_console.print(f"[bold red]error[/]: {message}", soft_wrap=True)
    return typer.Exit(code)


# --------------------------------------------------------------------------- building blocks


def build_simulator(kind: MeterKind, profile: str, meter_id: str | None, clock: Clock, *,
                    seed: int = 0, annual_kwh: float | None = None,
                    annual_m3: float | None = None) -> MeterSimulator:
    """The simulator the options describe (commissioned at ``clock.now()``)."""
    if kind is MeterKind.ELECTRICITY:
        try:
            model = PROFILES[profile.lower()]
        except KeyError:
            raise typer.BadParameter(f"unknown profile {profile!r}; one of "
                                     f"{', '.join(PROFILES)}", param_hint="--profile") from None
    else:
        model = KIND_MODELS[kind]
    mid = MeterId.parse(meter_id or DEFAULT_IDS[kind])
    settings = MeterSettings(seed=seed, annual_consumption_kwh=annual_kwh,
                             annual_water_m3=annual_m3)
    return MeterSimulator(mid, kind, model, settings, clock)


def parse_start(text: str | None, timezone: str = "Europe/Berlin") -> datetime:
    """``--start``: ISO 8601; without an offset it is local time in ``timezone``."""
    try:
        when = datetime.fromisoformat(text or DEFAULT_START)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {text!r}", param_hint="--start") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(timezone))
    return when.astimezone(UTC)


def security(key_hex: str | None, mode5: bool, mode7: bool) -> tuple[bytes | None, SecurityMode]:
    """Key and OMS security mode from ``--key-hex``/``--mode5``/``--mode7``."""
    if mode5 and mode7:
        raise typer.BadParameter("give --mode5 or --mode7, not both", param_hint="--mode7")
    if key_hex is None:
        if mode5 or mode7:
            raise typer.BadParameter("security modes 5 and 7 need --key-hex",
                                     param_hint="--key-hex")
        log.warning("no --key-hex: telegrams are sent unencrypted (security mode 0)")
        return None, SecurityMode.NONE
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        raise typer.BadParameter("not hex", param_hint="--key-hex") from None
    if len(key) != 16:
        raise typer.BadParameter("an AES-128 key has 32 hex digits", param_hint="--key-hex")
    return key, SecurityMode.AES_CBC_NO_IV if mode7 else SecurityMode.AES_CBC_IV


# --------------------------------------------------------------------------- options

KindOpt = Annotated[MeterKind, typer.Option("--kind", help="what the meter measures")]
ProfileOpt = Annotated[str, typer.Option(
    "--profile", help=f"electricity model: {', '.join(PROFILES)} (gas/water/heat: own model)")]
IdOpt = Annotated[str | None, typer.Option(
    "--id", help="DIN 43863-5 meter id, e.g. 1EMH0012345678 (default per kind)")]
IntervalOpt = Annotated[int, typer.Option(
    "--interval", min=1, help="seconds between payloads (also the profile period in pull mode)")]
SeedOpt = Annotated[int, typer.Option("--seed", help="simulator seed")]
AnnualKwhOpt = Annotated[float | None, typer.Option(
    "--annual-kwh", min=0, help="annual consumption (electricity, gas, heat)")]
AnnualM3Opt = Annotated[float | None, typer.Option("--annual-m3", min=0,
                                                   help="annual water volume")]
KeyHexOpt = Annotated[str | None, typer.Option(
    "--key-hex", help="wireless: the meter's AES-128 key (32 hex digits)")]
Mode5Opt = Annotated[bool, typer.Option("--mode5", help="wireless: OMS security mode 5 "
                                                        "(default with a key)")]
Mode7Opt = Annotated[bool, typer.Option("--mode7", help="wireless: OMS security mode 7 (AFL)")]
LongHeaderOpt = Annotated[bool, typer.Option(
    "--long-header", help="wireless: long transport header (CI 0x72) instead of short (0x7A)")]
StartOpt = Annotated[str | None, typer.Option(
    "--start", help=f"simulated start (ISO 8601, local time if no offset; record default "
                    f"{DEFAULT_START}, run default now)")]


# --------------------------------------------------------------------------- run


def _status(meter: str, where: str, stats: LinkStats, clock: Clock) -> Text:
    last = f"{stats.last_sent:%Y-%m-%d %H:%M:%S} UTC" if stats.last_sent else "–"
    text = Text.assemble(
        ("● ", "green" if stats.state in ("connected", "sending", "listening") else "yellow"),
        (meter, "bold"), f" {where} · {stats.state} · sent {stats.frames_sent}",
        f" · answered {stats.requests_answered}" if stats.requests_answered else "",
        f" · last {last} · clock {clock.now():%Y-%m-%d %H:%M:%S} UTC",
        (f" · refused {stats.refused_peers}" if stats.refused_peers else "", "red"),
        (f" · errors {stats.errors}" if stats.errors else "", "red"))
    return text


async def _run_until_stopped(meter: PushMeter | PullMeter | RadioMeter, label: str, where: str,
                             clock: Clock, duration: float | None, quiet: bool) -> LinkStats:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, meter.stop)
    if duration is not None:
        loop.call_later(duration, meter.stop)
    task = asyncio.create_task(meter.run())
    if quiet:
        await task
        return meter.stats
    with Live(_status(label, where, meter.stats, clock), console=err_console,
              refresh_per_second=4, transient=False) as live:
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            live.update(_status(label, where, meter.stats, clock))
    if not err_console.is_terminal:
        err_console.print()  # Live leaves its last line open on a pipe
    await task
    return meter.stats


@meter_app.command("run")
def run(
    kind: KindOpt = MeterKind.ELECTRICITY,
    profile: ProfileOpt = "h0",
    meter_id: IdOpt = None,
    mode: Annotated[LinkMode, typer.Option(
        "--mode", help="wired: push (meter connects) or pull (meter listens)")] = LinkMode.PUSH,
    gateway: Annotated[str | None, typer.Option(
        "--gateway", help="push: the gateway's LMN endpoint HOST:PORT")] = None,
    listen: Annotated[str | None, typer.Option(
        "--listen", help="pull: where the meter listens, HOST:PORT")] = None,
    cert: Annotated[Path | None, typer.Option(
        "--cert", help="wired: meter TLS certificate (PEM, profile meter-tls)",
        exists=True, dir_okay=False)] = None,
    key: Annotated[Path | None, typer.Option(
        "--key", help="wired: its private key (PEM)", exists=True, dir_okay=False)] = None,
    ca: Annotated[Path | None, typer.Option(
        "--ca", help="wired: SM-PKI Root-CA and Sub-CA certificates (PEM)", exists=True,
        dir_okay=False)] = None,
    crl: Annotated[list[Path] | None, typer.Option(
        "--crl", help="wired: CRL file (DER or PEM), repeatable; without one revocation of the "
                      "gateway certificate is not checked", exists=True, dir_okay=False)] = None,
    udp: Annotated[str | None, typer.Option(
        "--udp", help="wireless: send telegrams as UDP datagrams to HOST:PORT")] = None,
    key_hex: KeyHexOpt = None,
    mode5: Mode5Opt = False,
    mode7: Mode7Opt = False,
    long_header: LongHeaderOpt = False,
    interval: IntervalOpt = 900,
    speed: Annotated[float, typer.Option(
        "--speed", min=0.001, help="simulated seconds per real second")] = 1.0,
    start: StartOpt = None,
    seed: SeedOpt = 0,
    annual_kwh: AnnualKwhOpt = None,
    annual_m3: AnnualM3Opt = None,
    duration: Annotated[float | None, typer.Option(
        "--duration", min=0, help="stop after this many real seconds (default: until Ctrl-C)")]
    = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no status line")] = False,
    clock_file: Annotated[Path | None, typer.Option(
        "--clock", help="a shared simulated clock file (imsys demo moves it; excludes --speed "
                        "and --start)", exists=True, dir_okay=False)] = None,
) -> None:
    """Run one meter on the LMN until Ctrl-C."""
    clock: Clock
    if clock_file is not None:
        if speed != 1.0 or start is not None:
            raise typer.BadParameter("--clock excludes --speed and --start")
        clock = SharedClock(clock_file)
    else:
        clock = ScaledClock(speed, parse_start(start) if start else None)
    every = timedelta(seconds=interval)
    try:
        sim = build_simulator(kind, profile, meter_id, clock, seed=seed, annual_kwh=annual_kwh,
                              annual_m3=annual_m3)
        label = f"{sim.meter_id} ({kind.value})"
        meter: PushMeter | PullMeter | RadioMeter
        if udp is not None:
            if gateway or listen:
                raise typer.BadParameter("--udp (wireless) excludes --gateway/--listen")
            secret, sec_mode = security(key_hex, mode5, mode7)
            encoder = WmbusEncoder(sim.meter_id, kind, key=secret, mode=sec_mode,
                                   long_header=long_header, timezone=sim.settings.timezone)
            target = parse_endpoint(udp)
            meter = RadioMeter(sim, encoder, target, interval=every, clock=clock)
            where = f"wM-Bus mode {int(sec_mode)} → udp {udp}"
        else:
            if cert is None or key is None or ca is None:
                raise typer.BadParameter("a wired meter needs --cert, --key and --ca "
                                         "(or use --udp for a wireless one)")
            tls = LmnTlsConfig.from_files(cert, key, ca, crl or ())
            if mode is LinkMode.PUSH:
                if gateway is None or listen is not None:
                    raise typer.BadParameter("push mode needs --gateway HOST:PORT (no --listen)")
                meter = PushMeter(sim, parse_endpoint(gateway), tls, interval=every, clock=clock)
                where = f"SML push → {gateway}"
            else:
                if listen is None or gateway is not None:
                    raise typer.BadParameter("pull mode needs --listen HOST:PORT (no --gateway)")
                responder = SmlResponder(sim, reg_period=interval)
                meter = PullMeter(responder, parse_endpoint(listen), tls, clock=clock)
                where = f"SML pull ← {listen}"
    except Rejected as exc:
        raise _fail(f"rejected ({exc.reason}): {exc.message}", EXIT_REJECTED) from exc
    except (ImsysError, OSError, ValueError) as exc:
        if isinstance(exc, typer.BadParameter):
            raise
        raise _fail(str(exc)) from exc
    log.info("meter %s: %s, speed %s", sim.meter_id, where, speed)
    try:
        stats = asyncio.run(_run_until_stopped(meter, label, where, clock, duration, quiet))
    except OSError as exc:  # e.g. the listen address is in use
        raise _fail(str(exc)) from exc
    console.print(f"stopped: {stats.frames_sent} payloads sent, {stats.requests_answered} "
                  f"requests answered, {stats.connects} connections, {stats.refused_peers} "
                  f"peers refused, {stats.errors} errors")


# --------------------------------------------------------------------------- record


def _write_atomically(path: Path, chunks: list[bytes]) -> int:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as fh:
            for c in chunks:
                fh.write(c)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path.stat().st_size


@meter_app.command("record")
def record(
    count: Annotated[int, typer.Option("--count", min=1, help="number of payloads")],
    out: Annotated[Path, typer.Option("--out", help="output file", dir_okay=False)],
    kind: KindOpt = MeterKind.ELECTRICITY,
    profile: ProfileOpt = "h0",
    meter_id: IdOpt = None,
    start: StartOpt = None,
    interval: IntervalOpt = 900,
    seed: SeedOpt = 0,
    annual_kwh: AnnualKwhOpt = None,
    annual_m3: AnnualM3Opt = None,
    key_hex: KeyHexOpt = None,
    mode5: Mode5Opt = False,
    mode7: Mode7Opt = False,
    long_header: LongHeaderOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Write a meter's first COUNT payloads (SML frames or wM-Bus telegrams) without a network.

    Payload k is the snapshot at START + k·INTERVAL (the meter is commissioned at START).
    """
    began = time.perf_counter()
    try:
        clock = SimulatedClock(parse_start(start))
        sim = build_simulator(kind, profile, meter_id, clock, seed=seed, annual_kwh=annual_kwh,
                              annual_m3=annual_m3)
        wireless = kind in WIRELESS_KINDS
        encode: Callable[[Any], bytes]
        if wireless:
            secret, sec_mode = security(key_hex, mode5, mode7)
            encode = WmbusEncoder(sim.meter_id, kind, key=secret, mode=sec_mode,
                                  long_header=long_header, timezone=sim.settings.timezone).encode
        else:
            if key_hex or mode5 or mode7:
                raise typer.BadParameter("--key-hex/--mode5/--mode7 are for wireless kinds")
            encode = SmlPushEncoder(sim.meter_id).frame
        step = timedelta(seconds=interval)
        payloads: list[bytes] = []
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err_console, disable=quiet,
                      transient=False) as progress:
            task = progress.add_task(f"{sim.meter_id} {'wM-Bus' if wireless else 'SML'}",
                                     total=count)
            for k in range(count):
                if k:
                    clock.advance(step)
                payloads.append(encode(sim.sample()))
                if k % 512 == 511:
                    progress.update(task, completed=k + 1)
            progress.update(task, completed=count)
        size = _write_atomically(out, [write_capture(payloads)] if wireless else payloads)
    except Rejected as exc:
        raise _fail(f"rejected ({exc.reason}): {exc.message}", EXIT_REJECTED) from exc
    except (ImsysError, OSError) as exc:
        raise _fail(str(exc)) from exc
    what = "wM-Bus telegrams (binary capture)" if wireless else "SML frames"
    console.print(f"wrote {count} {what}, {size} bytes, to {out} in "
                  f"{time.perf_counter() - began:.1f} s (last at {clock.now().isoformat()})")


__all__ = ["DEFAULT_IDS", "KIND_MODELS", "PROFILES", "build_simulator", "meter_app"]
