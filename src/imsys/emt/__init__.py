"""External market participant (EMT): receives deliveries from gateways.

* :mod:`imsys.emt.receiver` – the receiving process, pure logic over a storage port;
* :mod:`imsys.emt.storage` – SQLAlchemy Core tables (SQLite by default, PostgreSQL by URL);
* :mod:`imsys.emt.server` – the mutually authenticated TLS HTTP edge, several worker processes;
* :mod:`imsys.emt.cli` – ``imsys emt serve`` / ``imsys emt show``.

See docs/delivery.md.
"""

from __future__ import annotations

from imsys.emt.receiver import Accepted, DeliveryStore, EmtIdentity, Receiver, ReceiverPolicy
from imsys.emt.storage import EmtStorage, StoreResult

__all__ = [
    "Accepted",
    "DeliveryStore",
    "EmtIdentity",
    "EmtStorage",
    "Receiver",
    "ReceiverPolicy",
    "StoreResult",
]
