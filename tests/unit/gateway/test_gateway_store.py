"""The evidence store: durable, append-only, hash-chained readings (seed 003 §3.9 step 4.1)."""

from __future__ import annotations

import hashlib
import sqlite3
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from enum import IntEnum
from pathlib import Path

import pytest

from imsys.core.errors import UsageError
from imsys.core.reading import Reading, ReadingFlag
from imsys.gateway.errors import StoreReason, StoreRejected
from imsys.gateway.store import (
    GENESIS_HASH,
    READINGS,
    AppendOnlyTable,
    ChainHead,
    Column,
    Database,
    Durability,
    ReadingRecord,
    ReadingSource,
    ReadingStore,
    StateKey,
    StateTable,
    _chain,
    record_hash,
)

T0 = datetime(2025, 3, 1, tzinfo=UTC)
OBIS_IN = "1-0:1.8.0*255"
OBIS_OUT = "1-0:2.8.0*255"


def frame(meter: str, number: int, registers: tuple[str, ...] = (OBIS_IN,), *,
          when: datetime | None = None, value: int = 1000) -> list[ReadingRecord]:
    """The readings of one LMN frame: one per register, sharing the frame digest."""
    stamp = T0 + timedelta(minutes=15 * number) if when is None else when
    digest = hashlib.sha256(f"{meter}/{number}".encode()).digest()
    return [ReadingRecord(Reading(meter, obis, value + number, -1, 30, stamp), stamp,
                          ReadingSource.LMN_SML, digest) for obis in registers]


@pytest.fixture
def db() -> Iterator[Database]:
    database = Database(":memory:", durability=Durability.OFF)
    yield database
    database.close()


@pytest.fixture
def store(db: Database) -> ReadingStore:
    return ReadingStore(db)


def tamper(db: Database, *statements: str) -> None:
    """An attacker with file access: drop the guards, change rows, put the guards back."""
    conn = db.connection
    guards = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                          "AND tbl_name = 'readings'").fetchall()
    for name, _ in guards:
        conn.execute(f"DROP TRIGGER {name}")
    for statement in statements:
        conn.execute(statement)
    for _, sql in guards:
        conn.execute(sql)


# -- appending -------------------------------------------------------------------------------


def test_append_returns_gap_free_seqs_from_one(store: ReadingStore) -> None:
    assert store.append_readings(frame("m1", 1, (OBIS_IN, OBIS_OUT))) == [1, 2]
    assert store.append_readings(frame("m1", 2)) == [3]
    assert store.append_readings([]) == []
    assert [s.seq for s in store.iter_readings()] == [1, 2, 3]
    assert store.head().seq == 3
    assert store.count() == 3
    assert store.first_seq() == 1


def test_every_field_round_trips(store: ReadingStore) -> None:
    cet = timezone(timedelta(hours=1))
    reading = Reading("1EMH0012345678", "1-0:16.7.0*255", -(2**63), -3, 27,
                      datetime(2025, 3, 1, 13, 0, 0, 123456, tzinfo=cet),
                      ReadingFlag.CLOCK_INVALID | ReadingFlag.METER_ERROR,
                      status_word=0xFFFF_FFFF_0010_0504)  # a u64 with the top bit set
    record = ReadingRecord(reading, datetime(2025, 3, 1, 12, 0, 1, tzinfo=UTC),
                           ReadingSource.WMBUS, b"\x01" * 32)
    (seq,) = store.append_readings([record])
    stored = store.get(seq)
    assert stored is not None
    assert stored.reading == reading
    assert stored.reading.timestamp.tzinfo == UTC
    assert stored.received_at == record.received_at
    assert stored.source is ReadingSource.WMBUS
    assert stored.frame_digest == record.frame_digest
    assert stored.prev_hash == GENESIS_HASH
    assert stored.hash == store.head().hash
    assert store.get(seq + 1) is None


