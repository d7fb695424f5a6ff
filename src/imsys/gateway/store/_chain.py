"""Hash chains over append-only SQLite tables: the machinery every evidence record kind shares.

An :class:`AppendOnlyTable` is a table whose rows form one hash chain (or, with a partition
column, one chain per partition value – one per log). Each row carries a gap-free sequence
number starting at 1, the previous row's hash and its own hash::

    hash = SHA-256( "imsys.chain.v1" 0x00
                    || u16(len(chain)) || chain (UTF-8)
                    || u64(seq) || prev_hash (32 bytes)
                    || u16(number of fields) || field_1 || … || field_n )

    field  = 0x4E                               NULL
           | 0x49 || i64(value)                 INTEGER
           | 0x54 || u32(len) || UTF-8 bytes     TEXT
           | 0x42 || u32(len) || bytes           BLOB

All integers big-endian; ``chain`` is the table name, or ``table/partition`` for partitioned
tables; the fields are the payload columns as stored, in the table's declared order; the first
record's ``prev_hash`` is 32 zero bytes (or the hash of the last deleted record, see anchors).

The database enforces what it can without SHA-256 (triggers, all ``RAISE(ABORT)``):

* ``<table>_no_update``: no UPDATE, ever;
* ``<table>_chain_link``: an INSERT must continue the chain (seq = head + 1, prev_hash = the
  head's hash);
* ``<table>_delete_by_anchor``: a row may be deleted only if an anchor covers its seq;
* ``<table>_anchor_on_record``: an anchor must name an existing row by seq *and* hash;
* on ``chain_anchor`` itself: no UPDATE, no DELETE, and anchors only move forward.

Deletion (retention) is therefore: insert an anchor (seq and hash of the last record to go),
then delete the prefix up to it, in one transaction. Verification starts from the newest
anchor. Recomputing the hashes is what finds edits, deletions in the middle and reordering;
the triggers keep honest code from writing anything else.
"""

from __future__ import annotations

import hashlib
import sqlite3
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from imsys.core.errors import UsageError
from imsys.gateway.errors import StoreReason, StoreRejected
from imsys.gateway.store._db import INT64_MAX, INT64_MIN, Database

SqlValue = int | str | bytes | None

GENESIS_HASH = bytes(32)
HASH_DOMAIN = b"imsys.chain.v1\x00"
ANCHOR_TABLE = "chain_anchor"
#: records per multi-row INSERT at most (fewer if the connection's variable limit says so)
ROWS_PER_STATEMENT = 256
_VARIABLE_LIMIT = sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER

_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_TAGGED_I64 = struct.Struct(">Bq")  # 0x49 'I' || i64
_TAGGED_U32 = struct.Struct(">BI")  # 0x54 'T' or 0x42 'B' || u32 length
_NULL = b"N"
_sha256 = hashlib.sha256

_ANCHOR_DDL = [
    f"""CREATE TABLE {ANCHOR_TABLE} (
    chain TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 1),
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (chain, seq)
)""",
    f"""CREATE TRIGGER {ANCHOR_TABLE}_no_update BEFORE UPDATE ON {ANCHOR_TABLE}
BEGIN SELECT RAISE(ABORT, 'imsys: chain anchors are append-only'); END""",
    f"""CREATE TRIGGER {ANCHOR_TABLE}_no_delete BEFORE DELETE ON {ANCHOR_TABLE}
BEGIN SELECT RAISE(ABORT, 'imsys: chain anchors are never deleted'); END""",
    f"""CREATE TRIGGER {ANCHOR_TABLE}_forward BEFORE INSERT ON {ANCHOR_TABLE}
WHEN NEW.seq <= COALESCE((SELECT MAX(seq) FROM {ANCHOR_TABLE} WHERE chain = NEW.chain), 0)
BEGIN SELECT RAISE(ABORT, 'imsys: chain anchors only move forward'); END""",
]
_ANCHOR_GUARDS = ("no_update", "no_delete", "forward")


