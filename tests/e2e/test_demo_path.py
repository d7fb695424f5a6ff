"""The demo's path, short: SM-PKI, EMT, one gateway and its three meters as separate processes
on the stepped shared clock, two simulated hours; then the end-to-end facts of issue #7, each
read from the role that owns it (meter logs, the gateway's evidence store and logs, the
documents the EMT received)."""

from __future__ import annotations

import re
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "gateway"))
from commissioning_helpers import GATEWAY_2_3_3, MODULE_2_3_3, listing
from sqlalchemy import create_engine, select

from imsys.core.clock import SystemClock
from imsys.emt.storage import DELIVERIES
from imsys.gateway.commissioning import Phase
from imsys.gateway.device import GatewayDevice
from imsys.gateway.logs import ConsumerEvent, ConsumerLog
from imsys.gateway.process import DB_FILE
from imsys.gateway.store import Database, ReadingStore
from imsys.system.demo import DemoOptions, DemoRun, run_demo
from imsys.system.provision import ENERGY, GAS_VOLUME
from imsys.system.report import summarise
from imsys.wire.ar2418 import parse_document, readings_of

pytestmark = pytest.mark.e2e
TOTAL, HT, NT, ERROR = (f"1-0:1.8.{e}*255" for e in (0, 1, 2, 63))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    return run_demo(DemoOptions(households=1, hours=2,
                                out=tmp_path_factory.mktemp("demo") / "out"))


def _emt_documents(run: DemoRun) -> list[tuple[str, str, bytes]]:
    engine = create_engine(run.emt_db)
    try:
        with engine.connect() as conn:
            return [(r[0], r[1], r[2]) for r in conn.execute(
                select(DELIVERIES.c.delivery_id, DELIVERIES.c.profile_id,
                       DELIVERIES.c.document))]
    finally:
        engine.dispose()


def _boundaries(run: DemoRun, every: timedelta) -> list[datetime]:
    out, t = [], run.start
    while t <= run.end:
        out.append(t)
        t += every
    return out


def test_every_reading_a_meter_produced_arrives_at_the_emt_exactly_once(run: DemoRun) -> None:
    (home,) = run.households
    db = Database(run.gateway_dir(home) / DB_FILE)
    try:
        store = ReadingStore(db)
        store.verify_chain()
        documents = _emt_documents(run)
        at_emt: Counter[tuple[str, str, datetime]] = Counter()
        values: dict[tuple[str, str, datetime], int] = {}
        for _, profile_id, document in documents:
            if profile_id.startswith("TAF7"):
                for r in readings_of(parse_document(document)):
                    at_emt[(r.meter_id, r.obis, r.timestamp)] += 1
                    values[(r.meter_id, r.obis, r.timestamp)] = r.value
        for meter in home.meters:
            sent = re.search(r"stopped: (\d+) payloads sent",
                             (run.out / "logs" / f"meter-{meter.meter_id}.log").read_text())
            assert sent is not None
            registers = {"household": ENERGY, "pv": ("1-0:2.8.0*255",),
                         "gas": (GAS_VOLUME,)}[meter.role]
            for obis in registers:
                stored = {s.reading.timestamp: s.reading.value
                          for s in store.iter_readings(meter.meter_id, obis)}
                # everything the meter handed over is in the evidence store, once
                assert len(stored) == int(sent.group(1)), (meter.meter_id, obis)
                for when in _boundaries(run, meter.interval):
                    key = (meter.meter_id, obis, when)
                    assert at_emt[key] == 1, key  # arrived, and only once
                    assert values[key] == stored[when], key  # TAF7 at the EMT = meter register
    finally:
        db.close()


def test_taf2_registers_and_the_error_register_add_up_to_the_total(run: DemoRun) -> None:
    (home,) = run.households
    newest: dict[str, tuple[datetime, int, int]] = {}
    for _, profile_id, document in _emt_documents(run):
        if profile_id.startswith("TAF2"):
            for r in readings_of(parse_document(document)):
                if r.obis not in newest or r.timestamp > newest[r.obis][0]:
                    newest[r.obis] = (r.timestamp, r.value, r.scaler)
    assert {TOTAL, HT, NT, ERROR} <= set(newest)
    assert len({scaler for _, _, scaler in newest.values()}) == 1
    assert newest[HT][1] + newest[NT][1] + newest[ERROR][1] == newest[TOTAL][1]
    # and the total is the household's consumption since the profile became valid
    summary = summarise(run)
    consumption = summary.energy[(home.meter("household").meter_id, "household", TOTAL)]
    _, total, scaler = newest[TOTAL]
    assert total * 10.0 ** scaler == pytest.approx(consumption * 1000, abs=1e-6)


