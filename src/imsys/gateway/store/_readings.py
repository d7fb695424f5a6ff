"""The readings table: every value the gateway received, stamped, once, hash-chained.

Seed 003 §3.3/§3.9 step 4.1: the gateway stores each time-stamped value, marked valid or
invalid, "unverändert und unveränderbar". A :class:`ReadingRecord` is what the ingest hands
over (the :class:`~imsys.core.reading.Reading`, the gateway's receive time, the LMN source and
the digest of the frame it came in); a :class:`StoredReading` is what comes back, with its
sequence number and chain hash.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from imsys.core.errors import UsageError
from imsys.core.reading import Reading, ReadingFlag
from imsys.gateway.errors import StoreReason, StoreRejected
from imsys.gateway.store._chain import AppendOnlyTable, ChainHead, Column, SqlValue, check_int64
from imsys.gateway.store._db import INT64_MAX, INT64_MIN, Database, from_micros, to_micros

_U64_SIGN = 2**63
_PAGE = 500
_U64 = 2**64
_INDEX = "readings_meter_time"
#: the register index of databases written before the reordered key (same uniqueness)
_LEGACY_INDEX = "readings_register"

READINGS = AppendOnlyTable(
    "readings",
    (
        Column("meter_id", "TEXT"),
        Column("obis", "TEXT"),
        Column("value", "INTEGER"),
        Column("scaler", "INTEGER"),
        Column("unit", "INTEGER"),
        Column("timestamp", "INTEGER"),  # µs since 1970-01-01 UTC
        Column("flags", "INTEGER"),
        Column("status_word", "INTEGER", nullable=True),  # u64 stored as two's-complement i64
        Column("received_at", "INTEGER"),  # µs since 1970-01-01 UTC, the gateway's stamp
        Column("source", "TEXT"),
        Column("frame_digest", "BLOB"),
    ),
    indexes=(
        # One index for two jobs: per-meter time queries (latest(), register ranges) use the
        # prefix (meter_id, timestamp) and filter the OBIS code inside the index; uniqueness
        # over all four columns refuses a frame that is stored already. The values of one
        # frame share meter id and reading time, so a frame's index entries are neighbours
        # at the end of its meter's range: ~5 dirty index pages per commit of an 18-value
        # frame (leaf splits included). The earlier key (meter_id, obis, …), _LEGACY_INDEX,
        # put every register of a frame on a leaf page of its own: ~25.
        (_INDEX, ("meter_id", "timestamp", "obis", "frame_digest"), True),
    ),
)
_PAYLOAD = ", ".join(READINGS.payload_names)


class ReadingSource(StrEnum):
    """Where a reading entered the gateway."""

    LMN_SML = "lmn-sml"  # wired LMN, SML (TR-03109-1 Anlage IV b)
    WMBUS = "wmbus"  # wireless LMN, OMS wireless M-Bus
    GATEWAY = "gateway"  # formed by the gateway itself (e.g. a GAP marker)


@dataclass(frozen=True, slots=True)
class ReadingRecord:
    """One reading as the ingest hands it to the store.

    ``frame_digest`` identifies the LMN frame (e.g. SHA-256 of the SML file or the wM-Bus
    telegram) for duplicate and replay detection; readings of one frame share it. For values
    the gateway forms itself, use a digest of something unique to them.
    """

    reading: Reading
    received_at: datetime
    source: ReadingSource
    frame_digest: bytes

    def __post_init__(self) -> None:
        if self.received_at.tzinfo is None:
            raise UsageError("received_at must be timezone-aware")
        if not isinstance(self.source, ReadingSource):
            raise UsageError(f"source must be a ReadingSource, not {self.source!r}")
        if not isinstance(self.frame_digest, bytes) or not 1 <= len(self.frame_digest) <= 64:
            raise UsageError("frame_digest must be 1..64 bytes")


@dataclass(frozen=True, slots=True)
class StoredReading:
    """A reading as stored: its place in the chain and everything that was hashed."""

    seq: int
    reading: Reading
    received_at: datetime
    source: ReadingSource
    frame_digest: bytes
    prev_hash: bytes
    hash: bytes


def _status(meter_id: str, status: int | None) -> int | None:
    """The u64 FNN status word as the i64 SQLite stores (two's complement)."""
    if status is None:
        return None
    if not 0 <= status < _U64:
        raise StoreRejected(StoreReason.OUT_OF_RANGE, "status word is not a u64",
                            meter_id=meter_id, value=status)
    return status - _U64 if status >= _U64_SIGN else status


def _payload(record: ReadingRecord) -> tuple[SqlValue, ...]:
    r = record.reading
    check_int64(r.value, "value")
    return (r.meter_id, r.obis, r.value, r.scaler, r.unit, to_micros(r.timestamp),
            int(r.flags), _status(r.meter_id, r.status_word), to_micros(record.received_at),
            record.source.value, record.frame_digest)


def _frame_payloads(readings: Sequence[Reading], received_at: int, source: str,
                    frame_digest: bytes) -> list[tuple[SqlValue, ...]]:
    """:func:`_payload` for the readings of one frame (shared receive time, source, digest;
    the readings of one frame mostly share their time stamp, converted once)."""
    out = []
    last_time: datetime | None = None
    micros = 0
    for r in readings:
        value = r.value
        if not INT64_MIN <= value <= INT64_MAX:
            check_int64(value, "value")
        stamp = r.timestamp
        if stamp is not last_time:
            micros = to_micros(stamp)
            last_time = stamp
        status = r.status_word
        if status is not None and not 0 <= status < _U64_SIGN:
            status = _status(r.meter_id, status)
        out.append((r.meter_id, r.obis, value, r.scaler, r.unit, micros, int(r.flags), status,
                    received_at, source, frame_digest))
    return out


def _stored(row: tuple[Any, ...]) -> StoredReading:
    (seq, meter_id, obis, value, scaler, unit, timestamp, flags, status, received_at, source,
     digest, prev_hash, own_hash) = row
    if status is not None and status < 0:
        status += _U64
    reading = Reading(meter_id, obis, value, scaler, unit, from_micros(timestamp),
                      ReadingFlag(flags), status)
    return StoredReading(seq, reading, from_micros(received_at), ReadingSource(source), digest,
                         prev_hash, own_hash)


class ReadingStore:
    """The gateway's measurement store: append, read, verify – no update, no delete here.

    Deletion belongs to :mod:`imsys.gateway.retention` alone.
    """

    table = READINGS

    def __init__(self, db: Database) -> None:
        self.db = db
        READINGS.create(db)
        self._replace_legacy_index()

    def _replace_legacy_index(self) -> None:
        """A database written with the earlier register index gets the current one (same
        columns, same uniqueness, another order) – once, in one transaction."""
        if not self.db.index_exists(_LEGACY_INDEX):
            return
        with self.db.transaction() as conn:
            if self.db.index_exists(_LEGACY_INDEX):
                conn.execute(f"DROP INDEX {_LEGACY_INDEX}")
            if not self.db.index_exists(_INDEX):
                for statement in READINGS.index_ddl():
                    conn.execute(statement)

    def append_readings(self, records: Sequence[ReadingRecord]) -> list[int]:
        """Store ``records`` in ONE transaction and return their seqs (gap-free, ascending).

        When this returns, the commit is durable (``Durability.FULL``): the caller may
        acknowledge. A frame that is already stored – any reading with the same meter id,
        frame digest, OBIS code and reading time – makes the whole call fail with
        ``DUPLICATE`` (so a replayed or re-sent frame is refused, and ingest is idempotent);
        nothing is written then, nor on any other error. Logging the refusal is the caller's
        part (it knows which log). Inside an enclosing :meth:`Database.transaction` the
        readings join it (and are durable with its commit).
        """
        if not records:
            return []
        return self._append([_payload(record) for record in records])

    def append_frame(self, readings: Sequence[Reading], received_at: datetime,
                     source: ReadingSource, frame_digest: bytes) -> list[int]:
        """:meth:`append_readings` for the readings of one LMN frame, which share the receive
        time, the source and the frame digest (the ingest's path: no :class:`ReadingRecord`
        per value). Same checks, same records, same guarantees."""
        if not readings:
            return []
        ReadingRecord(readings[0], received_at, source, frame_digest)  # the shared checks
        return self._append(_frame_payloads(readings, to_micros(received_at), source.value,
                                            frame_digest))

    def _append(self, payloads: list[tuple[SqlValue, ...]]) -> list[int]:
        db = self.db
        try:
            if db.in_transaction:
                # AppendOnlyTable.append is all or nothing on its own: no savepoint needed
                head = READINGS.append(db, payloads)
            else:
                with db.transaction():
                    head = READINGS.append(db, payloads)
        except StoreRejected as exc:
            if exc.reason is StoreReason.DUPLICATE:
                raise self._duplicate(payloads) from exc
            raise
        return list(range(head.seq - len(payloads) + 1, head.seq + 1))

    def _duplicate(self, payloads: Sequence[tuple[SqlValue, ...]]) -> StoreRejected:
        """Name the frame that made an append fail (after its rollback)."""
        conn = self.db.connection
        for p in payloads:
            meter_id, obis, timestamp, digest = p[0], p[1], p[5], p[10]
            row = conn.execute("SELECT seq FROM readings WHERE meter_id = ? AND timestamp = ?"
                               " AND obis = ? AND frame_digest = ?",
                               (meter_id, timestamp, obis, digest)).fetchone()
            if row is not None:
                assert isinstance(digest, bytes)
                return StoreRejected(StoreReason.DUPLICATE, "frame already stored",
                                     meter_id=meter_id, frame_digest=digest.hex(), seq=row[0])
        return StoreRejected(StoreReason.DUPLICATE, "the same register value twice in one call",
                             meter_id=payloads[0][0])

    def iter_readings(self, meter_id: str | None = None, obis: str | None = None,
                      start: datetime | None = None, end: datetime | None = None
                      ) -> Iterator[StoredReading]:
        """Stored readings in seq (= arrival) order, filtered by meter, OBIS code and reading
        time ``start <= timestamp < end``.

        Rows are read in pages, so no cursor stays open while the caller works on an item.
        With a meter or OBIS filter, the matching seqs are first collected through the
        register index, then fetched by seq; otherwise the table is walked by seq.
        """
        where: list[str] = []
        params: list[SqlValue] = []
        for column, value in (("meter_id", meter_id), ("obis", obis)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if start is not None:
            where.append("timestamp >= ?")
            params.append(to_micros(start))
        if end is not None:
            where.append("timestamp < ?")
            params.append(to_micros(end))
        conn = self.db.connection
        select = f"SELECT seq, {_PAYLOAD}, prev_hash, hash FROM readings WHERE "
        if meter_id is None and obis is None:
            sql = f"{select}{''.join(f'{w} AND ' for w in where)}seq > ? ORDER BY seq LIMIT ?"
            after = 0
            while True:
                rows = conn.execute(sql, (*params, after, _PAGE)).fetchall()
                for row in rows:
                    yield _stored(row)
                if len(rows) < _PAGE:
                    return
                after = rows[-1][0]
        seqs = [row[0] for row in conn.execute(
            f"SELECT seq FROM readings WHERE {' AND '.join(where)} ORDER BY seq", params)]
        for i in range(0, len(seqs), _PAGE):
            chunk = seqs[i:i + _PAGE]
            rows = conn.execute(f"{select}seq IN ({', '.join('?' * len(chunk))}) ORDER BY seq",
                                chunk).fetchall()
            for row in rows:
                yield _stored(row)

    def latest(self, meter_id: str, obis: str) -> StoredReading | None:
        """The reading of ``meter_id``/``obis`` with the newest reading time (ties: the one
        stored last), or None."""
        row = self.db.connection.execute(
            f"SELECT seq, {_PAYLOAD}, prev_hash, hash FROM readings "
            "WHERE meter_id = ? AND obis = ? ORDER BY timestamp DESC, seq DESC LIMIT 1",
            (meter_id, obis)).fetchone()
        return None if row is None else _stored(row)

    def get(self, seq: int) -> StoredReading | None:
        row = self.db.connection.execute(
            f"SELECT seq, {_PAYLOAD}, prev_hash, hash FROM readings WHERE seq = ?",
            (seq,)).fetchone()
        return None if row is None else _stored(row)

    def head(self) -> ChainHead:
        """The last stored reading's seq and hash (for a witness; see ``verify_chain``)."""
        return READINGS.head(self.db.connection)

    def first_seq(self) -> int | None:
        """The oldest seq still stored (None if the store holds no reading)."""
        row = self.db.connection.execute("SELECT MIN(seq) FROM readings").fetchone()
        return row[0]

    def count(self) -> int:
        return int(self.db.connection.execute("SELECT COUNT(*) FROM readings").fetchone()[0])

    def verify_chain(self, expected_head: ChainHead | None = None) -> ChainHead:
        """Recompute every hash from the retention anchor on; raise
        ``StoreRejected(CHAIN_BROKEN, seq=…)`` at the first record that was altered, removed
        or moved, ``GUARD_MISSING`` if a guard trigger is gone. Returns the verified head."""
        return READINGS.verify(self.db, expected_head=expected_head)
