"""The gateway's three logs, append-only and hash-chained (TR-03109-1; AR 2418-6 LogEntry).

* :class:`SystemLog` – for the gateway administrator: operation and security events. It never
  holds consumer data, and the API makes that hard to get wrong: the text is a
  ``LiteralString`` (a constant from the source code, checked by type checkers), details are
  keyword arguments restricted at run time to numbers, booleans, times and enum members – a
  meter value, a meter id or a consumer id (all ``str`` or ``Reading``) is refused with
  :class:`~imsys.core.errors.UsageError`; there is no subject identity.
* :class:`CalibrationLog` – legal-metrology events (PTB-A 50.8): time corrections, firmware,
  self-tests, meter errors. Every entry names its :class:`CalibrationEvent`.
* :class:`ConsumerLog` – one per consumer: every transmission of that consumer's data and every
  administrator action concerning them; TRuDI shows it (LH-TRuDI TRuDI_005).

All logs live in the gateway database (table ``log_entries``, one chain per log), so a log
entry commits in the same transaction as the action it records. Records have the AR 2418-6
shape: ``recordNumber`` (per log, gap-free from 1), ``parentRecordNumber``,
``repetitionCounter`` and one LogEvent (``level``, ``outcome``, ``timestamp``, ``text`` ≤ 8192,
optional ``type``/event id, optional ``subjectIdentity`` (UInt32)).

Repetitions: an entry identical to the log's previous one (level, outcome, text, event,
subject) is still written – the log is append-only, the previous entry cannot be counted up –
but it carries ``parentRecordNumber`` = the first entry of the run and
``repetitionCounter`` = its position in the run (the first entry has counter 1 and no parent).
:func:`export_xml` can collapse each run to its last entry, which is what an AR 2418-6 reader
expects from repetition suppression.

Texts longer than 8192 characters are truncated (ending in :data:`TRUNCATION_MARK`), never
refused: an event must not be lost because its description is long. Characters XML 1.0 cannot
carry are replaced by U+FFFD before the entry is hashed.
"""

from __future__ import annotations

import re
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, IntEnum, StrEnum
from typing import Any, LiteralString

from imsys.core.clock import Clock
from imsys.core.errors import UsageError
from imsys.gateway.store import (
    AppendOnlyTable,
    ChainHead,
    Column,
    Database,
    from_micros,
    to_micros,
)

AR_2418_6_NS = "http://vde.de/AR_2418-6.xsd"
ESPI_NS = "http://naesb.org/espi"
MAX_TEXT = 8192
TRUNCATION_MARK = " …[truncated]"
MAX_UINT32 = 2**32 - 1

_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CONSUMER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")

LOG_ENTRIES = AppendOnlyTable(
    "log_entries",
    (
        Column("parent_record_number", "INTEGER", nullable=True),
        Column("repetition_counter", "INTEGER"),
        Column("level", "INTEGER"),
        Column("outcome", "INTEGER"),
        Column("timestamp", "INTEGER"),  # µs since 1970-01-01 UTC
        Column("text", "TEXT"),
        Column("event", "INTEGER", nullable=True),
        Column("subject_identity", "INTEGER", nullable=True),
    ),
    seq_column="record_number",
    partition="log",
    indexes=(("log_entries_time", ("log", "timestamp"), False),),
)
_COLUMNS = ", ".join(("record_number", *LOG_ENTRIES.payload_names, "hash"))


class Level(IntEnum):
    """LogEvent ``level`` (AR 2418-6)."""

    INFO = 1
    WARNING = 2
    ERROR = 3
    FATAL = 4
    EXTENSION = 5


class Outcome(IntEnum):
    """LogEvent ``outcome`` (AR 2418-6)."""

    SUCCESS = 0
    FAILURE = 1
    EXTENSION = 2


class SystemEvent(IntEnum):
    """System-log event ids (exported as the Evis ``eventId``; imsys numbering 1xx)."""

    GATEWAY_START = 101
    GATEWAY_STOP = 102
    RETENTION_DELETION = 110
    RETENTION_REFUSED = 111
    ADMIN_SESSION = 120
    WAKEUP = 121
    CONFIGURATION_CHANGE = 122
    TECHNICIAN_ACCESS = 123  # a service technician at the HAN (seed 003 §6, table 4 step 4.4)
    INPUT_REJECTED = 130
    TLS_FAILURE = 131
    STORE_VERIFICATION = 140


