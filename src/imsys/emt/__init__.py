"""External market participant (EMT): receives deliveries from gateways.

* :mod:`imsys.emt.receiver` – the receiving process, pure logic over a storage port;
* :mod:`imsys.emt.storage` – SQLAlchemy Core tables (SQLite by default, PostgreSQL by URL);
* :mod:`imsys.emt.server` – the mutually authenticated TLS HTTP edge, several worker processes;
* :mod:`imsys.emt.export` – the MSB processing (:mod:`imsys.emt.msb`) over the stored values;
* :mod:`imsys.emt.cli` – ``imsys emt serve`` / ``imsys emt show`` / ``imsys emt export``.

See docs/delivery.md and docs/msb.md.
"""

from __future__ import annotations

from imsys.emt.receiver import (
    Accepted,
    BatchAccepted,
    DeliveryStore,
    EmtIdentity,
    Receiver,
    ReceiverPolicy,
)
from imsys.emt.storage import EmtStorage, StoreResult

__all__ = [
    "Accepted",
    "BatchAccepted",
    "DeliveryStore",
    "EmtIdentity",
    "EmtStorage",
    "Receiver",
    "ReceiverPolicy",
    "StoreResult",
]