def _encode_text(value: str) -> bytes:
    encoded = _TEXT_CACHE.get(value)
    if encoded is None:
        data = value.encode()
        encoded = _TAGGED_U32.pack(0x54, len(data)) + data
        if len(data) <= _TEXT_CACHE_ITEM:
            if len(_TEXT_CACHE) >= _TEXT_CACHE_SIZE:
                _TEXT_CACHE.clear()
            _TEXT_CACHE[value] = encoded
    return encoded


#: encodings of short texts, which repeat from record to record (meter ids, OBIS codes,
#: sources, log texts); bounded
_TEXT_CACHE: dict[str, bytes] = {}
_TEXT_CACHE_SIZE = 4096
_TEXT_CACHE_ITEM = 64
#: "imsys.chain.v1" 0x00 || u16 len(chain) || chain, per chain name; bounded
_CHAIN_PREFIXES: dict[str, bytes] = {}


def _encode_other(value: object) -> bytes:
    """A field whose type is not exactly int, str, bytes or None: ``bool`` is refused,
    subclasses (enum members, ``bytes`` subclasses) are encoded as their base type."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _encode_int(int(value))
    if isinstance(value, str):
        return _encode_text(str(value))
    if isinstance(value, bytes):
        data = bytes(value)
        return _TAGGED_U32.pack(0x42, len(data)) + data
    raise UsageError(f"chain fields are int, str, bytes or None, not {type(value)!r}")


def _encode_int(value: int) -> bytes:
    try:
        return _TAGGED_I64.pack(0x49, value)
    except struct.error:
        check_int64(value, "field")
        raise


def _chain_prefix(chain: str) -> bytes:
    prefix = _CHAIN_PREFIXES.get(chain)
    if prefix is None:
        name = chain.encode()
        prefix = HASH_DOMAIN + _U16.pack(len(name)) + name
        if len(_CHAIN_PREFIXES) < _TEXT_CACHE_SIZE:
            _CHAIN_PREFIXES[chain] = prefix
    return prefix


def record_hash(chain: str, seq: int, prev_hash: bytes, fields: Sequence[SqlValue]) -> bytes:
    """SHA-256 over the canonical encoding of one record (see the module docstring)."""
    parts = [_chain_prefix(chain), _U64.pack(seq), prev_hash, _U16.pack(len(fields))]
    add = parts.append
    for value in fields:  # the common exact types inline: this runs for every record
        kind = type(value)
        if kind is int:
            try:
                add(_TAGGED_I64.pack(0x49, value))
            except struct.error:
                check_int64(value, "field")
                raise
        elif kind is str:
            encoded = _TEXT_CACHE.get(value)
            add(encoded if encoded is not None else _encode_text(value))
        elif kind is bytes:
            add(_TAGGED_U32.pack(0x42, len(value)))
            add(value)
        elif value is None:
            add(_NULL)
        else:
            add(_encode_other(value))
    return _sha256(b"".join(parts)).digest()


def check_int64(value: int, name: str) -> None:
    """Refuse an integer that an SQLite INTEGER column (and the i64 encoding) cannot hold."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise StoreRejected(StoreReason.OUT_OF_RANGE, f"{name} does not fit 64 bits",
                            field=name, value=value)


def _normalise_sql(sql: str | None) -> str:
    return " ".join((sql or "").split())