class CalibrationEvent(IntEnum):
    """Calibration-log event ids (legal metrology; imsys numbering 2xx)."""

    TIME_CORRECTION = 201
    CLOCK_INVALID = 202
    FIRMWARE_UPDATE = 210
    SELF_TEST = 220
    METER_ERROR = 230
    PARAMETER_CHANGE = 240


class ConsumerEvent(IntEnum):
    """Consumer-log event ids (imsys numbering 3xx)."""

    DATA_TRANSMISSION = 301  # "versendete Daten": which data went to which EMT
    RECORDING = 302  # "Aufzeichnung": a registration window closed with a value
    ADMIN_ACTION = 310  # the administrator changed something concerning this consumer
    HAN_ACCESS = 320  # the consumer (or a technician) read data over the HAN


_EVENTS: dict[int, IntEnum] = {e.value: e for t in (SystemEvent, CalibrationEvent,
                                                     ConsumerEvent) for e in t}


class LogName(StrEnum):
    """The two singleton logs; consumer logs are named ``consumer:<consumer_id>``."""

    SYSTEM = "system"
    CALIBRATION = "calibration"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One stored log record (AR 2418-6 LogEntry with its single LogEvent)."""

    log: str
    record_number: int
    level: Level
    outcome: Outcome
    timestamp: datetime
    text: str
    event: IntEnum | int | None = None
    subject_identity: int | None = None
    parent_record_number: int | None = None
    repetition_counter: int = 1
    hash: bytes = b""


def clean_text(text: str) -> str:
    """The text as stored: XML-safe characters, at most :data:`MAX_TEXT` characters."""
    if not isinstance(text, str):
        raise UsageError(f"log text is a str, not {type(text)!r}")
    text = _XML_ILLEGAL.sub("\ufffd", text)
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT - len(TRUNCATION_MARK)] + TRUNCATION_MARK
    return text


def _entry(log: str, row: tuple[Any, ...]) -> LogEntry:
    (number, parent, counter, level, outcome, timestamp, text, event, subject, digest) = row
    return LogEntry(log, number, Level(level), Outcome(outcome), from_micros(timestamp), text,
                    _EVENTS.get(event, event), subject, parent, counter, digest)


class _Log:
    """A chain of :class:`LogEntry` records in ``log_entries`` (one per log name)."""

    def __init__(self, db: Database, clock: Clock, name: str) -> None:
        self.db = db
        self.clock = clock
        self.name = name
        LOG_ENTRIES.create(db)

    def _append(self, level: Level, outcome: Outcome, text: str, event: IntEnum | None,
                subject_identity: int | None, timestamp: datetime | None) -> LogEntry:
        level, outcome = Level(level), Outcome(outcome)
        text = clean_text(text)
        if subject_identity is not None and not (
                type(subject_identity) is int and 0 <= subject_identity <= MAX_UINT32):
            raise UsageError("subjectIdentity is a UInt32")
        when = self.clock.now() if timestamp is None else timestamp
        event_id = None if event is None else int(event)
        with self.db.transaction() as conn:
            parent, counter = self._repetition(conn, level, outcome, text, event_id,
                                               subject_identity)
            payload = (parent, counter, int(level), int(outcome), to_micros(when), text,
                       event_id, subject_identity)
            head = LOG_ENTRIES.append(self.db, [payload], self.name)
        return LogEntry(self.name, head.seq, level, outcome, from_micros(to_micros(when)), text,
                        event, subject_identity, parent, counter, head.hash)

    def _repetition(self, conn: sqlite3.Connection, level: Level, outcome: Outcome, text: str,
                    event_id: int | None, subject: int | None) -> tuple[int | None, int]:
        last = conn.execute(
            "SELECT record_number, parent_record_number, repetition_counter, level, outcome, "
            "text, event, subject_identity FROM log_entries WHERE log = ? "
            "ORDER BY record_number DESC LIMIT 1", (self.name,)).fetchone()
        if last is None or tuple(last[3:]) != (int(level), int(outcome), text, event_id,
                                                subject):
            return None, 1
        number, parent, counter = last[:3]
        return (number if parent is None else parent), counter + 1

    def entries(self, *, since: datetime | None = None, after: int = 0,
                limit: int | None = None) -> list[LogEntry]:
        """Entries in record order: those with ``timestamp >= since`` and
        ``recordNumber > after``, at most ``limit``."""
        sql = f"SELECT {_COLUMNS} FROM log_entries WHERE log = ? AND record_number > ?"
        params: list[Any] = [self.name, after]
        if since is not None:
            sql += " AND timestamp >= ?"
            params.append(to_micros(since))
        sql += " ORDER BY record_number"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self.db.connection.execute(sql, params).fetchall()
        return [_entry(self.name, row) for row in rows]

    def head(self) -> ChainHead:
        return LOG_ENTRIES.head(self.db.connection, self.name)

    def verify(self, expected_head: ChainHead | None = None) -> ChainHead:
        """Recompute this log's chain; ``StoreRejected(CHAIN_BROKEN, seq=recordNumber)`` on
        any altered, removed or reordered entry."""
        return LOG_ENTRIES.verify(self.db, self.name, expected_head)

    def export_xml(self, *, since: datetime | None = None, collapse_repetitions: bool = False,
                   **usage_point: str) -> bytes:
        """This log as AR 2418-6 XML (see :func:`export_xml`)."""
        return export_xml(self.entries(since=since), collapse_repetitions=collapse_repetitions,
                          **usage_point)


SystemDetail = int | bool | datetime | timedelta | Enum | None


def _render_detail(name: str, value: SystemDetail) -> str:
    if isinstance(value, StrEnum):
        return f"{name}={value.value}"
    if isinstance(value, Enum):
        return f"{name}={value.name}"
    if isinstance(value, datetime):
        return f"{name}={_xml_time(value)}"
    if isinstance(value, bool | int | timedelta) or value is None:
        return f"{name}={value}"
    raise UsageError(f"system-log detail {name!r}: only numbers, times and enum members, "
                     f"never free text or consumer data (got {type(value).__name__})")


class SystemLog(_Log):
    """The system log (for the administrator). No consumer data – see the module docstring."""

    def __init__(self, db: Database, clock: Clock) -> None:
        super().__init__(db, clock, LogName.SYSTEM.value)

    def append(self, level: Level, outcome: Outcome, text: LiteralString, /, *,
               event: SystemEvent | None = None, timestamp: datetime | None = None,
               **details: SystemDetail) -> LogEntry:
        """Append ``text`` (a constant) followed by ``(name=value, …)`` for ``details``
        (any names but ``event`` and ``timestamp``)."""
        if event is not None and not isinstance(event, SystemEvent):
            raise UsageError("system-log events are SystemEvent members")
        rendered = [_render_detail(name, value) for name, value in details.items()]
        full = f"{text} ({', '.join(rendered)})" if rendered else text
        return self._append(level, outcome, full, event, None, timestamp)


class CalibrationLog(_Log):
    """The calibration (legal-metrology) log."""

    def __init__(self, db: Database, clock: Clock) -> None:
        super().__init__(db, clock, LogName.CALIBRATION.value)

    def append(self, level: Level, outcome: Outcome, text: str, *, event: CalibrationEvent,
               subject_identity: int | None = None,
               timestamp: datetime | None = None) -> LogEntry:
        if not isinstance(event, CalibrationEvent):
            raise UsageError("calibration-log entries name a CalibrationEvent")
        return self._append(level, outcome, text, event, subject_identity, timestamp)


class ConsumerLog(_Log):
    """The log of one consumer (Letztverbraucher-Log)."""

    def __init__(self, db: Database, clock: Clock, consumer_id: str) -> None:
        if not isinstance(consumer_id, str) or not _CONSUMER_ID.match(consumer_id):
            raise UsageError(f"consumer id must match {_CONSUMER_ID.pattern}")
        self.consumer_id = consumer_id
        super().__init__(db, clock, f"consumer:{consumer_id}")

    def append(self, level: Level, outcome: Outcome, text: str, *,
               event: ConsumerEvent | None = None, subject_identity: int | None = None,
               timestamp: datetime | None = None) -> LogEntry:
        if event is not None and not isinstance(event, ConsumerEvent):
            raise UsageError("consumer-log events are ConsumerEvent members")
        return self._append(level, outcome, text, event, subject_identity, timestamp)

    @staticmethod
    def consumers(db: Database) -> list[str]:
        """The consumer ids that have a log in ``db``."""
        LOG_ENTRIES.create(db)
        rows = db.connection.execute(
            "SELECT DISTINCT log FROM log_entries WHERE log LIKE 'consumer:%' ORDER BY log")
        return [row[0].removeprefix("consumer:") for row in rows]


class GatewayLogs:
    """The three kinds of log of one gateway database, on one clock."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self.system = SystemLog(db, clock)
        self.calibration = CalibrationLog(db, clock)

    def consumer(self, consumer_id: str) -> ConsumerLog:
        return ConsumerLog(self.db, self.clock, consumer_id)

    def verify_all(self) -> list[ChainHead]:
        """Verify the system, calibration and every consumer log."""
        logs: list[_Log] = [self.system, self.calibration]
        logs += [self.consumer(c) for c in ConsumerLog.consumers(self.db)]
        return [log.verify() for log in logs]


