"""The GWA's core: admin sessions, the command queue and the commissioning driver (no I/O
beyond the database; the TLS endpoint is :mod:`imsys.gwa.server`, the operator API
:mod:`imsys.gwa.api`).

Per session (one TLS connection opened by a gateway, docs/admin-protocol.md §3):

* :meth:`GwaService.open_session` – the ``hello``: the id must be the TLS peer's CN; the
  contact is recorded (phase, firmware, alarms, last contact); the commissioning driver queues
  what the gateway's phase calls for; the answer is a :class:`Welcome`.
* :meth:`GwaService.next_command` – the oldest queued command the session may carry, signed
  with GWADM_SIG (sealed for the gateway's ENC certificate when it carries secrets), with the
  gateway's next sequence number; ``None`` when there is nothing (HTTP 204).
* :meth:`GwaService.record_result` / :meth:`GwaService.record_refusal` – the signed result
  (verified against the gateway's SIG certificate it embeds, which must validate as
  ``gateway-pre-sig`` or ``gateway-sig`` with CN = gateway id) or the gateway's refusal.

Commissioning driver (seed 003 §2.3.3, §2.3.4). A gateway calling in phase
``personalisation`` gets, one after the other (each queued when the previous result is in):
``commissioning.admin-challenge`` → ``authenticate`` (the challenge signed with GWADM_AUT in
the GWA's module) → ``generate-keys`` → ``certificate-requests`` → the Sub-CA issues
``gateway-{tls,sig,enc}`` → ``import-certificates`` → ``complete-personalisation``; then the
GWA hands out nothing more in that session (the seed closes the TLS channel). At the next
session (phase ``operation``, operational certificates) it queues ``synchronise-time`` (the
GWA's time at issue) and ``self-test``; after a passed self-test the gateway is
``operational`` and the operator's commands flow. A failed step marks the gateway ``failed``
(the detail names step and reason) and the driver starts over at the next contact.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from imsys.core.clock import Clock
from imsys.core.errors import CertificateRejected, CmsRejected, Rejected, UsageError
from imsys.crypto import cms
from imsys.gwa.db import CommandRow, CommandStatus, Commissioning, GwaDatabase, NotIssued
from imsys.gwa.initial_config import answer_admin_challenge
from imsys.gwa.keys import GwaKeys, SubCaPort
from imsys.pki.validation import PathValidator, common_name
from imsys.wire.admin_session import Ack, Hello, Refusal, Welcome
from imsys.wire.command import (
    Command,
    CommandResult,
    CommandType,
    ResultReason,
    ResultRejected,
    ResultStatus,
    issue_command,
    verify_result,
)
from imsys.wire.wakeup import make_wakeup

__all__ = ["COMMISSIONING", "OPERATOR", "CryptoMeter", "GwaReason", "GwaRejected",
           "GwaService", "Session"]

log = logging.getLogger("imsys.gwa.service")

COMMISSIONING = "commissioning"
OPERATOR = "operator"
_T = CommandType
_PERSONALISATION = "personalisation"
_OPERATION = "operation"
_GATEWAY_SIG_PROFILES = ("gateway-pre-sig", "gateway-sig")


class GwaReason(StrEnum):
    """Why the GWA refused a session message."""

    WRONG_GATEWAY = "wrong-gateway"  # hello names another gateway than the TLS peer
    NO_SESSION = "no-session"  # command/result/refusal before hello
    NO_OUTSTANDING_COMMAND = "no-outstanding-command"  # result or refusal for nothing
    BAD_RESULT = "bad-result"  # the result does not verify (context: result_reason)
    BAD_COMMAND = "bad-command"  # an operator command the GWA cannot build


class GwaRejected(Rejected):
    """A session message or operator request was refused; ``reason`` is a
    :class:`GwaReason`."""

    reason: GwaReason  # type: ignore[assignment]

    def __init__(self, reason: GwaReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


class CryptoMeter:
    """Seconds spent in the GWA's cryptography (signing, verifying, issuing), for the bench."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()

    @contextmanager
    def measure(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.seconds += time.perf_counter() - start


@dataclass
class Session:
    """One admin session as the GWA tracks it (one TLS connection)."""

    session_id: uuid.UUID
    gateway_id: str
    phase: str
    origins: tuple[str, ...]
    outstanding: CommandRow | None = None
    closing: bool = False  # personalisation finished: hand out nothing more
    handed_out: int = 0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


class GwaService:
    """See the module docstring. Thread-safe: the TLS endpoint calls it from worker threads."""

    def __init__(self, db: GwaDatabase, keys: GwaKeys, subca: SubCaPort,
                 validator: Callable[[], PathValidator], clock: Clock, *,
                 command_validity: timedelta = timedelta(hours=1),
                 wakeup_validity: timedelta = timedelta(minutes=2)) -> None:
        self.db = db
        self.keys = keys
        self.subca = subca
        self.validator = validator
        self.clock = clock
        self.command_validity = command_validity
        self.wakeup_validity = wakeup_validity
        self.crypto = CryptoMeter()
        self._signers: dict[bytes, str] = {}  # fingerprint of a validated gateway SIG cert → id
        self._lock = threading.Lock()

    @property
    def administrator_id(self) -> str:
        return self.keys.administrator_id

    # ------------------------------------------------------------------ operator side

    def enqueue(self, gateway_ids: Sequence[str], command_type: str,
                parameters: dict[str, Any], *, batch: str | None = None) -> list[uuid.UUID]:
        """Queue an operator command for each gateway (checked to build a valid command)."""
        try:
            kind = CommandType(command_type)
        except ValueError:
            raise GwaRejected(GwaReason.BAD_COMMAND, f"unknown command type {command_type!r}"
                              ) from None
        if kind.group.value == COMMISSIONING:
            raise GwaRejected(GwaReason.BAD_COMMAND, "commissioning commands are the driver's")
        if not gateway_ids:
            raise GwaRejected(GwaReason.BAD_COMMAND, "no gateway given")
        now = self.clock.now()
        for gateway_id in gateway_ids:
            try:  # the same checks the command gets when it is issued
                Command(uuid.uuid4(), gateway_id, self.administrator_id, 1, now,
                        now + self.command_validity, kind, parameters)
            except UsageError as exc:
                raise GwaRejected(GwaReason.BAD_COMMAND, str(exc)) from None
        return self.db.enqueue(list(gateway_ids), kind.value, parameters, now, origin=OPERATOR,
                               batch=batch)

    def adopt(self, gateway_id: str) -> None:
        """Administrator change (seed 003 table 5, the new GWA's side): a gateway commissioned
        by another administrator – no set-up commands, operator commands flow at once."""
        self.db.ensure_gateway(gateway_id, self.clock.now())
        self.db.update_gateway(gateway_id, commissioning=Commissioning.OPERATIONAL,
                               commissioning_detail="adopted from another administrator")
        log.info("gateway %s adopted (administrator change)", gateway_id)

    def wakeup_packet(self, gateway_id: str) -> bytes:
        """A signed, short-lived, one-time wake-up for ``gateway_id`` (GWADM_SIG)."""
        with self.crypto.measure():
            return make_wakeup(gateway_id, self.administrator_id, self.keys.key("SIG"),
                               issued_at=self.clock.now().replace(microsecond=0),
                               validity=self.wakeup_validity)

    # ------------------------------------------------------------------ sessions

    def open_session(self, tls_peer: str, hello: Hello) -> tuple[Session, Welcome]:
        if hello.gateway_id != tls_peer:
            log.warning("hello from %s names %s", tls_peer, hello.gateway_id)
            raise GwaRejected(GwaReason.WRONG_GATEWAY, "hello names another gateway than the "
                              "TLS certificate", peer=tls_peer)
        now = self.clock.now()
        row = self.db.record_contact(
            tls_peer, now, phase=hello.phase, firmware_version=hello.firmware_version,
            errors=hello.alarms.errors, warnings=hello.alarms.warnings,
            last_error_at=hello.alarms.last_error_at)
        state = row.commissioning
        waiting = self.db.pending(tls_peer, [COMMISSIONING])
        if hello.phase == _PERSONALISATION:
            if not waiting:
                self._queue(tls_peer, _T.COMMISSIONING_ADMIN_CHALLENGE)
                self.db.update_gateway(tls_peer, commissioning=Commissioning.PERSONALISING,
                                       commissioning_detail=None)
            origins: tuple[str, ...] = (COMMISSIONING,)
        elif hello.phase == _OPERATION:
            if state is not Commissioning.OPERATIONAL and not waiting:
                self._queue(tls_peer, _T.COMMISSIONING_SYNCHRONISE_TIME)
                self._queue(tls_peer, _T.COMMISSIONING_SELF_TEST)
                self.db.update_gateway(tls_peer, commissioning=Commissioning.SETTING_UP,
                                       commissioning_detail=None)
                state = Commissioning.SETTING_UP
            origins = ((COMMISSIONING, OPERATOR) if state is Commissioning.OPERATIONAL
                       else (COMMISSIONING,))
        else:
            origins = ()
        session = Session(uuid.uuid4(), tls_peer, hello.phase, origins)
        pending = self.db.pending(tls_peer, list(origins)) if origins else 0
        log.info("session %s of %s (%s): %d pending", session.session_id, tls_peer,
                 hello.phase, pending)
        return session, Welcome(session.session_id, self.administrator_id,
                                now.replace(microsecond=0), pending)

    def _queue(self, gateway_id: str, kind: CommandType,
               parameters: dict[str, Any] | None = None) -> None:
        self.db.enqueue([gateway_id], kind.value, parameters or {}, self.clock.now(),
                        origin=COMMISSIONING)

    def next_command(self, session: Session) -> bytes | None:
        """The next command of the session, signed; ``None`` = nothing more (HTTP 204)."""
        if session.outstanding is not None:
            raise GwaRejected(GwaReason.NO_OUTSTANDING_COMMAND, "the previous command is "
                              "unanswered")
        if session.closing or not session.origins:
            return None
        gateway = self.db.gateway(session.gateway_id)
        enc = None if gateway is None or gateway.enc_certificate is None \
            else x509.load_der_x509_certificate(gateway.enc_certificate)
        now = self.clock.now().replace(microsecond=0)

        def sign(row: CommandRow, sequence: int) -> bytes:
            kind = CommandType(row.type)
            parameters = dict(row.parameters)
            if kind is _T.COMMISSIONING_SYNCHRONISE_TIME:
                parameters = {"administrator_time": now.isoformat().replace("+00:00", "Z")}
            if kind.carries_secrets and enc is None:
                raise NotIssued("no ENC certificate of the gateway to seal the command for")
            command = Command(row.command_id, session.gateway_id, self.administrator_id,
                              sequence, now, now + self.command_validity, kind, parameters)
            with self.crypto.measure():
                return issue_command(command, self.keys.key("SIG"), self.keys.certificate("SIG"),
                                     gateway_enc_certificate=enc if kind.carries_secrets
                                     else None)

        issued = self.db.issue_next(session.gateway_id, now, session.origins, sign)
        if issued is None:
            return None
        session.outstanding, blob = issued
        session.handed_out += 1
        return blob

    def _signer(self, gateway_id: str, blob: bytes) -> x509.Certificate:
        """The SIG certificate the result embeds, validated (cached per certificate)."""
        with self.crypto.measure():
            try:
                signer = cms.verify(blob).signer_certificate
            except CmsRejected as exc:
                raise GwaRejected(GwaReason.BAD_RESULT, f"result: {exc.message}",
                                  result_reason=ResultReason.BAD_SIGNATURE.value) from None
            fingerprint = signer.fingerprint(hashes.SHA256())
            if self._signers.get(fingerprint) == gateway_id:
                return signer
            try:
                self.validator().validate(signer, profile=list(_GATEWAY_SIG_PROFILES))
            except CertificateRejected as exc:
                raise GwaRejected(GwaReason.BAD_RESULT, f"result signer: {exc.message}",
                                  result_reason=ResultReason.WRONG_SIGNER.value) from None
        if common_name(signer) != gateway_id:
            raise GwaRejected(GwaReason.BAD_RESULT, "result signed by another gateway",
                              result_reason=ResultReason.WRONG_SIGNER.value)
        with self._lock:
            self._signers[fingerprint] = gateway_id
        return signer

    def record_result(self, session: Session, blob: bytes) -> Ack:
        command = session.outstanding
        if command is None:
            raise GwaRejected(GwaReason.NO_OUTSTANDING_COMMAND, "no command is outstanding")
        now = self.clock.now()
        try:
            signer = self._signer(session.gateway_id, blob)
            with self.crypto.measure():
                result = verify_result(blob, signer, command.command_id)
        except (GwaRejected, ResultRejected) as exc:
            cause = exc.context.get("result_reason", exc.reason.value)
            detail = f"result refused: {cause}: {exc.message}"
            self.db.complete(command.command_id, CommandStatus.UNANSWERED, now, detail=detail)
            session.outstanding = None
            log.warning("%s: %s", session.gateway_id, detail)
            if isinstance(exc, GwaRejected):
                raise
            raise GwaRejected(GwaReason.BAD_RESULT, exc.message,
                              result_reason=exc.reason.value) from None
        status = CommandStatus.OK if result.status is ResultStatus.OK else CommandStatus.FAILED
        self.db.complete(command.command_id, status, now, result=dict(result.details),
                         result_cms=blob)
        session.outstanding = None
        if command.origin == COMMISSIONING:
            self._advance(session, command, result)
        return Ack(command.command_id)

    def record_refusal(self, session: Session, refusal: Refusal) -> Ack:
        command = session.outstanding
        if command is None:
            raise GwaRejected(GwaReason.NO_OUTSTANDING_COMMAND, "no command is outstanding")
        self.db.complete(command.command_id, CommandStatus.REFUSED, self.clock.now(),
                         detail=f"{refusal.reason}: {refusal.message}")
        session.outstanding = None
        log.warning("%s refused command %s: %s", session.gateway_id, command.command_id,
                    refusal.reason)
        if command.origin == COMMISSIONING:
            self._fail(session, command.type, refusal.reason)
        return Ack(command.command_id)

    # ------------------------------------------------------------------ commissioning driver

    def _fail(self, session: Session, kind: str, reason: object) -> None:
        self.db.update_gateway(session.gateway_id, commissioning=Commissioning.FAILED,
                               commissioning_detail=f"{kind}: {reason}"[:200])
        session.closing = True

    def _advance(self, session: Session, command: CommandRow, result: CommandResult) -> None:
        kind = CommandType(command.type)
        details = result.details
        ok = result.status is ResultStatus.OK
        reason = details.get("reason")
        gateway_id = session.gateway_id
        if not ok and not (reason == "already-done" and kind in (
                _T.COMMISSIONING_GENERATE_KEYS, _T.COMMISSIONING_IMPORT_CERTIFICATES)):
            self._fail(session, kind.value, reason)
            return
        if kind is _T.COMMISSIONING_ADMIN_CHALLENGE:
            challenge = base64.b64decode(str(details["challenge"]))
            with self.crypto.measure():
                signature = answer_admin_challenge(challenge, self.keys.key("AUT"))
            self._queue(gateway_id, _T.COMMISSIONING_AUTHENTICATE, {"signature": _b64(signature)})
        elif kind is _T.COMMISSIONING_AUTHENTICATE:
            self._queue(gateway_id, _T.COMMISSIONING_GENERATE_KEYS)
        elif kind is _T.COMMISSIONING_GENERATE_KEYS:
            self._queue(gateway_id, _T.COMMISSIONING_CERTIFICATE_REQUESTS)
        elif kind is _T.COMMISSIONING_CERTIFICATE_REQUESTS:
            self._issue_certificates(session, details)
        elif kind is _T.COMMISSIONING_IMPORT_CERTIFICATES:
            self._queue(gateway_id, _T.COMMISSIONING_COMPLETE_PERSONALISATION)
        elif kind is _T.COMMISSIONING_COMPLETE_PERSONALISATION:
            self.db.update_gateway(gateway_id, commissioning=Commissioning.PERSONALISED)
            session.closing = True  # §2.3.3: "Schließen des TLS-Kanals"
        elif kind is _T.COMMISSIONING_SELF_TEST:
            gateway = self.db.gateway(gateway_id)
            if gateway is not None and gateway.commissioning is Commissioning.SETTING_UP:
                self.db.update_gateway(gateway_id, commissioning=Commissioning.OPERATIONAL)

    def _issue_certificates(self, session: Session, details: Any) -> None:
        requests = details.get("requests") if isinstance(details, dict) else None
        issued: dict[str, x509.Certificate] = {}
        try:
            for use in ("TLS", "SIG", "ENC"):
                csr = x509.load_der_x509_csr(base64.b64decode(requests[f"GW_WAN_{use}_CRT"]))
                with self.crypto.measure():
                    issued[use] = self.subca.issue(f"gateway-{use.lower()}", session.gateway_id,
                                                   csr)
        except (KeyError, TypeError, ValueError, Rejected) as exc:
            self._fail(session, _T.COMMISSIONING_CERTIFICATE_REQUESTS.value,
                       f"cannot issue: {exc}")
            return
        chain = self.subca.chain()[:-1]
        self.db.update_gateway(session.gateway_id, enc_certificate=_der(issued["ENC"]))
        self._queue(session.gateway_id, _T.COMMISSIONING_IMPORT_CERTIFICATES,
                    {"tls": _b64(_der(issued["TLS"])), "sig": _b64(_der(issued["SIG"])),
                     "enc": _b64(_der(issued["ENC"])),
                     "chain": [_b64(_der(c)) for c in chain]})
