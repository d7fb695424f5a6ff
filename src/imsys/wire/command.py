"""Administration commands and their results: ``imsys-admin-command/1`` (sans-io).

Inside the admin session (the gateway's outbound, mutually authenticated TLS connection to its
GWA) each command is a JSON document, CMS-signed by the GWA SIG key and, when the command
carries secrets, sealed: signed, then encrypted for the gateway's ENC certificate
(``AuthEnvelopedData(SignedData(document))``). The gateway answers each command with a
:class:`CommandResult` signed by its SIG key. Formats, the JSON Schema and the rejection table
are in docs/admin-protocol.md.

Command document (canonical JSON: keys sorted, no whitespace, UTF-8, ASCII escapes)::

    {"administrator_id":"GWA-1","command_id":"<uuid>","gateway_id":"EABC0012345678",
     "issued_at":"2025-03-01T12:00:00Z","not_after":"2025-03-01T13:00:00Z",
     "parameters":{...},"sequence":42,"type":"profile.communication.install","v":1}

The gateway's :class:`CommandVerifier` returns a :class:`Command` only if the signer is the
*current* administrator, the command is for this gateway, fresh, not replayed (its sequence
number is above the last accepted one and its id is new) and, if it carries secrets, arrived
encrypted. Everything else is a :class:`CommandRejected`; nothing is recorded then.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, cast

from cryptography import x509

from imsys.core.clock import Clock
from imsys.core.errors import CmsRejected, KeyRejected, Reason, Rejected, UsageError
from imsys.crypto import cms
from imsys.crypto.primitives import KeyHandle

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "MAX_COMMAND_SIZE",
    "MAX_RESULT_SIZE",
    "PROFILE",
    "Command",
    "CommandGroup",
    "CommandReason",
    "CommandRejected",
    "CommandResult",
    "CommandType",
    "CommandVerifier",
    "MemorySequenceStore",
    "ResultReason",
    "ResultRejected",
    "ResultStatus",
    "SequenceStore",
    "issue_command",
    "issue_result",
    "verify_result",
]

PROFILE = "imsys-admin-command/1"
VERSION = 1
#: Commands longer than this are refused unread (profiles and certificates fit easily;
#: firmware is fetched from the update server, not carried in the command).
MAX_COMMAND_SIZE = 1024 * 1024
MAX_RESULT_SIZE = 4 * 1024 * 1024  # results may carry log extracts
MAX_SEQUENCE = 2**63 - 1
DEFAULT_CLOCK_SKEW = timedelta(seconds=30)

_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_COMMAND_KEYS = frozenset({"v", "command_id", "gateway_id", "administrator_id", "sequence",
                           "issued_at", "not_after", "type", "parameters"})
_RESULT_KEYS = frozenset({"v", "command_id", "gateway_id", "status", "completed_at",
                          "details"})


# --------------------------------------------------------------------------- command set


class CommandGroup(StrEnum):
    """The administration activities of seed 003 §5.1 (TR-03109-1)."""

    DEVICE = "device"  # Geräteverwaltung
    CONSUMER = "consumer"  # Mandantenverwaltung
    PROFILE = "profile"  # Profilverwaltung
    KEY = "key"  # Schlüssel-/Zertifikatsmanagement
    FIRMWARE = "firmware"  # Firmware-, Sicherheits-, Anwendungs-Updates
    WAKEUP = "wakeup"  # Wake-Up-Konfiguration
    MONITORING = "monitoring"  # Zustand, Logs, Selbsttest
    TIME = "time"  # Zeitservice
    COMMISSIONING = "commissioning"  # §2.3.3 Personalisierung, §2.3.4 Normalbetrieb
    ADMIN_CHANGE = "admin-change"  # §7 Wechsel des SMGW-Admins


class _Spec(NamedTuple):
    group: CommandGroup
    carries_secrets: bool


class CommandType(StrEnum):
    """Every administration command imsys knows (the dispatch table is :data:`COMMAND_TABLE`)."""

    # device management: meters, CLS devices, displays; assignment to consumers
    METER_REGISTER = "device.meter.register"  # carries the meter key
    METER_DELETE = "device.meter.delete"
    CLS_REGISTER = "device.cls.register"
    CLS_DELETE = "device.cls.delete"
    DISPLAY_REGISTER = "device.display.register"
    DISPLAY_DELETE = "device.display.delete"
    DEVICE_ASSIGN = "device.assign"  # assign a device to a consumer
    DEVICE_UNASSIGN = "device.unassign"
    # consumer management
    CONSUMER_CREATE = "consumer.create"
    CONSUMER_UPDATE = "consumer.update"
    CONSUMER_DELETE = "consumer.delete"
    CONSUMER_CERTIFICATE_INSTALL = "consumer.certificate.install"
    CONSUMER_CERTIFICATE_DELETE = "consumer.certificate.delete"
    CONSUMER_CREDENTIALS_SET = "consumer.credentials.set"  # display login / password
    # profile management: communication profiles and evaluation profiles (TAF rules)
    COMMUNICATION_PROFILE_INSTALL = "profile.communication.install"
    COMMUNICATION_PROFILE_ACTIVATE = "profile.communication.activate"
    COMMUNICATION_PROFILE_DELETE = "profile.communication.delete"
    EVALUATION_PROFILE_INSTALL = "profile.evaluation.install"
    EVALUATION_PROFILE_ACTIVATE = "profile.evaluation.activate"
    EVALUATION_PROFILE_DELETE = "profile.evaluation.delete"
    # key and certificate management
    KEY_INSTALL = "key.install"  # symmetric keys (e.g. meter keys): secret
    KEY_ACTIVATE = "key.activate"
    KEY_DEACTIVATE = "key.deactivate"
    KEY_DELETE = "key.delete"
    CERTIFICATE_INSTALL = "key.certificate.install"
    CERTIFICATE_ACTIVATE = "key.certificate.activate"
    CERTIFICATE_DEACTIVATE = "key.certificate.deactivate"
    CERTIFICATE_DELETE = "key.certificate.delete"
    CERTIFICATE_RENEW = "key.certificate.renew"  # new key pair in the security module + CSR
    CRYPTO_ALGORITHM_SWITCH = "key.algorithm.switch"
    # time service
    TIME_SERVICE_CONFIGURE = "time.service.configure"
    # monitoring: state, self-test, logs
    STATUS_QUERY = "monitoring.status"
    SELF_TEST = "monitoring.self-test"
    LOG_RETRIEVE_SYSTEM = "monitoring.log.system"
    LOG_RETRIEVE_CALIBRATION = "monitoring.log.calibration"
    # wake-up configuration (address of the wake-up service)
    WAKEUP_CONFIGURE = "wakeup.configure"
    # firmware, security updates, application software
    FIRMWARE_UPDATE = "firmware.update"  # where to fetch the image, its digest and version
    FIRMWARE_ACTIVATE = "firmware.activate"
    # commissioning over the admin session (seed 003 §2.3.3, §2.3.4)
    COMMISSIONING_ADMIN_CHALLENGE = "commissioning.admin-challenge"
    COMMISSIONING_AUTHENTICATE = "commissioning.authenticate"
    COMMISSIONING_GENERATE_KEYS = "commissioning.generate-keys"
    COMMISSIONING_EXPORT_PUBLIC_KEYS = "commissioning.export-public-keys"
    COMMISSIONING_CERTIFICATE_REQUESTS = "commissioning.certificate-requests"
    COMMISSIONING_IMPORT_CERTIFICATES = "commissioning.import-certificates"
    COMMISSIONING_COMPLETE_PERSONALISATION = "commissioning.complete-personalisation"
    COMMISSIONING_SYNCHRONISE_TIME = "commissioning.synchronise-time"
    COMMISSIONING_SELF_TEST = "commissioning.self-test"
    # administrator change (seed 003 §7, table 5); who may send which: docs/admin-commands.md
    ADMIN_CHANGE_DELETE_PROFILES = "admin-change.delete-profiles"  # 2.5, old administrator
    ADMIN_CHANGE_PREPARE = "admin-change.prepare"  # 2.6–2.8, old administrator
    ADMIN_CHANGE_ABORT = "admin-change.abort"  # failure path, old administrator
    ADMIN_CHANGE_READ_CONFIGURATION = "admin-change.read-configuration"  # 2.10, new one
    ADMIN_CHANGE_CHECK_RESULT = "admin-change.check-result"  # 2.11, new administrator
    ADMIN_CHANGE_TAKE_OVER = "admin-change.take-over"  # 2.13, new administrator
    ADMIN_CHANGE_REMOVE_OLD = "admin-change.remove-old"  # 2.14, new administrator

    @property
    def group(self) -> CommandGroup:
        return COMMAND_TABLE[self].group

    @property
    def carries_secrets(self) -> bool:
        """Whether the command must arrive encrypted for the gateway (sealed)."""
        return COMMAND_TABLE[self].carries_secrets


_T = CommandType
_G = CommandGroup
#: The one dispatch table of command types. Not supported yet (would go here): consumer log
#: retrieval by the GWA (not its role), security-module PIN management, decommissioning.
COMMAND_TABLE: dict[CommandType, _Spec] = {
    _T.METER_REGISTER: _Spec(_G.DEVICE, True),
    _T.METER_DELETE: _Spec(_G.DEVICE, False),
    _T.CLS_REGISTER: _Spec(_G.DEVICE, False),
    _T.CLS_DELETE: _Spec(_G.DEVICE, False),
    _T.DISPLAY_REGISTER: _Spec(_G.DEVICE, False),
    _T.DISPLAY_DELETE: _Spec(_G.DEVICE, False),
    _T.DEVICE_ASSIGN: _Spec(_G.DEVICE, False),
    _T.DEVICE_UNASSIGN: _Spec(_G.DEVICE, False),
    _T.CONSUMER_CREATE: _Spec(_G.CONSUMER, False),
    _T.CONSUMER_UPDATE: _Spec(_G.CONSUMER, False),
    _T.CONSUMER_DELETE: _Spec(_G.CONSUMER, False),
    _T.CONSUMER_CERTIFICATE_INSTALL: _Spec(_G.CONSUMER, False),
    _T.CONSUMER_CERTIFICATE_DELETE: _Spec(_G.CONSUMER, False),
    _T.CONSUMER_CREDENTIALS_SET: _Spec(_G.CONSUMER, True),
    _T.COMMUNICATION_PROFILE_INSTALL: _Spec(_G.PROFILE, False),
    _T.COMMUNICATION_PROFILE_ACTIVATE: _Spec(_G.PROFILE, False),
    _T.COMMUNICATION_PROFILE_DELETE: _Spec(_G.PROFILE, False),
    _T.EVALUATION_PROFILE_INSTALL: _Spec(_G.PROFILE, False),
    _T.EVALUATION_PROFILE_ACTIVATE: _Spec(_G.PROFILE, False),
    _T.EVALUATION_PROFILE_DELETE: _Spec(_G.PROFILE, False),
    _T.KEY_INSTALL: _Spec(_G.KEY, True),
    _T.KEY_ACTIVATE: _Spec(_G.KEY, False),
    _T.KEY_DEACTIVATE: _Spec(_G.KEY, False),
    _T.KEY_DELETE: _Spec(_G.KEY, False),
    _T.CERTIFICATE_INSTALL: _Spec(_G.KEY, False),
    _T.CERTIFICATE_ACTIVATE: _Spec(_G.KEY, False),
    _T.CERTIFICATE_DEACTIVATE: _Spec(_G.KEY, False),
    _T.CERTIFICATE_DELETE: _Spec(_G.KEY, False),
    _T.CERTIFICATE_RENEW: _Spec(_G.KEY, False),
    _T.CRYPTO_ALGORITHM_SWITCH: _Spec(_G.KEY, False),
    _T.TIME_SERVICE_CONFIGURE: _Spec(_G.TIME, False),
    _T.STATUS_QUERY: _Spec(_G.MONITORING, False),
    _T.SELF_TEST: _Spec(_G.MONITORING, False),
    _T.LOG_RETRIEVE_SYSTEM: _Spec(_G.MONITORING, False),
    _T.LOG_RETRIEVE_CALIBRATION: _Spec(_G.MONITORING, False),
    _T.WAKEUP_CONFIGURE: _Spec(_G.WAKEUP, False),
    _T.FIRMWARE_UPDATE: _Spec(_G.FIRMWARE, False),
    _T.FIRMWARE_ACTIVATE: _Spec(_G.FIRMWARE, False),
    _T.COMMISSIONING_ADMIN_CHALLENGE: _Spec(_G.COMMISSIONING, False),
    _T.COMMISSIONING_AUTHENTICATE: _Spec(_G.COMMISSIONING, False),
    _T.COMMISSIONING_GENERATE_KEYS: _Spec(_G.COMMISSIONING, False),
    _T.COMMISSIONING_EXPORT_PUBLIC_KEYS: _Spec(_G.COMMISSIONING, False),
    _T.COMMISSIONING_CERTIFICATE_REQUESTS: _Spec(_G.COMMISSIONING, False),
    _T.COMMISSIONING_IMPORT_CERTIFICATES: _Spec(_G.COMMISSIONING, False),
    _T.COMMISSIONING_COMPLETE_PERSONALISATION: _Spec(_G.COMMISSIONING, False),
    _T.COMMISSIONING_SYNCHRONISE_TIME: _Spec(_G.COMMISSIONING, False),
    _T.COMMISSIONING_SELF_TEST: _Spec(_G.COMMISSIONING, False),
    _T.ADMIN_CHANGE_DELETE_PROFILES: _Spec(_G.ADMIN_CHANGE, False),
    _T.ADMIN_CHANGE_PREPARE: _Spec(_G.ADMIN_CHANGE, False),
    _T.ADMIN_CHANGE_ABORT: _Spec(_G.ADMIN_CHANGE, False),
    _T.ADMIN_CHANGE_READ_CONFIGURATION: _Spec(_G.ADMIN_CHANGE, False),
    _T.ADMIN_CHANGE_CHECK_RESULT: _Spec(_G.ADMIN_CHANGE, False),
    _T.ADMIN_CHANGE_TAKE_OVER: _Spec(_G.ADMIN_CHANGE, False),
    _T.ADMIN_CHANGE_REMOVE_OLD: _Spec(_G.ADMIN_CHANGE, False),
}
del _T, _G


# --------------------------------------------------------------------------- errors


class CommandReason(StrEnum):
    """Why the gateway refused a command (it executes nothing then)."""

    MALFORMED = "malformed"  # not CMS, not canonical JSON of a v1 command, too large
    BAD_SIGNATURE = "bad-signature"  # signature or encryption integrity does not verify
    SIGNER_NOT_CURRENT_ADMINISTRATOR = "signer-not-current-administrator"
    WRONG_GATEWAY = "wrong-gateway"  # for another gateway (id, or encrypted for another)
    UNKNOWN_COMMAND = "unknown-command"  # type not in COMMAND_TABLE
    NOT_ENCRYPTED = "not-encrypted"  # a secret-carrying command that was only signed
    NOT_YET_VALID = "not-yet-valid"  # issued_at later than now + clock skew
    EXPIRED = "expired"  # now - clock skew ≥ not_after
    REPLAYED = "replayed"  # sequence ≤ last accepted, or the command id was seen


class CommandRejected(Rejected):
    """A command was refused. ``reason`` is a :class:`CommandReason`."""

    reason: CommandReason  # type: ignore[assignment]

    def __init__(self, reason: CommandReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


class ResultReason(StrEnum):
    """Why the GWA refused a command result."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad-signature"
    WRONG_SIGNER = "wrong-signer"  # not signed by the gateway's SIG certificate
    WRONG_COMMAND = "wrong-command"  # a result for another command or another gateway


