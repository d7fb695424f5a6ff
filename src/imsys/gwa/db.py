"""The GWA's database (SQLAlchemy Core; SQLite by default, PostgreSQL by URL).

Tables (times UTC, naive in the database):

* ``gwa_gateways`` – the inventory: phase, firmware version, first/last contact, contacts,
  contact interval (for "missed intervals"), the last alarm summary, the next command
  sequence number, the commissioning progress, the wake-up address, the gateway's ENC
  certificate (to seal secret-carrying commands);
* ``gwa_commands`` – the per-gateway queue and history: type, parameters, origin
  (``commissioning`` or ``operator``), batch, status (``queued`` → ``sent`` → ``ok`` |
  ``failed`` | ``refused`` | ``unanswered``), sequence number, times, the verified result
  details and the signed result (CMS) as evidence;
* ``gwa_alarms`` – every alarm summary a gateway reported with warnings or errors.

Sequence numbers are assigned when a command is handed out (:meth:`GwaDatabase.issue_next`),
in the transaction that marks it ``sent``: strictly increasing per gateway, also under
concurrent sessions (PostgreSQL: row lock; SQLite: one writer at a time).
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url

from imsys.core.errors import UsageError
from imsys.core.sql import normalise_url

__all__ = ["ALARMS", "COMMANDS", "GATEWAYS", "CommandRow", "CommandStatus", "Commissioning",
           "GatewayRow", "GwaDatabase", "normalise_url"]

METADATA = MetaData()
_ID = BigInteger().with_variant(Integer, "sqlite")


class CommandStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"  # handed out in a session, no answer yet
    OK = "ok"
    FAILED = "failed"  # the gateway executed it and answered "failed"
    REFUSED = "refused"  # the gateway refused it before executing (signature, replay, …)
    UNANSWERED = "unanswered"  # handed out, the session ended without an answer
    NOT_ISSUED = "not-issued"  # the GWA could not issue it (e.g. no ENC certificate to seal)


class Commissioning(StrEnum):
    """The GWA's view of a gateway's commissioning over the admin session."""

    NONE = "none"
    PERSONALISING = "personalising"  # §2.3.3 commands under way
    PERSONALISED = "personalised"  # operational certificates imported, phase operation
    SETTING_UP = "setting-up"  # §2.3.4: time synchronisation and self-test under way
    OPERATIONAL = "operational"  # operator commands may flow
    FAILED = "failed"  # a commissioning step failed; retried at the next contact


GATEWAYS = Table(
    "gwa_gateways", METADATA,
    Column("gateway_id", String(128), primary_key=True),
    Column("phase", String(32), nullable=True),
    Column("firmware_version", String(64), nullable=True),
    Column("first_contact", DateTime, nullable=True),
    Column("last_contact", DateTime, nullable=True),
    Column("contacts", Integer, nullable=False, default=0),
    Column("contact_interval_s", Integer, nullable=False, default=86400),
    Column("alarm_errors", Integer, nullable=False, default=0),
    Column("alarm_warnings", Integer, nullable=False, default=0),
    Column("last_error_at", DateTime, nullable=True),
    Column("next_sequence", BigInteger, nullable=False, default=1),
    Column("commissioning", String(32), nullable=False, default=Commissioning.NONE.value),
    Column("commissioning_detail", String(200), nullable=True),
    Column("wakeup_host", String(253), nullable=True),
    Column("wakeup_port", Integer, nullable=True),
    Column("enc_certificate", LargeBinary, nullable=True),
    Column("created_at", DateTime, nullable=False),
)

COMMANDS = Table(
    "gwa_commands", METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("command_id", String(36), nullable=False, unique=True),
    Column("gateway_id", String(128), ForeignKey("gwa_gateways.gateway_id"), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("batch", String(36), nullable=True),
    Column("type", String(64), nullable=False),
    Column("parameters", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("sequence", BigInteger, nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("sent_at", DateTime, nullable=True),
    Column("completed_at", DateTime, nullable=True),
    Column("result", Text, nullable=True),
    Column("result_cms", LargeBinary, nullable=True),
    Column("detail", String(300), nullable=True),
    Index("gwa_commands_queue", "gateway_id", "status", "id"),
    Index("gwa_commands_batch", "batch"),
)

ALARMS = Table(
    "gwa_alarms", METADATA,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("gateway_id", String(128), ForeignKey("gwa_gateways.gateway_id"), nullable=False),
    Column("reported_at", DateTime, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("warnings", Integer, nullable=False),
    Column("last_error_at", DateTime, nullable=True),
    Index("gwa_alarms_gateway", "gateway_id", "reported_at"),
)


def _naive(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise UsageError("the GWA database takes timezone-aware times")
    return when.astimezone(UTC).replace(tzinfo=None)


def _aware(when: datetime | None) -> datetime | None:
    return None if when is None else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class GatewayRow:
    gateway_id: str
    phase: str | None
    firmware_version: str | None
    first_contact: datetime | None
    last_contact: datetime | None
    contacts: int
    contact_interval_s: int
    alarm_errors: int
    alarm_warnings: int
    last_error_at: datetime | None
    next_sequence: int
    commissioning: Commissioning
    commissioning_detail: str | None
    wakeup_host: str | None
    wakeup_port: int | None
    enc_certificate: bytes | None

    def missed_intervals(self, now: datetime) -> int:
        """Whole contact intervals since the last contact (0 if it never called yet)."""
        if self.last_contact is None:
            return 0
        return max(0, int((now - self.last_contact).total_seconds()
                          // self.contact_interval_s))


@dataclass(frozen=True)
class CommandRow:
    command_id: uuid.UUID
    gateway_id: str
    origin: str
    batch: str | None
    type: str
    parameters: dict[str, Any]
    status: CommandStatus
    sequence: int | None
    created_at: datetime
    sent_at: datetime | None
    completed_at: datetime | None
    result: dict[str, Any] | None
    detail: str | None


def _gateway(row: Any) -> GatewayRow:
    m = row._mapping
    return GatewayRow(m["gateway_id"], m["phase"], m["firmware_version"],
                      _aware(m["first_contact"]), _aware(m["last_contact"]), m["contacts"],
                      m["contact_interval_s"], m["alarm_errors"], m["alarm_warnings"],
                      _aware(m["last_error_at"]), m["next_sequence"],
                      Commissioning(m["commissioning"]), m["commissioning_detail"],
                      m["wakeup_host"], m["wakeup_port"], m["enc_certificate"])


def _command(row: Any) -> CommandRow:
    m = row._mapping
    created = _aware(m["created_at"])
    assert created is not None
    return CommandRow(uuid.UUID(m["command_id"]), m["gateway_id"], m["origin"], m["batch"],
                      m["type"], json.loads(m["parameters"]), CommandStatus(m["status"]),
                      m["sequence"], created, _aware(m["sent_at"]),
                      _aware(m["completed_at"]),
                      None if m["result"] is None else json.loads(m["result"]), m["detail"])


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            database = make_url(url).database
            if database and database != ":memory:":
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


class GwaDatabase:
    """Inventory, command queue and history of one GWA."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = normalise_url(url)
        self.engine = _engine(self.url)
        self.dialect = self.engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise UsageError(f"unsupported database {self.dialect!r} (sqlite or postgresql)")
        # SQLite has one writer at a time: serialise this process's writers instead of
        # letting them meet SQLite's busy handler
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        if create:
            METADATA.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        lock = self._write_lock or contextlib.nullcontext()
        with lock, self.engine.begin() as conn:
            yield conn

    # ------------------------------------------------------------------ inventory

    def ensure_gateway(self, gateway_id: str, now: datetime, *,
                       conn: Connection | None = None) -> None:
        """Add ``gateway_id`` to the inventory if it is not there."""
        if conn is None:
            with self._write() as own:
                self.ensure_gateway(gateway_id, now, conn=own)
            return
        exists = conn.execute(select(GATEWAYS.c.gateway_id).where(
            GATEWAYS.c.gateway_id == gateway_id)).first()
        if exists is None:
            conn.execute(insert(GATEWAYS).values(
                gateway_id=gateway_id, contacts=0, contact_interval_s=86400, alarm_errors=0,
                alarm_warnings=0, next_sequence=1, commissioning=Commissioning.NONE.value,
                created_at=_naive(now)))

    def update_gateway(self, gateway_id: str, **values: Any) -> None:
        """Set inventory columns (times timezone-aware)."""
        known = set(GATEWAYS.c.keys()) - {"gateway_id", "created_at", "next_sequence"}
        if set(values) - known:
            raise UsageError(f"unknown gateway columns {sorted(set(values) - known)}")
        clean = {k: _naive(v) if isinstance(v, datetime) else
                 (v.value if isinstance(v, StrEnum) else v) for k, v in values.items()}
        with self._write() as conn:
            conn.execute(update(GATEWAYS).where(GATEWAYS.c.gateway_id == gateway_id)
                         .values(**clean))

    def record_contact(self, gateway_id: str, now: datetime, *, phase: str,
                       firmware_version: str, errors: int, warnings: int,
                       last_error_at: datetime | None) -> GatewayRow:
        """A session started: last contact, phase, firmware, alarms (one transaction)."""
        with self._write() as conn:
            self.ensure_gateway(gateway_id, now, conn=conn)
            row = _gateway(conn.execute(select(GATEWAYS).where(
                GATEWAYS.c.gateway_id == gateway_id)).one())
            conn.execute(update(GATEWAYS).where(GATEWAYS.c.gateway_id == gateway_id).values(
                phase=phase, firmware_version=firmware_version, last_contact=_naive(now),
                first_contact=_naive(row.first_contact or now), contacts=row.contacts + 1,
                alarm_errors=errors, alarm_warnings=warnings,
                last_error_at=None if last_error_at is None else _naive(last_error_at)))
            if errors or warnings:
                conn.execute(insert(ALARMS).values(
                    gateway_id=gateway_id, reported_at=_naive(now), errors=errors,
                    warnings=warnings,
                    last_error_at=None if last_error_at is None else _naive(last_error_at)))
            # whatever was handed out in an earlier session and never answered
            conn.execute(update(COMMANDS).where(
                COMMANDS.c.gateway_id == gateway_id,
                COMMANDS.c.status == CommandStatus.SENT.value).values(
                status=CommandStatus.UNANSWERED.value, completed_at=_naive(now)))
            return _gateway(conn.execute(select(GATEWAYS).where(
                GATEWAYS.c.gateway_id == gateway_id)).one())

    def gateway(self, gateway_id: str) -> GatewayRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(GATEWAYS).where(
                GATEWAYS.c.gateway_id == gateway_id)).first()
        return None if row is None else _gateway(row)

    def gateways(self) -> list[GatewayRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(GATEWAYS).order_by(GATEWAYS.c.gateway_id)).all()
        return [_gateway(r) for r in rows]

    def alarms(self, gateway_id: str, limit: int = 20) -> list[tuple[datetime, int, int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(ALARMS.c.reported_at, ALARMS.c.errors,
                                       ALARMS.c.warnings)
                                .where(ALARMS.c.gateway_id == gateway_id)
                                .order_by(ALARMS.c.id.desc()).limit(limit)).all()
        return [(r[0].replace(tzinfo=UTC), r[1], r[2]) for r in rows]

    # ------------------------------------------------------------------ commands

    def enqueue(self, gateway_ids: Sequence[str], command_type: str,
                parameters: dict[str, Any], now: datetime, *, origin: str = "operator",
                batch: str | None = None) -> list[uuid.UUID]:
        """Queue one command per gateway (unknown gateways join the inventory)."""
        text = json.dumps(parameters, sort_keys=True, separators=(",", ":"))
        ids = [uuid.uuid4() for _ in gateway_ids]
        with self._write() as conn:
            for gateway_id, command_id in zip(gateway_ids, ids, strict=True):
                self.ensure_gateway(gateway_id, now, conn=conn)
                conn.execute(insert(COMMANDS).values(
                    command_id=str(command_id), gateway_id=gateway_id, origin=origin,
                    batch=batch, type=command_type, parameters=text,
                    status=CommandStatus.QUEUED.value, created_at=_naive(now)))
        return ids

    def pending(self, gateway_id: str, origins: Sequence[str] | None = None) -> int:
        query = select(func.count()).select_from(COMMANDS).where(
            COMMANDS.c.gateway_id == gateway_id, COMMANDS.c.status == CommandStatus.QUEUED.value)
        if origins is not None:
            query = query.where(COMMANDS.c.origin.in_(list(origins)))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def issue_next(self, gateway_id: str, now: datetime, origins: Sequence[str],
                   sign: Any) -> tuple[CommandRow, bytes] | None:
        """Hand out the oldest queued command of ``origins``: assign the next sequence
        number, call ``sign(row, sequence) -> bytes`` and mark it ``sent`` – one transaction.
        ``sign`` may raise :class:`NotIssued` to mark the command ``not-issued`` instead."""
        with self._write() as conn:
            gateway = conn.execute(select(GATEWAYS).where(GATEWAYS.c.gateway_id == gateway_id)
                                   .with_for_update()).first()
            if gateway is None:
                return None
            while True:
                row = conn.execute(select(COMMANDS).where(
                    COMMANDS.c.gateway_id == gateway_id,
                    COMMANDS.c.status == CommandStatus.QUEUED.value,
                    COMMANDS.c.origin.in_(list(origins))).order_by(COMMANDS.c.id)
                    .limit(1)).first()
                if row is None:
                    return None
                command = _command(row)
                sequence = int(gateway._mapping["next_sequence"])
                try:
                    blob = sign(command, sequence)
                except NotIssued as exc:
                    conn.execute(update(COMMANDS).where(
                        COMMANDS.c.command_id == str(command.command_id)).values(
                        status=CommandStatus.NOT_ISSUED.value, completed_at=_naive(now),
                        detail=str(exc)[:300]))
                    continue
                conn.execute(update(GATEWAYS).where(GATEWAYS.c.gateway_id == gateway_id)
                             .values(next_sequence=sequence + 1))
                conn.execute(update(COMMANDS).where(
                    COMMANDS.c.command_id == str(command.command_id)).values(
                    status=CommandStatus.SENT.value, sequence=sequence, sent_at=_naive(now)))
                return command, blob

    def complete(self, command_id: uuid.UUID, status: CommandStatus, now: datetime, *,
                 result: dict[str, Any] | None = None, result_cms: bytes | None = None,
                 detail: str | None = None) -> None:
        with self._write() as conn:
            conn.execute(update(COMMANDS).where(COMMANDS.c.command_id == str(command_id))
                         .values(status=status.value, completed_at=_naive(now),
                                 result=None if result is None else json.dumps(result),
                                 result_cms=result_cms,
                                 detail=None if detail is None else detail[:300]))

    def command(self, command_id: uuid.UUID) -> CommandRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(COMMANDS).where(
                COMMANDS.c.command_id == str(command_id))).first()
        return None if row is None else _command(row)

    def result_cms(self, command_id: uuid.UUID) -> bytes | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(COMMANDS.c.result_cms).where(
                COMMANDS.c.command_id == str(command_id))).scalar()
        return None if value is None else bytes(value)

    def commands(self, *, gateway_id: str | None = None, batch: str | None = None,
                 limit: int = 1000) -> list[CommandRow]:
        query = select(COMMANDS).order_by(COMMANDS.c.id).limit(limit)
        if gateway_id is not None:
            query = query.where(COMMANDS.c.gateway_id == gateway_id)
        if batch is not None:
            query = query.where(COMMANDS.c.batch == batch)
        with self.engine.connect() as conn:
            return [_command(r) for r in conn.execute(query).all()]


class NotIssued(Exception):
    """Raised by the ``sign`` callback of :meth:`GwaDatabase.issue_next`."""