def test_a_value_beyond_64_bits_is_refused_and_nothing_is_written(store: ReadingStore) -> None:
    store.append_readings(frame("m1", 1))
    good = frame("m1", 2)[0]
    bad = ReadingRecord(Reading("m1", OBIS_OUT, 2**63, 0, 30, T0), T0, ReadingSource.LMN_SML,
                        b"x")
    with pytest.raises(StoreRejected) as info:
        store.append_readings([good, bad])
    assert info.value.reason is StoreReason.OUT_OF_RANGE
    assert store.count() == 1


def test_record_validation() -> None:
    reading = frame("m1", 1)[0].reading
    with pytest.raises(UsageError):
        ReadingRecord(reading, datetime(2025, 1, 1), ReadingSource.LMN_SML, b"d")
    with pytest.raises(UsageError):
        ReadingRecord(reading, T0, "lmn-sml", b"d")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        ReadingRecord(reading, T0, ReadingSource.LMN_SML, b"")
    with pytest.raises(UsageError):
        ReadingRecord(reading, T0, ReadingSource.LMN_SML, bytes(65))


# -- duplicates ------------------------------------------------------------------------------


def test_the_same_frame_twice_is_a_duplicate_and_writes_nothing(store: ReadingStore) -> None:
    first = frame("m1", 1, (OBIS_IN, OBIS_OUT))
    store.append_readings(first)
    head = store.head()
    with pytest.raises(StoreRejected) as info:
        store.append_readings(frame("m1", 2) + first)  # a new frame and a replayed one
    assert info.value.reason is StoreReason.DUPLICATE
    assert info.value.context["meter_id"] == "m1"
    assert info.value.context["frame_digest"] == first[0].frame_digest.hex()
    assert info.value.context["seq"] == 1
    assert store.head() == head  # all or nothing: the new frame was not written either
    assert store.count() == 2
    store.verify_chain()
    assert store.append_readings(frame("m1", 2)) == [3]  # the store is still usable


def test_a_register_twice_in_one_call_is_a_duplicate(store: ReadingStore) -> None:
    records = frame("m1", 1)
    with pytest.raises(StoreRejected) as info:
        store.append_readings(records + records)
    assert info.value.reason is StoreReason.DUPLICATE
    assert store.count() == 0


def test_the_same_digest_from_another_meter_is_no_duplicate(store: ReadingStore) -> None:
    store.append_readings(frame("m1", 1))
    other = [ReadingRecord(Reading("m2", r.reading.obis, 5, 0, 30, r.reading.timestamp),
                           r.received_at, r.source, r.frame_digest) for r in frame("m1", 1)]
    assert store.append_readings(other) == [2]


# -- reading ---------------------------------------------------------------------------------


def test_iter_readings_filters_by_meter_register_and_time(store: ReadingStore) -> None:
    for n in range(8):
        store.append_readings(frame("m1", n, (OBIS_IN, OBIS_OUT)) + frame("m2", n))
    assert len(list(store.iter_readings())) == 24
    assert len(list(store.iter_readings(meter_id="m2"))) == 8
    assert len(list(store.iter_readings(obis=OBIS_OUT))) == 8
    window = list(store.iter_readings("m1", OBIS_IN, start=T0 + timedelta(minutes=30),
                                      end=T0 + timedelta(minutes=75)))
    assert [s.reading.timestamp for s in window] == [T0 + timedelta(minutes=m)
                                                     for m in (30, 45, 60)]
    seqs = [s.seq for s in store.iter_readings(meter_id="m1")]
    assert seqs == sorted(seqs)


def test_iter_readings_pages_through_large_stores(store: ReadingStore) -> None:
    records = [r for n in range(2500) for r in frame("m1", n)]
    store.append_readings(records)
    assert [s.seq for s in store.iter_readings()] == list(range(1, 2501))
    assert sum(1 for _ in store.iter_readings(start=T0 + timedelta(minutes=15 * 1000))) == 1500
    by_register = list(store.iter_readings("m1", OBIS_IN, end=T0 + timedelta(minutes=15 * 1200)))
    assert [s.seq for s in by_register] == list(range(1, 1201))