class ResultRejected(Rejected):
    """A command result was refused. ``reason`` is a :class:`ResultReason`."""

    reason: ResultReason  # type: ignore[assignment]

    def __init__(self, reason: ResultReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


class _Bad(ValueError):
    """Internal: a document does not have the v1 shape."""


# --------------------------------------------------------------------------- JSON helpers


def _time(when: datetime) -> str:
    t = when.astimezone(UTC)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}Z"


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise _Bad("time is not YYYY-MM-DDThh:mm:ssZ")
    return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)


def _whole_seconds(name: str, when: datetime) -> datetime:
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise UsageError(f"{name} must be a timezone-aware datetime")
    return when.astimezone(UTC).replace(microsecond=0)


def _canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Bad("duplicate key")
    return result


def _reject_constant(name: str) -> Any:
    raise _Bad(f"{name} is not JSON")


def _load(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates,
                         parse_constant=_reject_constant)
    except (UnicodeDecodeError, RecursionError, json.JSONDecodeError) as exc:
        raise _Bad(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _Bad("not a JSON object")
    return obj


def _json_object(name: str, value: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise UsageError(f"{name} must be a mapping")
    try:
        copy: dict[str, Any] = json.loads(_canonical(value))
    except (TypeError, ValueError, RecursionError) as exc:
        raise UsageError(f"{name} must be JSON data (str keys, no NaN): {exc}") from None
    if copy != value:
        raise UsageError(f"{name} must be JSON data: str keys, lists, no tuples")
    return copy


def _check_id(name: str, value: str) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= 128 or not value.isprintable():
        raise UsageError(f"{name} must be 1..128 printable characters")


# --------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class Command:
    """One administration command. Times are UTC, whole seconds.

    ``parameters`` is the type-specific JSON object (validated by the executor for the type).
    """

    command_id: uuid.UUID
    gateway_id: str
    administrator_id: str
    sequence: int
    issued_at: datetime
    not_after: datetime
    type: CommandType
    parameters: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.command_id, uuid.UUID):
            raise UsageError("command_id must be a UUID")
        _check_id("gateway_id", self.gateway_id)
        _check_id("administrator_id", self.administrator_id)
        if isinstance(self.sequence, bool) or not isinstance(self.sequence, int) \
                or not 1 <= self.sequence <= MAX_SEQUENCE:
            raise UsageError(f"sequence must be an integer in 1..{MAX_SEQUENCE}")
        object.__setattr__(self, "issued_at", _whole_seconds("issued_at", self.issued_at))
        object.__setattr__(self, "not_after", _whole_seconds("not_after", self.not_after))
        if self.not_after <= self.issued_at:
            raise UsageError("not_after must be later than issued_at")
        try:
            object.__setattr__(self, "type", CommandType(self.type))
        except ValueError:
            raise UsageError(f"unknown command type {self.type!r}") from None
        object.__setattr__(self, "parameters", _json_object("parameters", self.parameters))

    def encode(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace, UTF-8)."""
        return _canonical({
            "v": VERSION, "command_id": str(self.command_id), "gateway_id": self.gateway_id,
            "administrator_id": self.administrator_id, "sequence": self.sequence,
            "issued_at": _time(self.issued_at), "not_after": _time(self.not_after),
            "type": self.type.value, "parameters": self.parameters,
        })

    @classmethod
    def decode(cls, data: bytes) -> Command:
        """Parse a command document: ``MALFORMED`` unless canonical v1 JSON,
        ``UNKNOWN_COMMAND`` if well-formed with a type this gateway does not know."""
        try:
            obj = _load(data)
            if set(obj) != _COMMAND_KEYS or obj["v"] != VERSION or isinstance(obj["v"], bool):
                raise _Bad("not a v1 command document")
            if not isinstance(obj["command_id"], str) or not isinstance(obj["type"], str) \
                    or not isinstance(obj["parameters"], dict):
                raise _Bad("command_id, type or parameters of the wrong JSON type")
            command_id = uuid.UUID(obj["command_id"])
            if str(command_id) != obj["command_id"]:
                raise _Bad("command_id is not a lower-case hyphenated UUID")
            issued_at, not_after = _parse_time(obj["issued_at"]), _parse_time(obj["not_after"])
            try:
                command_type = CommandType(obj["type"])
            except ValueError:
                raise CommandRejected(CommandReason.UNKNOWN_COMMAND, "unknown command type",
                                      command=str(command_id), type=obj["type"][:64]) from None
            command = cls(command_id, obj["gateway_id"], obj["administrator_id"],
                          obj["sequence"], issued_at, not_after, command_type,
                          obj["parameters"])
        except (_Bad, UsageError, ValueError, TypeError) as exc:
            raise CommandRejected(CommandReason.MALFORMED,
                                  f"not a {PROFILE} command: {exc}") from None
        if command.encode() != data:
            raise CommandRejected(CommandReason.MALFORMED, "command is not canonical JSON",
                                  command=str(command.command_id))
        return command


def issue_command(command: Command, gwa_sig_key: KeyHandle, gwa_sig_certificate: x509.Certificate,
                  *, gateway_enc_certificate: x509.Certificate | None = None) -> bytes:
    """GWA side: the signed command (DER ``ContentInfo(SignedData)``, signingTime =
    ``issued_at``); sealed for ``gateway_enc_certificate`` when given.

    A command whose type carries secrets must be sealed (``UsageError`` otherwise).
    """
    document = command.encode()
    if gateway_enc_certificate is None:
        if command.type.carries_secrets:
            raise UsageError(f"{command.type.value} carries secrets: give the gateway's "
                             "ENC certificate to seal it")
        return cms.sign(document, gwa_sig_key, gwa_sig_certificate,
                        signing_time=command.issued_at)
    return cms.seal(document, gwa_sig_key, gwa_sig_certificate, [gateway_enc_certificate],
                    signing_time=command.issued_at)


# --------------------------------------------------------------------------- sequence store


class SequenceStore(Protocol):
    """Port: the last accepted sequence number per gateway and the ids already accepted.

    The gateway persists it in its database (in the transaction that logs the command), so a
    restart does not reopen replays; :class:`MemorySequenceStore` is for tests and simulation.
    """

    def last_sequence(self, gateway_id: str) -> int:
        """The highest accepted sequence number, 0 if none."""
        ...

    def seen(self, gateway_id: str, command_id: uuid.UUID) -> bool:
        """Whether a command with this id was accepted before."""
        ...

    def record(self, gateway_id: str, sequence: int, command_id: uuid.UUID) -> None:
        """Remember an accepted command (sequence becomes the last one)."""
        ...


class MemorySequenceStore:
    """In-memory :class:`SequenceStore`; remembers the last ``id_capacity`` command ids.

    Older ids need no memory: their sequence numbers are below the last accepted one.
    """

    def __init__(self, id_capacity: int = 1024) -> None:
        if id_capacity < 1:
            raise UsageError("id_capacity must be at least 1")
        self.id_capacity = id_capacity
        self._last: dict[str, int] = {}
        self._ids: dict[str, OrderedDict[uuid.UUID, None]] = {}

    def last_sequence(self, gateway_id: str) -> int:
        return self._last.get(gateway_id, 0)

    def seen(self, gateway_id: str, command_id: uuid.UUID) -> bool:
        return command_id in self._ids.get(gateway_id, ())

    def record(self, gateway_id: str, sequence: int, command_id: uuid.UUID) -> None:
        if sequence <= self.last_sequence(gateway_id):
            raise UsageError("sequence numbers only increase")
        self._last[gateway_id] = sequence
        ids = self._ids.setdefault(gateway_id, OrderedDict())
        ids[command_id] = None
        while len(ids) > self.id_capacity:
            ids.popitem(last=False)


# --------------------------------------------------------------------------- verifier

_CMS_REASON = {
    Reason.SIGNER_MISMATCH: CommandReason.SIGNER_NOT_CURRENT_ADMINISTRATOR,
    Reason.BAD_SIGNATURE: CommandReason.BAD_SIGNATURE,
    Reason.TAMPERED: CommandReason.BAD_SIGNATURE,
    Reason.WRONG_CURVE: CommandReason.BAD_SIGNATURE,
    Reason.WRONG_RECIPIENT: CommandReason.WRONG_GATEWAY,
}


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if len(names) != 1:
        raise UsageError("the certificate needs exactly one CN")
    return str(names[0].value)


class CommandVerifier:
    """Gateway side: checks a command from the admin session before anything executes.

    ``current_administrator_sig_cert`` is the SIG certificate of the gateway's *current*
    administrator (validated when it was installed); its CN is the administrator id unless
    ``administrator_id`` is given. A command signed by any other certificate – even a valid
    GWA's – is ``SIGNER_NOT_CURRENT_ADMINISTRATOR``. :meth:`verify` records the accepted
    sequence number and id in ``sequence_store`` before it returns, so a command executes at
    most once; a failed execution is answered with a failed result and re-issued by the GWA
    under a new id and sequence number.

    Order of checks: size → CMS (decrypt, signer, signature) → JSON → type → administrator id →
    gateway id → encryption → time window → replay.
    """

    def __init__(self, gateway_id: str, current_administrator_sig_cert: x509.Certificate,
                 clock: Clock, sequence_store: SequenceStore | None = None, *,
                 administrator_id: str | None = None,
                 clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
                 max_size: int = MAX_COMMAND_SIZE) -> None:
        _check_id("gateway_id", gateway_id)
        if clock_skew < timedelta(0) or max_size < 1:
            raise UsageError("clock_skew must not be negative and max_size positive")
        self.gateway_id = gateway_id
        self.administrator_certificate = current_administrator_sig_cert
        self.administrator_id = administrator_id or _common_name(current_administrator_sig_cert)
        self.clock = clock
        self.sequence_store: SequenceStore = (MemorySequenceStore() if sequence_store is None
                                              else sequence_store)
        self.clock_skew = clock_skew
        self.max_size = max_size

    def _open(self, data: bytes, enc_key: KeyHandle | None,
              enc_cert: x509.Certificate | None) -> tuple[bytes, bool]:
        """The verified document and whether it arrived encrypted."""
        signer = self.administrator_certificate
        try:
            try:
                verified = cms.verify(data, signer_certificate=signer, max_size=self.max_size)
                return verified.content, False
            except CmsRejected as exc:
                if exc.reason is not Reason.WRONG_CONTENT_TYPE:
                    raise
            if enc_key is None or enc_cert is None:
                raise CommandRejected(CommandReason.MALFORMED, "not a SignedData, and no "
                                      "gateway ENC key was given to open a sealed command")
            opened = cms.open_sealed(data, enc_key, enc_cert, signer_certificate=signer,
                                     max_size=self.max_size)
            return opened.content, True
        except (CmsRejected, KeyRejected) as exc:
            reason = _CMS_REASON.get(exc.reason, CommandReason.MALFORMED)
            raise CommandRejected(reason, f"command refused: {exc.message}",
                                  cause=exc.reason.value) from None

    def verify(self, data: bytes, gateway_enc_key: KeyHandle | None = None,
               gateway_enc_cert: x509.Certificate | None = None) -> Command:
        """Check one command; returns it (and records it as accepted) or raises
        :class:`CommandRejected`. Give the gateway ENC key and certificate to open sealed
        commands."""
        if len(data) > self.max_size:
            raise CommandRejected(CommandReason.MALFORMED, f"command longer than {self.max_size}",
                                  size=len(data))
        document, encrypted = self._open(bytes(data), gateway_enc_key, gateway_enc_cert)
        command = Command.decode(document)
        ctx = {"command": str(command.command_id), "sequence": command.sequence,
               "type": command.type.value}
        if command.administrator_id != self.administrator_id:
            raise CommandRejected(CommandReason.SIGNER_NOT_CURRENT_ADMINISTRATOR,
                                  "command names another administrator",
                                  administrator=command.administrator_id, **ctx)
        if command.gateway_id != self.gateway_id:
            raise CommandRejected(CommandReason.WRONG_GATEWAY, "command for another gateway",
                                  addressed=command.gateway_id, **ctx)
        if command.type.carries_secrets and not encrypted:
            raise CommandRejected(CommandReason.NOT_ENCRYPTED,
                                  "command carries secrets but was only signed", **ctx)
        now = self.clock.now()
        if command.issued_at > now + self.clock_skew:
            raise CommandRejected(CommandReason.NOT_YET_VALID, "issued in the future", **ctx)
        if now - self.clock_skew >= command.not_after:
            raise CommandRejected(CommandReason.EXPIRED, "command expired", **ctx)
        store = self.sequence_store
        last = store.last_sequence(self.gateway_id)
        if command.sequence <= last:
            raise CommandRejected(CommandReason.REPLAYED, "sequence number not above the last "
                                  "accepted one", last=last, **ctx)
        if store.seen(self.gateway_id, command.command_id):
            raise CommandRejected(CommandReason.REPLAYED, "command id accepted before", **ctx)
        store.record(self.gateway_id, command.sequence, command.command_id)
        return command


# --------------------------------------------------------------------------- results


class ResultStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"


@dataclass(frozen=True)
class CommandResult:
    """The gateway's answer to one command; ``details`` is a type-specific JSON object
    (e.g. a CSR for ``key.certificate.renew``, a log extract, an error description)."""

    command_id: uuid.UUID
    gateway_id: str
    status: ResultStatus
    completed_at: datetime
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.command_id, uuid.UUID):
            raise UsageError("command_id must be a UUID")
        _check_id("gateway_id", self.gateway_id)
        try:
            object.__setattr__(self, "status", ResultStatus(self.status))
        except ValueError:
            raise UsageError(f"unknown status {self.status!r}") from None
        object.__setattr__(self, "completed_at",
                           _whole_seconds("completed_at", self.completed_at))
        object.__setattr__(self, "details", _json_object("details", self.details))

    def encode(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace, UTF-8)."""
        return _canonical({
            "v": VERSION, "command_id": str(self.command_id), "gateway_id": self.gateway_id,
            "status": self.status.value, "completed_at": _time(self.completed_at),
            "details": self.details,
        })

    @classmethod
    def decode(cls, data: bytes) -> CommandResult:
        """Parse a result document; :class:`ResultRejected` (``MALFORMED``) otherwise."""
        try:
            obj = _load(data)
            if set(obj) != _RESULT_KEYS or obj["v"] != VERSION or isinstance(obj["v"], bool):
                raise _Bad("not a v1 result document")
            if not isinstance(obj["command_id"], str) or not isinstance(obj["details"], dict):
                raise _Bad("command_id or details of the wrong JSON type")
            result = cls(uuid.UUID(obj["command_id"]), obj["gateway_id"],
                         ResultStatus(obj["status"]), _parse_time(obj["completed_at"]),
                         obj["details"])
        except (_Bad, UsageError, ValueError, TypeError) as exc:
            raise ResultRejected(ResultReason.MALFORMED,
                                 f"not a {PROFILE} result: {exc}") from None
        if result.encode() != data:
            raise ResultRejected(ResultReason.MALFORMED, "result is not canonical JSON")
        return result


def issue_result(result: CommandResult, gateway_sig_key: KeyHandle,
                 gateway_sig_certificate: x509.Certificate, *,
                 gwa_enc_certificate: x509.Certificate | None = None) -> bytes:
    """Gateway side: the signed result (signingTime = ``completed_at``); sealed for the GWA's
    ENC certificate when given (for results that carry confidential data)."""
    document = result.encode()
    if gwa_enc_certificate is None:
        return cms.sign(document, gateway_sig_key, gateway_sig_certificate,
                        signing_time=result.completed_at)
    return cms.seal(document, gateway_sig_key, gateway_sig_certificate, [gwa_enc_certificate],
                    signing_time=result.completed_at)


_RESULT_CMS_REASON = {
    Reason.SIGNER_MISMATCH: ResultReason.WRONG_SIGNER,
    Reason.BAD_SIGNATURE: ResultReason.BAD_SIGNATURE,
    Reason.TAMPERED: ResultReason.BAD_SIGNATURE,
    Reason.WRONG_CURVE: ResultReason.BAD_SIGNATURE,
}


def verify_result(data: bytes, gateway_sig_cert: x509.Certificate,
                  expected_command_id: uuid.UUID, *, gwa_enc_key: KeyHandle | None = None,
                  gwa_enc_cert: x509.Certificate | None = None,
                  max_size: int = MAX_RESULT_SIZE) -> CommandResult:
    """GWA side: check a result signed by ``gateway_sig_cert`` for ``expected_command_id``.

    The result's gateway id must be the certificate's CN. Sealed results need the GWA's ENC
    key and certificate.
    """
    if len(data) > max_size:
        raise ResultRejected(ResultReason.MALFORMED, f"result longer than {max_size}")
    try:
        try:
            content = cms.verify(data, signer_certificate=gateway_sig_cert,
                                 max_size=max_size).content
        except CmsRejected as exc:
            if exc.reason is not Reason.WRONG_CONTENT_TYPE or gwa_enc_key is None \
                    or gwa_enc_cert is None:
                raise
            content = cms.open_sealed(data, gwa_enc_key, gwa_enc_cert,
                                      signer_certificate=gateway_sig_cert,
                                      max_size=max_size).content
    except (CmsRejected, KeyRejected) as exc:
        reason = _RESULT_CMS_REASON.get(exc.reason, ResultReason.MALFORMED)
        raise ResultRejected(reason, f"result refused: {exc.message}",
                             command=str(expected_command_id)) from None
    result = CommandResult.decode(content)
    if result.command_id != expected_command_id:
        raise ResultRejected(ResultReason.WRONG_COMMAND, "result for another command",
                             command=str(expected_command_id), answered=str(result.command_id))
    if result.gateway_id != _common_name(gateway_sig_cert):
        raise ResultRejected(ResultReason.WRONG_COMMAND, "result names another gateway",
                             command=str(expected_command_id))
    return result
