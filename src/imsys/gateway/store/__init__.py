"""The gateway's evidence store: readings on SQLite (WAL, durable commits), append-only and
hash-chained, plus a small transactional state table.

* :class:`Database` – the one SQLite file, its pragmas and explicit transactions;
* :class:`ReadingStore` – ``append_readings`` / ``iter_readings`` / ``latest`` /
  ``verify_chain``;
* :class:`AppendOnlyTable` – the chain machinery the readings and the logs
  (:mod:`imsys.gateway.logs`) share; :func:`record_hash` is the documented hash encoding;
* :class:`StateTable` – key/value state that is not evidence (phase, last contact).

Deletion is the business of :mod:`imsys.gateway.retention` only. See docs/gateway-store.md.
"""

from __future__ import annotations

from imsys.gateway.store._chain import (
    ANCHOR_TABLE,
    GENESIS_HASH,
    Anchor,
    AppendOnlyTable,
    ChainHead,
    Column,
    record_hash,
)
from imsys.gateway.store._db import Database, Durability, from_micros, to_micros
from imsys.gateway.store._readings import (
    READINGS,
    ReadingRecord,
    ReadingSource,
    ReadingStore,
    StoredReading,
)
from imsys.gateway.store._state import StateKey, StateTable, StateValue

__all__ = [
    "ANCHOR_TABLE",
    "GENESIS_HASH",
    "READINGS",
    "Anchor",
    "AppendOnlyTable",
    "ChainHead",
    "Column",
    "Database",
    "Durability",
    "ReadingRecord",
    "ReadingSource",
    "ReadingStore",
    "StateKey",
    "StateTable",
    "StateValue",
    "StoredReading",
    "from_micros",
    "record_hash",
    "to_micros",
]
