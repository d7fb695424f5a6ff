"""Store until acknowledged (seed 003, table 2, steps 3.1.3–3.1.5): the delivery queue."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from imsys.core.clock import SimulatedClock
from imsys.core.errors import UsageError
from imsys.crypto import SoftwareKey
from imsys.gateway.delivery import (
    DELIVERY_EVENTS,
    DELIVERY_OUTBOX,
    TRANSITIONS,
    Backoff,
    DeliveryProtocolError,
    DeliveryQueue,
    DeliveryState,
    Failed,
    ReceiptAccepted,
    Restarted,
    RetryDue,
    Transmission,
    Transmit,
    deliver_due,
    process_event,
)
from imsys.gateway.logs import ConsumerEvent, ConsumerLog
from imsys.gateway.store import Database, Durability
from imsys.wire.delivery import Delivery, digest, seal_delivery
from imsys.wire.receipt import (
    Receipt,
    ReceiptReason,
    ReceiptRejected,
    ReceiptStatus,
    issue_receipt,
)

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
GATEWAY = "EABC0012345678"
EMT = "9900000000001"
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
BACKOFF = Backoff(base=timedelta(seconds=30), factor=2, cap=timedelta(minutes=10), jitter=0.2)


class Emt:
    """The EMT side in memory: signs receipts for whatever arrives."""

    def __init__(self, issue: Issue) -> None:
        self.key, self.cert = issue("emt-sig", EMT, ca="emt-ca")
        self.seen: dict[bytes, datetime] = {}

    def receipt(self, transmission: Transmission) -> bytes:
        status = ReceiptStatus.DUPLICATE if transmission.digest in self.seen \
            else ReceiptStatus.STORED
        self.seen.setdefault(transmission.digest, T0)
        return issue_receipt(Receipt(transmission.delivery_id, transmission.digest, T0, status,
                                     EMT), self.key, self.cert)


def open_queue(path: Path, clock: SimulatedClock, seed: int = 1) -> DeliveryQueue:
    return DeliveryQueue(Database(path, durability=Durability.OFF), clock, GATEWAY,
                         backoff=BACKOFF, rng=random.Random(seed))


def enqueue(queue: DeliveryQueue, issue: Issue, consumer: str = "consumer-1") -> Delivery:
    key, cert = issue("gateway-sig", GATEWAY, ca="sub-ca")
    _, enc = issue("emt-enc", EMT, ca="emt-ca")
    item = Delivery.new(gateway_id=GATEWAY, meter="1EMH0012345678", profile_id="taf7-1",
                        created=queue.clock.now(), billing_relevant=True, document=b"<doc/>")
    queue.enqueue(item, seal_delivery(item, key, cert, enc), emt_id=EMT, consumer_id=consumer)
    return item


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0)


def test_transition_table_is_the_documented_one() -> None:
    assert process_event(DeliveryState.PENDING, Transmit(T0)) is DeliveryState.SENT
    assert process_event(DeliveryState.SENT, Failed(T0)) is DeliveryState.RETRY_WAIT
    assert process_event(DeliveryState.RETRY_WAIT, RetryDue(T0)) is DeliveryState.PENDING
    assert process_event(DeliveryState.SENT, Restarted(T0)) is DeliveryState.PENDING
    assert process_event(DeliveryState.ACKNOWLEDGED, ReceiptAccepted(T0)) \
        is DeliveryState.ACKNOWLEDGED
    for state in DeliveryState:
        for event in (Transmit(T0), Failed(T0), RetryDue(T0), Restarted(T0)):
            if (state, type(event)) not in TRANSITIONS:
                with pytest.raises(DeliveryProtocolError):
                    process_event(state, event)


def test_step_3_1_4_happy_path_sends_at_once_and_logs_for_the_consumer(
        tmp_path: Path, clock: SimulatedClock, issue: Issue) -> None:
    queue = open_queue(tmp_path / "gw.db", clock)
    emt = Emt(issue)
    item = enqueue(queue, issue)
    assert queue.work(connected=False) == []  # step 3.1.3: wait for the connection
    states = deliver_due(queue, emt.receipt, {EMT: emt.cert}, connected=[EMT])
    assert states == {item.delivery_id: DeliveryState.ACKNOWLEDGED}
    assert queue.unacknowledged() == []
    entries = ConsumerLog(queue.db, clock, "consumer-1").entries()
    assert len(entries) == 1 and entries[0].event is ConsumerEvent.DATA_TRANSMISSION
    assert f"{GATEWAY} >> {EMT}" in entries[0].text and str(item.delivery_id) in entries[0].text


def test_retry_backoff_is_exponential_jittered_and_capped(tmp_path: Path,
                                                          clock: SimulatedClock,
                                                          issue: Issue) -> None:
    queue = open_queue(tmp_path / "gw.db", clock)
    item = enqueue(queue, issue)
    waits = []
    for _ in range(8):
        sent = queue.work(connected=True)
        assert [t.delivery_id for t in sent] == [item.delivery_id]
        failed = queue.transmission_failed(item.delivery_id, "connection refused")
        assert failed.state is DeliveryState.RETRY_WAIT and failed.next_attempt is not None
        wait = failed.next_attempt - clock.now()
        waits.append(wait)
        clock.advance(wait - timedelta(seconds=1))
        assert queue.work(connected=True) == []  # not yet due
        clock.advance(timedelta(seconds=1))
    for attempt, wait in enumerate(waits, start=1):
        nominal = min(BACKOFF.cap, BACKOFF.base * 2 ** (attempt - 1))
        assert nominal * (1 - BACKOFF.jitter) <= wait <= nominal
    assert waits[-1] <= BACKOFF.cap
    assert len(set(waits)) == len(waits)  # jittered
    assert queue.get(item.delivery_id).attempt == 8
    assert len(ConsumerLog(queue.db, clock, "consumer-1").entries()) == 8  # every transmission


def test_receipt_that_does_not_verify_keeps_the_delivery(tmp_path: Path, clock: SimulatedClock,
                                                         issue: Issue) -> None:
    queue = open_queue(tmp_path / "gw.db", clock)
    emt = Emt(issue)
    item = enqueue(queue, issue)
    (transmission,) = queue.work(connected=True)
    forged_key, forged_cert = issue("emt-sig", "9900000000002", ca="emt-ca")
    forged = issue_receipt(Receipt(item.delivery_id, transmission.digest, T0,
                                   ReceiptStatus.STORED, EMT), forged_key, forged_cert)
    with pytest.raises(ReceiptRejected) as info:
        queue.receipt_received(item.delivery_id, forged, emt.cert)
    assert info.value.reason is ReceiptReason.WRONG_SIGNER
    assert queue.get(item.delivery_id).state is DeliveryState.RETRY_WAIT
    wrong_digest = issue_receipt(Receipt(item.delivery_id, bytes(32), T0, ReceiptStatus.STORED,
                                         EMT), emt.key, emt.cert)
    clock.advance(timedelta(hours=1))
    (again,) = queue.work(connected=True)
    assert again.sealed == transmission.sealed  # the same bytes, so the EMT can deduplicate
    with pytest.raises(ReceiptRejected):
        queue.receipt_received(item.delivery_id, wrong_digest, emt.cert)
    assert [i.delivery_id for i in queue.unacknowledged()] == [item.delivery_id]


def test_restart_keeps_pending_deliveries_and_resends_unanswered(tmp_path: Path,
                                                                 clock: SimulatedClock,
                                                                 issue: Issue) -> None:
    path = tmp_path / "gw.db"
    queue = open_queue(path, clock)
    emt = Emt(issue)
    waiting, in_flight, failed = (enqueue(queue, issue) for _ in range(3))
    sent = {t.delivery_id: t for t in queue.work(connected=True)}
    queue.transmission_failed(failed.delivery_id, "timeout")
    queue.transmission_failed(waiting.delivery_id, "timeout")
    queue.db.close()  # crash while in_flight awaits its receipt; waiting/failed wait for retry
    reopened = open_queue(path, clock, seed=2)
    states = {i.delivery_id: i.state for i in reopened.items()}
    assert states[in_flight.delivery_id] is DeliveryState.PENDING  # resent after restart
    assert states[failed.delivery_id] is DeliveryState.RETRY_WAIT
    assert reopened.get(failed.delivery_id).next_attempt is not None
    (resent,) = reopened.work(connected=True)
    assert resent.delivery_id == in_flight.delivery_id
    assert resent.sealed == sent[in_flight.delivery_id].sealed
    reopened.receipt_received(resent.delivery_id, emt.receipt(resent), emt.cert)
    clock.advance(timedelta(hours=2))
    deliver_due(reopened, emt.receipt, {EMT: emt.cert})
    assert reopened.unacknowledged() == []
    # the evidence verifies: both chains are intact and only appended to
    DELIVERY_EVENTS.verify(reopened.db)
    DELIVERY_OUTBOX.verify(reopened.db)
    with pytest.raises(sqlite3.IntegrityError):
        reopened.db.connection.execute("UPDATE delivery_events SET state = 'acknowledged'")


def test_duplicate_receipt_is_accepted_and_changes_nothing(tmp_path: Path,
                                                           clock: SimulatedClock,
                                                           issue: Issue) -> None:
    queue = open_queue(tmp_path / "gw.db", clock)
    emt = Emt(issue)
    item = enqueue(queue, issue)
    (transmission,) = queue.work(connected=True)
    first = emt.receipt(transmission)
    duplicate = emt.receipt(transmission)
    assert queue.receipt_received(item.delivery_id, first, emt.cert).status \
        is ReceiptStatus.STORED
    assert queue.receipt_received(item.delivery_id, duplicate, emt.cert).status \
        is ReceiptStatus.DUPLICATE
    assert queue.get(item.delivery_id).state is DeliveryState.ACKNOWLEDGED
    assert queue.work(connected=True) == []


def test_lost_receipt_resend_gets_duplicate_receipt(tmp_path: Path, clock: SimulatedClock,
                                                    issue: Issue) -> None:
    queue = open_queue(tmp_path / "gw.db", clock)
    emt = Emt(issue)
    item = enqueue(queue, issue)
    (transmission,) = queue.work(connected=True)
    emt.receipt(transmission)  # the EMT stored it, the receipt got lost on the way back
    queue.connection_lost(EMT)
    (again,) = queue.work(connected=True)
    assert again.digest == digest(transmission.sealed)
    receipt = queue.receipt_received(item.delivery_id, emt.receipt(again), emt.cert)
    assert receipt.status is ReceiptStatus.DUPLICATE


def test_enqueue_checks_its_input(tmp_path: Path, clock: SimulatedClock, issue: Issue) -> None:
    queue = open_queue(tmp_path / "gw.db", clock)
    item = enqueue(queue, issue)
    with pytest.raises(UsageError, match="queued already"):
        queue.enqueue(item, b"x", emt_id=EMT, consumer_id="consumer-1")
    other = Delivery.new(gateway_id="EABC0000000001", meter="m1", profile_id="p",
                         created=T0, billing_relevant=True, document=b"")
    with pytest.raises(UsageError, match="another gateway"):
        queue.enqueue(other, b"x", emt_id=EMT, consumer_id="consumer-1")
    with pytest.raises(UsageError):
        Backoff(base=timedelta(0))


def test_state_diagram_in_the_docs_is_drawn_from_the_table() -> None:
    from imsys.gateway.delivery import state_diagram

    docs = (Path(__file__).resolve().parents[3] / "docs" / "delivery.md").read_text()
    assert f"```mermaid\n{state_diagram()}\n```" in docs
