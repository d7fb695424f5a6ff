"""Store until acknowledged: the gateway's delivery queue (seed 003, table 2, steps 3.1.3–3.1.5).

"Das SMGW speichert zu versendende Daten so lange, bis der Versand erfolgt ist und von der
Gegenstelle quittiert wurde" (seed 003 §4.6). Each delivery runs through one state machine::

    PENDING ──Transmit──▶ SENT ──ReceiptAccepted──▶ ACKNOWLEDGED
       ▲                   │  ╲
       │           Failed  │   ╲ Restarted (crash or lost connection while awaiting a receipt)
       │                   ▼    ╲──────────────────────────────▶ PENDING
       └──RetryDue── RETRY_WAIT ──ReceiptAccepted (late)──▶ ACKNOWLEDGED

``Failed`` covers every way a transmission can end without a valid receipt: no connection, an
HTTP error, a receipt that does not verify (:class:`imsys.wire.receipt.ReceiptRejected`). The
wait is exponential (``base × factor^(attempt-1)``), capped, and jittered downwards by up to
``jitter`` so gateways that failed together do not retry together; the clock decides when
``RetryDue`` fires. A receipt for an already acknowledged delivery (a duplicate receipt) is
accepted and changes nothing. Pairs not in :data:`TRANSITIONS` raise
:class:`DeliveryProtocolError`.

The module is sans-io: :class:`DeliveryQueue` says *what* to send (:meth:`DeliveryQueue.work`
marks the due deliveries SENT and returns their sealed bytes – at once when a connection
exists, step 3.1.4) and is told what happened (:meth:`~DeliveryQueue.receipt_received`,
:meth:`~DeliveryQueue.transmission_failed`). Persistence is the gateway database:

* ``delivery_outbox`` (:class:`~imsys.gateway.store.AppendOnlyTable`): each delivery once, with
  its sealed bytes – re-sent unchanged, so the EMT recognises a repetition by its digest;
* ``delivery_events`` (append-only, hash-chained): every transition with time, attempt and
  next attempt. The current state is derived by replaying the events (nothing is updated), so a
  restart continues where the gateway stopped; a delivery found SENT is resent (``Restarted``).

Every transmission is written to the consumer log of the consumer concerned ("versendete
Daten", :attr:`~imsys.gateway.logs.ConsumerEvent.DATA_TRANSMISSION`) in the same transaction as
its event; acknowledgements and failures go to the system log without consumer data.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import ClassVar

from cryptography import x509

from imsys.core.clock import Clock
from imsys.core.errors import UsageError
from imsys.gateway.logs import ConsumerEvent, ConsumerLog, Level, Outcome, SystemLog
from imsys.gateway.store import AppendOnlyTable, Column, Database, from_micros, to_micros
from imsys.pki.validation import PathValidator
from imsys.wire.delivery import Delivery, digest
from imsys.wire.receipt import Receipt, ReceiptRejected, verify_receipt

__all__ = [
    "DELIVERY_EVENTS",
    "DELIVERY_OUTBOX",
    "TRANSITIONS",
    "Backoff",
    "DeliveryEvent",
    "DeliveryProtocolError",
    "DeliveryQueue",
    "DeliveryState",
    "Failed",
    "QueuedDelivery",
    "ReceiptAccepted",
    "Restarted",
    "RetryDue",
    "Transmission",
    "Transmit",
    "deliver_due",
    "process_event",
    "state_diagram",
]


class DeliveryState(StrEnum):
    PENDING = "pending"  # waiting for a connection
    SENT = "sent"  # transmitted, awaiting the receipt
    RETRY_WAIT = "retry-wait"  # failed; waits until next_attempt
    ACKNOWLEDGED = "acknowledged"  # a valid receipt is stored


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """Base of the events; ``kind`` is what the event table stores."""

    kind: ClassVar[str] = ""
    at: datetime


@dataclass(frozen=True, slots=True)
class Transmit(DeliveryEvent):
    kind: ClassVar[str] = "transmit"


@dataclass(frozen=True, slots=True)
class ReceiptAccepted(DeliveryEvent):
    kind: ClassVar[str] = "receipt-accepted"
    status: str = "stored"


@dataclass(frozen=True, slots=True)
class Failed(DeliveryEvent):
    kind: ClassVar[str] = "failed"
    reason: str = "unknown"


@dataclass(frozen=True, slots=True)
class RetryDue(DeliveryEvent):
    kind: ClassVar[str] = "retry-due"


@dataclass(frozen=True, slots=True)
class Restarted(DeliveryEvent):
    kind: ClassVar[str] = "restarted"


_S = DeliveryState
#: (state, event type) → next state. Everything else is a protocol error.
TRANSITIONS: dict[tuple[DeliveryState, type[DeliveryEvent]], DeliveryState] = {
    (_S.PENDING, Transmit): _S.SENT,
    (_S.SENT, ReceiptAccepted): _S.ACKNOWLEDGED,
    (_S.SENT, Failed): _S.RETRY_WAIT,
    (_S.SENT, Restarted): _S.PENDING,
    (_S.PENDING, Failed): _S.RETRY_WAIT,  # no connection could be opened
    (_S.RETRY_WAIT, RetryDue): _S.PENDING,
    (_S.ACKNOWLEDGED, ReceiptAccepted): _S.ACKNOWLEDGED,  # a duplicate receipt
    # a valid receipt that arrives late (after a timeout) still proves storage
    (_S.RETRY_WAIT, ReceiptAccepted): _S.ACKNOWLEDGED,
    (_S.PENDING, ReceiptAccepted): _S.ACKNOWLEDGED,
}
_EVENT_TYPES: dict[str, type[DeliveryEvent]] = {
    t.kind: t for t in (Transmit, ReceiptAccepted, Failed, RetryDue, Restarted)}


class DeliveryProtocolError(UsageError):
    """An event that the state machine does not allow in the current state."""


def process_event(state: DeliveryState, event: DeliveryEvent) -> DeliveryState:
    """The next state, or :class:`DeliveryProtocolError` for a pair not in the table."""
    try:
        return TRANSITIONS[(state, type(event))]
    except KeyError:
        raise DeliveryProtocolError(f"{type(event).__name__} is not allowed in state "
                                    f"{state.value}") from None


def state_diagram() -> str:
    """A Mermaid state diagram drawn from :data:`TRANSITIONS` (pasted into docs/delivery.md;
    a test keeps the two equal)."""
    lines = ["stateDiagram-v2", "    [*] --> pending: enqueue"]
    for (state, event), target in TRANSITIONS.items():
        lines.append(f"    {state.value.replace('-', '_')} --> {target.value.replace('-', '_')}"
                     f": {event.__name__}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff, capped, jittered downwards: delay n = min(cap, base·factor^(n-1))
    × (1 − jitter·u), u uniform in [0, 1)."""

    base: timedelta = timedelta(seconds=30)
    factor: float = 2.0
    cap: timedelta = timedelta(hours=1)
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.base <= timedelta(0) or self.factor < 1 or self.cap < self.base \
                or not 0 <= self.jitter < 1:
            raise UsageError("backoff needs base > 0, factor ≥ 1, cap ≥ base, 0 ≤ jitter < 1")

    def delay(self, attempt: int, rng: random.Random) -> timedelta:
        if attempt < 1:
            raise UsageError("attempts count from 1")
        exponent = min(attempt - 1, 64)
        raw = min(self.cap.total_seconds(), self.base.total_seconds() * self.factor ** exponent)
        return timedelta(seconds=raw * (1 - self.jitter * rng.random()))


