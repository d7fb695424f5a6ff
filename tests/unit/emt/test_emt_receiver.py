"""The EMT receiving process: store once, acknowledge duplicates, refuse with a reason."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from imsys.core.clock import SimulatedClock
from imsys.core.reading import Reading
from imsys.crypto import SoftwareKey
from imsys.emt.receiver import EmtIdentity, Receiver, ReceiverPolicy
from imsys.emt.storage import EmtStorage, StoreResult
from imsys.pki import PkiDirectory
from imsys.wire.ar2418 import document_from_readings, encode_document, pseudonymise
from imsys.wire.delivery import Delivery, DeliveryReason, DeliveryRejected, seal_delivery
from imsys.wire.receipt import ReceiptStatus, verify_receipt

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
GATEWAY = "EABC0012345678"
METER = "1EMH0012345678"
EMT = "9900000000001"
NOW = datetime.now(UTC).replace(microsecond=0)


def document(gateway: str = GATEWAY, meter: str = METER, start: datetime = NOW) -> bytes:
    readings = [Reading(meter, "1-0:1.8.0*255", 1000 + i, -1, 30,
                        start + timedelta(minutes=15 * i)) for i in range(4)]
    return encode_document(document_from_readings(
        readings, usage_point_id="DE0001", smgw_id=gateway, tariff_name="TAF7",
        measurement_period=900))


def make_delivery(gateway: str = GATEWAY, **kw: object) -> Delivery:
    fields: dict[str, object] = dict(gateway_id=gateway, meter=METER, profile_id="taf7-1",
                                     created=NOW, billing_relevant=True,
                                     document=document(gateway))
    fields.update(kw)
    return Delivery.new(**fields)  # type: ignore[arg-type]


def seal(issue: Issue, item: Delivery, *, signer: str | None = None, emt: str = EMT,
         signing_time: datetime | None = None) -> bytes:
    key, cert = issue("gateway-sig", signer or item.gateway_id, ca="sub-ca")
    _, enc = issue("emt-enc", emt, ca="emt-ca")
    return seal_delivery(item, key, cert, enc, signing_time=signing_time)


@pytest.fixture
def identity(issue: Issue) -> EmtIdentity:
    enc_key, enc = issue("emt-enc", EMT, ca="emt-ca")
    sig_key, sig = issue("emt-sig", EMT, ca="emt-ca")
    return EmtIdentity(EMT, enc_key, enc, sig_key, sig)


@pytest.fixture
def storage(tmp_path: Path) -> EmtStorage:
    store = EmtStorage(f"sqlite:///{tmp_path / 'emt.db'}")
    yield store  # type: ignore[misc]
    store.dispose()


@pytest.fixture
def receiver(identity: EmtIdentity, storage: EmtStorage, pki: PkiDirectory) -> Receiver:
    return Receiver(identity, pki.validator(), storage, SimulatedClock(NOW))


def test_delivery_is_stored_and_receipt_verifies(receiver: Receiver, issue: Issue,
                                                 storage: EmtStorage,
                                                 identity: EmtIdentity) -> None:
    item = make_delivery()
    data = seal(issue, item)
    accepted = receiver.receive(data, tls_peer=GATEWAY)
    assert accepted.status is ReceiptStatus.STORED and accepted.readings == 4
    receipt = verify_receipt(accepted.receipt, identity.sig_certificate,
                             delivery_id=item.delivery_id,
                             digest=__import__("hashlib").sha256(data).digest())
    assert receipt.emt_id == EMT
    rows = storage.readings(gateway=GATEWAY)
    assert [r["value"] for r in rows] == [1000, 1001, 1002, 1003]
    assert storage.deliveries()[0]["meter"] == METER


def test_duplicate_is_acknowledged_again_and_stored_once(receiver: Receiver, issue: Issue,
                                                         storage: EmtStorage) -> None:
    data = seal(issue, make_delivery())
    first = receiver.receive(data, tls_peer=GATEWAY)
    second = receiver.receive(data, tls_peer=GATEWAY)
    assert (first.status, second.status) == (ReceiptStatus.STORED, ReceiptStatus.DUPLICATE)
    assert storage.counts() == {"emt_deliveries": 1, "emt_readings": 4, "emt_rejections": 0}


def test_same_id_other_content_is_a_replay(receiver: Receiver, issue: Issue,
                                           storage: EmtStorage) -> None:
    item = make_delivery()
    receiver.receive(seal(issue, item), tls_peer=GATEWAY)
    other = replace(item, document=document(start=NOW + timedelta(days=1)))
    with pytest.raises(DeliveryRejected) as info:
        receiver.receive(seal(issue, other), tls_peer=GATEWAY)
    assert info.value.reason is DeliveryReason.REPLAY
    assert storage.counts()["emt_readings"] == 4
    assert storage.rejections()[0]["reason"] == "replay"


def test_resealed_same_delivery_is_a_replay_not_a_duplicate(receiver: Receiver,
                                                            issue: Issue) -> None:
    item = make_delivery()
    receiver.receive(seal(issue, item), tls_peer=GATEWAY)
    with pytest.raises(DeliveryRejected) as info:
        receiver.receive(seal(issue, item), tls_peer=GATEWAY)  # fresh ephemeral key, new bytes
    assert info.value.reason is DeliveryReason.REPLAY


def test_signing_time_outside_window_is_refused(receiver: Receiver, issue: Issue) -> None:
    old = seal(issue, make_delivery(), signing_time=NOW - timedelta(days=60))
    future = seal(issue, make_delivery(), signing_time=NOW + timedelta(hours=1))
    for data in (old, future):
        with pytest.raises(DeliveryRejected) as info:
            receiver.receive(data, tls_peer=GATEWAY)
        assert info.value.reason is DeliveryReason.OUTSIDE_WINDOW


def test_repetition_long_after_a_lost_receipt_is_still_a_duplicate(
        identity: EmtIdentity, storage: EmtStorage, pki: PkiDirectory, issue: Issue) -> None:
    clock = SimulatedClock(NOW)
    receiver = Receiver(identity, pki.validator(), storage, clock)
    data = seal(issue, make_delivery())
    assert receiver.receive(data, tls_peer=GATEWAY).status is ReceiptStatus.STORED
    clock.advance(timedelta(days=90))  # far outside the signing-time window
    assert receiver.receive(data, tls_peer=GATEWAY).status is ReceiptStatus.DUPLICATE
    with pytest.raises(DeliveryRejected) as info:  # but not for another TLS peer
        receiver.receive(data, tls_peer="EABC0000000002")
    assert info.value.reason is DeliveryReason.TLS_PEER_MISMATCH


def test_unknown_gateway_is_refused(identity: EmtIdentity, storage: EmtStorage,
                                    pki: PkiDirectory, issue: Issue) -> None:
    receiver = Receiver(identity, pki.validator(), storage, SimulatedClock(NOW),
                        ReceiverPolicy(served_gateways=frozenset({"EABC0000000001"})))
    with pytest.raises(DeliveryRejected) as info:
        receiver.receive(seal(issue, make_delivery()), tls_peer=GATEWAY)
    assert info.value.reason is DeliveryReason.UNKNOWN_GATEWAY
    assert storage.counts()["emt_deliveries"] == 0


def test_tls_peer_must_be_the_signer(receiver: Receiver, issue: Issue) -> None:
    with pytest.raises(DeliveryRejected) as info:
        receiver.receive(seal(issue, make_delivery()), tls_peer="EABC0000000002")
    assert info.value.reason is DeliveryReason.TLS_PEER_MISMATCH


def test_tampered_and_wrong_recipient_are_refused(receiver: Receiver, issue: Issue,
                                                  storage: EmtStorage) -> None:
    data = bytearray(seal(issue, make_delivery()))
    data[-30] ^= 0x40
    with pytest.raises(DeliveryRejected) as info:
        receiver.receive(bytes(data), tls_peer=GATEWAY)
    assert info.value.reason in (DeliveryReason.TAMPERED, DeliveryReason.MALFORMED)
    with pytest.raises(DeliveryRejected) as info:
        receiver.receive(seal(issue, make_delivery(), emt="9900000000002"), tls_peer=GATEWAY)
    assert info.value.reason is DeliveryReason.WRONG_RECIPIENT
    assert next(r["reason"] for r in storage.rejections()) == "wrong-recipient"


def test_revoked_gateway_is_refused(identity: EmtIdentity, storage: EmtStorage,
                                    pki: PkiDirectory, issue: Issue) -> None:
    gateway = "EABC0000000555"
    key, cert = pki.issue_with_new_key("gateway-sig", gateway, ca="sub-ca")
    item = make_delivery(gateway)
    data = seal_delivery(item, key, cert, identity.enc_certificate)
    pki.revoke(cert.serial_number, "key_compromise")
    receiver = Receiver(identity, pki.validator, storage, SimulatedClock(NOW))
    with pytest.raises(DeliveryRejected) as info:
        receiver.receive(data, tls_peer=gateway)
    assert info.value.reason is DeliveryReason.REVOKED


def test_document_must_agree_with_metadata(receiver: Receiver, issue: Issue) -> None:
    item = make_delivery(document=document(gateway="EABC0000000009"))
    with pytest.raises(DeliveryRejected) as info:
        receiver.receive(seal(issue, item), tls_peer=GATEWAY)
    assert info.value.reason is DeliveryReason.INCONSISTENT_DOCUMENT
    broken = make_delivery(document=b"<!DOCTYPE x><x/>")
    with pytest.raises(DeliveryRejected) as info:
        receiver.receive(seal(issue, broken), tls_peer=GATEWAY)
    assert info.value.reason is DeliveryReason.INCONSISTENT_DOCUMENT


def test_pseudonymised_delivery_is_stored_under_the_pseudonym(receiver: Receiver, issue: Issue,
                                                              storage: EmtStorage) -> None:
    readings = [Reading(METER, "1-0:16.7.0*255", 230, 0, 27, NOW)]
    doc = pseudonymise(document_from_readings(readings, usage_point_id="DE0001",
                                              smgw_id=GATEWAY, tariff_name="TAF10"), "PSN-1")
    item = make_delivery(meter="PSN-1", pseudonymised=True, billing_relevant=False,
                         document=encode_document(doc))
    receiver.receive(seal(issue, item), tls_peer=GATEWAY)
    assert storage.readings(meter="PSN-1")[0]["uom"] == 38
    assert storage.readings(meter=METER) == []


def test_storage_failure_is_retryable(identity: EmtIdentity, pki: PkiDirectory,
                                      issue: Issue) -> None:
    class Broken:
        def find_by_digest(self, digest: bytes) -> None:  # pragma: no cover
            raise OSError("disk gone")

        def store(self, *a: object) -> None:
            raise OSError("disk gone")

        def record_rejection(self, *a: object) -> None:  # pragma: no cover
            raise AssertionError

    receiver = Receiver(identity, pki.validator(), Broken(), SimulatedClock(NOW))
    with pytest.raises(DeliveryRejected) as info:
        receiver.receive(seal(issue, make_delivery()), tls_peer=GATEWAY)
    assert info.value.reason is DeliveryReason.STORAGE_UNAVAILABLE


def test_concurrent_stores_of_one_delivery_store_it_once(tmp_path: Path, identity: EmtIdentity,
                                                         pki: PkiDirectory, issue: Issue) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    EmtStorage(url).dispose()
    data = seal(issue, make_delivery())
    results: list[ReceiptStatus] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        storage = EmtStorage(url, create=False)
        receiver = Receiver(identity, pki.validator(), storage, SimulatedClock(NOW))
        barrier.wait()
        try:
            results.append(receiver.receive(data, tls_peer=GATEWAY).status)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            storage.dispose()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(results).count(ReceiptStatus.STORED) == 1
    assert len(results) == 6
    assert EmtStorage(url, create=False).counts()["emt_deliveries"] == 1


def test_storage_results_directly(storage: EmtStorage) -> None:
    from imsys.emt.storage import DeliveryRow

    row = DeliveryRow(str(uuid.uuid4()), b"\x01" * 32, GATEWAY, METER, False, True, "p",
                      "text/plain", NOW, NOW, NOW, b"doc", b"sealed")
    assert storage.store(row, [])[0] is StoreResult.STORED
    assert storage.store(row, [])[0] is StoreResult.DUPLICATE
    assert storage.store(replace(row, digest=b"\x02" * 32), [])[0] is StoreResult.CONFLICT


def test_cached_signer_path_is_dropped_with_a_new_crl_snapshot(identity: EmtIdentity,
                                                               storage: EmtStorage,
                                                               pki: PkiDirectory) -> None:
    gateway = "EABC0000000556"
    key, cert = pki.issue_with_new_key("gateway-sig", gateway, ca="sub-ca")
    current = [pki.validator()]
    receiver = Receiver(identity, lambda: current[0], storage, SimulatedClock(NOW))
    first = seal_delivery(make_delivery(gateway), key, cert, identity.enc_certificate)
    second = seal_delivery(make_delivery(gateway), key, cert, identity.enc_certificate)
    assert receiver.receive(first, tls_peer=gateway).status is ReceiptStatus.STORED
    pki.revoke(cert.serial_number, "key_compromise")
    current[0] = pki.validator()  # the server's validator source re-reads the CRLs
    with pytest.raises(DeliveryRejected) as info:
        receiver.receive(second, tls_peer=gateway)
    assert info.value.reason is DeliveryReason.REVOKED
