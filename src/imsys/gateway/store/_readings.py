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
from imsys.gateway.store._db import Database, from_micros, to_micros

_U64_SIGN = 2**63
_PAGE = 500
_U64 = 2**64

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
        # One index for two jobs: latest() and per-register range queries use the prefix
        # (meter_id, obis, timestamp); uniqueness over all four columns refuses a frame that
        # is stored already. Reading times grow per register, so inserts land at the end of
        # each register's range – few dirty pages per commit, unlike a digest-first key.
        ("readings_register", ("meter_id", "obis", "timestamp", "frame_digest"), True),
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


def _payload(record: ReadingRecord) -> tuple[SqlValue, ...]:
    r = record.reading
    check_int64(r.value, "value")
    status = r.status_word
    if status is not None:
        if not 0 <= status < _U64:
            raise StoreRejected(StoreReason.OUT_OF_RANGE, "status word is not a u64",
                                meter_id=r.meter_id, value=status)
        if status >= _U64_SIGN:
            status -= _U64
    return (r.meter_id, r.obis, r.value, r.scaler, r.unit, to_micros(r.timestamp),
            int(r.flags), status, to_micros(record.received_at), record.source.value,
            record.frame_digest)


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

    def append_readings(self, records: Sequence[ReadingRecord]) -> list[int]:
        """Store ``records`` in ONE transaction and return their seqs (gap-free, ascending).

        When this returns, the commit is durable (``Durability.FULL``): the caller may
        acknowledge. A frame that is already stored – any reading with the same meter id,
        frame digest, OBIS code and reading time – makes the whole call fail with
        ``DUPLICATE`` (so a replayed or re-sent frame is refused, and ingest is idempotent);
        nothing is written then, nor on any other error. Logging the refusal is the caller's
        part (it knows which log).
        """
        if not records:
            return []
        payloads = [_payload(record) for record in records]
        try:
            with self.db.transaction():
                head = READINGS.append(self.db, payloads)
        except StoreRejected as exc:
            if exc.reason is StoreReason.DUPLICATE:
                raise self._duplicate(records) from exc
            raise
        return list(range(head.seq - len(payloads) + 1, head.seq + 1))

    def _duplicate(self, records: Sequence[ReadingRecord]) -> StoreRejected:
        """Name the frame that made an append fail (after its rollback)."""
        conn = self.db.connection
        for record in records:
            r = record.reading
            row = conn.execute("SELECT seq FROM readings WHERE meter_id = ? AND frame_digest = ?"
                               " AND obis = ? AND timestamp = ?",
                               (r.meter_id, record.frame_digest, r.obis,
                                to_micros(r.timestamp))).fetchone()
            if row is not None:
                return StoreRejected(StoreReason.DUPLICATE, "frame already stored",
                                     meter_id=r.meter_id, frame_digest=record.frame_digest.hex(),
                                     seq=row[0])
        return StoreRejected(StoreReason.DUPLICATE, "the same register value twice in one call",
                             meter_id=records[0].reading.meter_id)

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
