"""The EMT's storage adapter: SQLAlchemy Core tables, SQLite by default, PostgreSQL by URL.

Tables (all times UTC):

* ``emt_deliveries`` – one row per delivery: ``delivery_id`` (primary key), ``digest`` (SHA-256
  of the sealed bytes, unique), gateway, meter (or pseudonym), flags, profile, content type,
  created / signing / received times, the document and the sealed bytes as evidence;
* ``emt_readings`` – the values extracted from the document, unique on
  (gateway, meter, OBIS, timestamp), so a value is stored once however often it arrives;
* ``emt_rejections`` – refused deliveries: time, reason, the gateway as far as known, digest;
* ``emt_relay_outbox`` – in relay mode (:mod:`imsys.emt.relay`): what waits to be forwarded,
  still encrypted for its final recipient, unique on delivery id and digest; deleted once the
  final recipient acknowledged it.

Idempotency under concurrency: :meth:`EmtStorage.store` runs in one transaction an
``INSERT … ON CONFLICT DO NOTHING`` of the delivery; if nothing was inserted, the stored row
decides – same digest: ``DUPLICATE``, other digest: ``CONFLICT`` – and nothing else is written.
PostgreSQL makes a concurrent second insert wait for the first transaction and then see its row;
SQLite serialises writers (``BEGIN IMMEDIATE``, WAL, ``synchronous=FULL``, busy timeout), so two
workers can never both store the same delivery.

URLs: ``sqlite:///path.db`` (default), ``postgresql://user@host/db`` (psycopg 3; the driver is
added as ``postgresql+psycopg``). Create the schema once (:meth:`EmtStorage.create_schema`)
before starting several workers on one database.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url

from imsys.core.errors import UsageError
from imsys.core.sql import normalise_url

__all__ = [
    "DELIVERIES",
    "METADATA",
    "READINGS",
    "REJECTIONS",
    "DeliveryRow",
    "EmtStorage",
    "KnownDelivery",
    "ReadingRow",
    "StoreResult",
    "normalise_url",
]

log = logging.getLogger("imsys.emt.storage")

METADATA = MetaData()
_ID = BigInteger().with_variant(Integer, "sqlite")

DELIVERIES = Table(
    "emt_deliveries", METADATA,
    Column("delivery_id", String(36), primary_key=True),
    Column("digest", LargeBinary(32), nullable=False, unique=True),
    Column("gateway_id", String(64), nullable=False),
    Column("meter", String(64), nullable=False),
    Column("pseudonymised", Boolean, nullable=False),
    Column("billing_relevant", Boolean, nullable=False),
    Column("profile_id", String(64), nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("signing_time", DateTime, nullable=False),
    Column("received_at", DateTime, nullable=False),
    Column("reading_count", Integer, nullable=False),
    Column("document", LargeBinary, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Index("emt_deliveries_gateway", "gateway_id", "received_at"),
    Index("emt_deliveries_meter", "meter", "received_at"),
)

READINGS = Table(
    "emt_readings", METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), ForeignKey("emt_deliveries.delivery_id"), nullable=False),
    Column("gateway_id", String(64), nullable=False),
    Column("meter", String(64), nullable=False),
    Column("obis", String(24), nullable=False),
    Column("timestamp", DateTime, nullable=False),
    Column("value", BigInteger, nullable=False),
    Column("scaler", SmallInteger, nullable=False),
    Column("uom", Integer, nullable=False),
    Column("status_fnn", String(16), nullable=True),  # 16 hex digits (a u64 exceeds BIGINT)
    Column("status_ptb", SmallInteger, nullable=True),
    UniqueConstraint("gateway_id", "meter", "obis", "timestamp", name="emt_readings_unique"),
    Index("emt_readings_delivery", "delivery_id"),
)

REJECTIONS = Table(
    "emt_rejections", METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False),
    Column("reason", String(40), nullable=False),
    Column("gateway_id", String(64), nullable=True),
    Column("digest", String(64), nullable=False),
    Column("detail", String(300), nullable=False),
)

RELAY_OUTBOX = Table(
    "emt_relay_outbox", METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), nullable=False, unique=True),
    Column("digest", LargeBinary(32), nullable=False, unique=True),
    Column("gateway_id", String(64), nullable=False),
    Column("final_recipient", String(64), nullable=False),
    Column("received_at", DateTime, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("refused", String(40), nullable=True),
    Index("emt_relay_outbox_recipient", "final_recipient", "refused", "id"),
)


class StoreResult(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # same delivery id, same digest: stored before
    CONFLICT = "conflict"  # same delivery id, other digest: nothing written


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """What the receiver stores for one delivery."""

    delivery_id: str
    digest: bytes
    gateway_id: str
    meter: str
    pseudonymised: bool
    billing_relevant: bool
    profile_id: str
    content_type: str
    created_at: datetime
    signing_time: datetime
    received_at: datetime
    document: bytes
    sealed: bytes


@dataclass(frozen=True, slots=True)
class ReadingRow:
    """One value extracted from a document."""

    meter: str
    obis: str
    timestamp: datetime
    value: int
    scaler: int
    uom: int
    status_fnn: int | None
    status_ptb: int | None


@dataclass(frozen=True, slots=True)
class KnownDelivery:
    """A stored delivery as the duplicate check sees it."""

    delivery_id: str
    digest: bytes
    gateway_id: str
    received_at: datetime


@dataclass(eq=False)
class _Pending:
    """One delivery waiting for a group commit."""

    row: DeliveryRow
    readings: list[ReadingRow]
    done: bool = False
    result: tuple[StoreResult, KnownDelivery] | None = None
    error: BaseException | None = None


def _naive_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise UsageError("storage takes timezone-aware times")
    return when.astimezone(UTC).replace(tzinfo=None)


@functools.lru_cache(maxsize=8192)
def _sqlite_time(when: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME text (so Core reads the values back), UTC. Cached: the
    values of one day share their 96 quarter-hour timestamps across all meters."""
    return _naive_utc(when).strftime("%Y-%m-%d %H:%M:%S.%f")