DELIVERY_OUTBOX = AppendOnlyTable(
    "delivery_outbox",
    (
        Column("delivery_id", "TEXT"),
        Column("gateway_id", "TEXT"),
        Column("emt_id", "TEXT"),
        Column("consumer_id", "TEXT"),
        Column("meter", "TEXT"),
        Column("billing_relevant", "INTEGER"),
        Column("created", "INTEGER"),  # µs since 1970 UTC
        Column("digest", "BLOB"),
        Column("sealed", "BLOB"),
    ),
    indexes=(("delivery_outbox_id", ("delivery_id",), True),),
)

DELIVERY_EVENTS = AppendOnlyTable(
    "delivery_events",
    (
        Column("delivery_id", "TEXT"),
        Column("event", "TEXT"),
        Column("state", "TEXT"),  # the state after the event
        Column("at", "INTEGER"),
        Column("attempt", "INTEGER"),
        Column("next_attempt", "INTEGER", nullable=True),
        Column("detail", "TEXT", nullable=True),
    ),
    indexes=(("delivery_events_id", ("delivery_id",), False),),
)


@dataclass(frozen=True, slots=True)
class QueuedDelivery:
    """A delivery as the queue knows it now."""

    delivery_id: uuid.UUID
    emt_id: str
    consumer_id: str
    meter: str
    billing_relevant: bool
    created: datetime
    digest: bytes
    state: DeliveryState
    attempt: int = 0  # transmissions so far
    next_attempt: datetime | None = None
    receipt_status: str | None = None