# -- AR 2418-6 XML --------------------------------------------------------------------------


def _xml_time(when: datetime) -> str:
    text = from_micros(to_micros(when)).isoformat()
    return text.removesuffix("+00:00") + "Z"


def collapse(entries: Iterable[LogEntry]) -> list[LogEntry]:
    """Each run of repetitions reduced to its last entry (which carries the run's count)."""
    runs: dict[int, LogEntry] = {}
    for entry in entries:
        runs[entry.parent_record_number or entry.record_number] = entry
    return sorted(runs.values(), key=lambda e: e.record_number)


def export_xml(entries: Iterable[LogEntry], *, collapse_repetitions: bool = False,
               usage_point_id: str | None = None, customer_id: str | None = None,
               smgw_id: str | None = None, service_kind: int = 0) -> bytes:
    """``UsagePoints/UsagePoint/LogEntry*`` in the AR 2418-6 namespace, elements in XSD order
    (``parentRecordNumber``, ``recordNumber``, ``repetitionCounter``, ``LogEvent`` with
    ``type/eventId``, ``level``, ``text``, ``outcome``, ``subjectIdentity``, ``timestamp``).
    Timestamps are UTC (``Z``). UTF-8 bytes with an XML declaration."""
    ET.register_namespace("", AR_2418_6_NS)
    ET.register_namespace("espi", ESPI_NS)

    def q(tag: str) -> str:
        return f"{{{AR_2418_6_NS}}}{tag}"

    def sub(parent: ET.Element, tag: str, text: object) -> ET.Element:
        element = ET.SubElement(parent, q(tag))
        element.text = str(text)
        return element

    root = ET.Element(q("UsagePoints"))
    point = ET.SubElement(root, q("UsagePoint"))
    category = ET.SubElement(point, f"{{{ESPI_NS}}}ServiceCategory")
    ET.SubElement(category, f"{{{ESPI_NS}}}kind").text = str(service_kind)
    if usage_point_id is not None:
        sub(point, "usagePointId", usage_point_id)
    if customer_id is not None:
        sub(ET.SubElement(point, q("Customer")), "customerId", customer_id)
    if smgw_id is not None:
        sub(ET.SubElement(point, q("SMGW")), "smgwId", smgw_id)
    selected: Sequence[LogEntry] = (collapse(entries) if collapse_repetitions
                                    else list(entries))
    for entry in selected:
        element = ET.SubElement(point, q("LogEntry"))
        if entry.parent_record_number is not None:
            sub(element, "parentRecordNumber", entry.parent_record_number)
        sub(element, "recordNumber", entry.record_number)
        sub(element, "repetitionCounter", entry.repetition_counter)
        event = ET.SubElement(element, q("LogEvent"))
        if entry.event is not None:
            sub(ET.SubElement(event, q("type")), "eventId", int(entry.event))
        sub(event, "level", int(entry.level))
        sub(event, "text", entry.text)
        sub(event, "outcome", int(entry.outcome))
        if entry.subject_identity is not None:
            sub(event, "subjectIdentity", entry.subject_identity)
        sub(event, "timestamp", _xml_time(entry.timestamp))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


__all__ = [
    "AR_2418_6_NS",
    "LOG_ENTRIES",
    "MAX_TEXT",
    "TRUNCATION_MARK",
    "CalibrationEvent",
    "CalibrationLog",
    "ConsumerEvent",
    "ConsumerLog",
    "GatewayLogs",
    "Level",
    "LogEntry",
    "LogName",
    "Outcome",
    "SystemEvent",
    "SystemLog",
    "clean_text",
    "collapse",
    "export_xml",
]
