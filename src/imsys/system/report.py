"""What a demo run produced, read back from the roles' own stores, and its plots.

Nothing here trusts the orchestrator's bookkeeping: readings are counted in each gateway's
evidence store, deliveries in its outbox, verified values in the EMT's database, TAF2 registers
in the AR 2418-6 documents the EMT received.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select

from imsys.core.clock import SystemClock
from imsys.core.errors import Rejected
from imsys.core.localtime import day_start, local_day
from imsys.core.reading import Reading
from imsys.emt.export import ExportFile, export_day
from imsys.emt.msb import DataScope, MeteringPointAssignment, Recipient
from imsys.emt.msb import Role as MsbRole
from imsys.emt.storage import DELIVERIES, EmtStorage
from imsys.gateway.logs import ConsumerLog, GatewayLogs, LogEntry
from imsys.gateway.process import DB_FILE, delivery_counts
from imsys.gateway.store import Database, ReadingStore
from imsys.system.demo import DemoRun
from imsys.system.provision import EMT_ID, Household, usage_point
from imsys.wire.ar2418 import parse_document, readings_of

__all__ = ["DemoSummary", "GatewaySummary", "distribute", "plot", "summarise"]

#: the market partners the MSB distributes to (seed 001 Tabelle 2, § 60 MsbG)
DSO, TSO, SUPPLIER = "9900000000101", "9900000000102", "9900000000103"


@dataclass
class GatewaySummary:
    gateway_id: str
    readings: int
    chain_verified: bool
    deliveries: dict[str, int]
    system_log: list[LogEntry]
    calibration_log: list[LogEntry]
    consumer_log: list[LogEntry]
    consumer_log_transmissions: int
    phase: str | None = None  # commissioned gateways: their commissioning phase
    commissioning_steps: int = 0  # "commissioning step done" entries in the system log


@dataclass
class DemoSummary:
    gateways: list[GatewaySummary]
    emt_counts: dict[str, int]
    energy: dict[tuple[str, str, str], float]  # (meter, role, obis) -> consumption in the window
    units: dict[str, str]
    taf2: dict[str, dict[str, float]]  # gateway -> {obis: kWh} (latest registers)
    series: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)  # TAF7 kWh
    profiles: dict[str, int] = field(default_factory=dict)  # deliveries at the EMT per profile

    @property
    def measured(self) -> int:
        return sum(g.readings for g in self.gateways)

    @property
    def delivered(self) -> int:
        return sum(g.deliveries.get("acknowledged", 0) for g in self.gateways)


def _value(row: dict[str, Any]) -> float:
    return float(row["value"]) * 10.0 ** int(row["scaler"])


def _register_series(storage: EmtStorage, meter: str, obis: str, run: DemoRun
                     ) -> list[tuple[datetime, float]]:
    rows = [r for r in storage.readings(meter=meter) if r["obis"] == obis]
    out = []
    for row in rows:
        when = row["timestamp"]
        when = when if when.tzinfo else when.replace(tzinfo=run.start.tzinfo)
        if run.start <= when <= run.end:
            out.append((when, _value(row)))
    return sorted(out)


def _per_profile(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(DELIVERIES.c.profile_id, func.count())
                                .group_by(DELIVERIES.c.profile_id))
            return {str(profile): int(n) for profile, n in rows}
    finally:
        engine.dispose()


def _taf2_registers(url: str, gateway_id: str) -> dict[str, float]:
    """The newest TAF2 registers in the documents the EMT received from ``gateway_id``."""
    latest: dict[str, Reading] = {}
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            documents = [row[0] for row in conn.execute(
                select(DELIVERIES.c.document).where(DELIVERIES.c.gateway_id == gateway_id,
                                                    DELIVERIES.c.profile_id.like("TAF2%")))]
    finally:
        engine.dispose()
    for document in documents:
        for reading in readings_of(parse_document(document)):
            known = latest.get(reading.obis)
            if known is None or reading.timestamp > known.timestamp:
                latest[reading.obis] = reading
    return {obis: r.value * 10.0 ** r.scaler for obis, r in sorted(latest.items())}


def _gateway(run: DemoRun, home: Household) -> GatewaySummary:
    db = Database(run.gateway_dir(home) / DB_FILE)
    try:
        store = ReadingStore(db)
        try:
            store.verify_chain()
            verified = True
        except Rejected:  # a broken chain is reported, not raised
            verified = False
        logs = GatewayLogs(db, SystemClock())
        consumer = ConsumerLog(db, SystemClock(), home.consumer_id)
        entries = consumer.entries()
        system = logs.system.entries()
        steps = [e for e in system if e.text.startswith("commissioning step done")]
        # the excerpt: how commissioning ended and how operation runs now
        excerpt = [*steps[-3:], *[e for e in system[-3:] if e not in steps]]
        phase_file = run.gateway_dir(home) / "commissioning.json"
        phase = (json.loads(phase_file.read_text())["phase"] if phase_file.exists()
                 else None)
        return GatewaySummary(
            home.gateway_id, store.count(), verified, delivery_counts(db), excerpt,
            logs.calibration.entries()[-5:], entries[-5:],
            sum(1 for e in entries if e.event is not None and e.event.value == 301),
            phase, len(steps))
    finally:
        db.close()


def summarise(run: DemoRun) -> DemoSummary:
    storage = EmtStorage(run.emt_db, create=False)
    try:
        energy: dict[tuple[str, str, str], float] = {}
        series: dict[str, list[tuple[datetime, float]]] = {}
        taf2: dict[str, dict[str, float]] = {}
        wanted = {"household": "1-0:1.8.0*255", "pv": "1-0:2.8.0*255", "gas": "7-0:3.0.0*255"}
        units = {"household": "kWh", "pv": "kWh", "gas": "m³"}
        for home in run.households:
            for meter in home.meters:
                obis = wanted[meter.role]
                points = _register_series(storage, meter.meter_id, obis, run)
                if meter.role == "household":
                    series[meter.meter_id] = points
                if len(points) >= 2:
                    scale = 1000.0 if meter.role != "gas" else 1.0
                    energy[(meter.meter_id, meter.role, obis)] = (
                        (points[-1][1] - points[0][1]) / scale)
            registers = _taf2_registers(run.emt_db, home.gateway_id)
            taf2[home.gateway_id] = {k: v / 1000.0 for k, v in registers.items()}
        return DemoSummary([_gateway(run, h) for h in run.households], storage.counts(), energy,
                           units, taf2, series, _per_profile(run.emt_db))
    finally:
        storage.dispose()


def assignments(run: DemoRun) -> list[MeteringPointAssignment]:
    """Each household's consumption (1.8.0) and feed-in (2.8.0) as register-series metering
    points (TAF 7) for the grid operator, the TSO and the supplier (feed-in: no supplier)."""
    points = []
    for home in run.households:
        household, pv = home.meter("household"), home.meter("pv")
        points.append(MeteringPointAssignment(
            usage_point(home), household.meter_id, "1-0:1.8.0*255", DataScope.REGISTER_SERIES,
            (Recipient(MsbRole.DSO, DSO), Recipient(MsbRole.TSO, TSO),
             Recipient(MsbRole.SUPPLIER, SUPPLIER))))
        points.append(MeteringPointAssignment(
            f"DE00IMSYSPV{home.index:022d}", pv.meter_id, "1-0:2.8.0*255",
            DataScope.REGISTER_SERIES,
            (Recipient(MsbRole.DSO, DSO), Recipient(MsbRole.TSO, TSO))))
    return points


def distribute(run: DemoRun) -> list[ExportFile]:
    """The MSB's daily distribution for every day of the window (what is due the next
    morning): MSCONS, CSV and JSON per recipient in ``OUT/exports``."""
    storage = EmtStorage(run.emt_db, create=False)
    files: list[ExportFile] = []
    try:
        day = local_day(run.start) + timedelta(days=1)
        while day_start(day) <= run.end:
            files += export_day(storage, assignments(run), day, sender_id=EMT_ID,
                                out_dir=run.out / "exports")
            day += timedelta(days=1)
    finally:
        storage.dispose()
    return files


def plot(summary: DemoSummary, out: Path) -> list[Path]:
    """PNG plots: the household's 15-minute consumption, and the TAF2 registers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for meter, points in summary.series.items():
        if len(points) < 2:
            continue
        times = [t for t, _ in points[1:]]
        kwh = [(b - a) / 1000.0 for (_, a), (_, b) in pairwise(points)]
        fig, ax = plt.subplots(figsize=(10, 3.5))
        ax.step(times, [k * 4 for k in kwh], where="pre")
        ax.set_title(f"{meter}: mean power per quarter hour (TAF 7 register series at the EMT)")
        ax.set_ylabel("kW")
        fig.autofmt_xdate()
        fig.tight_layout()
        path = out / f"{meter}-taf7.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(path)
    for gateway, registers in summary.taf2.items():
        if not registers:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        names = list(registers)
        ax.bar(names, [registers[n] for n in names])
        ax.set_title(f"{gateway}: TAF 2 registers (kWh)")
        ax.tick_params(axis="x", labelrotation=30)
        fig.tight_layout()
        path = out / f"{gateway}-taf2.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(path)
    return files


def by_kind(entries: list[LogEntry]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for entry in entries:
        counts[entry.level.name] += 1
    return dict(counts)