def _aware(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


class EmtStorage:
    """Deliveries, readings and rejections of one EMT in one database."""

    def __init__(self, url: str, *, create: bool = True, echo: bool = False) -> None:
        self.url = normalise_url(url)
        self.engine = _engine(self.url, echo)
        self.dialect = self.engine.dialect.name
        self._cond = threading.Condition()
        database = make_url(self.url).database
        self._lock_path = (f"{database}.write-lock" if self.dialect == "sqlite" and database
                           and database != ":memory:" else None)
        # Inserts go to the driver directly (one statement text per dialect): building and
        # caching a Core statement per delivery, and per-row parameter processing for a
        # 96-value TAF-7 day, cost more than the inserts themselves.
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._delivery_sql = (
            "INSERT INTO emt_deliveries (delivery_id, digest, gateway_id, meter, pseudonymised, "
            "billing_relevant, profile_id, content_type, created_at, signing_time, received_at, "
            f"reading_count, document, sealed) VALUES ({', '.join([mark] * 14)}) "
            "ON CONFLICT DO NOTHING RETURNING delivery_id")
        self._readings_sql = (
            'INSERT INTO emt_readings (delivery_id, gateway_id, meter, obis, "timestamp", '
            f"value, scaler, uom, status_fnn, status_ptb) VALUES ({', '.join([mark] * 10)}) "
            "ON CONFLICT DO NOTHING")
        self._queue: list[_Pending] = []
        self._writing = False
        if self.dialect not in ("sqlite", "postgresql"):
            raise UsageError(f"unsupported database {self.dialect!r} (sqlite or postgresql)")
        if create:
            self.create_schema()

    def _bool(self, value: bool) -> bool | int:
        return int(value) if self.dialect == "sqlite" else value

    def _time_param(self, when: datetime) -> datetime | str:
        return _sqlite_time(when) if self.dialect == "sqlite" else _naive_utc(when)

    def create_schema(self) -> None:
        METADATA.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ writes

    def store(self, row: DeliveryRow, readings: Sequence[ReadingRow]) -> tuple[StoreResult,
                                                                                 KnownDelivery]:
        """Store a delivery and its readings durably, at most once.

        Returns the result and the stored delivery (for a duplicate: the first arrival).
        """
        outcome = self.store_many([(row, readings)])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def store_many(self, items: Sequence[tuple[DeliveryRow, Sequence[ReadingRow]]]
                   ) -> list[tuple[StoreResult, KnownDelivery] | BaseException]:
        """Store several deliveries durably, each at most once; one outcome per item, in order
        (a result, or the exception that item failed with).

        Calls from several threads are group-committed: whoever finds no write in progress
        writes everything queued meanwhile in one transaction (one fsync); the others wait for
        that commit. If a transaction fails, its deliveries are retried one by one, so one bad
        delivery cannot fail another. For :meth:`store` the exception is raised.
        """
        pending = [_Pending(row, list(readings)) for row, readings in items]
        if not pending:
            return []
        with self._cond:
            self._queue.extend(pending)
            while not pending[-1].done and self._writing:
                self._cond.wait()
            if not pending[-1].done:
                self._writing = True
                batch, self._queue = self._queue, []
            else:
                batch = []
        if batch:
            try:
                self._write_batch(batch)
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()
        outcomes: list[tuple[StoreResult, KnownDelivery] | BaseException] = []
        for item in pending:
            if item.error is not None:
                outcomes.append(item.error)
            else:
                assert item.result is not None
                outcomes.append(item.result)
        return outcomes

    @contextlib.contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """On a SQLite file, writers of all processes queue on an ``flock`` first: the kernel
        wakes the next writer as soon as the lock is free, where SQLite's own busy handler
        sleeps for up to 100 ms between attempts."""
        if self._lock_path is None:
            yield
            return
        with open(self._lock_path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _write_batch(self, batch: list[_Pending]) -> None:
        try:
            results = []
            with self._writer_turn(), self.engine.begin() as conn:
                for item in batch:
                    results.append(self._store_one(conn, item.row, item.readings))
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                batch[0].done = True
                return
            for item in batch:
                self._write_batch([item])
            return
        for item, result in zip(batch, results, strict=True):
            item.result = result
            item.done = True

    def _store_one(self, conn: Connection, row: DeliveryRow, readings: Sequence[ReadingRow]
                   ) -> tuple[StoreResult, KnownDelivery]:
        time_param = self._time_param
        inserted = conn.exec_driver_sql(self._delivery_sql, (
            row.delivery_id, row.digest, row.gateway_id, row.meter,
            self._bool(row.pseudonymised), self._bool(row.billing_relevant), row.profile_id,
            row.content_type, time_param(row.created_at), time_param(row.signing_time),
            time_param(row.received_at), len(readings), row.document, row.sealed)).first()
        if inserted is None:  # conflict (rowcount is not reliable with RETURNING)
            known = self._known(conn, row.delivery_id, row.digest)
            if known is None:  # pragma: no cover - a conflict always leaves a row
                raise UsageError("insert refused but no conflicting row found")
            same = known.digest == row.digest and known.delivery_id == row.delivery_id
            return (StoreResult.DUPLICATE if same else StoreResult.CONFLICT), known
        if readings:
            conn.exec_driver_sql(self._readings_sql, [
                (row.delivery_id, row.gateway_id, r.meter, r.obis, time_param(r.timestamp),
                 r.value, r.scaler, r.uom,
                 None if r.status_fnn is None else f"{r.status_fnn:016X}", r.status_ptb)
                for r in readings])
        return StoreResult.STORED, KnownDelivery(row.delivery_id, row.digest, row.gateway_id,
                                                 _aware(row.received_at))

    @staticmethod
    def _known(conn: Connection, delivery_id: str, digest: bytes) -> KnownDelivery | None:
        columns = (DELIVERIES.c.delivery_id, DELIVERIES.c.digest, DELIVERIES.c.gateway_id,
                   DELIVERIES.c.received_at)
        found = conn.execute(select(*columns).where(
            DELIVERIES.c.delivery_id == delivery_id)).first()
        if found is None:
            found = conn.execute(select(*columns).where(DELIVERIES.c.digest == digest)).first()
        if found is None:
            return None
        return KnownDelivery(found[0], bytes(found[1]), found[2], _aware(found[3]))

    def record_rejection(self, at: datetime, reason: str, digest: bytes,
                         gateway_id: str | None, detail: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(REJECTIONS.insert().values(
                at=_naive_utc(at), reason=reason[:40], gateway_id=(gateway_id or None),
                digest=digest.hex(), detail=detail[:300]))

    # ------------------------------------------------------------------ relay outbox

    def relay_put(self, delivery_id: str, digest: bytes, gateway_id: str, final_recipient: str,
                  received_at: datetime, content: bytes) -> tuple[StoreResult, KnownDelivery]:
        """Keep a delivery to forward, durably and at most once (as :meth:`store`)."""
        values = dict(delivery_id=delivery_id, digest=digest, gateway_id=gateway_id,
                      final_recipient=final_recipient, received_at=_naive_utc(received_at),
                      content=content)
        insert = sqlite_insert if self.dialect == "sqlite" else postgresql_insert
        statement = insert(RELAY_OUTBOX).values(**values).on_conflict_do_nothing().returning(
            RELAY_OUTBOX.c.id)
        with self._writer_turn(), self.engine.begin() as conn:
            if conn.execute(statement).first() is not None:  # rowcount is not reliable here
                return StoreResult.STORED, KnownDelivery(delivery_id, digest, gateway_id,
                                                         _aware(received_at))
            columns = (RELAY_OUTBOX.c.delivery_id, RELAY_OUTBOX.c.digest,
                       RELAY_OUTBOX.c.gateway_id, RELAY_OUTBOX.c.received_at)
            found = conn.execute(select(*columns).where(
                (RELAY_OUTBOX.c.delivery_id == delivery_id) | (RELAY_OUTBOX.c.digest == digest)
            )).first()
        if found is None:  # pragma: no cover - a conflict always leaves a row
            raise UsageError("insert refused but no conflicting row found")
        known = KnownDelivery(found[0], bytes(found[1]), found[2], _aware(found[3]))
        same = known.digest == digest and known.delivery_id == delivery_id
        return (StoreResult.DUPLICATE if same else StoreResult.CONFLICT), known

    def relay_pending(self, final_recipient: str, limit: int = 64) -> list[tuple[int, bytes]]:
        """(outbox id, content) of what waits for ``final_recipient``, oldest first; items the
        final recipient refused for good are not offered again."""
        with self._read() as conn:
            return [(int(r[0]), bytes(r[1])) for r in conn.execute(
                select(RELAY_OUTBOX.c.id, RELAY_OUTBOX.c.content).where(
                    RELAY_OUTBOX.c.final_recipient == final_recipient,
                    RELAY_OUTBOX.c.refused.is_(None)).order_by(RELAY_OUTBOX.c.id).limit(limit))]

    def relay_done(self, forwarded: Sequence[int], refused: Sequence[tuple[int, str]] = ()
                   ) -> None:
        """Delete what the final recipient acknowledged (seed 003 l. 738: the relay deletes
        the data after successful transmission); mark what it refused for good."""
        with self._writer_turn(), self.engine.begin() as conn:
            if forwarded:
                conn.execute(RELAY_OUTBOX.delete().where(RELAY_OUTBOX.c.id.in_(forwarded)))
            for outbox_id, code in refused:
                conn.execute(RELAY_OUTBOX.update().where(RELAY_OUTBOX.c.id == outbox_id)
                             .values(refused=code[:40]))

    def relay_counts(self) -> dict[str, int]:
        """Waiting and refused items in the relay outbox (none in a database from before the
        outbox existed)."""
        if not inspect(self.engine).has_table(RELAY_OUTBOX.name):
            return {"waiting": 0, "refused": 0}
        with self._read() as conn:
            waiting = conn.execute(select(func.count()).select_from(RELAY_OUTBOX).where(
                RELAY_OUTBOX.c.refused.is_(None))).scalar_one()
            total = conn.execute(select(func.count()).select_from(RELAY_OUTBOX)).scalar_one()
        return {"waiting": int(waiting), "refused": int(total) - int(waiting)}

    # ------------------------------------------------------------------ reads

    def _read(self) -> Connection:
        return self.engine.connect().execution_options(imsys_read=True)

    def find_by_digest(self, digest: bytes) -> KnownDelivery | None:
        with self._read() as conn:
            found = conn.execute(select(
                DELIVERIES.c.delivery_id, DELIVERIES.c.digest, DELIVERIES.c.gateway_id,
                DELIVERIES.c.received_at).where(DELIVERIES.c.digest == digest)).first()
        if found is None:
            return None
        return KnownDelivery(found[0], bytes(found[1]), found[2], _aware(found[3]))

    def deliveries(self, *, gateway: str | None = None, meter: str | None = None,
                   day: date | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Stored deliveries (newest first) without document and sealed bytes."""
        columns = [c for c in DELIVERIES.c if c.name not in ("document", "sealed")]
        query = select(*columns)
        if gateway:
            query = query.where(DELIVERIES.c.gateway_id == gateway)
        if meter:
            query = query.where(DELIVERIES.c.meter == meter)
        if day:
            start = datetime(day.year, day.month, day.day)
            query = query.where(DELIVERIES.c.received_at >= start,
                                DELIVERIES.c.received_at < start + timedelta(days=1))
        query = query.order_by(DELIVERIES.c.received_at.desc()).limit(limit)
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def readings(self, *, gateway: str | None = None, meter: str | None = None,
                 day: date | None = None, limit: int = 100_000) -> list[dict[str, Any]]:
        """Stored values ordered by gateway, meter, OBIS, time."""
        query = select(READINGS)
        if gateway:
            query = query.where(READINGS.c.gateway_id == gateway)
        if meter:
            query = query.where(READINGS.c.meter == meter)
        if day:
            start = datetime(day.year, day.month, day.day)
            query = query.where(READINGS.c.timestamp >= start,
                                READINGS.c.timestamp < start + timedelta(days=1))
        query = query.order_by(READINGS.c.gateway_id, READINGS.c.meter, READINGS.c.obis,
                               READINGS.c.timestamp).limit(limit)
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def series(self, *, meter: str, obis: str, start: datetime, end: datetime
               ) -> list[dict[str, Any]]:
        """The stored values of one register with ``start ≤ timestamp ≤ end`` (aware times),
        in time order, whichever gateway delivered them."""
        query = select(READINGS).where(
            READINGS.c.meter == meter, READINGS.c.obis == obis,
            READINGS.c.timestamp >= _naive_utc(start), READINGS.c.timestamp <= _naive_utc(end),
        ).order_by(READINGS.c.timestamp, READINGS.c.id)
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def rejections(self, limit: int = 1000) -> list[dict[str, Any]]:
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(REJECTIONS).order_by(REJECTIONS.c.id.desc()).limit(limit))]

    def counts(self) -> dict[str, int]:
        with self._read() as conn:
            return {table.name: int(conn.execute(select(func.count()).select_from(table))
                                    .scalar_one())
                    for table in (DELIVERIES, READINGS, REJECTIONS)}


def _engine(url: str, echo: bool) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, echo=echo, pool_pre_ping=True)
    engine = create_engine(url, echo=echo, connect_args={"timeout": 60,
                                                         "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:  # pragma: no cover - glue
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        if parsed.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:  # pragma: no cover - glue
        # writers take the write lock at once (no deadlock between two readers upgrading to
        # writers); readers (``_READ``) start a deferred transaction and block no one
        if conn.get_execution_options().get("imsys_read"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