def test_latest_is_by_reading_time_not_arrival(store: ReadingStore) -> None:
    store.append_readings(frame("m1", 5))
    store.append_readings(frame("m1", 3))  # a late frame from the meter's memory
    latest = store.latest("m1", OBIS_IN)
    assert latest is not None and latest.seq == 1
    assert latest.reading.timestamp == T0 + timedelta(minutes=75)
    assert store.latest("m1", OBIS_OUT) is None
    assert store.latest("nobody", OBIS_IN) is None


# -- the chain -------------------------------------------------------------------------------


def test_hash_encoding_matches_the_documented_layout() -> None:
    """An independent re-implementation of the encoding in docs/gateway-store.md."""
    fields = ("m1", 7, -1, None, b"\x00\xff")
    expected = hashlib.sha256(
        b"imsys.chain.v1\x00" + struct.pack(">H", 8) + b"readings" + struct.pack(">Q", 3)
        + b"\x11" * 32 + struct.pack(">H", 5)
        + b"T" + struct.pack(">I", 2) + b"m1"
        + b"I" + struct.pack(">q", 7)
        + b"I" + struct.pack(">q", -1)
        + b"N"
        + b"B" + struct.pack(">I", 2) + b"\x00\xff").digest()
    assert record_hash("readings", 3, b"\x11" * 32, fields) == expected
    with pytest.raises(UsageError):
        record_hash("readings", 1, GENESIS_HASH, (1.5,))  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        record_hash("readings", 1, GENESIS_HASH, (True,))
    with pytest.raises(StoreRejected) as info:
        record_hash("readings", 1, GENESIS_HASH, (2**63,))
    assert info.value.reason is StoreReason.OUT_OF_RANGE


def test_verify_chain_recomputes_every_record(store: ReadingStore) -> None:
    for n in range(5):
        store.append_readings(frame("m1", n))
    head = store.verify_chain()
    assert head == store.head() and head.seq == 5
    rows = READINGS.rows(store.db.connection)
    previous = GENESIS_HASH
    for row in rows:
        assert row[-2] == previous
        assert row[-1] == record_hash("readings", row[0], previous, row[1:-2])
        previous = row[-1]


def test_editing_a_row_with_raw_sql_is_detected(store: ReadingStore) -> None:
    for n in range(5):
        store.append_readings(frame("m1", n))
    tamper(store.db, "UPDATE readings SET value = value + 1 WHERE seq = 3")
    with pytest.raises(StoreRejected) as info:
        store.verify_chain()
    assert info.value.reason is StoreReason.CHAIN_BROKEN
    assert info.value.context["seq"] == 3


def test_editing_a_row_and_its_hash_breaks_the_next_link(store: ReadingStore) -> None:
    for n in range(5):
        store.append_readings(frame("m1", n))
    row = store.get(3)
    assert row is not None
    forged = READINGS.rows(store.db.connection, after=2, page=1)
    payload = list(next(iter(forged))[1:-2])
    payload[2] += 1
    new_hash = record_hash("readings", 3, row.prev_hash, payload)
    tamper(store.db, f"UPDATE readings SET value = value + 1, hash = x'{new_hash.hex()}' "
                     "WHERE seq = 3")
    with pytest.raises(StoreRejected) as info:
        store.verify_chain()
    assert info.value.context["seq"] == 4


def test_deleting_a_middle_row_is_detected(store: ReadingStore) -> None:
    for n in range(5):
        store.append_readings(frame("m1", n))
    tamper(store.db, "DELETE FROM readings WHERE seq = 3")
    with pytest.raises(StoreRejected) as info:
        store.verify_chain()
    assert info.value.reason is StoreReason.CHAIN_BROKEN
    assert info.value.context["seq"] == 3


def test_deleting_the_first_row_is_detected(store: ReadingStore) -> None:
    for n in range(3):
        store.append_readings(frame("m1", n))
    tamper(store.db, "DELETE FROM readings WHERE seq = 1")
    with pytest.raises(StoreRejected) as info:
        store.verify_chain()
    assert info.value.context["seq"] == 1


