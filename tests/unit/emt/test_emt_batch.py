"""Batch requests: several sealed deliveries, one transaction, one signed batch receipt."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from imsys.core.clock import SimulatedClock
from imsys.core.reading import Reading
from imsys.crypto import SoftwareKey, cms
from imsys.emt.receiver import EmtIdentity, Receiver
from imsys.emt.storage import EmtStorage
from imsys.pki import PkiDirectory
from imsys.wire.ar2418 import document_from_readings, encode_document
from imsys.wire.delivery import (
    MAX_BATCH_ITEMS,
    Delivery,
    DeliveryReason,
    DeliveryRejected,
    decode_batch,
    encode_batch,
    seal_delivery,
)
from imsys.wire.receipt import (
    BatchItem,
    ReceiptReason,
    ReceiptRejected,
    ReceiptStatus,
    issue_batch_receipt,
    verify_batch_receipt,
)

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
EMT = "9900000000001"
GATEWAY = "EABC0066000001"
NOW = datetime.now(UTC).replace(microsecond=0)


def sealed(issue: Issue, enc: x509.Certificate, n: int, gateway: str = GATEWAY) -> bytes:
    meter = f"1EMH00660000{n:02d}"
    values = [Reading(meter, "1-0:1.8.0*255", 500 + i, -1, 30, NOW - timedelta(minutes=15 * i))
              for i in range(3)]
    document = encode_document(document_from_readings(
        values, usage_point_id="DE0066", smgw_id=gateway, tariff_name="TAF7",
        measurement_period=900))
    item = Delivery.new(gateway_id=gateway, meter=meter, profile_id="taf7-1", created=NOW,
                        billing_relevant=True, document=document)
    key, cert = issue("gateway-sig", gateway, ca="sub-ca")
    return seal_delivery(item, key, cert, enc)


@pytest.fixture
def setup(tmp_path: Path, pki: PkiDirectory, issue: Issue
          ) -> tuple[Receiver, EmtStorage, EmtIdentity]:
    enc_key, enc = issue("emt-enc", EMT, ca="emt-ca")
    sig_key, sig = issue("emt-sig", EMT, ca="emt-ca")
    identity = EmtIdentity(EMT, enc_key, enc, sig_key, sig)
    storage = EmtStorage(f"sqlite:///{tmp_path / 'emt.db'}")
    yield Receiver(identity, pki.validator(), storage, SimulatedClock(NOW)), storage, identity  # type: ignore[misc]
    storage.dispose()


def test_batch_stores_each_once_and_lists_every_item(
        setup: tuple[Receiver, EmtStorage, EmtIdentity], issue: Issue,
        caplog: pytest.LogCaptureFixture) -> None:
    receiver, storage, identity = setup
    first, second = (sealed(issue, identity.enc_certificate, n) for n in (1, 2))
    assert receiver.receive(first, tls_peer=GATEWAY).status is ReceiptStatus.STORED
    tampered = bytearray(sealed(issue, identity.enc_certificate, 3))
    tampered[-40] ^= 1
    other_gateway = sealed(issue, identity.enc_certificate, 4, gateway="EABC0066000002")
    bodies = [first, second, bytes(tampered), second, other_gateway]
    with caplog.at_level(logging.WARNING, logger="imsys.emt.receiver"):
        answer = receiver.receive_batch(bodies, tls_peer=GATEWAY)
    digests = [hashlib.sha256(b).digest() for b in bodies]
    items = verify_batch_receipt(answer.receipt, identity.sig_certificate, digests=digests)
    assert items == list(answer.items)
    assert [i.receipt.status if i.receipt else i.refused for i in items] == [
        ReceiptStatus.DUPLICATE, ReceiptStatus.STORED, "refused", ReceiptStatus.DUPLICATE,
        "refused"]
    assert items[1].receipt is not None and items[3].receipt is not None
    assert items[1].receipt.delivery_id == items[3].receipt.delivery_id
    assert storage.counts() == {"emt_deliveries": 2, "emt_readings": 6, "emt_rejections": 2}
    reasons = {r["reason"] for r in storage.rejections()}
    assert reasons == {DeliveryReason.TAMPERED.value, DeliveryReason.TLS_PEER_MISMATCH.value}
    assert "tampered" in caplog.text and "tls-peer-mismatch" in caplog.text


def test_batch_receipt_must_match_what_was_sent(
        setup: tuple[Receiver, EmtStorage, EmtIdentity], issue: Issue) -> None:
    receiver, _, identity = setup
    bodies = [sealed(issue, identity.enc_certificate, n) for n in (5, 6)]
    answer = receiver.receive_batch(bodies, tls_peer=GATEWAY)
    digests = [hashlib.sha256(b).digest() for b in bodies]
    with pytest.raises(ReceiptRejected) as info:
        verify_batch_receipt(answer.receipt, identity.sig_certificate, digests=digests[::-1])
    assert info.value.reason is ReceiptReason.WRONG_DIGEST
    with pytest.raises(ReceiptRejected) as info:
        verify_batch_receipt(answer.receipt, identity.sig_certificate, digests=digests[:1])
    assert info.value.reason is ReceiptReason.WRONG_DIGEST
    with pytest.raises(ReceiptRejected) as info:  # another certificate than the EMT's SIG
        verify_batch_receipt(answer.receipt, identity.enc_certificate, digests=digests)
    assert info.value.reason in (ReceiptReason.WRONG_SIGNER, ReceiptReason.BAD_SIGNATURE)
    # the content is not canonical: refused even with a valid signature
    content = json.loads(cms.verify(answer.receipt).content)
    loose = json.dumps(content, indent=1).encode()
    resigned = cms.sign(loose, identity.sig_key, identity.sig_certificate, signing_time=NOW)
    with pytest.raises(ReceiptRejected) as info:
        verify_batch_receipt(resigned, identity.sig_certificate, digests=digests)
    assert info.value.reason is ReceiptReason.MALFORMED


def test_single_receipts_are_not_batch_receipts(
        setup: tuple[Receiver, EmtStorage, EmtIdentity], issue: Issue) -> None:
    receiver, _, identity = setup
    body = sealed(issue, identity.enc_certificate, 7)
    single = receiver.receive(body, tls_peer=GATEWAY).receipt
    with pytest.raises(ReceiptRejected) as info:
        verify_batch_receipt(single, identity.sig_certificate,
                             digests=[hashlib.sha256(body).digest()])
    assert info.value.reason is ReceiptReason.MALFORMED


def test_storage_failure_refuses_the_batch_retryably(
        setup: tuple[Receiver, EmtStorage, EmtIdentity], issue: Issue, pki: PkiDirectory) -> None:
    _, _, identity = setup

    class Broken:
        def store_many(self, items: object) -> list[BaseException]:
            return [OSError("disk gone")] * len(items)  # type: ignore[arg-type]

        def record_rejection(self, *a: object) -> None:  # pragma: no cover
            raise AssertionError("storage failures are not recorded as rejections")

    receiver = Receiver(identity, pki.validator(), Broken(),  # type: ignore[arg-type]
                        SimulatedClock(NOW))
    bodies = [sealed(issue, identity.enc_certificate, n) for n in (8, 9)]
    answer = receiver.receive_batch(bodies, tls_peer=GATEWAY)
    assert [i.refused for i in answer.items] == ["unavailable", "unavailable"]


def test_batch_encoding_bounds() -> None:
    items = [b"a", b"bc", b""]
    assert decode_batch(encode_batch(items)) == items
    with pytest.raises(DeliveryRejected) as info:
        decode_batch(encode_batch(items) + b"\x00")
    assert info.value.reason is DeliveryReason.MALFORMED
    with pytest.raises(DeliveryRejected) as info:
        decode_batch(encode_batch([b"x"] * 3), max_items=2)
    assert info.value.reason is DeliveryReason.MALFORMED
    with pytest.raises(DeliveryRejected) as info:
        decode_batch(encode_batch([b"x" * 100]), max_size=50)
    assert info.value.reason is DeliveryReason.TOO_LARGE
    with pytest.raises(DeliveryRejected):
        decode_batch(b"\x30\x00")  # empty
    with pytest.raises(DeliveryRejected):
        decode_batch(b"not der")
    with pytest.raises(Exception, match="1 to"):
        encode_batch([b"x"] * (MAX_BATCH_ITEMS + 1))


def test_batch_item_consistency(issue: Issue) -> None:
    sig_key, sig = issue("emt-sig", EMT, ca="emt-ca")
    with pytest.raises(Exception, match="either"):
        BatchItem(b"\x00" * 32)
    refused = BatchItem(b"\x01" * 32, refused="refused")
    signed = issue_batch_receipt(EMT, [refused], sig_key, sig, signing_time=NOW)
    assert verify_batch_receipt(signed, sig, digests=[b"\x01" * 32]) == [refused]
