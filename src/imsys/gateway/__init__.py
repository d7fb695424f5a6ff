"""The Smart Meter Gateway (SMGW) role: evidence store, logs, retention; TAFs in ``taf/``.

* :mod:`imsys.gateway.store` – readings on SQLite, append-only and hash-chained;
* :mod:`imsys.gateway.logs` – system, calibration and consumer logs (AR 2418-6 LogEntry);
* :mod:`imsys.gateway.retention` – the only path by which readings are deleted.

See docs/gateway-store.md.
"""

from __future__ import annotations

from imsys.gateway.errors import StoreReason, StoreRejected
from imsys.gateway.logs import (
    CalibrationEvent,
    CalibrationLog,
    ConsumerEvent,
    ConsumerLog,
    GatewayLogs,
    Level,
    LogEntry,
    Outcome,
    SystemEvent,
    SystemLog,
)
from imsys.gateway.retention import Deletion, Retention, billing_keep_from
from imsys.gateway.store import (
    AppendOnlyTable,
    ChainHead,
    Database,
    Durability,
    ReadingRecord,
    ReadingSource,
    ReadingStore,
    StateTable,
    StoredReading,
)

__all__ = [
    "AppendOnlyTable",
    "CalibrationEvent",
    "CalibrationLog",
    "ChainHead",
    "ConsumerEvent",
    "ConsumerLog",
    "Database",
    "Deletion",
    "Durability",
    "GatewayLogs",
    "Level",
    "LogEntry",
    "Outcome",
    "ReadingRecord",
    "ReadingSource",
    "ReadingStore",
    "Retention",
    "StateTable",
    "StoreReason",
    "StoreRejected",
    "StoredReading",
    "SystemEvent",
    "SystemLog",
    "billing_keep_from",
]