def test_reordering_rows_is_detected(store: ReadingStore) -> None:
    for n in range(5):
        store.append_readings(frame("m1", n))
    tamper(store.db,
           "UPDATE readings SET seq = 99 WHERE seq = 2",
           "UPDATE readings SET seq = 2 WHERE seq = 4",
           "UPDATE readings SET seq = 4 WHERE seq = 99")
    with pytest.raises(StoreRejected) as info:
        store.verify_chain()
    assert info.value.reason is StoreReason.CHAIN_BROKEN
    assert info.value.context["seq"] == 2


def test_a_shortened_tail_is_found_only_against_a_witnessed_head(store: ReadingStore) -> None:
    for n in range(5):
        store.append_readings(frame("m1", n))
    witnessed = store.head()
    store.verify_chain(expected_head=witnessed)
    tamper(store.db, "DELETE FROM readings WHERE seq = 5")
    store.verify_chain()  # a chain cannot know its own end
    with pytest.raises(StoreRejected) as info:
        store.verify_chain(expected_head=witnessed)
    assert info.value.context["seq"] == 5


def test_a_rebuilt_chain_differs_from_the_witnessed_head(store: ReadingStore) -> None:
    for n in range(3):
        store.append_readings(frame("m1", n))
    witnessed = store.head()
    store.append_readings(frame("m1", 9))
    store.verify_chain(expected_head=witnessed)  # an older witness still verifies
    with pytest.raises(StoreRejected):
        store.verify_chain(expected_head=ChainHead("readings", 3, b"\x00" * 31 + b"\x01"))
    with pytest.raises(UsageError):
        store.verify_chain(expected_head=ChainHead("log_entries/system", 1, GENESIS_HASH))


# -- the database refuses what the API never does ----------------------------------------------


@pytest.mark.parametrize("statement", [
    "UPDATE readings SET value = 0 WHERE seq = 2",
    "UPDATE readings SET flags = 0",
    "DELETE FROM readings WHERE seq = 2",
    "DELETE FROM readings WHERE seq = 1",
    "DELETE FROM readings",
    "INSERT INTO readings SELECT seq + 10, meter_id, obis, value, scaler, unit, timestamp, "
    "flags, status_word, received_at, source, x'00', prev_hash, hash FROM readings "
    "WHERE seq = 2",
    "INSERT INTO readings SELECT seq + 1, meter_id, obis, value, scaler, unit, timestamp + 1, "
    "flags, status_word, received_at, source, frame_digest, zeroblob(32), hash FROM readings "
    "WHERE seq = 2",
    "INSERT INTO chain_anchor VALUES ('readings', 1, zeroblob(32), 0)",
])
def test_sqlite_refuses_updates_deletes_and_broken_links(store: ReadingStore,
                                                         statement: str) -> None:
    store.append_readings(frame("m1", 1))
    store.append_readings(frame("m1", 2))
    with pytest.raises(sqlite3.IntegrityError, match="imsys"):
        store.db.connection.execute(statement)
    store.verify_chain()
    assert store.count() == 2


def test_anchors_cannot_be_changed_or_removed(store: ReadingStore) -> None:
    for n in range(3):
        store.append_readings(frame("m1", n))
    with store.db.transaction() as conn:
        READINGS.delete_prefix(conn, 1, 0)
    conn = store.db.connection
    for statement in ("UPDATE chain_anchor SET seq = 2", "DELETE FROM chain_anchor"):
        with pytest.raises(sqlite3.IntegrityError, match="imsys"):
            conn.execute(statement)
    with pytest.raises(sqlite3.IntegrityError, match="existing readings record"):
        conn.execute("INSERT INTO chain_anchor VALUES ('readings', 1, zeroblob(32), 0)")
    conn.execute("INSERT INTO chain_anchor VALUES ('some-chain', 5, zeroblob(32), 0)")
    with pytest.raises(sqlite3.IntegrityError, match="forward"):
        conn.execute("INSERT INTO chain_anchor VALUES ('some-chain', 3, zeroblob(32), 0)")