@dataclass(frozen=True, slots=True)
class Column:
    """One payload column of an append-only table (hashed in declaration order)."""

    name: str
    sql_type: str  # INTEGER, TEXT or BLOB
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.sql_type not in ("INTEGER", "TEXT", "BLOB"):
            raise UsageError(f"column {self.name}: type {self.sql_type!r} cannot be hashed")

    def ddl(self) -> str:
        return f"{self.name} {self.sql_type}{'' if self.nullable else ' NOT NULL'}"


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where a chain ends: the last record's seq and hash (seq 0 and zeros for an empty chain).

    Hand a head to a witness (sign it, send it to the administrator) and pass it back to
    ``verify`` later: that also detects a removed tail or a chain recomputed from scratch,
    which no chain can detect on its own.
    """

    chain: str
    seq: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class Anchor:
    """The last record a retention deletion removed: verification continues after it."""

    chain: str
    seq: int
    hash: bytes


class AppendOnlyTable:
    """A hash-chained, append-only table; optionally one chain per value of ``partition``.

    The table computes sequence numbers and hashes; callers hand it payload tuples (SQL
    values in the order of ``columns``) inside a :meth:`Database.transaction`.
    """

    def __init__(self, name: str, columns: Sequence[Column], *, seq_column: str = "seq",
                 partition: str | None = None,
                 indexes: Iterable[tuple[str, Sequence[str], bool]] = ()) -> None:
        if not name.isidentifier() or not all(c.name.isidentifier() for c in columns):
            raise UsageError("table and column names are identifiers")
        self.name = name
        self.columns = tuple(columns)
        self.seq_column = seq_column
        self.partition = partition
        self.indexes = tuple(indexes)
        self.payload_names = tuple(c.name for c in self.columns)
        key = f"{partition} = ? AND " if partition else ""
        prefix = f"{partition}, " if partition else ""
        marks = ", ".join("?" * (len(self.columns) + 3 + (1 if partition else 0)))
        self._row_marks = f"({marks})"
        self._insert_head = (f"INSERT INTO {name} ({prefix}{seq_column}, "
                             f"{', '.join(self.payload_names)}, prev_hash, hash) VALUES ")
        self._insert_sql = f"{self._insert_head}{self._row_marks}"
        self._insert_many: dict[int, str] = {1: self._insert_sql}
        self._head_sql = (f"SELECT {seq_column}, hash FROM {name} WHERE {key}1 "
                          f"ORDER BY {seq_column} DESC LIMIT 1")
        self._select_sql = (f"SELECT {seq_column}, {', '.join(self.payload_names)}, prev_hash, "
                            f"hash FROM {name} WHERE {key}{seq_column} > ? "
                            f"ORDER BY {seq_column} LIMIT ?")
        self._row_sql = f"SELECT hash FROM {name} WHERE {key}{seq_column} = ?"
        self._delete_sql = f"DELETE FROM {name} WHERE {key}{seq_column} <= ?"

    # -- schema -------------------------------------------------------------------------------

    def _chain_expr(self, alias: str) -> str:
        if self.partition:
            return f"'{self.name}/' || {alias}.{self.partition}"
        return f"'{self.name}'"

    def guard_ddl(self) -> dict[str, str]:
        """The guard triggers by name (created with the table, checked by :meth:`verify`)."""
        t, seq, p = self.name, self.seq_column, self.partition
        same_new = f"{p} = NEW.{p} AND " if p else ""
        where_new = f" WHERE {p} = NEW.{p}" if p else ""
        if p:
            prefix = f"'{t}/'"
            matches = f"substr(NEW.chain, 1, {len(t) + 1}) = {prefix}"
            own_row = f"{p} = substr(NEW.chain, {len(t) + 2}) AND "
        else:
            matches = f"NEW.chain = '{t}'"
            own_row = ""
        return {
            f"{t}_no_update": f"""CREATE TRIGGER {t}_no_update BEFORE UPDATE ON {t}
BEGIN SELECT RAISE(ABORT, 'imsys: {t} is append-only, no UPDATE'); END""",
            f"{t}_chain_link": f"""CREATE TRIGGER {t}_chain_link BEFORE INSERT ON {t}
WHEN NEW.{seq} IS NOT COALESCE(
        (SELECT MAX({seq}) FROM {t}{where_new}),
        (SELECT MAX(seq) FROM {ANCHOR_TABLE} WHERE chain = {self._chain_expr('NEW')}), 0) + 1
  OR NEW.prev_hash IS NOT COALESCE(
        (SELECT hash FROM {t} WHERE {same_new}{seq} = NEW.{seq} - 1),
        (SELECT hash FROM {ANCHOR_TABLE}
          WHERE chain = {self._chain_expr('NEW')} AND seq = NEW.{seq} - 1),
        zeroblob(32))
