"""The gateway process applies retention once a day (seed 003 §3.6): readings go only from
the oldest end, never younger than 13 months, never before every profile has delivered them,
and each deletion is in the system log while the chain stays verifiable."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from imsys.core.clock import SimulatedClock
from imsys.crypto import SoftwareKey
from imsys.gateway.delivery import DeliveryQueue
from imsys.gateway.logs import SystemEvent
from imsys.gateway.measurement import LmnFrame, Measurement, PeerIdentity, Transport
from imsys.gateway.meter_profile import MeterProfile, MeterProtocol, tls_fingerprint
from imsys.gateway.process import CONFIG_FILE, CONFIG_FORMAT, GatewayProcess
from imsys.gateway.store import Database, Durability
from imsys.gateway.taf import EvaluationProfile, Taf
from imsys.meters.lmn_payload import SmlPushEncoder
from imsys.meters.settings import MeterSettings
from imsys.meters.simulator import MeterKind, MeterSimulator, ModelKind
from imsys.pki import PkiDirectory, pem

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
GATEWAY, METER, EMT = "EIMS0000000333", "1EMH0000000333", "9900000000001"
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
OLD = [NOW - timedelta(days=d) for d in (500, 450, 380, 10)]  # 16.4, 14.8, 12.5 months, 10 d


def _process(tmp: Path, pki: PkiDirectory, issue: Issue) -> tuple[GatewayProcess, Database]:
    state = tmp / "gw"
    (state / "keys").mkdir(parents=True)
    for purpose in ("tls", "sig"):
        key, cert = issue(f"gateway-{purpose}", GATEWAY, ca="sub-ca")
        (state / "keys" / f"{purpose}.key").write_bytes(key.private_key_pem())
        (state / "keys" / f"{purpose}.pem").write_bytes(pem(cert))
    (state / "trust").mkdir()
    (state / "trust" / "root.pem").write_bytes(pem(pki.root.certificate))
    (state / "emt").mkdir()
    for purpose in ("enc", "sig"):
        (state / "emt" / f"{purpose}.pem").write_bytes(
            pem(issue(f"emt-{purpose}", EMT, ca="emt-ca")[1]))
    _, meter_cert = issue("meter-tls", METER, ca="sub-ca")
    clock = SimulatedClock(OLD[0])
    sim = MeterSimulator(METER, MeterKind.ELECTRICITY, ModelKind.HOUSEHOLD_H0,
                         MeterSettings(seed=3), clock)
    channels = tuple(r.obis for r in sim.snapshot_at(clock.now()).readings)
    meter = MeterProfile(meter_id=METER, protocol=MeterProtocol.SML_TLS_PUSH,
                         tls_fingerprint=tls_fingerprint(meter_cert), channels=channels,
                         consumer_id="consumer-333")
    taf7 = EvaluationProfile(profile_id="TAF7-0333", taf=Taf.TAF7, meter_id=METER,
                             registers=("1-0:1.8.0*255",), billing_period=None,
                             registration_period=timedelta(minutes=15), tariff_stages=(),
                             tariff_calendar=None, recipients=(EMT,), pseudonym=None,
                             valid_from=OLD[0])
    (state / CONFIG_FILE).write_text(json.dumps({
        "format": CONFIG_FORMAT, "gateway_id": GATEWAY, "lmn": {"listen": "127.0.0.1:0"},
        "emt": {"id": EMT, "url": "https://127.0.0.1:9/deliveries/v1",
                "enc_certificate": "emt/enc.pem", "sig_certificate": "emt/sig.pem"},
        "trust": {"anchors": ["trust/root.pem"], "intermediates": []},
        "meter_profiles": [meter.to_dict()], "evaluation_profiles": [taf7.to_dict()]}))
    process = GatewayProcess(state, clock, durability=Durability.OFF)
    db = Database(state / "gateway.db", durability=Durability.OFF)
    process.core = Measurement(db, clock, process.config.meter_profiles)  # type: ignore[union-attr]
    process.queue = DeliveryQueue(db, clock, GATEWAY)
    encoder, peer = SmlPushEncoder(METER), PeerIdentity(METER, tls_fingerprint(meter_cert))
    for when in OLD:
        clock.set(when)
        process.core.ingest(LmnFrame(Transport.SML, encoder.frame(sim.snapshot_at(when)), when,
                                     peer))
    clock.set(NOW)
    return process, db


def test_retention_waits_for_delivery_then_deletes_only_beyond_13_months(
        pki: PkiDirectory, issue: Issue, tmp_path: Path) -> None:
    process, db = _process(tmp_path, pki, issue)
    try:
        assert process.core is not None
        store = process.core.store
        before = store.count()
        assert process.apply_retention(NOW) is None  # nothing delivered yet: all kept
        assert store.count() == before
        process.evaluate_and_enqueue(NOW)  # everything goes into deliveries
        deletion = process.apply_retention(NOW)
        assert deletion is not None
        kept = sorted({s.reading.timestamp for s in store.iter_readings(METER)})
        assert kept == OLD[2:]  # older than 13 months: deleted; 12.5 months: kept (floor)
        assert deletion.oldest == OLD[0] and deletion.newest == OLD[1]
        store.verify_chain()  # verifiable from the anchor
        entries = process.core.logs.system.entries()
        assert entries[-1].event is SystemEvent.RETENTION_DELETION
        assert METER not in entries[-1].text  # no consumer data in the system log
        assert process.apply_retention(NOW) is None  # idempotent
    finally:
        db.close()
