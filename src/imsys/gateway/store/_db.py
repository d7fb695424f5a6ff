"""The gateway's SQLite database: one file, WAL mode, durable commits, explicit transactions.

Every component of the evidence store (readings, logs, the state table) lives in the same
database file, so one transaction can cover a deletion and the system-log entry that records
it. Python's implicit transaction handling is switched off (``isolation_level=None``); a write
happens only inside :meth:`Database.transaction`, which is ``BEGIN IMMEDIATE … COMMIT`` (or a
``SAVEPOINT`` when nested) and rolls back on any exception.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from types import TracebackType

from imsys.core.errors import UsageError
from imsys.gateway.errors import StoreReason, StoreRejected

#: ``PRAGMA application_id`` of an imsys gateway database ("iMSy")
APPLICATION_ID = 0x694D5379
#: ``PRAGMA user_version``: the layout documented in docs/gateway-store.md
SCHEMA_VERSION = 1

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def to_micros(when: datetime) -> int:
    """A timezone-aware time as integer microseconds since 1970-01-01 UTC (exact)."""
    if when.tzinfo is None:
        raise UsageError("the evidence store takes timezone-aware times only")
    return (when - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    """Inverse of :func:`to_micros` (UTC)."""
    return _EPOCH + timedelta(microseconds=micros)


class Durability(StrEnum):
    """How a commit reaches the disk (``PRAGMA synchronous`` in WAL mode).

    ``FULL`` is the gateway's setting: the WAL is fsync'ed at every commit, so a reading that
    was acknowledged survives a process kill *and* a power cut. ``NORMAL`` survives a killed
    process (the committed WAL frames are in the OS page cache) but may lose the last commits on
    power loss – not acceptable for values already acknowledged to a meter. ``OFF`` is for
    tests and simulations only.
    """

    FULL = "FULL"
    NORMAL = "NORMAL"
    OFF = "OFF"


class Database:
    """One open gateway database (a file, or ``":memory:"`` for tests).

    Use one ``Database`` per thread (sqlite3 connections are not shared between threads);
    WAL mode lets further ``Database`` objects on the same file read while one writes.
    """

    def __init__(self, path: str | Path, *, durability: Durability = Durability.FULL,
                 busy_timeout: float = 5.0) -> None:
        self.path = str(path)
        self.durability = Durability(durability)
        self._depth = 0
        #: chain name -> (seq, hash) of its last record as this connection wrote it; a cache
        #: that spares a query per append. Cleared on every rollback; a stale entry (another
        #: connection appended) is caught by the chain-link trigger and refreshed.
        self.chain_heads: dict[str, tuple[int, bytes]] = {}
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
        try:
            self._configure()
        except BaseException:
            self._conn.close()
            raise

    def _configure(self) -> None:
        conn = self._conn
        if self.path != ":memory:":
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise UsageError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous={self.durability.value}")
        # deleted readings are personal data: overwrite freed pages instead of leaving them
        conn.execute("PRAGMA secure_delete=ON")
        # nested savepoints otherwise spill their rollback records to a temporary file,
        # which doubled the cost of an append inside the measurement transaction
        conn.execute("PRAGMA temp_store=MEMORY")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        application = conn.execute("PRAGMA application_id").fetchone()[0]
        if version == 0 and application == 0:
            with self.transaction():
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        elif application != APPLICATION_ID or version > SCHEMA_VERSION:
            raise StoreRejected(StoreReason.SCHEMA_UNKNOWN, "not an imsys gateway database "
                                "of a known version", path=self.path, application_id=application,
                                user_version=version)

    # -- for the record kinds of imsys.gateway; applications use their APIs instead --------

    @property
    def connection(self) -> sqlite3.Connection:
        """The sqlite3 connection, for the record kinds of ``imsys.gateway`` only."""
        return self._conn

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def transaction(self) -> _Transaction:
        """All-or-nothing: ``BEGIN IMMEDIATE … COMMIT``, or a savepoint inside an outer one.

        Use as ``with db.transaction() as conn:``. An exception rolls back everything done
        inside the block (and only that) and propagates. When the outermost block returns,
        the commit is durable as :attr:`durability` says.
        """
        return _Transaction(self)

    def table_exists(self, name: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return row is not None

    def index_exists(self, name: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)).fetchone()
        return row is not None

    def ensure_schema(self, table: str, statements: list[str]) -> None:
        """Create ``table`` and its companions in one transaction unless it exists.

        An existing table is left alone, guards included: a guard that was dropped is
        reported by verification, not silently re-created.
        """
        if self.table_exists(table):
            return
        with self.transaction() as conn:
            if self.table_exists(table):  # another connection was quicker
                return
            for statement in statements:
                conn.execute(statement)

    def checkpoint(self) -> None:
        """Fold the WAL into the database file and truncate it (best effort).

        After a retention deletion this also removes the deleted rows' old page images from
        the WAL file.
        """
        if self.path != ":memory:" and not self._depth:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def close(self) -> None:
        if self._depth:
            raise UsageError("close() inside a transaction")
        self._conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Transaction:
    """The context manager of :meth:`Database.transaction` (a class, not a generator: it is
    entered several times per ingested frame)."""

    __slots__ = ("_db", "_savepoint")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._savepoint: str | None = None

    def __enter__(self) -> sqlite3.Connection:
        db = self._db
        conn = db._conn
        if db._depth:
            name = self._savepoint = f"imsys_sp{db._depth}"
            conn.execute(f"SAVEPOINT {name}")
        else:
            conn.execute("BEGIN IMMEDIATE")
        db._depth += 1
        return conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        db = self._db
        conn = db._conn
        name = self._savepoint
        try:
            if name is not None:
                if exc_type is None:
                    conn.execute(f"RELEASE {name}")
                else:
                    db.chain_heads.clear()
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                return
            if exc_type is None:
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    db.chain_heads.clear()
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            else:
                db.chain_heads.clear()
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        finally:
            db._depth -= 1