def test_a_dropped_or_altered_guard_is_reported(store: ReadingStore) -> None:
    store.append_readings(frame("m1", 1))
    conn = store.db.connection
    conn.execute("DROP TRIGGER readings_no_update")
    with pytest.raises(StoreRejected) as info:
        store.verify_chain()
    assert info.value.reason is StoreReason.GUARD_MISSING
    assert info.value.context["trigger"] == "readings_no_update"
    conn.execute("CREATE TRIGGER readings_no_update BEFORE UPDATE ON readings "
                 "BEGIN SELECT 1; END")
    with pytest.raises(StoreRejected) as info:
        store.verify_chain()
    assert info.value.reason is StoreReason.GUARD_MISSING
    # reopening does not quietly repair the evidence of tampering
    ReadingStore(store.db)
    with pytest.raises(StoreRejected):
        store.verify_chain()


# -- the database file -----------------------------------------------------------------------


def test_a_file_store_is_wal_durable_and_continues_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    with Database(path) as db:
        conn = db.connection
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        store = ReadingStore(db)
        store.append_readings(frame("m1", 1))
        head = store.head()
    with Database(path) as db:
        store = ReadingStore(db)
        assert store.verify_chain(expected_head=head) == head
        assert store.append_readings(frame("m1", 2)) == [2]


def test_a_foreign_database_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    with pytest.raises(StoreRejected) as info:
        Database(path)
    assert info.value.reason is StoreReason.SCHEMA_UNKNOWN


