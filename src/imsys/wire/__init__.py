"""Documented WAN message formats (sans-io): the delivery profile v1 and its documents.

* :mod:`imsys.wire.ar2418` – readings as VDE AR-E 2418-6 XML (what TRuDI reads);
* :mod:`imsys.wire.delivery` – ``Delivery`` metadata + document, sealed for an EMT
  (AuthEnvelopedData(SignedData(...))), opened and checked on the EMT side;
* :mod:`imsys.wire.receipt` – the EMT's signed receipt.

See docs/delivery.md.
"""

from __future__ import annotations

from imsys.wire.ar2418 import (
    DocumentReason,
    DocumentRejected,
    IntervalReading,
    MeterReading,
    ServiceKind,
    StatusPtb,
    UsagePointDocument,
    document_from_readings,
    encode_document,
    parse_document,
    pseudonymise,
    readings_of,
)
from imsys.wire.delivery import (
    HTTP_PATH,
    MEDIA_TYPE,
    Delivery,
    DeliveryReason,
    DeliveryRejected,
    OpenedDelivery,
    PeerCode,
    open_delivery,
    peer_response,
    seal_delivery,
)
from imsys.wire.receipt import (
    Receipt,
    ReceiptReason,
    ReceiptRejected,
    ReceiptStatus,
    issue_receipt,
    verify_receipt,
)

__all__ = [
    "HTTP_PATH",
    "MEDIA_TYPE",
    "Delivery",
    "DeliveryReason",
    "DeliveryRejected",
    "DocumentReason",
    "DocumentRejected",
    "IntervalReading",
    "MeterReading",
    "OpenedDelivery",
    "PeerCode",
    "Receipt",
    "ReceiptReason",
    "ReceiptRejected",
    "ReceiptStatus",
    "ServiceKind",
    "StatusPtb",
    "UsagePointDocument",
    "document_from_readings",
    "encode_document",
    "issue_receipt",
    "open_delivery",
    "parse_document",
    "peer_response",
    "pseudonymise",
    "readings_of",
    "seal_delivery",
    "verify_receipt",
]
