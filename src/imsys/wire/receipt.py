"""The EMT's receipt for a delivery (imsys delivery profile v1, docs/delivery.md).

A receipt is a small canonical JSON object, CMS-signed (SignedData, content attached,
signingTime = ``received_at``) by the EMT's SIG key::

    {"v":1,"delivery_id":"<uuid>","digest":"<sha-256 of the sealed bytes, hex>",
     "received_at":"2025-01-01T00:00:00Z","status":"stored"|"duplicate","emt_id":"<id>"}

(keys sorted, no spaces, UTF-8). The gateway accepts it only if the signature verifies against
the EMT's SIG certificate from its communication profile (validated as ``emt-sig`` when a
validator is given) and the delivery id and digest are the ones it sent; anything else is a
:class:`ReceiptRejected` and the gateway keeps the delivery.

A *batch receipt* (:func:`issue_batch_receipt`, :func:`verify_batch_receipt`) answers one
``POST /deliveries/v1/batch`` (several sealed deliveries in one request, used by relays and
bulk senders): one signature over the list of per-delivery entries, in request order.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from cryptography import x509

from imsys.core.errors import CertificateRejected, CmsRejected, KeyRejected, Rejected, UsageError
from imsys.crypto import cms
from imsys.crypto.primitives import KeyHandle
from imsys.pki.validation import PathValidator

__all__ = [
    "BATCH_KIND",
    "MAX_BATCH_RECEIPT",
    "MAX_RECEIPT",
    "BatchItem",
    "Receipt",
    "ReceiptReason",
    "ReceiptRejected",
    "ReceiptStatus",
    "issue_batch_receipt",
    "issue_receipt",
    "verify_batch_receipt",
    "verify_receipt",
]

#: Receipts longer than this are refused unread.
MAX_RECEIPT = 64 * 1024
#: Batch receipts longer than this are refused unread (about 200 bytes per delivery).
MAX_BATCH_RECEIPT = 2 * 1024 * 1024
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_KEYS = {"v", "delivery_id", "digest", "received_at", "status", "emt_id"}


class ReceiptStatus(StrEnum):
    STORED = "stored"  # first arrival, stored now
    DUPLICATE = "duplicate"  # the same bytes arrived before and are stored


class ReceiptReason(StrEnum):
    """Why the gateway refused a receipt (and keeps the delivery)."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad-signature"
    WRONG_SIGNER = "wrong-signer"  # not signed by the EMT's SIG certificate
    UNTRUSTED_SIGNER = "untrusted-signer"  # the EMT's SIG certificate does not validate
    WRONG_DELIVERY = "wrong-delivery"  # another delivery id
    WRONG_DIGEST = "wrong-digest"  # acknowledges other bytes than those sent