def test_a_second_connection_appends_to_the_same_chain(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    with Database(path) as one, Database(path) as two:
        a, b = ReadingStore(one), ReadingStore(two)
        assert a.append_readings(frame("m1", 1)) == [1]
        assert b.append_readings(frame("m1", 2)) == [2]
        assert a.append_readings(frame("m1", 3)) == [3]  # a's cached head was stale
        assert b.append_readings(frame("m1", 4)) == [4]
        a.verify_chain()
        b.verify_chain()


def test_nested_transactions_roll_back_only_their_part(db: Database,
                                                       store: ReadingStore) -> None:
    with db.transaction():
        store.append_readings(frame("m1", 1))
        with pytest.raises(StoreRejected):
            store.append_readings(frame("m1", 1))  # duplicate: only the inner part goes
        store.append_readings(frame("m1", 2))
    assert [s.seq for s in store.iter_readings()] == [1, 2]
    with pytest.raises(RuntimeError), db.transaction():
        store.append_readings(frame("m1", 3))
        raise RuntimeError("the caller's own failure after the append")
    assert store.count() == 2
    assert not db.in_transaction
    store.verify_chain()


# -- the chain machinery for other record kinds ----------------------------------------------


def test_append_only_table_serves_other_record_kinds(db: Database) -> None:
    results = AppendOnlyTable("taf_results", (Column("taf", "INTEGER"),
                                              Column("document", "BLOB"),
                                              Column("note", "TEXT", nullable=True)),
                              partition="recipient")
    results.create(db)
    with db.transaction():
        results.append(db, [(7, b"<doc/>", None), (7, b"<doc2/>", "x")], "emt-a")
        head = results.append(db, [(1, b"<d/>", None)], "emt-b")
    assert head == ChainHead("taf_results/emt-b", 1, head.hash)
    assert results.verify(db, "emt-a").seq == 2
    assert results.verify(db, "emt-b").seq == 1
    with pytest.raises(sqlite3.IntegrityError):
        db.connection.execute("UPDATE taf_results SET note = 'y'")
    with pytest.raises(UsageError):
        results.head(db.connection)  # which chain?
    with pytest.raises(UsageError):
        results.append(db, [(1, b"", None)], "emt-a")  # outside a transaction
    with pytest.raises(UsageError):
        Column("x", "REAL")


# -- the state table -------------------------------------------------------------------------


def test_state_table_keeps_types_and_is_transactional(db: Database) -> None:
    state = StateTable(db)
    state.set(StateKey.PHASE, "operation")
    state.set("counter", 41)
    state.set("blob", b"\x00\x01")
    state.set_time(StateKey.LAST_ADMIN_CONTACT, T0)
    assert state.get("phase") == "operation"
    assert state.get("counter") == 41
    assert state.get("blob") == b"\x00\x01"
    assert state.get_time(StateKey.LAST_ADMIN_CONTACT) == T0
    assert state.get("missing", "default") == "default"
    assert state.get_time("missing") is None
    state.set("counter", 42)
    assert state.items()["counter"] == 42
    with pytest.raises(RuntimeError), db.transaction():
        state.set_many({"phase": "installation", "counter": 0})
        raise RuntimeError
    assert state.get("phase") == "operation" and state.get("counter") == 42
    state.delete("blob")
    assert state.get("blob") is None
    for key, value in (("Bad Key", 1), ("ok", 1.5), ("ok", True), ("ok", 2**64)):
        with pytest.raises((UsageError, StoreRejected)):
            state.set(key, value)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        state.get_time("phase")


# -- the append path (one statement per frame, index layout, migration) ---------------------


def test_record_hash_gives_the_documented_encoding_for_every_value_kind() -> None:
    """The fast path (exact types, cached text encodings) and the general one (subclasses)
    both produce the documented layout, however often a text is seen."""

    class Kind(IntEnum):
        SEVEN = 7

    class Text(str):
        pass

    def documented(fields: tuple[object, ...]) -> bytes:
        out = b"imsys.chain.v1\x00" + struct.pack(">H", 1) + b"c" + struct.pack(">Q", 9) \
            + b"\x22" * 32 + struct.pack(">H", len(fields))
        for value in fields:
            if value is None:
                out += b"N"
            elif isinstance(value, int):
                out += b"I" + struct.pack(">q", value)
            elif isinstance(value, str):
                out += b"T" + struct.pack(">I", len(value.encode())) + value.encode()
            else:
                assert isinstance(value, bytes)
                out += b"B" + struct.pack(">I", len(value)) + value
        return hashlib.sha256(out).digest()

    long_text = "ä" * 200  # longer than the cached texts
    cases: list[tuple[object, ...]] = [
        (), ("m1", 0, -(2**63), 2**63 - 1, None, b""), (Kind.SEVEN, Text("m1"), long_text),
        ("ü€", b"\x00" * 40, 7), (Text("m1"), "m1", Kind.SEVEN, 7)]
    for _ in range(2):  # the second round hits the text cache
        for fields in cases:
            assert record_hash("c", 9, b"\x22" * 32, fields) == documented(fields)  # type: ignore[arg-type]
    for bad in ((True,), (1.5,), (bytearray(b"x"),)):
        with pytest.raises(UsageError):
            record_hash("c", 1, GENESIS_HASH, bad)  # type: ignore[arg-type]
    for big in (2**63, -(2**63) - 1):
        with pytest.raises(StoreRejected) as info:
            record_hash("c", 1, GENESIS_HASH, ("m1", big))
        assert info.value.reason is StoreReason.OUT_OF_RANGE


def test_a_frame_goes_in_as_one_statement_and_a_refused_one_leaves_nothing(
        db: Database, store: ReadingStore) -> None:
    statements: list[str] = []
    db.connection.set_trace_callback(statements.append)
    store.append_readings(frame("m1", 1, (OBIS_IN, OBIS_OUT, "1-0:1.8.1*255")))
    db.connection.set_trace_callback(None)
    # (the trace repeats a statement for each trigger run; the text tells them apart)
    inserts = {s for s in statements if s.startswith("INSERT INTO readings")}
    assert len(inserts) == 1 and inserts.pop().count("), (") == 2  # three rows, one statement
    assert not [s for s in statements if s.startswith("SAVEPOINT")]
    # the second record repeats the first register of the stored frame: the whole call goes
    with db.transaction():
        with pytest.raises(StoreRejected) as info:
            store.append_readings(frame("m1", 2) + frame("m1", 1))
        assert info.value.reason is StoreReason.DUPLICATE and info.value.context["seq"] == 1
        assert store.count() == 3  # nothing of the refused call, no savepoint needed
        assert store.append_readings(frame("m1", 3)) == [4]
    store.verify_chain()


def test_more_records_than_one_statement_takes_are_still_all_or_nothing(
        db: Database, store: ReadingStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_chain, "ROWS_PER_STATEMENT", 4)
    registers = tuple(f"1-0:1.8.{i}*255" for i in range(10))
    assert store.append_readings(frame("m1", 1, registers)) == list(range(1, 11))
    # the duplicate is the last record, in the third statement: the first two are undone
    with pytest.raises(StoreRejected) as info:
        store.append_readings(frame("m1", 2, registers) + frame("m1", 1, registers[-1:]))
    assert info.value.reason is StoreReason.DUPLICATE
    assert store.count() == 10
    assert store.append_readings(frame("m1", 2, registers)) == list(range(11, 21))
    assert store.verify_chain().seq == 20


def test_a_low_variable_limit_splits_the_statement(db: Database, store: ReadingStore) -> None:
    """SQLite before 3.32 binds at most 999 variables per statement: 14 per reading."""
    db.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 14 * 3)
    registers = tuple(f"1-0:1.8.{i}*255" for i in range(8))
    assert store.append_readings(frame("m1", 1, registers)) == list(range(1, 9))
    with pytest.raises(StoreRejected) as info:
        store.append_readings(frame("m1", 2, registers) + frame("m1", 1, registers[:1]))
    assert info.value.reason is StoreReason.DUPLICATE
    assert store.count() == 8
    assert store.verify_chain().seq == 8


