"""The gateway's small key/value state (phase, last contact, counters): not evidence.

Unlike readings and logs, state is overwritten: it is the gateway's current condition, not a
record of what happened. Every write is transactional (and joins an enclosing
:meth:`Database.transaction`, so a state change can commit together with the log entry that
records it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

from imsys.core.errors import UsageError
from imsys.gateway.store._chain import check_int64
from imsys.gateway.store._db import Database, from_micros, to_micros

StateValue = str | int | bytes

_KEY = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
_UPSERT = ("INSERT INTO gateway_state (key, value) VALUES (?, ?) "
           "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
_DDL = ["CREATE TABLE gateway_state (key TEXT PRIMARY KEY NOT NULL, value NOT NULL) "
        "WITHOUT ROWID"]


class StateKey(StrEnum):
    """Well-known state keys (any key matching ``[a-z0-9][a-z0-9_.:-]{0,63}`` is allowed)."""

    PHASE = "phase"  # commissioning phase (operation once commissioned)
    LAST_ADMIN_CONTACT = "last-admin-contact"  # set_time(): the last admin session


class StateTable:
    """Transactional key/value state; values are ``str``, ``int`` or ``bytes`` and come back
    with the type they were stored with."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema("gateway_state", _DDL)

    @staticmethod
    def _check(key: str, value: StateValue) -> None:
        if not isinstance(key, str) or not _KEY.match(key):
            raise UsageError(f"state key must match {_KEY.pattern}, got {key!r}")
        if isinstance(value, bool) or not isinstance(value, str | int | bytes):
            raise UsageError(f"state values are str, int or bytes, not {type(value)!r}")
        if isinstance(value, int):
            check_int64(value, key)

    def get(self, key: str, default: StateValue | None = None) -> StateValue | None:
        row = self.db.connection.execute("SELECT value FROM gateway_state WHERE key = ?",
                                         (key,)).fetchone()
        return default if row is None else row[0]

    def set(self, key: str, value: StateValue) -> None:
        self.set_many({key: value})

    def set_many(self, values: Mapping[str, StateValue]) -> None:
        """Set several keys in one transaction (all or none)."""
        for key, value in values.items():
            self._check(key, value)
        if len(values) == 1 and self.db.in_transaction:
            # one statement is all or nothing by itself: no savepoint inside the caller's
            # transaction (the measurement writes one key per frame)
            self.db.connection.execute(_UPSERT, next(iter(values.items())))
            return
        with self.db.transaction() as conn:
            conn.executemany(_UPSERT, list(values.items()))

    def delete(self, key: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM gateway_state WHERE key = ?", (key,))

    def get_time(self, key: str) -> datetime | None:
        """A time stored with :meth:`set_time` (UTC), or None."""
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, int):
            raise UsageError(f"state {key!r} does not hold a time")
        return from_micros(value)

    def set_time(self, key: str, when: datetime) -> None:
        self.set(key, to_micros(when))

    def items(self) -> dict[str, StateValue]:
        return dict(self.db.connection.execute(
            "SELECT key, value FROM gateway_state ORDER BY key").fetchall())