@dataclass(frozen=True, slots=True)
class Transmission:
    """What the transport must send now: the sealed bytes to the EMT."""

    delivery_id: uuid.UUID
    emt_id: str
    sealed: bytes
    digest: bytes
    attempt: int


@dataclass
class DeliveryQueue:
    """The persistent store-until-acknowledged queue of one gateway."""

    db: Database
    clock: Clock
    gateway_id: str
    backoff: Backoff = field(default_factory=Backoff)
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        DELIVERY_OUTBOX.create(self.db)
        DELIVERY_EVENTS.create(self.db)
        self._system = SystemLog(self.db, self.clock)
        self._items: dict[uuid.UUID, QueuedDelivery] = {}
        self._replay()
        restarted = [i for i in self._items.values() if i.state is DeliveryState.SENT]
        for item in restarted:  # the receipt never came: send again (same bytes)
            self._apply(item, Restarted(self.clock.now()), detail="gateway restarted")

    # ------------------------------------------------------------------ state

    def _replay(self) -> None:
        conn = self.db.connection
        outbox = {row[1]: row for row in DELIVERY_OUTBOX.rows(conn)}
        for row in DELIVERY_EVENTS.rows(conn):
            (_seq, delivery_text, kind, state_text, at, attempt, next_at, detail) = row[:8]
            base = outbox.get(delivery_text)
            if base is None:
                raise UsageError(f"delivery event for unknown delivery {delivery_text}")
            key = uuid.UUID(str(delivery_text))
            item = self._items.get(key) or _queued(base)
            event_type = _EVENT_TYPES[str(kind)]
            if event_type is not _Enqueued:
                expected = process_event(item.state, _event_of(event_type, from_micros(int(at))))
                if expected.value != state_text:
                    raise UsageError(f"delivery {key}: stored state {state_text} does not "
                                     f"follow from the events")
            self._items[key] = _with(item, DeliveryState(str(state_text)), int(attempt),
                                     None if next_at is None else from_micros(int(next_at)),
                                     detail if kind == ReceiptAccepted.kind else
                                     item.receipt_status)

    def _apply(self, item: QueuedDelivery, event: DeliveryEvent, *,
               detail: str | None = None, before_commit: Callable[[], None] | None = None
               ) -> QueuedDelivery:
        state = process_event(item.state, event)
        attempt = item.attempt + (1 if isinstance(event, Transmit) else 0)
        next_attempt = None
        if state is DeliveryState.RETRY_WAIT:
            next_attempt = event.at + self.backoff.delay(max(attempt, 1), self.rng)
        receipt_status = (event.status if isinstance(event, ReceiptAccepted)
                          else item.receipt_status)
        with self.db.transaction():
            DELIVERY_EVENTS.append(self.db, [(
                str(item.delivery_id), event.kind, state.value, to_micros(event.at), attempt,
                None if next_attempt is None else to_micros(next_attempt),
                receipt_status if isinstance(event, ReceiptAccepted) else detail)])
            if before_commit is not None:
                before_commit()
        updated = _with(item, state, attempt, next_attempt, receipt_status)
        self._items[item.delivery_id] = updated
        return updated

    # ------------------------------------------------------------------ API

    def enqueue(self, delivery: Delivery, sealed: bytes, *, emt_id: str,
                consumer_id: str) -> QueuedDelivery:
        """Keep a sealed delivery until it is acknowledged (state PENDING)."""
        if delivery.gateway_id != self.gateway_id:
            raise UsageError("the delivery names another gateway")
        if delivery.delivery_id in self._items:
            raise UsageError(f"delivery {delivery.delivery_id} is queued already")
        ConsumerLog(self.db, self.clock, consumer_id)  # validates the consumer id
        now = self.clock.now()
        sealed_digest = digest(sealed)
        with self.db.transaction():
            DELIVERY_OUTBOX.append(self.db, [(
                str(delivery.delivery_id), delivery.gateway_id, emt_id, consumer_id,
                delivery.meter, int(delivery.billing_relevant), to_micros(delivery.created),
                sealed_digest, sealed)])
            DELIVERY_EVENTS.append(self.db, [(str(delivery.delivery_id), _Enqueued.kind,
                                              DeliveryState.PENDING.value, to_micros(now), 0,
                                              None, None)])
        item = QueuedDelivery(delivery.delivery_id, emt_id, consumer_id, delivery.meter,
                              delivery.billing_relevant, delivery.created, sealed_digest,
                              DeliveryState.PENDING)
        self._items[item.delivery_id] = item
        return item

    def get(self, delivery_id: uuid.UUID) -> QueuedDelivery:
        try:
            return self._items[delivery_id]
        except KeyError:
            raise UsageError(f"no delivery {delivery_id} in the queue") from None

    def items(self, state: DeliveryState | None = None) -> list[QueuedDelivery]:
        return [i for i in self._items.values() if state is None or i.state is state]

    def unacknowledged(self) -> list[QueuedDelivery]:
        """Everything the gateway still owes an EMT (kept until a valid receipt)."""
        return [i for i in self._items.values() if i.state is not DeliveryState.ACKNOWLEDGED]

    def next_wakeup(self) -> datetime | None:
        """When the next retry falls due (for the scheduler), None if nothing waits."""
        times = [i.next_attempt for i in self._items.values()
                 if i.state is DeliveryState.RETRY_WAIT and i.next_attempt is not None]
        return min(times) if times else None

    def _release_due(self, now: datetime) -> None:
        for item in list(self._items.values()):
            if item.state is DeliveryState.RETRY_WAIT and item.next_attempt is not None \
                    and item.next_attempt <= now:
                self._apply(item, RetryDue(now))

    def work(self, *, connected: Iterable[str] | bool) -> list[Transmission]:
        """Release due retries and return what to send now.

        ``connected`` names the EMTs a connection exists to (or ``True`` for all): their
        pending deliveries are marked SENT – recorded in the consumer log – and returned, in
        the order they were queued.
        """
        now = self.clock.now()
        self._release_due(now)
        out = []
        for item in list(self._items.values()):
            if item.state is not DeliveryState.PENDING:
                continue
            if connected is not True and (connected is False or item.emt_id not in connected):
                continue
            out.append(self._transmit(item, now))
        return out

    def _transmit(self, item: QueuedDelivery, now: datetime) -> Transmission:
        sealed = self.sealed(item.delivery_id)
        log = ConsumerLog(self.db, self.clock, item.consumer_id)

        def record() -> None:
            log.append(Level.INFO, Outcome.SUCCESS,
                       f"versendete Daten ({self.gateway_id} >> {item.emt_id}) "
                       f"Datensatz[{item.delivery_id}] Zähler {item.meter} "
                       f"abrechnungsrelevant: {'ja' if item.billing_relevant else 'nein'} "
                       f"Versuch {item.attempt + 1}",
                       event=ConsumerEvent.DATA_TRANSMISSION, timestamp=now)

        updated = self._apply(item, Transmit(now), before_commit=record)
        return Transmission(item.delivery_id, item.emt_id, sealed, item.digest, updated.attempt)

    def sealed(self, delivery_id: uuid.UUID) -> bytes:
        """The sealed bytes of a queued delivery, as they are (re)sent."""
        row = self.db.connection.execute(
            "SELECT sealed FROM delivery_outbox WHERE delivery_id = ?",
            (str(delivery_id),)).fetchone()
        if row is None:  # pragma: no cover - outbox and events are written together
            raise UsageError(f"delivery {delivery_id} has no stored bytes")
        return bytes(row[0])

    def receipt_received(self, delivery_id: uuid.UUID, data: bytes,
                         emt_sig_certificate: x509.Certificate, *,
                         validator: PathValidator | None = None) -> Receipt:
        """Verify the EMT's receipt; valid → ACKNOWLEDGED, else RETRY_WAIT and
        :class:`ReceiptRejected` is raised (the delivery is kept)."""
        item = self.get(delivery_id)
        try:
            receipt = verify_receipt(data, emt_sig_certificate, delivery_id=delivery_id,
                                     digest=item.digest, validator=validator)
        except ReceiptRejected as exc:
            if item.state is DeliveryState.SENT:
                self._fail(item, f"receipt refused: {exc.reason.value}")
            raise
        now = self.clock.now()
        self._apply(item, ReceiptAccepted(now, receipt.status.value),
                    before_commit=lambda: self._system.append(
                        Level.INFO, Outcome.SUCCESS, "delivery acknowledged by the EMT",
                        attempt=item.attempt))
        return receipt

    def transmission_failed(self, delivery_id: uuid.UUID, reason: str) -> QueuedDelivery:
        """The transmission ended without a receipt (no connection, HTTP error, timeout)."""
        return self._fail(self.get(delivery_id), reason)

    def _fail(self, item: QueuedDelivery, reason: str) -> QueuedDelivery:
        now = self.clock.now()
        return self._apply(item, Failed(now, reason[:200]), detail=reason[:200],
                           before_commit=lambda: self._system.append(
                               Level.WARNING, Outcome.FAILURE,
                               "delivery not acknowledged, retry scheduled",
                               attempt=item.attempt))

    def connection_lost(self, emt_id: str | None = None) -> list[QueuedDelivery]:
        """Deliveries SENT over a connection that broke go back to PENDING (sent again)."""
        now = self.clock.now()
        return [self._apply(i, Restarted(now), detail="connection lost")
                for i in list(self._items.values())
                if i.state is DeliveryState.SENT and (emt_id is None or i.emt_id == emt_id)]


