"""Retention: oldest first, gap-free, never younger than 13 months, logged, verifiable."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from imsys.core.clock import SimulatedClock
from imsys.core.errors import UsageError
from imsys.core.reading import Reading
from imsys.gateway.errors import StoreReason, StoreRejected
from imsys.gateway.logs import Level, Outcome, SystemEvent, SystemLog
from imsys.gateway.retention import (
    BEGINNING_OF_TIME,
    Retention,
    RetentionRule,
    billing_keep_from,
    months_before,
    retention_floor,
)
from imsys.gateway.store import (
    READINGS,
    Database,
    Durability,
    ReadingRecord,
    ReadingSource,
    ReadingStore,
)

START = datetime(2022, 1, 1, tzinfo=UTC)
METER = "1EMH0012345678"


class Gateway:
    """A store, its system log and retention on one in-memory database and clock."""

    def __init__(self) -> None:
        self.clock = SimulatedClock(START)
        self.db = Database(":memory:", durability=Durability.OFF)
        self.store = ReadingStore(self.db)
        self.log = SystemLog(self.db, self.clock)
        self.retention = Retention(self.store, self.log, self.clock)
        self.frames = 0

    def receive(self, count: int = 1, *, measured: datetime | None = None) -> list[int]:
        """``count`` readings stamped now (or measured at ``measured``), one frame."""
        self.frames += 1
        now = self.clock.now()
        digest = hashlib.sha256(self.frames.to_bytes(8, "big")).digest()
        records = [ReadingRecord(Reading(METER, f"1-0:1.8.{i}*255", self.frames, -1, 30,
                                         measured or now), now, ReadingSource.LMN_SML, digest)
                   for i in range(count)]
        return self.store.append_readings(records)

    def monthly(self, months: int) -> None:
        for _ in range(months):
            self.receive()
            self.clock.set(months_before(self.clock.now(), -1))

    def seqs(self) -> list[int]:
        return [s.seq for s in self.store.iter_readings()]


@pytest.fixture
def gw() -> Iterator[Gateway]:
    gateway = Gateway()
    yield gateway
    gateway.db.close()


# -- the rules as functions ------------------------------------------------------------------


@pytest.mark.parametrize(("when", "months", "expected"), [
    (datetime(2025, 3, 31, 12, tzinfo=UTC), 13, datetime(2024, 2, 29, 12, tzinfo=UTC)),
    (datetime(2025, 1, 15, tzinfo=UTC), 13, datetime(2023, 12, 15, tzinfo=UTC)),
    (datetime(2025, 12, 31, tzinfo=UTC), 1, datetime(2025, 11, 30, tzinfo=UTC)),
    (datetime(2025, 1, 31, tzinfo=UTC), -1, datetime(2025, 2, 28, tzinfo=UTC)),
    (datetime(2025, 5, 1, tzinfo=UTC), 24, datetime(2023, 5, 1, tzinfo=UTC)),
])
def test_months_before_counts_calendar_months(when: datetime, months: int,
                                              expected: datetime) -> None:
    assert months_before(when, months) == expected


def test_the_floor_is_thirteen_months() -> None:
    assert retention_floor(datetime(2025, 6, 10, tzinfo=UTC)) == datetime(2024, 5, 10,
                                                                           tzinfo=UTC)


def test_billing_keep_from_releases_a_period_six_weeks_after_its_end() -> None:
    starts = [datetime(2023, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC),
              datetime(2025, 1, 1, tzinfo=UTC)]
    end_2024 = datetime(2025, 1, 1, tzinfo=UTC)
    assert billing_keep_from(starts, end_2024 + timedelta(days=41)) == starts[1]
    assert billing_keep_from(starts, end_2024 + timedelta(days=42)) == starts[2]
    assert billing_keep_from(starts, datetime(2030, 1, 1, tzinfo=UTC)) == starts[2]
    # the period before the first known start ended at that start
    assert billing_keep_from(starts, starts[0] + timedelta(days=10)) == BEGINNING_OF_TIME
    assert billing_keep_from(list(reversed(starts)), end_2024) == starts[1]
    with pytest.raises(UsageError):
        billing_keep_from([], end_2024)


# -- purge -----------------------------------------------------------------------------------


def test_purge_deletes_the_prefix_no_rule_keeps_and_logs_it(gw: Gateway) -> None:
    gw.monthly(30)  # one reading a month, 2022-01 … 2024-06; now 2024-07-01
    head = gw.store.head()
    deletion = gw.retention.purge(keep_from=datetime(2023, 1, 1, tzinfo=UTC))
    assert deletion is not None
    assert (deletion.count, deletion.first_seq, deletion.last_seq) == (12, 1, 12)
    assert deletion.oldest == START and deletion.newest == datetime(2022, 12, 1, tzinfo=UTC)
    assert gw.seqs() == list(range(13, 31))
    assert gw.store.verify_chain(expected_head=head) == head
    assert deletion.anchor.seq == 12
    (entry,) = gw.log.entries()
    assert entry.record_number == deletion.log_record
    assert entry.event is SystemEvent.RETENTION_DELETION
    assert entry.level is Level.INFO and entry.outcome is Outcome.SUCCESS
    assert entry.text == ("retention: readings deleted (count=12, first_seq=1, last_seq=12, "
                          "oldest=2022-01-01T00:00:00Z, newest=2022-12-01T00:00:00Z)")
    assert METER not in entry.text
    assert gw.retention.purge(keep_from=datetime(2023, 1, 1, tzinfo=UTC)) is None
    assert len(gw.log.entries()) == 1  # nothing deleted, nothing logged
    assert gw.receive() == [31]  # the chain continues after the deletion
    gw.store.verify_chain()
    gw.log.verify()


def test_purge_never_crosses_the_thirteen_month_floor(gw: Gateway) -> None:
    gw.monthly(30)  # now 2024-07-01: the floor is 2023-06-01
    deletion = gw.retention.purge(keep_from=gw.clock.now())  # "no TAF needs anything"
    assert deletion is not None
    assert deletion.newest == datetime(2023, 5, 1, tzinfo=UTC)
    remaining = list(gw.store.iter_readings())
    assert remaining[0].reading.timestamp == datetime(2023, 6, 1, tzinfo=UTC)
    assert gw.retention.cutoff(gw.clock.now()) == (datetime(2023, 6, 1, tzinfo=UTC),
                                                   RetentionRule.FLOOR)


def test_purge_accepts_a_callable_keep_from(gw: Gateway) -> None:
    gw.monthly(30)
    seen: list[datetime] = []

    def keep_from(now: datetime) -> datetime:
        seen.append(now)
        return billing_keep_from([datetime(2022, 1, 1, tzinfo=UTC),
                                  datetime(2023, 1, 1, tzinfo=UTC)], now)

    deletion = gw.retention.purge(keep_from)
    assert seen == [gw.clock.now()]
    assert deletion is not None and deletion.last_seq == 12


def test_a_young_record_stops_the_prefix(gw: Gateway) -> None:
    gw.monthly(3)
    gw.receive()  # received and measured 2022-04-01
    gw.clock.set(datetime(2022, 5, 1, tzinfo=UTC))
    gw.receive(measured=datetime(2021, 1, 1, tzinfo=UTC))  # old value, received late
    gw.clock.set(datetime(2023, 5, 15, tzinfo=UTC))  # floor 2022-04-15
    deletion = gw.retention.purge(keep_from=gw.clock.now())
    assert deletion is not None and deletion.last_seq == 4
    assert gw.seqs() == [5]  # received 2022-05-01: younger than the floor by receive time


def test_purge_can_empty_the_store_and_the_chain_goes_on(gw: Gateway) -> None:
    gw.monthly(3)
    gw.clock.set(datetime(2030, 1, 1, tzinfo=UTC))
    deletion = gw.retention.purge(keep_from=gw.clock.now())
    assert deletion is not None and deletion.count == 3
    assert gw.store.count() == 0 and gw.store.first_seq() is None
    assert gw.store.head().seq == 3 and gw.store.head().hash == deletion.anchor.hash
    gw.store.verify_chain()
    assert gw.receive() == [4]
    assert gw.store.get(4).prev_hash == deletion.anchor.hash  # type: ignore[union-attr]
    gw.store.verify_chain()
    assert gw.retention.purge(keep_from=gw.clock.now()) is None


# -- explicit deletion -----------------------------------------------------------------------


def test_delete_through_refuses_records_inside_the_floor(gw: Gateway) -> None:
    gw.monthly(20)  # 2022-01 … 2023-08; now 2023-09-01, floor 2022-08-01
    with pytest.raises(StoreRejected) as info:
        gw.retention.delete_through(10)
    assert info.value.reason is StoreReason.RETENTION_VIOLATION
    assert info.value.context == {"seq": 8, "requested": 10, "rule": "13-month-floor"}
    assert gw.store.count() == 20  # nothing deleted
    (entry,) = gw.log.entries()
    assert entry.event is SystemEvent.RETENTION_REFUSED and entry.outcome is Outcome.FAILURE
    assert "protected_seq=8" in entry.text
    deletion = gw.retention.delete_through(7)
    assert deletion is not None and deletion.last_seq == 7
    assert gw.retention.delete_through(5) is None  # gone already
    with pytest.raises(UsageError):
        gw.retention.delete_through(99)
    gw.store.verify_chain()


def test_delete_through_respects_keep_from(gw: Gateway) -> None:
    gw.monthly(30)
    with pytest.raises(StoreRejected) as info:
        gw.retention.delete_through(12, keep_from=datetime(2022, 6, 1, tzinfo=UTC))
    assert info.value.context["rule"] == "keep-from" and info.value.context["seq"] == 6
    assert gw.retention.delete_through(5, keep_from=datetime(2022, 6, 1, tzinfo=UTC))


def test_retention_needs_store_and_log_in_one_database(gw: Gateway) -> None:
    other = Database(":memory:", durability=Durability.OFF)
    with pytest.raises(UsageError):
        Retention(gw.store, SystemLog(other, gw.clock), gw.clock)
    other.close()


def test_a_failed_log_entry_undoes_the_deletion(gw: Gateway) -> None:
    gw.monthly(20)
    gw.db.connection.execute("CREATE TRIGGER fail_log BEFORE INSERT ON log_entries "
                             "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with pytest.raises(StoreRejected):
        gw.retention.purge(keep_from=gw.clock.now())
    assert gw.store.count() == 20 and gw.store.first_seq() == 1
    assert READINGS.anchor(gw.db.connection) is None


def test_only_the_retention_path_deletes(gw: Gateway) -> None:
    gw.monthly(3)
    with pytest.raises(sqlite3.IntegrityError, match="retention"):
        gw.db.connection.execute("DELETE FROM readings WHERE seq = 1")


# -- the property ----------------------------------------------------------------------------

operation = st.one_of(
    st.tuples(st.just("append"), st.integers(1, 4), st.integers(0, 200)),  # n, days later
    st.tuples(st.just("advance"), st.integers(200, 900), st.just(0)),  # days
    st.tuples(st.just("purge"), st.integers(0, 200), st.just(0)),  # keep_from: days ago
    st.tuples(st.just("delete"), st.integers(0, 20), st.just(0)),  # seq offset from first
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=10, max_size=40))
def test_any_append_and_delete_sequence_keeps_the_chain_verifiable(
        operations: list[tuple[str, int, int]]) -> None:
    gw = Gateway()
    appended = deleted = 0
    deletions = 0
    received: dict[int, datetime] = {}
    for kind, a, b in operations:
        if kind == "append":
            seqs = gw.receive(a)
            assert seqs == list(range(appended + 1, appended + a + 1))
            received.update(dict.fromkeys(seqs, gw.clock.now()))
            appended += a
            gw.clock.advance(timedelta(days=b))
        elif kind == "advance":
            gw.clock.advance(timedelta(days=a))
        elif kind == "purge":
            result = gw.retention.purge(keep_from=gw.clock.now() - timedelta(days=a))
            if result is not None:
                assert result.first_seq == deleted + 1
                deleted = result.last_seq
                deletions += 1
        else:
            first = gw.store.first_seq()
            if first is None:
                continue
            target = min(first + a, appended)
            try:
                result = gw.retention.delete_through(target)
            except StoreRejected as exc:
                assert exc.reason is StoreReason.RETENTION_VIOLATION
            else:
                assert result is not None and result.last_seq == target
                deleted = target
                deletions += 1
        # seqs stay gap-free: exactly the suffix after the last deletion is left
        assert gw.seqs() == list(range(deleted + 1, appended + 1))
        assert gw.store.verify_chain().seq == appended
        # the floor only moves forward, so nothing younger than today's floor was deleted
        floor = retention_floor(gw.clock.now())
        assert all(seq > deleted for seq, when in received.items() if when >= floor)
    assert sum(e.event is SystemEvent.RETENTION_DELETION for e in gw.log.entries()) == deletions
    gw.log.verify()
    gw.db.close()
    event(f"deletions: {min(deletions, 2)}{'+' if deletions > 2 else ''}")


def test_a_daily_purge_keeps_exactly_the_last_thirteen_months(gw: Gateway) -> None:
    for _ in range(40):
        gw.receive()
        gw.clock.advance(timedelta(days=20))
        gw.retention.purge(keep_from=gw.clock.now())
        floor = retention_floor(gw.clock.now())
        kept = list(gw.store.iter_readings())
        assert kept, "the newest reading is always younger than the floor"
        assert all(s.received_at >= floor for s in kept)
        anchor = READINGS.anchor(gw.db.connection)
        assert (anchor.seq if anchor else 0) == kept[0].seq - 1
        assert anchor is None or gw.store.verify_chain().seq == kept[-1].seq
