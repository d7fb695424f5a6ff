"""Rejections raised by the gateway's evidence store, its logs and its retention.

Every refusal is a :class:`StoreRejected` (a :class:`imsys.core.errors.Rejected`) with a
:class:`StoreReason` and the identifiers involved (sequence numbers, meter id, frame digest –
never secrets). A caller that misuses the API gets :class:`imsys.core.errors.UsageError`.
A refused write leaves the database as it was: every write is one transaction.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, cast

from imsys.core.errors import Rejected


class StoreReason(StrEnum):
    """Why the evidence store refused something."""

    #: a record's hash, its link to the previous record or its sequence number does not verify
    CHAIN_BROKEN = "chain-broken"
    #: a guard trigger of an append-only table is missing or altered
    GUARD_MISSING = "guard-missing"
    #: the database refused a write that would break append-only (UPDATE, DELETE, bad link)
    APPEND_ONLY = "append-only"
    #: the same frame (digest) of the same meter was stored before: nothing written
    DUPLICATE = "duplicate"
    #: a deletion would remove a record that a retention rule still protects
    RETENTION_VIOLATION = "retention-violation"
    #: a value does not fit the store's 64-bit signed integer columns
    OUT_OF_RANGE = "out-of-range"
    #: the database file was written by a newer schema than this code knows
    SCHEMA_UNKNOWN = "schema-unknown"


class StoreRejected(Rejected):
    """The evidence store refused a write or found its evidence broken. ``reason`` is a
    :class:`StoreReason`."""

    reason: StoreReason  # type: ignore[assignment]

    def __init__(self, reason: StoreReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


__all__ = ["StoreReason", "StoreRejected"]