def test_a_forged_link_inside_a_multi_row_insert_is_refused_by_the_database(
        store: ReadingStore) -> None:
    """The chain-link trigger checks every row of a multi-row INSERT against the row before
    it, including rows of the same statement."""
    store.append_readings(frame("m1", 1))
    head = store.head()
    payload = ("m1", OBIS_IN, 1, 0, 30, 0, 0, None, 0, "lmn-sml", b"\x01")
    good = record_hash("readings", head.seq + 1, head.hash, payload)
    forged = [
        (head.seq + 1, *payload, head.hash, good),
        (head.seq + 2, *payload, b"\x07" * 32, b"\x08" * 32),  # does not link to the row above
    ]
    out_of_order = [
        (head.seq + 1, *payload, head.hash, good),
        (head.seq + 3, *payload, good, b"\x08" * 32),  # skips a seq
    ]
    for rows in (forged, out_of_order):
        with pytest.raises(sqlite3.IntegrityError, match="does not continue the chain"):
            store.db.connection.execute(READINGS._insert_statement(2),
                                        [v for row in rows for v in row])
        assert store.count() == 1
    store.verify_chain()


def test_a_record_of_the_wrong_width_is_refused(db: Database, store: ReadingStore) -> None:
    with db.transaction(), pytest.raises(UsageError, match="fields"):
        READINGS.append(db, [("m1", OBIS_IN, 1)])
    assert store.count() == 0


def test_append_frame_stores_exactly_what_append_readings_stores() -> None:
    records = frame("m1", 1, (OBIS_IN, OBIS_OUT), value=-5)
    records = [ReadingRecord(Reading("m1", r.reading.obis, r.reading.value, -1, 30, T0,
                                     ReadingFlag.METER_ERROR, 2**64 - 1 - i),
                             r.received_at, r.source, r.frame_digest)
               for i, r in enumerate(records)]
    heads = []
    for use_frame in (False, True):
        with Database(":memory:", durability=Durability.OFF) as db:
            store = ReadingStore(db)
            if use_frame:
                seqs = store.append_frame([r.reading for r in records], records[0].received_at,
                                          records[0].source, records[0].frame_digest)
            else:
                seqs = store.append_readings(records)
            assert seqs == [1, 2]
            assert [s.reading for s in store.iter_readings()] == [r.reading for r in records]
            heads.append(store.verify_chain())
    assert heads[0] == heads[1]
    with Database(":memory:", durability=Durability.OFF) as db:
        store = ReadingStore(db)
        assert store.append_frame([], T0, ReadingSource.LMN_SML, b"\x01") == []
        with pytest.raises(UsageError):
            store.append_frame([records[0].reading], T0.replace(tzinfo=None),
                               ReadingSource.LMN_SML, b"\x01")
        with pytest.raises(StoreRejected) as info:
            store.append_frame([Reading("m1", OBIS_IN, 1, 0, 30, T0, status_word=2**64)], T0,
                               ReadingSource.LMN_SML, b"\x01")
        assert info.value.reason is StoreReason.OUT_OF_RANGE
        assert store.count() == 0