def test_each_consumer_log_lists_every_delivery_of_that_consumers_data(run: DemoRun) -> None:
    (home,) = run.households
    delivered = {d for d, _, _ in _emt_documents(run)}
    assert delivered
    db = Database(run.gateway_dir(home) / DB_FILE)
    try:
        log = ConsumerLog(db, SystemClock(), home.consumer_id)
        texts = [e.text for e in log.entries() if e.event is ConsumerEvent.DATA_TRANSMISSION]
        log.verify()
    finally:
        db.close()
    listed = {m.group(1) for t in texts for m in [re.search(r"Datensatz\[([0-9a-f-]{36})\]", t)]
              if m}
    assert delivered <= listed


#: every commissioning step of seed 003 §2.3, in this order, each done by the role the seed names
COMMISSIONING = [
    ("import-root-certificate", "integrator-direct"), ("generate-pre-keys", "integrator-direct"),
    ("create-pre-certificate-requests", "integrator-direct"),
    ("import-pre-certificates", "integrator-direct"),
    ("complete-pre-personalisation-1", "integrator-direct"),
    ("pair-security-module", "integrator"), ("generate-storage-key", "integrator"),
    ("complete-integration", "integrator"), ("load-initial-configuration", "integrator"),
    ("complete-pre-personalisation-2", "integrator"), ("set-wan-parameters", "installer"),
    ("complete-installation", "installer"), ("request-admin-challenge", "administrator"),
    ("authenticate-administrator", "administrator"),
    ("generate-operational-keys", "administrator"),
    ("create-operational-certificate-requests", "administrator"),
    ("import-operational-certificates", "administrator"),
    ("complete-personalisation", "administrator"), ("synchronise-time", "administrator"),
    ("run-self-test", "administrator"),
]


def test_every_gateway_went_through_all_commissioning_phases(run: DemoRun) -> None:
    for home in run.households:
        with GatewayDevice(run.gateway_dir(home), SystemClock()) as device:
            assert device.commissioning.phase is Phase.OPERATION
            assert device.commissioning.key_material() == GATEWAY_2_3_3  # the seed's oracle
            assert listing(device.secmod) == MODULE_2_3_3
            assert not device.commissioning.local_interface_enabled
            texts = [e.text for e in device.logs.system.entries()]
        done = [(m.group(1), m.group(2)) for t in texts
                for m in [re.match(r"commissioning step done \(step=([a-z0-9-]+), "
                                   r"role=([a-z-]+)", t)] if m and m.group(1) != "local-login"
                and m.group(1) != "update-gwa-address"]
        assert done == COMMISSIONING
        assert any(t.startswith("operation started") for t in texts)


def test_the_demo_summary_reads_back_what_happened(run: DemoRun) -> None:
    summary = summarise(run)
    (gateway,) = summary.gateways
    assert gateway.chain_verified
    assert gateway.deliveries["acknowledged"] == summary.emt_counts["emt_deliveries"] > 0
    assert sum(v for k, v in gateway.deliveries.items() if k != "acknowledged") == 0
    assert summary.emt_counts["emt_rejections"] == 0


@pytest.mark.filterwarnings("ignore::UserWarning:pydifact")
def test_msb_distributes_each_recipient_only_its_metering_points(run: DemoRun,
                                                                 tmp_path: Path) -> None:
    from pydifact.segmentcollection import Interchange

    from imsys.core.localtime import local_day
    from imsys.emt.export import export_day
    from imsys.emt.storage import EmtStorage
    from imsys.system.report import DSO, SUPPLIER, assignments

    (home,) = run.households
    storage = EmtStorage(run.emt_db, create=False)
    try:  # the morning after the window's day: its register series
        files = export_day(storage, assignments(run), local_day(run.end) + timedelta(days=1),
                           sender_id="9900000000001", out_dir=tmp_path)
    finally:
        storage.dispose()
    mscons = {f.recipient_id: f.path for f in files if f.format == "mscons"}
    points = {}
    for recipient in (DSO, SUPPLIER):
        interchange = Interchange.from_str(mscons[recipient].read_text())
        points[recipient] = {s.elements[1] for s in interchange.segments if s.tag == "LOC"}
        quantities = [s for s in interchange.segments if s.tag == "QTY"]
        assert quantities  # the values of the window
    household = next(a.metering_point_id for a in assignments(run)
                     if a.meter_id == home.meter("household").meter_id)
    assert points[SUPPLIER] == {household}  # the supplier sees no feed-in point
    assert household in points[DSO] and len(points[DSO]) == 2
