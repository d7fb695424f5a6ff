"""The gateway's admin-session client (``imsys-admin-session/1``, docs/admin-protocol.md §3).

``await AdminSessionClient(context).run_once()`` is one session, seed 003 table 3 steps 3.2–3.6:

1. **connect** – mutually authenticated WAN-TLS (TR-03116-3) to the current administrator's
   address (:func:`~imsys.gateway.admin.administrator.current_administrator`; during
   commissioning the address the installer may have updated). The client certificate is the
   gateway's TLS certificate – ``GW_WAN_TLS_CRT_PRE`` in phase personalisation,
   ``GW_WAN_TLS_CRT`` in operation – with its key handed to OpenSSL by the security module
   (:meth:`~imsys.secmod.SecurityModule.tls_private_key`).
2. **check the server** – the chain validates against ``ROOT_WAN_SIG_CRT`` from the security
   module as ``gwa-tls``, its CN is the administrator id, and its key is the one of the stored
   ``GWADM_TLS_CRT``. Anything else: the connection is closed before a byte of HTTP.
3. **hello** – id, phase, firmware version, alarm summary (warnings/errors in the system log
   since the last session).
4. **pull / verify / execute / answer** until the GWA answers 204: each command goes through
   :class:`~imsys.wire.command.CommandVerifier` with the persistent :class:`DbSequenceStore`;
   a refused command is answered with a :class:`~imsys.wire.admin_session.Refusal` and a
   system-log entry, an accepted one runs in :class:`~imsys.gateway.admin.AdminExecutor` and
   its result is signed with the gateway's SIG key of the session's phase.

:meth:`AdminSessionClient.run` repeats sessions while a session changed the phase (after
``commissioning.complete-personalisation`` the next session uses the operational keys, seed
§2.3.4 "Nach erfolgreichem Aufbau eines neuen TLS-Kanals").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

import imsys
from imsys.core.errors import Reason, Rejected, TlsRejected, UsageError
from imsys.crypto.primitives import KeyHandle
from imsys.crypto.tls import Interface, TlsIdentity, check_peer, client_context
from imsys.gateway.admin.admin_change_handlers import (
    PENDING_SESSION_COMMANDS,
    pending_administrator,
)
from imsys.gateway.admin.administrator import (
    ADMINISTRATOR_ITEM,
    Administrator,
    current_administrator,
)
from imsys.gateway.admin.config_store import ConfigKind
from imsys.gateway.admin.context import AdminContext
from imsys.gateway.admin.executor import AdminExecutor
from imsys.gateway.commissioning import Phase
from imsys.gateway.initial_config import GwaAddress
from imsys.gateway.logs import Level, Outcome, SystemEvent
from imsys.gateway.store import Database, StateKey, StateTable, to_micros
from imsys.pki.validation import PathValidator, common_name
from imsys.wire.admin_session import (
    Ack,
    AlarmSummary,
    ClientSession,
    Hello,
    HttpMessage,
    HttpParser,
    Refusal,
    Welcome,
)
from imsys.wire.command import CommandRejected, CommandVerifier, issue_result
from imsys.wire.wakeup import NonceStatus, WakeupReceiver

__all__ = ["AdminSessionClient", "DbReplayCache", "DbSequenceStore", "GatewayCredentials",
           "SessionReport", "gateway_credentials", "wakeup_receiver"]

log = logging.getLogger("imsys.gateway.admin.session")

ROOT_LABEL = "ROOT_WAN_SIG_CRT"
#: state-table key: the last system-log record already summarised for the administrator
ALARMS_AFTER_KEY = "admin-session.alarms-after"


# --------------------------------------------------------------------------- sequence store

_SEQUENCE_DDL = [
    "CREATE TABLE admin_sequence (gateway_id TEXT PRIMARY KEY NOT NULL, "
    "last_sequence INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE admin_command_ids (gateway_id TEXT NOT NULL, command_id TEXT NOT NULL, "
    "sequence INTEGER NOT NULL, PRIMARY KEY (gateway_id, command_id)) WITHOUT ROWID",
    "CREATE INDEX admin_command_ids_seq ON admin_command_ids (gateway_id, sequence)",
]


class DbSequenceStore:
    """:class:`~imsys.wire.command.SequenceStore` in the gateway database: the last accepted
    sequence number per gateway and the ids of the last ``id_capacity`` accepted commands.

    ``record`` commits in its own transaction (or joins the caller's), before the command
    executes: a command runs at most once, also across restarts. Older ids need no memory:
    their sequence numbers are below the last accepted one.
    """

    def __init__(self, db: Database, id_capacity: int = 1024) -> None:
        if id_capacity < 1:
            raise UsageError("id_capacity must be at least 1")
        self.db = db
        self.id_capacity = id_capacity
        db.ensure_schema("admin_sequence", _SEQUENCE_DDL)

    def last_sequence(self, gateway_id: str) -> int:
        row = self.db.connection.execute(
            "SELECT last_sequence FROM admin_sequence WHERE gateway_id = ?",
            (gateway_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def seen(self, gateway_id: str, command_id: uuid.UUID) -> bool:
        row = self.db.connection.execute(
            "SELECT 1 FROM admin_command_ids WHERE gateway_id = ? AND command_id = ?",
            (gateway_id, str(command_id))).fetchone()
        return row is not None

    def record(self, gateway_id: str, sequence: int, command_id: uuid.UUID) -> None:
        with self.db.transaction() as conn:
            if sequence <= self.last_sequence(gateway_id):
                raise UsageError("sequence numbers only increase")
            conn.execute("INSERT INTO admin_sequence (gateway_id, last_sequence) VALUES (?, ?) "
                         "ON CONFLICT (gateway_id) DO UPDATE SET "
                         "last_sequence = excluded.last_sequence", (gateway_id, sequence))
            conn.execute("INSERT INTO admin_command_ids (gateway_id, command_id, sequence) "
                         "VALUES (?, ?, ?)", (gateway_id, str(command_id), sequence))
            conn.execute("DELETE FROM admin_command_ids WHERE gateway_id = ? AND sequence <= "
                         "(SELECT sequence FROM admin_command_ids WHERE gateway_id = ? "
                         "ORDER BY sequence DESC LIMIT 1 OFFSET ?)",
                         (gateway_id, gateway_id, self.id_capacity))


_NONCE_DDL = [
    "CREATE TABLE admin_wakeup_nonces (nonce BLOB PRIMARY KEY NOT NULL, "
    "keep_until INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX admin_wakeup_nonces_expiry ON admin_wakeup_nonces (keep_until)",
]


class DbReplayCache:
    """:class:`~imsys.wire.wakeup.ReplayCache` in the gateway database: accepted wake-up nonces
    survive a restart (closes the limit of ``MemoryReplayCache``, docs/admin-protocol.md
    §1.4). Bounded like the memory cache: a full cache answers ``FULL`` (fail closed)."""

    def __init__(self, db: Database, capacity: int = 1024) -> None:
        if capacity < 1:
            raise UsageError("capacity must be at least 1")
        self.db = db
        self.capacity = capacity
        db.ensure_schema("admin_wakeup_nonces", _NONCE_DDL)

    def remember(self, nonce: bytes, keep_until: datetime, now: datetime) -> NonceStatus:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM admin_wakeup_nonces WHERE keep_until <= ?",
                         (to_micros(now),))
            if conn.execute("SELECT 1 FROM admin_wakeup_nonces WHERE nonce = ?",
                            (bytes(nonce),)).fetchone() is not None:
                return NonceStatus.REPLAYED
            count = conn.execute("SELECT count(*) FROM admin_wakeup_nonces").fetchone()[0]
            if count >= self.capacity:
                return NonceStatus.FULL
            conn.execute("INSERT INTO admin_wakeup_nonces (nonce, keep_until) VALUES (?, ?)",
                         (bytes(nonce), to_micros(keep_until)))
            return NonceStatus.FRESH


def wakeup_receiver(context: AdminContext) -> WakeupReceiver:
    """The wake-up core for the current administrator (its SIG certificate, its address as
    ``connect_to``), with the persistent :class:`DbReplayCache`. Build a new one after an
    administrator change."""
    administrator = current_administrator(context.config, context.commissioning)
    address = administrator.address
    return WakeupReceiver(context.gateway_id, administrator.sig,
                          f"{address.host}:{address.port}", context.clock,
                          administrator_id=administrator.administrator_id,
                          replay_cache=DbReplayCache(context.db))


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class GatewayCredentials:
    """The gateway's keys for one session: TLS (label for OpenSSL), SIG, ENC, by phase."""

    phase: Phase
    tls_label: str
    tls_chain: tuple[x509.Certificate, ...]  # leaf first
    sig_key: KeyHandle
    sig_certificate: x509.Certificate
    enc_key: KeyHandle
    enc_certificate: x509.Certificate


def gateway_credentials(context: AdminContext) -> GatewayCredentials:
    """The ``*_PRE`` keys and Gütesiegel certificates in phase personalisation, the operational
    ones in operation; ``UsageError`` in any other phase (no admin session before §2.3.3)."""
    secmod, commissioning = context.secmod, context.commissioning
    if secmod is None or commissioning is None:
        raise UsageError("an admin session needs the security module and commissioning")
    phase = commissioning.phase
    if phase is Phase.PERSONALISATION:
        certs = {use: secmod.certificate(f"GW_WAN_{use}_CRT_PRE") for use in ("TLS", "SIG",
                                                                              "ENC")}
        return GatewayCredentials(phase, "GW_WAN_TLS_PRE", (certs["TLS"],),
                                  secmod.key("GW_WAN_SIG_PRE"), certs["SIG"],
                                  secmod.key("GW_WAN_ENC_PRE"), certs["ENC"])
    if phase is Phase.OPERATION:
        state = commissioning.state
        certs = {use: state.operational_certificates[f"GW_WAN_{use}_CRT"]
                 for use in ("TLS", "SIG", "ENC")}
        return GatewayCredentials(phase, "GW_WAN_TLS",
                                  (certs["TLS"], *state.operational_chain),
                                  secmod.key("GW_WAN_SIG"), certs["SIG"],
                                  secmod.key("GW_WAN_ENC"), certs["ENC"])
    raise UsageError(f"no admin session in phase {phase.value}")


# --------------------------------------------------------------------------- the client


@dataclass
class SessionReport:
    """What one session did."""

    session_id: uuid.UUID | None = None
    phase_before: Phase | None = None
    phase_after: Phase | None = None
    executed: int = 0
    failed: int = 0
    refused: list[str] = field(default_factory=list)

    @property
    def phase_changed(self) -> bool:
        return self.phase_before is not self.phase_after


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self.parser = HttpParser("response")
        self.queue: list[HttpMessage] = []

    async def exchange(self, request: bytes) -> HttpMessage:
        self.writer.write(request)
        await self.writer.drain()
        while not self.queue:
            data = await asyncio.wait_for(self.reader.read(65536), self.timeout)
            if not data:
                raise ConnectionError("the GWA closed the connection")
            self.queue.extend(self.parser.feed(data))
        return self.queue.pop(0)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), self.timeout)


