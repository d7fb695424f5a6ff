"""System, calibration and consumer logs: append-only, chained, AR 2418-6 shaped."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from imsys.core.clock import SimulatedClock
from imsys.core.errors import UsageError
from imsys.core.reading import Reading
from imsys.gateway.errors import StoreReason, StoreRejected
from imsys.gateway.logs import (
    AR_2418_6_NS,
    MAX_TEXT,
    TRUNCATION_MARK,
    CalibrationEvent,
    ConsumerEvent,
    ConsumerLog,
    GatewayLogs,
    Level,
    LogEntry,
    Outcome,
    SystemEvent,
    export_xml,
)
from imsys.gateway.store import Database, Durability

T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
NS = {"ar": AR_2418_6_NS, "espi": "http://naesb.org/espi"}


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0)


@pytest.fixture
def db() -> Iterator[Database]:
    database = Database(":memory:", durability=Durability.OFF)
    yield database
    database.close()


@pytest.fixture
def logs(db: Database, clock: SimulatedClock) -> GatewayLogs:
    return GatewayLogs(db, clock)


def tick(clock: SimulatedClock) -> None:
    clock.advance(timedelta(seconds=80))


def test_each_log_numbers_its_records_from_one(logs: GatewayLogs,
                                               clock: SimulatedClock) -> None:
    system = logs.system.append(Level.INFO, Outcome.SUCCESS, "gateway started",
                                event=SystemEvent.GATEWAY_START)
    calibration = logs.calibration.append(Level.INFO, Outcome.SUCCESS, "self-test passed",
                                          event=CalibrationEvent.SELF_TEST)
    alice = logs.consumer("LV-0001")
    bob = logs.consumer("LV-0002")
    first = alice.append(Level.INFO, Outcome.SUCCESS, "versendete Daten",
                         event=ConsumerEvent.DATA_TRANSMISSION, subject_identity=17)
    tick(clock)
    second = alice.append(Level.INFO, Outcome.SUCCESS, "Aufzeichnung",
                          event=ConsumerEvent.RECORDING)
    other = bob.append(Level.WARNING, Outcome.FAILURE, "Zustellung fehlgeschlagen")
    assert [e.record_number for e in (system, calibration, first, second, other)] == [
        1, 1, 1, 2, 1]
    assert first.timestamp == T0 and second.timestamp == T0 + timedelta(seconds=80)
    assert first.log == "consumer:LV-0001" and system.log == "system"
    assert alice.entries() == [first, second]
    assert logs.consumer("LV-0001").entries()[0].hash == first.hash
    assert ConsumerLog.consumers(logs.db) == ["LV-0001", "LV-0002"]
    assert [h.seq for h in logs.verify_all()] == [1, 1, 2, 1]


def test_an_entry_comes_back_exactly(logs: GatewayLogs, clock: SimulatedClock) -> None:
    when = T0 + timedelta(microseconds=250)
    written = logs.calibration.append(Level.ERROR, Outcome.FAILURE, "meter 1EMH01 fatal error",
                                      event=CalibrationEvent.METER_ERROR,
                                      subject_identity=2**32 - 1, timestamp=when)
    (read,) = logs.calibration.entries()
    assert read == written
    assert read.event is CalibrationEvent.METER_ERROR
    assert read.timestamp == when


def test_the_system_log_takes_no_consumer_data(logs: GatewayLogs) -> None:
    reading = Reading("1EMH0012345678", "1-0:1.8.0*255", 1, 0, 30, T0)
    for detail in ("1EMH0012345678", reading, 1.5, b"\x01"):
        with pytest.raises(UsageError, match="never free text"):
            logs.system.append(Level.INFO, Outcome.SUCCESS, "reading stored", value=detail)
    with pytest.raises(UsageError):
        logs.system.append(Level.INFO, Outcome.SUCCESS, "x",
                           event=ConsumerEvent.DATA_TRANSMISSION)  # type: ignore[arg-type]
    assert logs.system.entries() == []
    entry = logs.system.append(Level.WARNING, Outcome.FAILURE, "TLS handshake failed",
                               event=SystemEvent.TLS_FAILURE, reason=StoreReason.DUPLICATE,
                               level=Level.ERROR, attempts=3, retry=True,
                               at=T0, backoff=timedelta(seconds=30), certificate=None)
    assert entry.text == ("TLS handshake failed (reason=duplicate, level=ERROR, attempts=3, "
                          "retry=True, at=2025-06-01T08:00:00Z, backoff=0:00:30, "
                          "certificate=None)")
    assert entry.subject_identity is None  # the system log has no subject field at all


def test_calibration_and_consumer_entries_name_their_own_events(logs: GatewayLogs) -> None:
    with pytest.raises(UsageError):
        logs.calibration.append(Level.INFO, Outcome.SUCCESS, "x",
                                event=SystemEvent.GATEWAY_START)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        logs.consumer("LV-1").append(Level.INFO, Outcome.SUCCESS, "x",
                                     event=CalibrationEvent.SELF_TEST)  # type: ignore[arg-type]
    for bad in (-1, 2**32, "7"):
        with pytest.raises(UsageError):
            logs.consumer("LV-1").append(Level.INFO, Outcome.SUCCESS, "x",
                                         subject_identity=bad)  # type: ignore[arg-type]
    for consumer in ("", " LV", "a" * 65, "LV 1", "LV/1"):
        with pytest.raises(UsageError):
            logs.consumer(consumer)
    with pytest.raises(ValueError):
        logs.consumer("LV-1").append(9, Outcome.SUCCESS, "x")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        logs.consumer("LV-1").append(Level.INFO, Outcome.SUCCESS, "x",
                                     timestamp=datetime(2025, 1, 1))
    assert logs.consumer("LV-1").entries() == []


def test_long_texts_are_truncated_and_marked(logs: GatewayLogs) -> None:
    log = logs.consumer("LV-1")
    exact = log.append(Level.INFO, Outcome.SUCCESS, "x" * MAX_TEXT)
    assert exact.text == "x" * MAX_TEXT
    long = log.append(Level.INFO, Outcome.SUCCESS, "y" * (MAX_TEXT + 500))
    assert len(long.text) == MAX_TEXT
    assert long.text.endswith(TRUNCATION_MARK)
    assert log.entries()[1].text == long.text
    log.verify()


def test_characters_xml_cannot_carry_are_replaced(logs: GatewayLogs) -> None:
    entry = logs.consumer("LV-1").append(Level.INFO, Outcome.SUCCESS, "a\x00b\x1bc\ud800d\té")
    assert entry.text == "a\ufffdb\ufffdc\ufffdd\té"
    ET.fromstring(logs.consumer("LV-1").export_xml())


def test_repetitions_are_new_entries_linked_to_the_first(logs: GatewayLogs,
                                                         clock: SimulatedClock) -> None:
    log = logs.consumer("LV-1")
    entries = []
    for _ in range(3):
        entries.append(log.append(Level.WARNING, Outcome.FAILURE, "EMT unreachable",
                                  event=ConsumerEvent.DATA_TRANSMISSION, subject_identity=4))
        tick(clock)
    entries.append(log.append(Level.WARNING, Outcome.FAILURE, "EMT unreachable",
                              event=ConsumerEvent.DATA_TRANSMISSION, subject_identity=5))
    entries.append(log.append(Level.WARNING, Outcome.FAILURE, "EMT unreachable",
                              event=ConsumerEvent.DATA_TRANSMISSION, subject_identity=5))
    entries.append(log.append(Level.INFO, Outcome.SUCCESS, "delivered"))
    entries.append(log.append(Level.WARNING, Outcome.FAILURE, "EMT unreachable",
                              event=ConsumerEvent.DATA_TRANSMISSION, subject_identity=5))
    assert [(e.record_number, e.parent_record_number, e.repetition_counter)
            for e in entries] == [(1, None, 1), (2, 1, 2), (3, 1, 3), (4, None, 1),
                                  (5, 4, 2), (6, None, 1), (7, None, 1)]
    assert [e.timestamp for e in entries[:3]] == [T0 + timedelta(seconds=80 * i)
                                                  for i in range(3)]
    log.verify()


def test_entries_since_after_and_limit(logs: GatewayLogs, clock: SimulatedClock) -> None:
    log = logs.consumer("LV-1")
    for i in range(6):
        log.append(Level.INFO, Outcome.SUCCESS, f"entry {i}")
        tick(clock)
    assert [e.record_number for e in log.entries(limit=2)] == [1, 2]
    assert [e.record_number for e in log.entries(after=4)] == [5, 6]
    since = T0 + timedelta(seconds=80 * 3)
    assert [e.record_number for e in log.entries(since=since)] == [4, 5, 6]
    assert [e.record_number for e in log.entries(since=since, after=4, limit=1)] == [5]


def test_a_log_entry_commits_with_the_action_it_records(db: Database,
                                                        logs: GatewayLogs) -> None:
    with pytest.raises(RuntimeError), db.transaction():
        logs.system.append(Level.INFO, Outcome.SUCCESS, "configuration changed")
        raise RuntimeError("the configuration change failed")
    assert logs.system.entries() == []
    assert logs.system.append(Level.INFO, Outcome.SUCCESS, "x").record_number == 1


def test_log_entries_cannot_be_changed_or_moved(db: Database, logs: GatewayLogs) -> None:
    alice, bob = logs.consumer("LV-1"), logs.consumer("LV-2")
    for i in range(3):
        alice.append(Level.INFO, Outcome.SUCCESS, f"versendete Daten {i}")
    bob.append(Level.INFO, Outcome.SUCCESS, "versendete Daten")
    conn = db.connection
    for statement in ("UPDATE log_entries SET text = 'nothing happened'",
                      "DELETE FROM log_entries WHERE record_number = 1"):
        with pytest.raises(sqlite3.IntegrityError, match="imsys"):
            conn.execute(statement)
    # with the guards dropped: edit a text, move an entry to another consumer's log
    guards = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                          "AND tbl_name = 'log_entries'").fetchall()
    for name, _ in guards:
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("UPDATE log_entries SET text = 'nothing' WHERE log = 'consumer:LV-1' "
                 "AND record_number = 2")
    conn.execute("UPDATE log_entries SET log = 'consumer:LV-2', record_number = 2 "
                 "WHERE log = 'consumer:LV-1' AND record_number = 3")
    for _, sql in guards:
        conn.execute(sql)
    with pytest.raises(StoreRejected) as info:
        alice.verify()
    assert info.value.reason is StoreReason.CHAIN_BROKEN
    assert info.value.context["seq"] == 2
    with pytest.raises(StoreRejected) as info:
        bob.verify()
    assert info.value.context["seq"] == 2  # the chain name is hashed: entries cannot move
    logs.system.verify()


# -- AR 2418-6 XML ---------------------------------------------------------------------------


def _parse(data: bytes) -> list[dict[str, object]]:
    root = ET.fromstring(data)
    assert root.tag == f"{{{AR_2418_6_NS}}}UsagePoints"
    out = []
    for entry in root.iterfind("ar:UsagePoint/ar:LogEntry", NS):
        tags = [child.tag.split("}")[1] for child in entry]
        assert tags == [t for t in ("parentRecordNumber", "recordNumber", "repetitionCounter",
                                    "LogEvent") if t in tags]  # XSD sequence order
        event = entry.find("ar:LogEvent", NS)
        assert event is not None
        order = ("type", "level", "text", "outcome", "subjectIdentity", "timestamp")
        event_tags = [child.tag.split("}")[1] for child in event]
        assert event_tags == [t for t in order if t in event_tags]

        def text(parent: ET.Element, path: str) -> str | None:
            found = parent.find(path, NS)
            return None if found is None else (found.text or "")

        out.append({
            "parent": text(entry, "ar:parentRecordNumber"),
            "record": text(entry, "ar:recordNumber"),
            "counter": text(entry, "ar:repetitionCounter"),
            "event": text(event, "ar:type/ar:eventId"),
            "level": text(event, "ar:level"),
            "text": text(event, "ar:text"),
            "outcome": text(event, "ar:outcome"),
            "subject": text(event, "ar:subjectIdentity"),
            "timestamp": text(event, "ar:timestamp"),
        })
    return out


def test_export_parses_back_as_ar_2418_6(logs: GatewayLogs, clock: SimulatedClock) -> None:
    log = logs.consumer("LV-0001")
    log.append(Level.INFO, Outcome.SUCCESS,
               "versendete Daten (… >> emt.example) [1-0:1.8.0*255]=639108*10^-1 Wh <&>",
               event=ConsumerEvent.DATA_TRANSMISSION, subject_identity=42)
    tick(clock)
    log.append(Level.ERROR, Outcome.FAILURE, "")
    data = log.export_xml(usage_point_id="upid0000000001", customer_id="LV-0001",
                          smgw_id="EDNT0012345678")
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(data)
    point = root.find("ar:UsagePoint", NS)
    assert point is not None
    assert [c.tag.split("}")[1] for c in point][:4] == ["ServiceCategory", "usagePointId",
                                                        "Customer", "SMGW"]
    assert root.findtext("ar:UsagePoint/espi:ServiceCategory/espi:kind", namespaces=NS) == "0"
    assert root.findtext("ar:UsagePoint/ar:Customer/ar:customerId", namespaces=NS) == "LV-0001"
    assert _parse(data) == [
        {"parent": None, "record": "1", "counter": "1", "event": "301", "level": "1",
         "text": "versendete Daten (… >> emt.example) [1-0:1.8.0*255]=639108*10^-1 Wh <&>",
         "outcome": "0", "subject": "42", "timestamp": "2025-06-01T08:00:00Z"},
        {"parent": None, "record": "2", "counter": "1", "event": None, "level": "3",
         "text": "", "outcome": "1", "subject": None, "timestamp": "2025-06-01T08:01:20Z"},
    ]


def test_export_can_collapse_repetitions(logs: GatewayLogs, clock: SimulatedClock) -> None:
    log = logs.system
    for _ in range(4):
        log.append(Level.WARNING, Outcome.FAILURE, "wake-up refused",
                   event=SystemEvent.WAKEUP)
        tick(clock)
    log.append(Level.INFO, Outcome.SUCCESS, "admin session", event=SystemEvent.ADMIN_SESSION)
    full = _parse(log.export_xml())
    assert [(e["record"], e["parent"], e["counter"]) for e in full] == [
        ("1", None, "1"), ("2", "1", "2"), ("3", "1", "3"), ("4", "1", "4"), ("5", None, "1")]
    collapsed = _parse(log.export_xml(collapse_repetitions=True))
    assert [(e["record"], e["parent"], e["counter"], e["timestamp"]) for e in collapsed] == [
        ("4", "1", "4", "2025-06-01T08:04:00Z"), ("5", None, "1", "2025-06-01T08:05:20Z")]


def test_export_of_given_entries_and_fractional_seconds() -> None:
    entry = LogEntry("system", 9, Level.FATAL, Outcome.EXTENSION,
                     T0 + timedelta(microseconds=5), "x", None, None, None, 1)
    (parsed,) = _parse(export_xml([entry]))
    assert parsed["timestamp"] == "2025-06-01T08:00:00.000005Z"
    assert parsed["level"] == "4" and parsed["outcome"] == "2"
