"""Seed 003 table 2 (Datenübertragung), the steps the gateway performs, one test each.

The gateway process evaluates its TAF profiles over the values its measurement stored and
queues sealed deliveries (steps 1.4–3.2.3); the EMT side opens them with its ENC key exactly as
``imsys emt serve`` does (:func:`imsys.wire.delivery.open_delivery`). The network steps (2.1,
3.1.3–3.1.5) run the process against a real EMT in tests/integration/test_gateway_process.py
(``test_table2_step_…`` there).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509

from imsys.core.clock import SimulatedClock
from imsys.crypto import SoftwareKey
from imsys.gateway.delivery import DeliveryQueue
from imsys.gateway.measurement import LmnFrame, Measurement, PeerIdentity, Transport
from imsys.gateway.meter_profile import MeterProfile, MeterProtocol, tls_fingerprint
from imsys.gateway.process import CONFIG_FILE, CONFIG_FORMAT, GatewayProcess
from imsys.gateway.store import Database, Durability
from imsys.gateway.taf import BillingPeriod, EvaluationProfile, Taf
from imsys.meters.lmn_payload import SmlPushEncoder
from imsys.meters.settings import MeterSettings
from imsys.meters.simulator import MeterKind, MeterSimulator, ModelKind
from imsys.pki import PkiDirectory, pem
from imsys.pki.validation import common_name
from imsys.wire.ar2418 import parse_document, readings_of
from imsys.wire.delivery import DeliveryReason, DeliveryRejected, OpenedDelivery, open_delivery

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
GATEWAY, METER, EMT = "EIMS0000000222", "1EMH0000000222", "9900000000001"
PSEUDONYM = "PSEUDO-METER-0222"
Q = timedelta(minutes=15)
# a billing period boundary (1 November, local midnight) inside the simulated window
BOUNDARY = datetime(2026, 10, 31, 23, 0, tzinfo=UTC)
START = BOUNDARY - 2 * Q
ENERGY, POWER = "1-0:1.8.0*255", "1-0:16.7.0*255"


@dataclass
class Run:
    process: GatewayProcess
    emt_keys: dict[str, tuple[SoftwareKey, x509.Certificate]]
    pki: PkiDirectory
    stored: dict[datetime, int]  # 1.8.0 as the meter handed it over

    def opened(self) -> list[OpenedDelivery]:
        assert self.process.queue is not None and self.process.core is not None
        key, cert = self.emt_keys["enc"]
        out = []
        for item in self.process.queue.items():
            sealed = self.process.queue.sealed(item.delivery_id)
            out.append(open_delivery(sealed, key, cert, self.pki.validator()))
        return out

    def by_profile(self, profile_id: str) -> list[OpenedDelivery]:
        return [o for o in self.opened() if o.delivery.profile_id == profile_id]


def _state_dir(tmp: Path, pki: PkiDirectory, issue: Issue) -> tuple[Path, x509.Certificate]:
    state = tmp / "gw"
    keys = state / "keys"
    keys.mkdir(parents=True)
    for purpose in ("tls", "sig"):
        key, cert = issue(f"gateway-{purpose}", GATEWAY, ca="sub-ca")
        (keys / f"{purpose}.key").write_bytes(key.private_key_pem())
        (keys / f"{purpose}.pem").write_bytes(pem(cert))
    (state / "trust").mkdir()
    (state / "trust" / "root.pem").write_bytes(pem(pki.root.certificate))
    for name in ("sub-ca", "emt-ca"):
        (state / "trust" / f"{name}.pem").write_bytes(pem(pki.ca(name).certificate))
    (state / "emt").mkdir()
    for purpose in ("enc", "sig"):
        (state / "emt" / f"{purpose}.pem").write_bytes(
            pem(issue(f"emt-{purpose}", EMT, ca="emt-ca")[1]))
    _, meter_cert = issue("meter-tls", METER, ca="sub-ca")
    return state, meter_cert


def _profiles(channels: tuple[str, ...], meter_cert: x509.Certificate) -> dict[str, object]:
    meter = MeterProfile(meter_id=METER, protocol=MeterProtocol.SML_TLS_PUSH,
                         tls_fingerprint=tls_fingerprint(meter_cert), channels=channels,
                         consumer_id="consumer-222")
    common = {"meter_id": METER, "tariff_stages": (), "tariff_calendar": None,
              "recipients": (EMT,), "valid_from": START, "billing_period": None,
              "registration_period": None, "pseudonym": None}
    taf1 = EvaluationProfile(profile_id="TAF1-0222", taf=Taf.TAF1, registers=(ENERGY,),
                             **{**common, "billing_period": BillingPeriod(
                                 BOUNDARY.date().replace(month=10, day=1), 1),
                                "valid_from": datetime(2026, 9, 30, 22, 0, tzinfo=UTC)})
    taf7 = EvaluationProfile(profile_id="TAF7-0222", taf=Taf.TAF7, registers=(ENERGY,),
                             **{**common, "registration_period": Q})
    status = EvaluationProfile(profile_id="TAF7-STATUS-0222", taf=Taf.TAF7,
                               registers=(POWER,),
                               **{**common, "registration_period": Q, "pseudonym": PSEUDONYM})
    return {"meter_profiles": [meter.to_dict()],
            "evaluation_profiles": [p.to_dict() for p in (taf1, taf7, status)]}


@pytest.fixture(scope="module")
def run(pki: PkiDirectory, issue: Issue, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("table2")
    state, meter_cert = _state_dir(tmp, pki, issue)
    clock = SimulatedClock(datetime(2026, 9, 30, 22, 0, tzinfo=UTC))
    sim = MeterSimulator(METER, MeterKind.ELECTRICITY, ModelKind.HOUSEHOLD_H0,
                         MeterSettings(seed=22), clock)
    channels = tuple(r.obis for r in sim.snapshot_at(clock.now()).readings)
    (state / CONFIG_FILE).write_text(json.dumps({
        "format": CONFIG_FORMAT, "gateway_id": GATEWAY, "lmn": {"listen": "127.0.0.1:0"},
        "emt": {"id": EMT, "url": "https://127.0.0.1:9/deliveries/v1",
                "enc_certificate": "emt/enc.pem", "sig_certificate": "emt/sig.pem"},
        "trust": {"anchors": ["trust/root.pem"],
                  "intermediates": ["trust/sub-ca.pem", "trust/emt-ca.pem"]},
        **_profiles(channels, meter_cert), "delivery_interval": 900}))
    process = GatewayProcess(state, clock, durability=Durability.OFF)
    db = Database(state / "gateway.db", durability=Durability.OFF)
    process.core = Measurement(db, clock, process.config.meter_profiles)  # type: ignore[union-attr]
    process.queue = DeliveryQueue(db, clock, GATEWAY)
    encoder = SmlPushEncoder(METER)
    peer = PeerIdentity(METER, tls_fingerprint(meter_cert))
    stored: dict[datetime, int] = {}
    # the start of the billing period (1 October), then the quarter hours around 1 November
    for when in [clock.now(), *(START + i * Q for i in range(4))]:
        clock.set(when)
        snapshot = sim.snapshot_at(when)
        process.core.ingest(LmnFrame(Transport.SML, encoder.frame(snapshot), when, peer))
        stored[when] = next(r.value for r in snapshot.readings if r.obis == ENERGY)
    clock.set(START + 3 * Q + timedelta(seconds=10))
    process.evaluate_and_enqueue(clock.now())  # step 1.4
    emt_keys = {p: issue(f"emt-{p}", EMT, ca="emt-ca") for p in ("enc", "sig")}
    yield Run(process, emt_keys, pki, stored)
    db.close()


def test_table2_step_1_4_gateway_processes_the_data_to_be_transmitted(run: Run) -> None:
    (taf7,) = run.by_profile("TAF7-0222")
    series = {r.timestamp: r.value for r in readings_of(parse_document(taf7.delivery.document))}
    assert series == {t: v for t, v in run.stored.items() if t >= START}  # the TAF7 series


def test_table2_step_2_4_content_is_signed_and_encrypted_for_the_emt(run: Run) -> None:
    assert run.process.queue is not None
    for item in run.process.queue.items():
        sealed = run.process.queue.sealed(item.delivery_id)
        outer = cms.ContentInfo.load(sealed)
        assert outer["content_type"].dotted == "1.2.840.113549.1.9.16.1.23"  # authEnveloped
        assert item.meter.encode() not in sealed  # nothing readable outside the envelope
    for opened in run.opened():  # the EMT's ENC key opens it; the gateway's SIG key signed it
        assert common_name(opened.signer.leaf) == GATEWAY
        assert opened.delivery.gateway_id == GATEWAY


def test_table2_step_3_1_1_register_value_after_each_billing_period(run: Run) -> None:
    (taf1,) = run.by_profile("TAF1-0222")
    values = {r.timestamp: r.value for r in readings_of(parse_document(taf1.delivery.document))}
    assert values[BOUNDARY] == run.stored[BOUNDARY]  # the billing value at 1 November 00:00


def test_table2_step_3_1_2_status_data_go_to_the_emt(run: Run) -> None:
    (status,) = run.by_profile("TAF7-STATUS-0222")
    obis = {r.obis for r in readings_of(parse_document(status.delivery.document))}
    assert obis == {POWER}


def test_table2_step_3_2_1_billing_data_are_sent_without_pseudonym(run: Run) -> None:
    for profile in ("TAF1-0222", "TAF7-0222"):
        (opened,) = run.by_profile(profile)
        assert opened.delivery.billing_relevant and not opened.delivery.pseudonymised
        assert opened.delivery.meter == METER
        assert {r.meter_id for r in readings_of(parse_document(opened.delivery.document))} \
            == {METER}


def test_table2_step_3_2_2_non_billing_data_are_pseudonymised(run: Run) -> None:
    (status,) = run.by_profile("TAF7-STATUS-0222")
    assert status.delivery.pseudonymised and not status.delivery.billing_relevant
    assert status.delivery.meter == PSEUDONYM
    document = status.delivery.document
    assert METER.encode() not in document and b"consumer-222" not in document
    assert {r.meter_id for r in readings_of(parse_document(document))} == {PSEUDONYM}


def test_table2_step_3_2_3_pseudonymised_data_are_encrypted_for_the_recipient_and_signed(
        run: Run, issue: Issue) -> None:
    (status,) = run.by_profile("TAF7-STATUS-0222")
    assert status.signer.leaf is not None  # the gateway's signature verified
    other_key, other_cert = issue("emt-enc", "9900000000999", ca="emt-ca")
    sealed = run.process.queue.sealed(status.delivery.delivery_id)  # type: ignore[union-attr]
    with pytest.raises(DeliveryRejected) as refused:
        open_delivery(sealed, other_key, other_cert, run.pki.validator())
    assert refused.value.reason is DeliveryReason.WRONG_RECIPIENT
