"""Receipts: signed by the EMT SIG key, verified by the gateway against id and digest."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cryptography import x509

from imsys.crypto import SoftwareKey, cms
from imsys.pki import PkiDirectory
from imsys.wire.receipt import (
    Receipt,
    ReceiptReason,
    ReceiptRejected,
    ReceiptStatus,
    issue_receipt,
    verify_receipt,
)

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
EMT = "9900000000001"
DIGEST = hashlib.sha256(b"sealed").digest()
ID = uuid.uuid4()
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def signed(issue: Issue, **overrides: object) -> bytes:
    key, cert = issue("emt-sig", EMT, ca="emt-ca")
    fields: dict[str, object] = dict(delivery_id=ID, digest=DIGEST, received_at=NOW,
                                     status=ReceiptStatus.STORED, emt_id=EMT)
    fields.update(overrides)
    return issue_receipt(Receipt(**fields), key, cert)  # type: ignore[arg-type]


def test_receipt_verifies(issue: Issue, pki: PkiDirectory) -> None:
    _, cert = issue("emt-sig", EMT, ca="emt-ca")
    receipt = verify_receipt(signed(issue), cert, delivery_id=ID, digest=DIGEST,
                             validator=pki.validator())
    assert receipt.status is ReceiptStatus.STORED and receipt.received_at == NOW


def test_encoding_is_canonical_json() -> None:
    receipt = Receipt(ID, DIGEST, NOW, ReceiptStatus.DUPLICATE, EMT)
    assert receipt.encode().startswith(b'{"delivery_id":"')
    assert Receipt.decode(receipt.encode()) == receipt
    with pytest.raises(ReceiptRejected):
        Receipt.decode(receipt.encode().replace(b",", b", "))


@pytest.mark.parametrize("overrides, reason", [
    ({"delivery_id": uuid.uuid4()}, ReceiptReason.WRONG_DELIVERY),
    ({"digest": bytes(32)}, ReceiptReason.WRONG_DIGEST),
])
def test_receipt_for_something_else_is_refused(issue: Issue, overrides: dict[str, object],
                                               reason: ReceiptReason) -> None:
    _, cert = issue("emt-sig", EMT, ca="emt-ca")
    with pytest.raises(ReceiptRejected) as info:
        verify_receipt(signed(issue, **overrides), cert, delivery_id=ID, digest=DIGEST)
    assert info.value.reason is reason


def test_receipt_signed_by_another_emt_is_refused(issue: Issue) -> None:
    _, cert = issue("emt-sig", "9900000000002", ca="emt-ca")
    with pytest.raises(ReceiptRejected) as info:
        verify_receipt(signed(issue), cert, delivery_id=ID, digest=DIGEST)
    assert info.value.reason is ReceiptReason.WRONG_SIGNER


def test_tampered_receipt_is_refused(issue: Issue) -> None:
    _, cert = issue("emt-sig", EMT, ca="emt-ca")
    data = signed(issue).replace(b"stored", b"stoRed")
    with pytest.raises(ReceiptRejected) as info:
        verify_receipt(data, cert, delivery_id=ID, digest=DIGEST)
    assert info.value.reason is ReceiptReason.BAD_SIGNATURE


def test_signed_garbage_is_malformed(issue: Issue) -> None:
    key, cert = issue("emt-sig", EMT, ca="emt-ca")
    with pytest.raises(ReceiptRejected) as info:
        verify_receipt(cms.sign(b"{}", key, cert), cert, delivery_id=ID, digest=DIGEST)
    assert info.value.reason is ReceiptReason.MALFORMED
    with pytest.raises(ReceiptRejected) as info:
        verify_receipt(b"not cms", cert, delivery_id=ID, digest=DIGEST)
    assert info.value.reason is ReceiptReason.MALFORMED


def test_revoked_emt_certificate_is_refused(pki: PkiDirectory) -> None:
    key, cert = pki.issue_with_new_key("emt-sig", "9900000000099", ca="emt-ca")
    data = issue_receipt(Receipt(ID, DIGEST, NOW, ReceiptStatus.STORED, "9900000000099"),
                         key, cert)
    pki.revoke(cert.serial_number)
    with pytest.raises(ReceiptRejected) as info:
        verify_receipt(data, cert, delivery_id=ID, digest=DIGEST, validator=pki.validator())
    assert info.value.reason is ReceiptReason.UNTRUSTED_SIGNER
