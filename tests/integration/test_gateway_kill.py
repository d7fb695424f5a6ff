"""SIGKILL the gateway process at random moments during ingest and during delivery, 20 times:
no reading the meter handed over is lost, none is duplicated at the EMT, every hash chain of
the gateway verifies afterwards (issue #4).

The roles are real processes on 127.0.0.1 (``imsys emt serve``, ``imsys gateway run``, a pull
meter ``imsys meter run --mode pull``) on the stepped shared clock of ``imsys demo``. The meter
is read in pull mode with GetProfileList: a reading counts as handed over once the gateway has
committed it, and after every restart the gateway asks for everything after the last period it
stored – so a kill in the middle of an exchange costs a repetition, never a value.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, select

from imsys.core.clock import SharedClock
from imsys.emt.storage import DELIVERIES
from imsys.gateway.delivery import DeliveryState
from imsys.gateway.logs import GatewayLogs
from imsys.gateway.meter_profile import MeterProfile, MeterProtocol, tls_fingerprint
from imsys.gateway.process import CONFIG_FILE, DB_FILE, TICK_DONE, delivery_counts
from imsys.gateway.store import Database, ReadingStore, StateTable
from imsys.gateway.taf import EvaluationProfile, Taf
from imsys.meters.simulator import MeterKind, ModelKind
from imsys.system.demo import gateway_starts
from imsys.system.provision import (
    EMT_ID,
    MeterPlan,
    channels,
    init_pki,
    provision_emt,
    provision_meter,
    write_key_pair,
)
from imsys.system.roles import RoleProcess, free_port, imsys_command
from imsys.wire.ar2418 import parse_document, readings_of

GATEWAY = "EIMS0000000042"
METER = "1EMH0000000042"
Q = timedelta(minutes=15)
KILLS = 20
ENERGY = "1-0:1.8.0*255"


def _wait(predicate, what: str, roles: list[RoleProcess], timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        for role in roles:
            role.check()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


class Gateway:
    def __init__(self, state: Path, clock_file: Path, logs: Path) -> None:
        self.state, self.clock_file, self.logs = state, clock_file, logs
        self.role: RoleProcess | None = None
        self.starts = 0

    def start(self) -> RoleProcess:
        before = gateway_starts(self.state)
        self.starts += 1
        self.role = RoleProcess("gateway", imsys_command(
            "gateway", "run", "--state", str(self.state), "--clock", str(self.clock_file),
            "--quiet"), self.logs / f"gateway-{self.starts}.log").start()
        _wait(lambda: gateway_starts(self.state) > before, "the gateway to start", [self.role])
        return self.role

    def kill(self) -> None:
        assert self.role is not None and self.role.alive()
        os.kill(int(self.role.pid or 0), signal.SIGKILL)
        self.role.stop(10)

    def read(self, query):  # type: ignore[no-untyped-def]
        path = self.state / DB_FILE
        if not path.exists():
            return None
        db = Database(path)
        try:
            return query(db)
        finally:
            db.close()

    def stored_at(self, when: datetime) -> bool:
        latest = self.read(lambda db: ReadingStore(db).latest(METER, ENERGY))
        return latest is not None and latest.reading.timestamp >= when

    def round_done(self, when: datetime) -> bool:
        done = self.read(lambda db: StateTable(db).get_time(TICK_DONE))
        return done is not None and done >= when


def _setup(tmp: Path, start: datetime) -> tuple[Path, Path, int, int]:
    pki = init_pki(tmp / "pki", start - timedelta(days=1))
    provision_emt(pki, tmp / "emt")
    state = tmp / "gateway"
    sub = pki.ca("sub-ca").certificate
    for purpose in ("tls", "sig"):
        key, cert = pki.issue_with_new_key(f"gateway-{purpose}", GATEWAY, ca="sub-ca")
        write_key_pair(state / "keys", purpose, key, cert, (sub,))
    (state / "trust").mkdir()
    (state / "trust" / "root.pem").write_bytes((tmp / "pki" / "ca" / "root" / "cert.pem")
                                               .read_bytes())
    for name in ("sub-ca", "emt-ca"):
        (state / "trust" / f"{name}.pem").write_bytes(
            (tmp / "pki" / "ca" / name / "cert.pem").read_bytes())
    meter_port, emt_port = free_port(), free_port()
    plan = MeterPlan(METER, "household", "electricity", "h0", Q,
                     channels(METER, MeterKind.ELECTRICITY, ModelKind.HOUSEHOLD_H0))
    cert = provision_meter(pki, plan, tmp / "meter")
    assert cert is not None
    profile = MeterProfile(meter_id=METER, protocol=MeterProtocol.SML_TLS_PULL,
                           tls_fingerprint=tls_fingerprint(cert), channels=plan.channels,
                           consumer_id="consumer-42", endpoint=f"127.0.0.1:{meter_port}")
    taf7 = EvaluationProfile(profile_id="TAF7-0042", taf=Taf.TAF7, meter_id=METER,
                             registers=(ENERGY,), billing_period=None, registration_period=Q,
                             tariff_stages=(), tariff_calendar=None, recipients=(EMT_ID,),
                             pseudonym=None, valid_from=start)
    (state / "emt").mkdir()
    for purpose in ("enc", "sig"):
        (state / "emt" / f"{purpose}.pem").write_bytes((tmp / "emt" / f"{purpose}.pem")
                                                      .read_bytes())
    (state / CONFIG_FILE).write_text(json.dumps({
        "format": "imsys-gateway-config/1", "gateway_id": GATEWAY,
        "lmn": {"listen": f"127.0.0.1:{free_port()}"},
        "emt": {"id": EMT_ID, "url": f"https://127.0.0.1:{emt_port}/deliveries/v1",
                "enc_certificate": "emt/enc.pem", "sig_certificate": "emt/sig.pem"},
        "trust": {"anchors": ["trust/root.pem"],
                  "intermediates": ["trust/sub-ca.pem", "trust/emt-ca.pem"]},
        "meter_profiles": [profile.to_dict()], "evaluation_profiles": [taf7.to_dict()],
        "delivery_interval": 900}))
    return state, tmp / "meter", meter_port, emt_port


def test_sigkill_during_ingest_and_delivery_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261123)
    now = datetime.now(UTC)
    end = datetime.fromtimestamp(now.timestamp() // 900 * 900, UTC) - timedelta(hours=1)
    start = end - KILLS * Q
    state, meter_dir, meter_port, emt_port = _setup(tmp_path, start)
    clock_file = tmp_path / "clock"
    clock = SharedClock.create(clock_file, start - Q)
    logs = tmp_path / "logs"
    url = f"sqlite:///{tmp_path / 'emt.db'}"
    emt = RoleProcess("emt", imsys_command(
        "emt", "serve", "--pki", str(tmp_path / "pki"), "--id", EMT_ID, "--db", url,
        "--port", str(emt_port), "--keys", str(tmp_path / "emt")), logs / "emt.log").start()
    meter = RoleProcess("meter", imsys_command(
        "meter", "run", "--mode", "pull", "--id", METER, "--listen", f"127.0.0.1:{meter_port}",
        "--cert", str(meter_dir / "cert.pem"), "--key", str(meter_dir / "key.pem"),
        "--ca", str(meter_dir / "ca.pem"), "--clock", str(clock_file), "--quiet"),
        logs / "meter.log").start()
    gateway = Gateway(state, clock_file, logs)
    kills: Counter[str] = Counter()
    try:
        gateway.start()
        for i in range(KILLS + 1):
            when = start + i * Q
            phase = rng.choice(("ingest", "delivery")) if i < KILLS else None
            clock.set(when)
            if phase == "ingest":
                time.sleep(rng.uniform(0, 0.08))
                gateway.kill()
                kills[phase] += 1
                gateway.start()
            assert gateway.role is not None
            _wait(lambda w=when: gateway.stored_at(w), f"the value at {when}",
                  [emt, meter, gateway.role])
            clock.set(when + timedelta(seconds=10))
            if phase == "delivery":
                time.sleep(rng.uniform(0, 0.08))
                gateway.kill()
                kills[phase] += 1
                gateway.start()
            _wait(lambda w=when: gateway.round_done(w + timedelta(seconds=10)),
                  "the gateway's round", [emt, meter, gateway.role])
        final = end + timedelta(seconds=10)
        for _ in range(30):  # retries after a kill wait for their backoff on the clock
            counts = gateway.read(delivery_counts)
            if counts and counts["acknowledged"] == sum(counts.values()):
                break
            final += timedelta(minutes=1)
            clock.set(final)
            _wait(lambda f=final: gateway.round_done(f), "a retry round", [emt, gateway.role])
    finally:
        for role in (meter, gateway.role, emt):
            if role is not None:
                role.stop(10)
    assert kills["ingest"] + kills["delivery"] == KILLS and min(kills.values()) >= 5

    db = Database(state / DB_FILE)
    try:
        store = ReadingStore(db)
        store.verify_chain()
        GatewayLogs(db, clock).verify_all()
        stamps = Counter(s.reading.timestamp for s in store.iter_readings(METER, ENERGY))
        stored = {s.reading.timestamp: s.reading.value
                  for s in store.iter_readings(METER, ENERGY)}
        counts = delivery_counts(db)
    finally:
        db.close()
    boundaries = [start + i * Q for i in range(KILLS + 1)]
    assert all(stamps[b] == 1 for b in boundaries), stamps  # none lost, none twice
    assert counts[DeliveryState.ACKNOWLEDGED.value] == sum(counts.values()) > 0

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            documents = [r[0] for r in conn.execute(select(DELIVERIES.c.document))]
    finally:
        engine.dispose()
    at_emt = Counter((r.timestamp, r.value) for d in documents
                     for r in readings_of(parse_document(d)))
    assert {t for t, _ in at_emt} == set(boundaries)
    assert all(n == 1 for n in at_emt.values()), at_emt  # no value in two deliveries
    assert all(at_emt[(b, stored[b])] == 1 for b in boundaries)