class ReceiptRejected(Rejected):
    """A receipt was refused. ``reason`` is a :class:`ReceiptReason`."""

    reason: ReceiptReason  # type: ignore[assignment]

    def __init__(self, reason: ReceiptReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


def _time(when: datetime) -> str:
    return when.astimezone(UTC).replace(microsecond=0).isoformat().removesuffix("+00:00") + "Z"


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the EMT confirms: these bytes of this delivery are stored."""

    delivery_id: uuid.UUID
    digest: bytes
    received_at: datetime
    status: ReceiptStatus
    emt_id: str

    def __post_init__(self) -> None:
        if len(self.digest) != 32:
            raise UsageError("the digest is a SHA-256 (32 bytes)")
        if self.received_at.tzinfo is None:
            raise UsageError("received_at must be timezone-aware")
        object.__setattr__(self, "received_at",
                           self.received_at.astimezone(UTC).replace(microsecond=0))
        object.__setattr__(self, "status", ReceiptStatus(self.status))

    def encode(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace, UTF-8)."""
        return json.dumps({
            "v": 1, "delivery_id": str(self.delivery_id), "digest": self.digest.hex(),
            "received_at": _time(self.received_at), "status": self.status.value,
            "emt_id": self.emt_id,
        }, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Receipt:
        try:
            obj = json.loads(data.decode("utf-8"))
            if not isinstance(obj, dict) or set(obj) != _KEYS or obj["v"] != 1:
                raise ValueError("not a v1 receipt")
            if not isinstance(obj["received_at"], str) or not _TIME.match(obj["received_at"]):
                raise ValueError("received_at is not YYYY-MM-DDThh:mm:ssZ")
            receipt = cls(uuid.UUID(obj["delivery_id"]), bytes.fromhex(obj["digest"]),
                          datetime.fromisoformat(obj["received_at"]),
                          ReceiptStatus(obj["status"]), str(obj["emt_id"]))
        except (ValueError, TypeError, KeyError, UsageError, AttributeError) as exc:
            raise ReceiptRejected(ReceiptReason.MALFORMED, f"not a receipt: {exc}") from None
        if receipt.encode() != data:
            raise ReceiptRejected(ReceiptReason.MALFORMED, "receipt is not canonical JSON")
        return receipt


def issue_receipt(receipt: Receipt, emt_sig_key: KeyHandle,
                  emt_sig_certificate: x509.Certificate) -> bytes:
    """The signed receipt (DER ``ContentInfo(SignedData)``)."""
    return cms.sign(receipt.encode(), emt_sig_key, emt_sig_certificate,
                    signing_time=receipt.received_at)


def verify_receipt(data: bytes, emt_sig_certificate: x509.Certificate, *,
                   delivery_id: uuid.UUID, digest: bytes,
                   validator: PathValidator | None = None) -> Receipt:
    """Check a receipt for the delivery ``delivery_id`` whose sealed bytes hash to ``digest``.

    The signer must be ``emt_sig_certificate`` (the EMT's SIG certificate from the gateway's
    communication profile); with ``validator`` that certificate is also validated as
    ``emt-sig`` (CRL-aware).
    """
    try:
        verified = cms.verify(data, signer_certificate=emt_sig_certificate, max_size=MAX_RECEIPT)
    except (CmsRejected, KeyRejected) as exc:
        reason = {"bad-signature": ReceiptReason.BAD_SIGNATURE,
                  "tampered": ReceiptReason.BAD_SIGNATURE,
                  "signer-mismatch": ReceiptReason.WRONG_SIGNER}.get(exc.reason.value,
                                                                      ReceiptReason.MALFORMED)
        raise ReceiptRejected(reason, f"receipt signature refused: {exc.message}",
                              delivery=str(delivery_id)) from exc
    if validator is not None:
        try:
            validator.validate(emt_sig_certificate, profile="emt-sig")
        except CertificateRejected as exc:
            raise ReceiptRejected(ReceiptReason.UNTRUSTED_SIGNER,
                                  f"EMT SIG certificate refused: {exc.message}",
                                  cause=exc.reason.value) from exc
    receipt = Receipt.decode(verified.content)
    if receipt.delivery_id != delivery_id:
        raise ReceiptRejected(ReceiptReason.WRONG_DELIVERY, "receipt for another delivery",
                              delivery=str(delivery_id), acknowledged=str(receipt.delivery_id))
    if receipt.digest != digest:
        raise ReceiptRejected(ReceiptReason.WRONG_DIGEST, "receipt for other bytes",
                              delivery=str(delivery_id))
    return receipt


# --------------------------------------------------------------------------- batch receipts

#: The ``kind`` of a batch receipt (a single receipt has no ``kind``).
BATCH_KIND = "batch"
_BATCH_KEYS = {"v", "kind", "emt_id", "items"}
_ITEM_KEYS = {"delivery_id", "digest", "received_at", "status"}
_REFUSED_KEYS = {"digest", "refused"}
_REFUSAL_CODE = re.compile(r"^[a-z][a-z-]{0,31}$")


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One delivery of a batch: its digest and either a :class:`Receipt` or the opaque code
    (:class:`imsys.wire.delivery.PeerCode` value) it was refused with."""

    digest: bytes
    receipt: Receipt | None = None
    refused: str | None = None

    def __post_init__(self) -> None:
        if len(self.digest) != 32:
            raise UsageError("the digest is a SHA-256 (32 bytes)")
        if (self.receipt is None) == (self.refused is None):
            raise UsageError("a batch item is either acknowledged or refused")
        if self.receipt is not None and self.receipt.digest != self.digest:
            raise UsageError("the receipt is for other bytes")
        if self.refused is not None and not _REFUSAL_CODE.match(self.refused):
            raise UsageError(f"not a refusal code: {self.refused!r}")


def _encode_batch(emt_id: str, items: Sequence[BatchItem]) -> bytes:
    listed: list[dict[str, str]] = []
    for item in items:
        if item.receipt is not None:
            listed.append({"delivery_id": str(item.receipt.delivery_id),
                           "digest": item.digest.hex(),
                           "received_at": _time(item.receipt.received_at),
                           "status": item.receipt.status.value})
        else:
            listed.append({"digest": item.digest.hex(), "refused": cast(str, item.refused)})
    return json.dumps({"v": 1, "kind": BATCH_KIND, "emt_id": emt_id, "items": listed},
                      sort_keys=True, separators=(",", ":")).encode()


def _decode_batch(data: bytes) -> tuple[str, list[BatchItem]]:
    try:
        obj = json.loads(data.decode("utf-8"))
        if (not isinstance(obj, dict) or set(obj) != _BATCH_KEYS or obj["v"] != 1
                or obj["kind"] != BATCH_KIND or not isinstance(obj["items"], list)
                or not isinstance(obj["emt_id"], str)):
            raise ValueError("not a v1 batch receipt")
        emt_id = obj["emt_id"]
        items = []
        for entry in obj["items"]:
            if not isinstance(entry, dict):
                raise ValueError("an item is not an object")
            digest = bytes.fromhex(entry["digest"])
            if set(entry) == _REFUSED_KEYS:
                items.append(BatchItem(digest, refused=str(entry["refused"])))
                continue
            if set(entry) != _ITEM_KEYS:
                raise ValueError("an item has unknown or missing keys")
            if not isinstance(entry["received_at"], str) or not _TIME.match(
                    entry["received_at"]):
                raise ValueError("received_at is not YYYY-MM-DDThh:mm:ssZ")
            items.append(BatchItem(digest, Receipt(
                uuid.UUID(entry["delivery_id"]), digest,
                datetime.fromisoformat(entry["received_at"]), ReceiptStatus(entry["status"]),
                emt_id)))
    except (ValueError, TypeError, KeyError, UsageError, AttributeError) as exc:
        raise ReceiptRejected(ReceiptReason.MALFORMED, f"not a batch receipt: {exc}") from None
    if _encode_batch(emt_id, items) != data:
        raise ReceiptRejected(ReceiptReason.MALFORMED, "batch receipt is not canonical JSON")
    return emt_id, items


def issue_batch_receipt(emt_id: str, items: Sequence[BatchItem], emt_sig_key: KeyHandle,
                        emt_sig_certificate: x509.Certificate, *,
                        signing_time: datetime) -> bytes:
    """One signed receipt for all deliveries of a batch request, in request order (DER
    ``ContentInfo(SignedData)``; one signature however many deliveries)::

        {"emt_id":"…","items":[{"delivery_id":"…","digest":"…","received_at":"…Z",
          "status":"stored"|"duplicate"} | {"digest":"…","refused":"<peer code>"}, …],
         "kind":"batch","v":1}
    """
    if any(i.receipt is not None and i.receipt.emt_id != emt_id for i in items):
        raise UsageError("every receipt of a batch names the issuing EMT")
    return cms.sign(_encode_batch(emt_id, items), emt_sig_key, emt_sig_certificate,
                    signing_time=signing_time)


def verify_batch_receipt(data: bytes, emt_sig_certificate: x509.Certificate, *,
                         digests: Sequence[bytes],
                         validator: PathValidator | None = None) -> list[BatchItem]:
    """Check a batch receipt for the deliveries whose sealed bytes hash to ``digests`` (in the
    order they were sent). Signer rules as for :func:`verify_receipt`; the items must name
    exactly these digests in this order. Returns the items: each either acknowledged
    (``receipt``) or refused (``refused``, the opaque code)."""
    try:
        verified = cms.verify(data, signer_certificate=emt_sig_certificate,
                              max_size=MAX_BATCH_RECEIPT)
    except (CmsRejected, KeyRejected) as exc:
        reason = {"bad-signature": ReceiptReason.BAD_SIGNATURE,
                  "tampered": ReceiptReason.BAD_SIGNATURE,
                  "signer-mismatch": ReceiptReason.WRONG_SIGNER}.get(exc.reason.value,
                                                                      ReceiptReason.MALFORMED)
        raise ReceiptRejected(reason, f"batch receipt signature refused: {exc.message}"
                              ) from exc
    if validator is not None:
        try:
            validator.validate(emt_sig_certificate, profile="emt-sig")
        except CertificateRejected as exc:
            raise ReceiptRejected(ReceiptReason.UNTRUSTED_SIGNER,
                                  f"EMT SIG certificate refused: {exc.message}",
                                  cause=exc.reason.value) from exc
    _, items = _decode_batch(verified.content)
    if [item.digest for item in items] != list(digests):
        raise ReceiptRejected(ReceiptReason.WRONG_DIGEST,
                              "batch receipt does not list exactly the deliveries sent",
                              sent=len(digests), listed=len(items))
    return items
