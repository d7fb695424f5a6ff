"""Retention: the only way readings leave the evidence store.

Rules as implemented (seed 003 §3.6; facts.md §1.3, §4.7):

1. A reading is kept until the end of its billing period plus six weeks
   (:data:`BILLING_GRACE`, 42 days) – :func:`billing_keep_from` turns billing-period starts
   into the time before which readings are released – and as long as any TAF needs it: the
   caller passes ``keep_from`` (a time, or a callable ``now -> time``) computed from the
   active evaluation profiles, combining both.
2. Never anything younger than 13 calendar months (:data:`FLOOR_MONTHS`): the hard floor.
   :meth:`Retention.purge` never crosses it (its cutoff is ``min(keep_from, now − 13
   months)``); an explicit :meth:`Retention.delete_through` that would cross it – or
   ``keep_from`` – is refused with ``RETENTION_VIOLATION`` (and the refusal is logged).
3. A record's age is judged by the later of its reading time and its receive time, so a
   meter with a wrong clock cannot get a fresh value deleted.
4. Deletion removes a prefix of the chain: records 1‥n by seq, oldest first, gap-free. A
   protected record stops the prefix, even if older records follow it.
5. Each deletion anchors the chain (seq and hash of the last deleted record, table
   ``chain_anchor``), deletes the prefix and writes a system-log entry (count, seq range,
   reading-time range – no consumer data), all in one transaction; the chain stays
   verifiable from the anchor. Afterwards the WAL is checkpointed so the deleted rows' page
   images leave the WAL file too (the database itself runs with ``secure_delete``).
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from imsys.core.clock import Clock
from imsys.core.errors import UsageError
from imsys.gateway.errors import StoreReason, StoreRejected
from imsys.gateway.logs import Level, Outcome, SystemEvent, SystemLog
from imsys.gateway.store import READINGS, Anchor, ReadingStore, from_micros, to_micros

BILLING_GRACE = timedelta(days=42)
FLOOR_MONTHS = 13
BEGINNING_OF_TIME = datetime(1, 1, 1, tzinfo=UTC)

KeepFrom = datetime | Callable[[datetime], datetime]


class RetentionRule(StrEnum):
    """Which rule protected a record from deletion."""

    FLOOR = "13-month-floor"
    KEEP_FROM = "keep-from"


def months_before(when: datetime, months: int) -> datetime:
    """``when`` moved back by calendar months (the day clamped to the month's length)."""
    index = when.year * 12 + (when.month - 1) - months
    year, month = divmod(index, 12)
    day = min(when.day, calendar.monthrange(year, month + 1)[1])
    return when.replace(year=year, month=month + 1, day=day)


def retention_floor(now: datetime) -> datetime:
    """Records at or after this time are never deleted (now − 13 months)."""
    return months_before(now, FLOOR_MONTHS)


def billing_keep_from(period_starts: Sequence[datetime], now: datetime, *,
                      grace: timedelta = BILLING_GRACE) -> datetime:
    """The earliest reading time still needed for billing.

    ``period_starts`` are the starts of consecutive billing periods (the last one is still
    open); a period's readings are released once the next period started ``grace`` ago.
    Readings before the first start belong to a period that ended at that start.
    """
    starts = sorted(period_starts)
    if not starts:
        raise UsageError("billing_keep_from needs at least one billing-period start")
    if starts[0] + grace > now:
        return BEGINNING_OF_TIME
    keep = starts[0]
    for start in starts[1:]:
        if start + grace > now:
            break
        keep = start
    return keep


@dataclass(frozen=True, slots=True)
class Deletion:
    """What one retention deletion removed (also written to the system log)."""

    count: int
    first_seq: int
    last_seq: int
    oldest: datetime  # earliest reading time among the deleted records
    newest: datetime  # latest reading time among the deleted records
    anchor: Anchor
    log_record: int  # the system-log recordNumber of the deletion entry


class Retention:
    """Deletes the oldest readings of a :class:`ReadingStore` when no rule keeps them."""

    def __init__(self, store: ReadingStore, system_log: SystemLog, clock: Clock) -> None:
        if store.db is not system_log.db:
            raise UsageError("store and system log must share one Database (one transaction)")
        self.store = store
        self.system_log = system_log
        self.clock = clock
        self.db = store.db

    def cutoff(self, keep_from: KeepFrom | None = None, now: datetime | None = None
               ) -> tuple[datetime, RetentionRule]:
        """Records older than the returned time may go; the rule that sets it."""
        now = self.clock.now() if now is None else now
        floor = retention_floor(now)
        if keep_from is None:
            return floor, RetentionRule.FLOOR
        keep = keep_from(now) if callable(keep_from) else keep_from
        if keep.tzinfo is None:
            raise UsageError("keep_from must be timezone-aware")
        return (keep, RetentionRule.KEEP_FROM) if keep < floor else (floor,
                                                                      RetentionRule.FLOOR)

    def purge(self, keep_from: KeepFrom) -> Deletion | None:
        """Delete the longest prefix of readings that no rule keeps; None if there is none."""
        now = self.clock.now()
        cutoff, _ = self.cutoff(keep_from, now)
        limit = to_micros(cutoff)
        with self.db.transaction() as conn:
            head = READINGS.head(conn)
            blocked = conn.execute(
                "SELECT seq FROM readings WHERE timestamp >= ? OR received_at >= ? "
                "ORDER BY seq LIMIT 1", (limit, limit)).fetchone()
            through = head.seq if blocked is None else blocked[0] - 1
            first = self.store.first_seq()
            if first is None or through < first:
                return None
            deletion = self._delete(through, now)
        self.db.checkpoint()
        return deletion

    def delete_through(self, seq: int, keep_from: KeepFrom | None = None) -> Deletion | None:
        """Delete readings 1‥``seq`` (an explicit request, e.g. by the administrator).

        Refused with ``RETENTION_VIOLATION`` – logged, nothing deleted – if any of them is
        younger than 13 months or not older than ``keep_from``. None if they are gone already.
        """
        now = self.clock.now()
        cutoff, rule = self.cutoff(keep_from, now)
        limit = to_micros(cutoff)
        protected: int | None = None
        with self.db.transaction() as conn:
            head = READINGS.head(conn)
            if seq > head.seq:
                raise UsageError(f"no reading {seq} yet (head is {head.seq})")
            first = self.store.first_seq()
            if first is None or seq < first:
                return None
            row = conn.execute(
                "SELECT seq FROM readings WHERE seq <= ? AND (timestamp >= ? OR "
                "received_at >= ?) ORDER BY seq LIMIT 1", (seq, limit, limit)).fetchone()
            if row is None:
                deletion = self._delete(seq, now)
            else:
                protected = row[0]
        if protected is not None:
            # logged outside the (empty) transaction, so the refusal itself is kept
            self.system_log.append(Level.WARNING, Outcome.FAILURE, "retention: deletion refused",
                                   event=SystemEvent.RETENTION_REFUSED, requested_seq=seq,
                                   protected_seq=protected, rule=rule, cutoff=cutoff)
            raise StoreRejected(StoreReason.RETENTION_VIOLATION, f"reading {protected} is "
                                f"protected ({rule.value})", seq=protected, requested=seq,
                                rule=rule.value)
        self.db.checkpoint()
        return deletion

    def _delete(self, through: int, now: datetime) -> Deletion:
        conn = self.db.connection
        count, first, oldest, newest = conn.execute(
            "SELECT COUNT(*), MIN(seq), MIN(timestamp), MAX(timestamp) FROM readings "
            "WHERE seq <= ?", (through,)).fetchone()
        anchor = READINGS.delete_prefix(conn, through, to_micros(now))
        entry = self.system_log.append(
            Level.INFO, Outcome.SUCCESS, "retention: readings deleted",
            event=SystemEvent.RETENTION_DELETION, count=count, first_seq=first,
            last_seq=through, oldest=from_micros(oldest), newest=from_micros(newest),
            timestamp=now)
        return Deletion(count, first, through, from_micros(oldest), from_micros(newest), anchor,
                        entry.record_number)


__all__ = [
    "BEGINNING_OF_TIME",
    "BILLING_GRACE",
    "FLOOR_MONTHS",
    "Deletion",
    "KeepFrom",
    "Retention",
    "RetentionRule",
    "billing_keep_from",
    "months_before",
    "retention_floor",
]