class _KeyedSequences:
    """The sequence store under another key than the gateway id (one count per GWA)."""

    def __init__(self, store: DbSequenceStore, key: str) -> None:
        self.store, self.key = store, key

    def last_sequence(self, gateway_id: str) -> int:
        return self.store.last_sequence(self.key)

    def seen(self, gateway_id: str, command_id: uuid.UUID) -> bool:
        return self.store.seen(self.key, command_id)

    def record(self, gateway_id: str, sequence: int, command_id: uuid.UUID) -> None:
        self.store.record(self.key, sequence, command_id)


class AdminSessionClient:
    """The gateway side of the admin session (see the module docstring).

    ``context`` must carry the security module and the commissioning state machine.
    ``executor`` defaults to :class:`AdminExecutor` over every handler module.
    ``firmware_version`` defaults to ``context.extras["firmware_version"]`` or imsys's version.
    ``timeout`` bounds connect, handshake and every response.
    """

    def __init__(self, context: AdminContext, *, executor: AdminExecutor | None = None,
                 firmware_version: str | None = None, timeout: float = 30.0,
                 max_commands: int = 10_000, pending: bool = False) -> None:
        if context.secmod is None or context.commissioning is None:
            raise UsageError("an admin session needs the security module and commissioning")
        self.context = context
        #: a session with the *new* administrator of a change before its take-over (seed 003
        #: table 5 step 2.9): only the commands of steps 2.10–2.13 are accepted in it
        self.pending = pending
        self.executor = executor or AdminExecutor(context)
        self.firmware_version = (firmware_version
                                 or str(context.extras.get("firmware_version",
                                                           f"imsys-{imsys.__version__}")))
        self.timeout = timeout
        self.max_commands = max_commands
        self.sequences = DbSequenceStore(context.db)
        self.state = StateTable(context.db)

    # ------------------------------------------------------------------ pieces

    def administrator(self) -> Administrator:
        if self.pending:
            new = pending_administrator(self.context)
            if new is None:
                raise UsageError("no administrator change is waiting for its new administrator")
            return new
        return current_administrator(self.context.config, self.context.commissioning)

    def sequence_key(self, administrator: Administrator) -> str:
        """Whose sequence numbers: the gateway's for the administrator of its initial
        configuration, ``<gateway>@<administrator>`` for any later one (each GWA counts its
        own commands)."""
        commissioning = self.context.commissioning
        initial = None if commissioning is None else commissioning.state.initial_configuration
        if initial is not None and administrator.administrator_id == initial.administrator_id:
            return self.context.gateway_id
        return f"{self.context.gateway_id}@{administrator.administrator_id}"

    def address(self, administrator: Administrator) -> GwaAddress:
        """The administrator's address; during commissioning the installer's update wins."""
        if self.pending:
            return administrator.address
        commissioning = self.context.commissioning
        changed = self.context.config.get(ConfigKind.SETTING, ADMINISTRATOR_ITEM) is not None
        if not changed and commissioning is not None and commissioning.gwa_address is not None:
            return commissioning.gwa_address
        return administrator.address

    def _root(self) -> x509.Certificate:
        assert self.context.secmod is not None
        return self.context.secmod.certificate(ROOT_LABEL)

    def tls_context(self, credentials: GatewayCredentials,
                    administrator: Administrator) -> ssl.SSLContext:
        assert self.context.secmod is not None
        key = self.context.secmod.tls_private_key(credentials.tls_label)
        intermediates = administrator.certificates["GWADM_TLS_CRT"][1]
        return client_context(Interface.WAN, TlsIdentity(credentials.tls_chain, key),
                              [self._root()], intermediates=intermediates)

    def check_server(self, ssl_object: ssl.SSLObject, administrator: Administrator) -> None:
        """``gwa-tls`` path to the module's root, CN = administrator id, key = stored
        GWADM_TLS_CRT's key; :class:`TlsRejected` otherwise."""
        chain = administrator.certificates["GWADM_TLS_CRT"][1]
        # with the gateway's CRLs (``extras["crl_source"]``, the device process sets it) the
        # GWA's certificate is checked for revocation too
        crls = self.context.extras.get("crl_source")
        validator = PathValidator([self._root()], chain, crls, clock=self.context.clock,
                                  require_crl=crls is not None)
        leaf = check_peer(ssl_object, validator, profile="gwa-tls").leaf
        if common_name(leaf) != administrator.administrator_id:
            raise TlsRejected(Reason.WRONG_ROLE, "the TLS server is not the current "
                              "administrator", administrator=administrator.administrator_id)

        def spki(cert: x509.Certificate) -> bytes:
            return cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

        if spki(leaf) != spki(administrator.tls):
            raise TlsRejected(Reason.WRONG_ROLE, "the TLS server's key is not the one of the "
                              "stored GWADM_TLS_CRT",
                              administrator=administrator.administrator_id)

    def alarm_summary(self) -> tuple[AlarmSummary, int]:
        """Warnings and errors in the system log since the last session, and the last record
        number looked at."""
        stored = self.state.get(ALARMS_AFTER_KEY, 0)
        after = stored if isinstance(stored, int) else 0
        entries = self.context.logs.system.entries(after=after)
        errors = [e for e in entries if e.level >= Level.ERROR]
        warnings = [e for e in entries if e.level == Level.WARNING]
        last = max((e.timestamp for e in errors), default=None)
        head = entries[-1].record_number if entries else after
        return AlarmSummary(len(errors), len(warnings), last), head

    # ------------------------------------------------------------------ sessions

    async def run(self, max_sessions: int = 3) -> list[SessionReport]:
        """Sessions until one ends in the phase it started in (at most ``max_sessions``)."""
        reports: list[SessionReport] = []
        for _ in range(max_sessions):
            report = await self.run_once()
            reports.append(report)
            if not report.phase_changed:
                break
        return reports

    async def run_once(self) -> SessionReport:
        """One admin session; raises ``TlsRejected``/``SessionRejected``/``OSError`` (after a
        system-log entry) if the GWA cannot be reached or is not the current administrator."""
        ctx = self.context
        assert ctx.commissioning is not None
        administrator = self.administrator()
        credentials = gateway_credentials(ctx)
        address = self.address(administrator)
        report = SessionReport(phase_before=credentials.phase)
        connection = await self._connect(address, credentials, administrator)
        try:
            await self._session(connection, administrator, credentials, report, address)
        except (Rejected, OSError, TimeoutError) as exc:
            ctx.logs.system.append(Level.WARNING, Outcome.FAILURE, "admin session aborted",
                                   event=SystemEvent.ADMIN_SESSION,
                                   executed=report.executed)
            log.warning("admin session aborted: %s", exc)
            raise
        finally:
            await connection.close()
        report.phase_after = ctx.commissioning.phase
        self.state.set_time(StateKey.LAST_ADMIN_CONTACT, ctx.clock.now())
        ctx.logs.system.append(Level.INFO, Outcome.SUCCESS, "admin session closed",
                               event=SystemEvent.ADMIN_SESSION, executed=report.executed,
                               failed=report.failed, refused=len(report.refused))
        return report

    async def _connect(self, address: GwaAddress, credentials: GatewayCredentials,
                       administrator: Administrator) -> _Connection:
        ctx = self.context
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                address.host, address.port, ssl=self.tls_context(credentials, administrator),
                server_hostname=address.host), self.timeout)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            ctx.logs.system.append(Level.WARNING, Outcome.FAILURE,
                                   "admin session: no TLS connection to the administrator",
                                   event=SystemEvent.TLS_FAILURE)
            log.warning("admin session: cannot connect to %s:%s: %s", address.host,
                        address.port, exc)
            raise
        connection = _Connection(reader, writer, self.timeout)
        try:
            self.check_server(writer.get_extra_info("ssl_object"), administrator)
        except TlsRejected as exc:
            ctx.logs.system.append(Level.ERROR, Outcome.FAILURE,
                                   "admin session: TLS server is not the current administrator",
                                   event=SystemEvent.TLS_FAILURE, reason=exc.reason)
            log.warning("admin session refused the server: %s", exc)
            await connection.close()
            raise
        return connection

    async def _session(self, connection: _Connection, administrator: Administrator,
                       credentials: GatewayCredentials, report: SessionReport,
                       address: GwaAddress) -> None:
        ctx = self.context
        alarms, head = self.alarm_summary()
        phase = credentials.phase
        hello = Hello(ctx.gateway_id, phase.value, self.firmware_version, alarms,
                      ctx.clock.now())
        session = ClientSession(address.host)
        welcome = session.receive(await connection.exchange(session.start(hello)))
        assert isinstance(welcome, Welcome)
        report.session_id = welcome.session_id
        self.state.set(ALARMS_AFTER_KEY, head)
        ctx.logs.system.append(Level.INFO, Outcome.SUCCESS, "admin session opened",
                               event=SystemEvent.ADMIN_SESSION, pending=welcome.pending)
        verifier = CommandVerifier(ctx.gateway_id, administrator.sig, ctx.clock,
                                   _KeyedSequences(self.sequences,
                                                   self.sequence_key(administrator)),
                                   administrator_id=administrator.administrator_id)
        for _ in range(self.max_commands):
            received = session.receive(await connection.exchange(session.next_request()))
            if received is None:
                return
            assert isinstance(received, bytes)
            request = self._handle(verifier, session, received, credentials, report)
            ack = session.receive(await connection.exchange(request))
            assert isinstance(ack, Ack)

    def _handle(self, verifier: CommandVerifier, session: ClientSession, data: bytes,
                credentials: GatewayCredentials, report: SessionReport) -> bytes:
        ctx = self.context
        try:
            command = verifier.verify(data, credentials.enc_key, credentials.enc_certificate)
        except CommandRejected as exc:
            ctx.logs.system.append(Level.WARNING, Outcome.FAILURE, "admin command refused",
                                   event=SystemEvent.INPUT_REJECTED, reason=exc.reason)
            log.info("admin command refused: %s", exc)
            report.refused.append(exc.reason.value)
            return session.refuse(Refusal(exc.reason.value, exc.message))
        if self.pending and command.type not in PENDING_SESSION_COMMANDS:
            ctx.logs.system.append(Level.WARNING, Outcome.FAILURE, "admin command refused: "
                                   "not allowed before the take-over",
                                   event=SystemEvent.INPUT_REJECTED)
            report.refused.append("not-before-take-over")
            return session.refuse(Refusal("not-before-take-over", f"{command.type.value} is "
                                          "not allowed before the take-over (table 5)"))
        result = self.executor.execute(command)
        report.executed += 1
        if result.status.value != "ok":
            report.failed += 1
        signed = issue_result(result, credentials.sig_key, credentials.sig_certificate)
        return session.answer(signed)