@dataclass(frozen=True, slots=True)
class _Enqueued(DeliveryEvent):
    kind: ClassVar[str] = "enqueued"


_EVENT_TYPES[_Enqueued.kind] = _Enqueued


def _event_of(event_type: type[DeliveryEvent], at: datetime) -> DeliveryEvent:
    return event_type(at)


def _queued(row: tuple[object, ...]) -> QueuedDelivery:
    (_seq, delivery_id, _gateway, emt_id, consumer_id, meter, billing, created, sealed_digest,
     _sealed) = row[:10]
    return QueuedDelivery(uuid.UUID(str(delivery_id)), str(emt_id), str(consumer_id), str(meter),
                          bool(billing), from_micros(int(created)),  # type: ignore[call-overload]
                          bytes(sealed_digest), DeliveryState.PENDING)  # type: ignore[arg-type]


def _with(item: QueuedDelivery, state: DeliveryState, attempt: int,
          next_attempt: datetime | None, receipt_status: str | None) -> QueuedDelivery:
    return QueuedDelivery(item.delivery_id, item.emt_id, item.consumer_id, item.meter,
                          item.billing_relevant, item.created, item.digest, state, attempt,
                          next_attempt, receipt_status)


def deliver_due(queue: DeliveryQueue, send: Callable[[Transmission], bytes],
                emt_sig_certificates: dict[str, x509.Certificate], *,
                connected: Iterable[str] | bool = True,
                validator: PathValidator | None = None) -> dict[uuid.UUID, DeliveryState]:
    """A synchronous driver: send everything due over ``send`` (returns the receipt bytes or
    raises ``OSError``/``Rejected``) and feed the outcome back. Returns the new states."""
    results: dict[uuid.UUID, DeliveryState] = {}
    for transmission in queue.work(connected=connected):
        try:
            receipt = send(transmission)
        except Exception as exc:  # the transport's failure, whatever it is: retry later
            results[transmission.delivery_id] = queue.transmission_failed(
                transmission.delivery_id, f"{type(exc).__name__}: {exc}").state
            continue
        with contextlib.suppress(ReceiptRejected):
            queue.receipt_received(transmission.delivery_id, receipt,
                                   emt_sig_certificates[transmission.emt_id], validator=validator)
        results[transmission.delivery_id] = queue.get(transmission.delivery_id).state
    return results