BEGIN SELECT RAISE(ABORT, 'imsys: {t} insert does not continue the chain'); END""",
            f"{t}_delete_by_anchor": f"""CREATE TRIGGER {t}_delete_by_anchor BEFORE DELETE ON {t}
WHEN NOT EXISTS (SELECT 1 FROM {ANCHOR_TABLE}
                 WHERE chain = {self._chain_expr('OLD')} AND seq >= OLD.{seq})
BEGIN SELECT RAISE(ABORT, 'imsys: {t} rows go only by retention, oldest first'); END""",
            f"{t}_anchor_on_record": f"""CREATE TRIGGER {t}_anchor_on_record
BEFORE INSERT ON {ANCHOR_TABLE}
WHEN {matches} AND NOT EXISTS (
        SELECT 1 FROM {t} WHERE {own_row}{seq} = NEW.seq AND hash = NEW.hash)
BEGIN SELECT RAISE(ABORT, 'imsys: an anchor must name an existing {t} record'); END""",
        }

    def ddl(self) -> list[str]:
        """CREATE statements for the table, its indexes and its guards."""
        part = f"{self.partition} TEXT NOT NULL, " if self.partition else ""
        key = f"{self.partition}, {self.seq_column}" if self.partition else self.seq_column
        columns = ", ".join(c.ddl() for c in self.columns)
        statements = [
            f"CREATE TABLE {self.name} ({part}{self.seq_column} INTEGER NOT NULL "
            f"CHECK ({self.seq_column} >= 1), {columns}, "
            "prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32), "
            "hash BLOB NOT NULL CHECK (length(hash) = 32), "
            f"PRIMARY KEY ({key}))"
        ]
        statements.extend(self.index_ddl())
        statements.extend(self.guard_ddl().values())
        return statements

    def index_ddl(self) -> list[str]:
        """CREATE statements for the table's secondary indexes."""
        return [f"CREATE {'UNIQUE ' if unique else ''}INDEX {index_name} "
                f"ON {self.name} ({', '.join(index_columns)})"
                for index_name, index_columns, unique in self.indexes]

    def create(self, db: Database) -> None:
        """Create the shared anchor table and this table (each only if missing)."""
        db.ensure_schema(ANCHOR_TABLE, _ANCHOR_DDL)
        db.ensure_schema(self.name, self.ddl())

    # -- chains -------------------------------------------------------------------------------

    def chain_name(self, key: str | None = None) -> str:
        if self.partition:
            if key is None:
                raise UsageError(f"{self.name}: which chain? (partition key missing)")
            return f"{self.name}/{key}"
        if key is not None:
            raise UsageError(f"{self.name} has one chain, no partition key")
        return self.name

    def _params(self, key: str | None) -> tuple[str, ...]:
        return (key,) if self.partition and key is not None else ()

    def anchor(self, conn: sqlite3.Connection, key: str | None = None) -> Anchor | None:
        """The newest anchor of the chain (None if nothing was ever deleted)."""
        chain = self.chain_name(key)
        row = conn.execute(f"SELECT seq, hash FROM {ANCHOR_TABLE} WHERE chain = ? "
                           "ORDER BY seq DESC LIMIT 1", (chain,)).fetchone()
        return None if row is None else Anchor(chain, row[0], row[1])

    def head(self, conn: sqlite3.Connection, key: str | None = None) -> ChainHead:
        """The chain's last record, else its anchor, else seq 0 and the genesis hash."""
        chain = self.chain_name(key)
        row = conn.execute(self._head_sql, self._params(key)).fetchone()
        if row is not None:
            return ChainHead(chain, row[0], row[1])
        anchor = self.anchor(conn, key)
        if anchor is not None:
            return ChainHead(chain, anchor.seq, anchor.hash)
        return ChainHead(chain, 0, GENESIS_HASH)

    def append(self, db: Database, payloads: Sequence[Sequence[SqlValue]],
               key: str | None = None) -> ChainHead:
        """Chain and insert ``payloads`` inside the caller's transaction; the new head.

        All or nothing: up to :data:`ROWS_PER_STATEMENT` records go in as ONE multi-row
        ``INSERT`` (a statement that fails – a guard, a duplicate – leaves nothing behind, so
        no savepoint is needed); longer lists are split into statements inside a savepoint.

        The records get seqs ``old head + 1 … new head``. The head comes from the
        connection's cache when it has one; if another connection appended meanwhile, the
        chain-link trigger refuses the first row (nothing is inserted), and the append is
        repeated once from the head read from the database.
        """
        if not db.in_transaction:
            raise UsageError("append only inside Database.transaction()")
        conn = db.connection
        chain = self.chain_name(key)
        cached = db.chain_heads.get(chain)
        if not payloads:
            return self.head(conn, key)
        width = len(self.columns)
        for attempt in (0, 1):
            if cached is None or attempt:
                head = self.head(conn, key)
                cached = (head.seq, head.hash)
            seq, prev = cached
            prefix = self._params(key)
            params: list[SqlValue] = []
            extend = params.extend
            for payload in payloads:
                if len(payload) != width:
                    raise UsageError(f"{self.name} records have {width} fields, "
                                     f"not {len(payload)}")
                seq += 1
                digest = record_hash(chain, seq, prev, payload)
                extend(prefix)
                params.append(seq)
                extend(payload)
                params.append(prev)
                params.append(digest)
                prev = digest
            try:
                self._insert(db, params, len(payloads))
            except sqlite3.IntegrityError as exc:
                db.chain_heads.pop(chain, None)
                if exc.sqlite_errorname == "SQLITE_CONSTRAINT_UNIQUE":
                    raise StoreRejected(StoreReason.DUPLICATE, str(exc), chain=chain) from exc
                if attempt or exc.sqlite_errorname not in ("SQLITE_CONSTRAINT_TRIGGER",
                                                           "SQLITE_CONSTRAINT_PRIMARYKEY"):
                    raise StoreRejected(StoreReason.APPEND_ONLY, str(exc), chain=chain) from exc
                continue
            db.chain_heads[chain] = (seq, prev)
            return ChainHead(chain, seq, prev)
        raise AssertionError("unreachable")  # pragma: no cover

    def _insert_statement(self, rows: int) -> str:
        sql = self._insert_many.get(rows)
        if sql is None:
            sql = self._insert_many[rows] = (
                f"{self._insert_head}{', '.join([self._row_marks] * rows)}")
        return sql

    def _insert(self, db: Database, params: list[SqlValue], rows: int) -> None:
        conn = db.connection
        width = len(params) // rows
        # the connection's bound on variables per statement (999 before SQLite 3.32)
        per_statement = max(1, min(ROWS_PER_STATEMENT, conn.getlimit(_VARIABLE_LIMIT) // width))
        if rows <= per_statement:
            conn.execute(self._insert_statement(rows), params)
            return
        with db.transaction():
            for first in range(0, rows, per_statement):
                count = min(per_statement, rows - first)
                conn.execute(self._insert_statement(count),
                             params[first * width:(first + count) * width])

    def rows(self, conn: sqlite3.Connection, key: str | None = None, *, after: int = 0,
             page: int = 2000) -> Iterable[tuple[SqlValue, ...]]:
        """All rows of a chain in seq order: ``(seq, *payload, prev_hash, hash)``, paged."""
        prefix = self._params(key)
        while True:
            batch = conn.execute(self._select_sql, (*prefix, after, page)).fetchall()
            yield from batch
            if len(batch) < page:
                return
            after = batch[-1][0]

    def verify(self, db: Database, key: str | None = None,
               expected_head: ChainHead | None = None) -> ChainHead:
        """Recompute the chain from its newest anchor; raise ``CHAIN_BROKEN`` at the first
        record that does not verify, ``GUARD_MISSING`` if a guard trigger was removed or
        altered. With ``expected_head`` (from a witness) also detect a shortened or rebuilt
        chain. Returns the verified head."""
        conn = db.connection
        chain = self.chain_name(key)
        anchor = self.anchor(conn, key)
        seq, prev = (anchor.seq, anchor.hash) if anchor else (0, GENESIS_HASH)
        width = len(self.columns)
        for row in self.rows(conn, key, after=0):
            record_seq = row[0]
            payload = row[1:1 + width]
            stored_prev, stored_hash = row[1 + width], row[2 + width]
            if record_seq != seq + 1:
                raise StoreRejected(StoreReason.CHAIN_BROKEN, f"{chain}: seq {seq + 1} expected,"
                                    f" found {record_seq}", chain=chain, seq=seq + 1)
            if stored_prev != prev:
                raise StoreRejected(StoreReason.CHAIN_BROKEN, f"{chain}: record {record_seq} "
                                    "does not link to its predecessor", chain=chain,
                                    seq=record_seq)
            if record_hash(chain, record_seq, prev, payload) != stored_hash:
                raise StoreRejected(StoreReason.CHAIN_BROKEN, f"{chain}: record {record_seq} "
                                    "was altered", chain=chain, seq=record_seq)
            seq, prev = record_seq, stored_hash
        if expected_head is not None:
            self._check_witness(conn, key, expected_head, ChainHead(chain, seq, prev), anchor)
        self.check_guards(db)
        return ChainHead(chain, seq, prev)

    def _check_witness(self, conn: sqlite3.Connection, key: str | None, witnessed: ChainHead,
                       head: ChainHead, anchor: Anchor | None) -> None:
        chain = head.chain
        if witnessed.chain != chain:
            raise UsageError(f"a head of {witnessed.chain} does not verify {chain}")
        if witnessed.seq > head.seq:
            raise StoreRejected(StoreReason.CHAIN_BROKEN, f"{chain}: records after {head.seq} "
                                "are missing", chain=chain, seq=head.seq + 1)
        if witnessed.seq == head.seq:
            found: bytes | None = head.hash
        elif anchor is not None and witnessed.seq <= anchor.seq:
            # deleted by retention since it was witnessed: only the anchor itself can be compared
            found = anchor.hash if witnessed.seq == anchor.seq else witnessed.hash
        else:
            row = conn.execute(self._row_sql, (*self._params(key), witnessed.seq)).fetchone()
            found = row[0] if row else None
        if found != witnessed.hash:
            raise StoreRejected(StoreReason.CHAIN_BROKEN, f"{chain}: record {witnessed.seq} "
                                "differs from the witnessed head", chain=chain, seq=witnessed.seq)

    def check_guards(self, db: Database) -> None:
        """Raise ``GUARD_MISSING`` unless every guard trigger is present and unaltered."""
        expected = dict(self.guard_ddl())
        expected.update({f"{ANCHOR_TABLE}_{g}": s for g, s in zip(
            _ANCHOR_GUARDS, _ANCHOR_DDL[1:], strict=True)})
        names = tuple(expected)
        found = dict(db.connection.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN "
            f"({', '.join('?' * len(names))})", names).fetchall())
        for name, sql in expected.items():
            if _normalise_sql(found.get(name)) != _normalise_sql(sql):
                raise StoreRejected(StoreReason.GUARD_MISSING, f"trigger {name} is missing or "
                                    "altered", trigger=name)

    def delete_prefix(self, conn: sqlite3.Connection, through_seq: int, created_at: int,
                      key: str | None = None) -> Anchor:
        """Delete records 1‥``through_seq`` by anchoring the chain at ``through_seq`` (inside
        the caller's transaction; the retention module decides *whether*)."""
        chain = self.chain_name(key)
        row = conn.execute(self._row_sql, (*self._params(key), through_seq)).fetchone()
        if row is None:
            raise UsageError(f"{chain}: no record {through_seq} to anchor at")
        conn.execute(f"INSERT INTO {ANCHOR_TABLE} (chain, seq, hash, created_at) "
                     "VALUES (?, ?, ?, ?)", (chain, through_seq, row[0], created_at))
        conn.execute(self._delete_sql, (*self._params(key), through_seq))
        return Anchor(chain, through_seq, row[0])