def test_register_queries_use_the_meter_time_index(store: ReadingStore) -> None:
    plans = {
        "latest": "SELECT seq FROM readings WHERE meter_id = 'm1' AND obis = 'x' "
                  "ORDER BY timestamp DESC, seq DESC LIMIT 1",
        "range": "SELECT seq FROM readings WHERE meter_id = 'm1' AND obis = 'x' "
                 "AND timestamp >= 0 AND timestamp < 9 ORDER BY seq",
        "duplicate": "SELECT seq FROM readings WHERE meter_id = 'm1' AND timestamp = 0 "
                     "AND obis = 'x' AND frame_digest = x'00'",
    }
    for sql in plans.values():
        plan = " ".join(row[-1] for row in store.db.connection.execute(
            f"EXPLAIN QUERY PLAN {sql}"))
        assert "USING COVERING INDEX readings_meter_time" in plan or \
            "USING INDEX readings_meter_time" in plan, plan


def test_a_frame_dirties_few_index_pages(tmp_path: Path) -> None:
    """The reason for the index order: the values of one frame are neighbours in the index.
    Eight meters × 18 registers; the WAL written by 40 more frames stays small."""
    with Database(tmp_path / "g.db", durability=Durability.OFF) as db:
        store = ReadingStore(db)
        registers = tuple(f"1-0:{c}.8.{t}*255" for c in (1, 2) for t in range(9))
        meters = [f"1EMH00{m:08d}" for m in range(8)]
        for n in range(200):
            store.append_readings(frame(meters[n % 8], n, registers))
        db.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.connection.execute("PRAGMA wal_autocheckpoint=0")
        for n in range(200, 240):
            store.append_readings(frame(meters[n % 8], n, registers))
        pages = ((tmp_path / "g.db-wal").stat().st_size - 32) // (4096 + 24)
    # table ~2, index ~5, page 1: ~8 pages per frame; the register-first key needed ~25
    assert pages / 40 < 12, pages / 40


def test_a_database_with_the_earlier_register_index_gets_the_current_one(
        tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    with Database(path) as db:
        store = ReadingStore(db)
        store.append_readings(frame("m1", 1, (OBIS_IN, OBIS_OUT)))
        db.connection.execute("DROP INDEX readings_meter_time")
        db.connection.execute("CREATE UNIQUE INDEX readings_register ON readings "
                              "(meter_id, obis, timestamp, frame_digest)")
        head = store.head()
    with Database(path) as db:
        store = ReadingStore(db)
        indexes = {row[0] for row in db.connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'readings'")}
        assert indexes == {"readings_meter_time"}
        assert store.verify_chain(expected_head=head) == head
        with pytest.raises(StoreRejected) as info:
            store.append_readings(frame("m1", 1))
        assert info.value.reason is StoreReason.DUPLICATE
        assert store.append_readings(frame("m1", 2)) == [3]


def test_state_set_inside_a_transaction_joins_it(db: Database) -> None:
    state = StateTable(db)
    statements: list[str] = []
    db.connection.set_trace_callback(statements.append)
    with pytest.raises(RuntimeError), db.transaction():
        state.set("counter", 1)
        raise RuntimeError("the caller fails after the write")
    db.connection.set_trace_callback(None)
    assert state.get("counter") is None
    assert not [s for s in statements if s.startswith("SAVEPOINT")]
    with db.transaction():
        state.set("counter", 2)
        with pytest.raises(UsageError):
            state.set("counter", True)  # type: ignore[arg-type]
    assert state.get("counter") == 2
