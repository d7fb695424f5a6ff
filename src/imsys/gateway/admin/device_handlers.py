"""Device and consumer management (seed 003 §5, table 3 step 2.2; TR-03109-1 Geräte- und
Mandantenverwaltung): CLS devices, displays, assignment of devices to consumers, consumers,
their HAN certificates and their HAN credentials.

Documents (``ConfigStore``):

* ``cls/<device_id>``: ``{"device_id", "address", "port", "consumer_id"|null}``
* ``display/<device_id>``: ``{"device_id", "address"|null, "consumer_id"|null}``
* ``consumer/<consumer_id>``: ``{"consumer_id", "label", "certificates": [{"serial", "subject",
  "not_after", "certificate"}], "credentials": {"username", "scheme", "salt", "hash"}|null}``
  – credentials are stored only as a salted scrypt hash (:func:`verify_credentials`).
* meters (``meter/<meter_id>``, installed by ``device.meter.register``) carry their consumer in
  the meter profile's ``consumer_id``; ``device.assign`` with ``device_kind`` ``meter`` changes it.

Every change concerning a consumer is written to that consumer's log
(``ConsumerEvent.ADMIN_ACTION``); the executor writes the system-log entry of each command.

The module also holds the parameter checking every handler module of this package shares
(:class:`Params`, :class:`HandlerRejected`): parameters are validated strictly – unknown keys,
missing keys and values of the wrong type or shape are refused with a typed reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from imsys.core.errors import CertificateRejected, Rejected
from imsys.gateway.admin.config_store import ConfigKind, ConfigStore, ItemState
from imsys.gateway.admin.context import AdminContext, HandlerTable
from imsys.gateway.logs import ConsumerEvent, Level, Outcome
from imsys.pki.directory import parsed
from imsys.pki.validation import PathValidator, describe
from imsys.wire.command import Command, CommandType

if TYPE_CHECKING:
    from imsys.secmod.base import SecurityModule

__all__ = [
    "EXTRA_CRLS",
    "EXTRA_VALIDATOR",
    "HANDLERS",
    "HandlerReason",
    "HandlerRejected",
    "Params",
    "certificate_summary",
    "consumer_action",
    "require_secmod",
    "validator_for",
    "verify_credentials",
]

#: ``context.extras`` names: a ready :class:`PathValidator` (the process wires the gateway's,
#: with its CRL source), else a CRL source or list used with the module's ROOT_WAN_SIG_CRT.
EXTRA_VALIDATOR = "pki_validator"
EXTRA_CRLS = "crl_source"
ROOT_LABEL = "ROOT_WAN_SIG_CRT"

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")
_CONSUMER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252}[A-Za-z0-9])?$")
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 256
#: scrypt parameters of stored HAN credentials (N=2**14, r=8, p=1: ~16 MiB, tens of ms).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
CREDENTIAL_SCHEME = "scrypt-n16384-r8-p1"


class HandlerReason(StrEnum):
    """Why a handler refused a command's parameters or the gateway's state."""

    MISSING_PARAMETER = "missing-parameter"
    UNKNOWN_PARAMETER = "unknown-parameter"
    BAD_PARAMETER = "bad-parameter"
    UNKNOWN_ITEM = "unknown-item"
    ALREADY_EXISTS = "already-exists"
    IN_USE = "in-use"  # still assigned / active / referenced
    NOT_ASSIGNED = "not-assigned"
    NO_SECURITY_MODULE = "no-security-module"
    NO_TRUST_ANCHOR = "no-trust-anchor"
    KEY_MISMATCH = "key-mismatch"
    WRONG_STATE = "wrong-state"


class HandlerRejected(Rejected):
    """A command's parameters or the gateway's state do not allow the command."""

    reason: HandlerReason  # type: ignore[assignment]

    def __init__(self, reason: HandlerReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


E = TypeVar("E", bound=StrEnum)
_MISSING = object()


class Params:
    """Strict reader of ``command.parameters``: call the typed getters for every key the type
    knows, then :meth:`done` (refuses keys nobody asked for)."""

    def __init__(self, command: Command) -> None:
        self._params: Mapping[str, Any] = command.parameters
        self._seen: set[str] = set()

    def _get(self, name: str, required: bool) -> Any:
        self._seen.add(name)
        value = self._params.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise HandlerRejected(HandlerReason.MISSING_PARAMETER,
                                      f"parameter {name!r} is required", parameter=name)
            return _MISSING
        return value

    @staticmethod
    def _bad(name: str, what: str) -> HandlerRejected:
        return HandlerRejected(HandlerReason.BAD_PARAMETER, f"parameter {name!r} must be {what}",
                               parameter=name)

    def text(self, name: str, *, pattern: re.Pattern[str] = _ID, required: bool = True,
             default: str | None = None) -> str | None:
        value = self._get(name, required)
        if value is _MISSING:
            return default
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise self._bad(name, f"a string matching {pattern.pattern}")
        return value

    def req_text(self, name: str, *, pattern: re.Pattern[str] = _ID) -> str:
        value = self.text(name, pattern=pattern)
        assert value is not None
        return value

    def free_text(self, name: str, *, max_length: int, required: bool = False,
                  default: str = "") -> str:
        value = self._get(name, required)
        if value is _MISSING:
            return default
        if not isinstance(value, str) or len(value) > max_length or not value.isprintable():
            raise self._bad(name, f"printable text of at most {max_length} characters")
        return value

    def secret_text(self, name: str, *, min_length: int, max_length: int) -> str:
        """Required printable text whose value never appears in an error message."""
        value = self._get(name, True)
        if (not isinstance(value, str) or not min_length <= len(value) <= max_length
                or not value.isprintable()):
            raise self._bad(name, f"printable text of {min_length}..{max_length} characters")
        return value

    def integer(self, name: str, *, minimum: int, maximum: int, required: bool = True,
                default: int | None = None) -> int | None:
        value = self._get(name, required)
        if value is _MISSING:
            return default
        if type(value) is not int or not minimum <= value <= maximum:
            raise self._bad(name, f"an integer in {minimum}..{maximum}")
        return value

    def req_integer(self, name: str, *, minimum: int, maximum: int) -> int:
        value = self.integer(name, minimum=minimum, maximum=maximum)
        assert value is not None
        return value

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self._get(name, False)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise self._bad(name, "true or false")
        return value

    def choice(self, name: str, enum: type[E], *, required: bool = True,
               default: E | None = None) -> E | None:
        value = self._get(name, required)
        if value is _MISSING:
            return default
        try:
            return enum(value)
        except ValueError:
            raise self._bad(name, "one of " + ", ".join(m.value for m in enum)) from None

    def time(self, name: str, *, required: bool = True) -> datetime | None:
        value = self._get(name, required)
        if value is _MISSING:
            return None
        if not isinstance(value, str) or not re.fullmatch(
                r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z", value):
            raise self._bad(name, "a UTC time YYYY-MM-DDThh:mm:ss[.ffffff]Z")
        try:
            return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
        except ValueError:
            raise self._bad(name, "a valid UTC time") from None

    def b64(self, name: str, *, max_bytes: int, required: bool = True) -> bytes | None:
        value = self._get(name, required)
        if value is _MISSING:
            return None
        return self._decode_b64(name, value, max_bytes)

    def _decode_b64(self, name: str, value: object, max_bytes: int) -> bytes:
        if not isinstance(value, str) or len(value) > (max_bytes + 2) * 4 // 3 + 4:
            raise self._bad(name, f"base64 of at most {max_bytes} bytes")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise self._bad(name, "base64") from None
        if not data or len(data) > max_bytes:
            raise self._bad(name, f"base64 of 1..{max_bytes} bytes")
        return data

    def certificate(self, name: str) -> x509.Certificate:
        data = self.b64(name, max_bytes=16384)
        assert data is not None
        return self._load_certificate(name, data)

    def _load_certificate(self, name: str, data: bytes) -> x509.Certificate:
        try:
            return parsed(x509.load_der_x509_certificate(data))
        except (ValueError, x509.InvalidVersion, CertificateRejected):
            raise self._bad(name, "a DER X.509 certificate (base64)") from None

    def certificates(self, name: str, *, max_items: int = 4) -> list[x509.Certificate]:
        value = self._get(name, False)
        if value is _MISSING:
            return []
        if not isinstance(value, list) or len(value) > max_items:
            raise self._bad(name, f"a list of at most {max_items} certificates")
        return [self._load_certificate(name, self._decode_b64(name, item, 16384))
                for item in value]

    def text_list(self, name: str, *, pattern: re.Pattern[str], max_items: int,
                  required: bool = True) -> list[str] | None:
        value = self._get(name, required)
        if value is _MISSING:
            return None
        if (not isinstance(value, list) or not 1 <= len(value) <= max_items
                or not all(isinstance(v, str) and pattern.fullmatch(v) for v in value)):
            raise self._bad(name, f"a list of 1..{max_items} strings matching {pattern.pattern}")
        return list(value)

    def done(self) -> None:
        unknown = sorted(set(self._params) - self._seen)
        if unknown:
            raise HandlerRejected(HandlerReason.UNKNOWN_PARAMETER,
                                  f"unknown parameters {unknown}", parameters=unknown[:8])


# --------------------------------------------------------------------------- shared helpers


def require_secmod(ctx: AdminContext) -> SecurityModule:
    if ctx.secmod is None:
        raise HandlerRejected(HandlerReason.NO_SECURITY_MODULE,
                              "this gateway runs without a security module")
    return ctx.secmod


def validator_for(ctx: AdminContext) -> PathValidator:
    """The gateway's SM-PKI path validator: ``extras["pki_validator"]`` if wired, else one
    anchored at ROOT_WAN_SIG_CRT in the security module with ``extras["crl_source"]``
    (CRLs required)."""
    wired = ctx.extras.get(EXTRA_VALIDATOR)
    if wired is not None:
        return cast(PathValidator, wired)
    if ctx.secmod is None or not ctx.secmod.has(ROOT_LABEL):
        raise HandlerRejected(HandlerReason.NO_TRUST_ANCHOR,
                              "no SM-PKI root certificate to validate against")
    return PathValidator([ctx.secmod.certificate(ROOT_LABEL)], (),
                         ctx.extras.get(EXTRA_CRLS), clock=ctx.clock, require_crl=True)


def der_b64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


def certificate_summary(certificate: x509.Certificate) -> dict[str, Any]:
    return {"serial": f"{certificate.serial_number:x}",
            "subject": certificate.subject.rfc4514_string(),
            "not_after": certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "certificate": der_b64(certificate)}


def consumer_action(ctx: AdminContext, consumer_id: str, text: str) -> None:
    """One administrator action in the consumer's log (seed 003 table 3 step 5.7)."""
    ctx.logs.consumer(consumer_id).append(Level.INFO, Outcome.SUCCESS,
                                          f"administrator: {text}",
                                          event=ConsumerEvent.ADMIN_ACTION)


def _require_consumer(config: ConfigStore, consumer_id: str) -> dict[str, Any]:
    item = config.get(ConfigKind.CONSUMER, consumer_id)
    if item is None:
        raise HandlerRejected(HandlerReason.UNKNOWN_ITEM, f"no consumer {consumer_id!r}",
                              consumer=consumer_id)
    return dict(item.document)


def _require(config: ConfigStore, kind: ConfigKind, item_id: str) -> dict[str, Any]:
    item = config.get(kind, item_id)
    if item is None:
        raise HandlerRejected(HandlerReason.UNKNOWN_ITEM, f"no {kind.value} {item_id!r}",
                              item=item_id)
    return dict(item.document)


# --------------------------------------------------------------------------- devices


class DeviceKind(StrEnum):
    METER = "meter"
    CLS = "cls"
    DISPLAY = "display"


_KIND = {DeviceKind.METER: ConfigKind.METER, DeviceKind.CLS: ConfigKind.CLS,
         DeviceKind.DISPLAY: ConfigKind.DISPLAY}


def cls_register(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    device_id = p.req_text("device_id")
    address = p.req_text("address", pattern=_HOST)
    port = p.req_integer("port", minimum=1, maximum=65535)
    p.done()
    ctx.config.put(ConfigKind.CLS, device_id, {"device_id": device_id, "address": address,
                                               "port": port, "consumer_id": None},
                   state=ItemState.ACTIVE, replace=False)
    return {"device_id": device_id}


def display_register(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    device_id = p.req_text("device_id")
    address = p.text("address", pattern=_HOST, required=False)
    p.done()
    ctx.config.put(ConfigKind.DISPLAY, device_id, {"device_id": device_id, "address": address,
                                                   "consumer_id": None},
                   state=ItemState.ACTIVE, replace=False)
    return {"device_id": device_id}


def _device_delete(kind: ConfigKind) -> Any:
    def handler(ctx: AdminContext, command: Command) -> dict[str, Any]:
        p = Params(command)
        device_id = p.req_text("device_id")
        p.done()
        document = _require(ctx.config, kind, device_id)
        if document.get("consumer_id"):
            raise HandlerRejected(HandlerReason.IN_USE, f"{kind.value} {device_id} is assigned "
                                  "to a consumer; unassign it first", item=device_id)
        ctx.config.delete(kind, device_id)
        return {"device_id": device_id, "deleted": True}
    return handler


def device_assign(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    kind = p.choice("device_kind", DeviceKind)
    device_id = p.req_text("device_id")
    consumer_id = p.req_text("consumer_id", pattern=_CONSUMER_ID)
    p.done()
    assert kind is not None
    _require_consumer(ctx.config, consumer_id)
    item = ctx.config.get(_KIND[kind], device_id)
    if item is None:
        raise HandlerRejected(HandlerReason.UNKNOWN_ITEM, f"no {kind.value} {device_id!r}",
                              item=device_id)
    document = dict(item.document)
    previous = document.get("consumer_id")
    if previous == consumer_id:
        raise HandlerRejected(HandlerReason.ALREADY_EXISTS, "already assigned to this consumer",
                              item=device_id)
    if previous and kind is not DeviceKind.METER:
        raise HandlerRejected(HandlerReason.IN_USE, f"{kind.value} {device_id} is assigned to "
                              "another consumer; unassign it first", item=device_id)
    document["consumer_id"] = consumer_id
    ctx.config.put(_KIND[kind], device_id, document, state=item.state)
    if previous:  # a meter moves from one consumer to the next
        consumer_action(ctx, previous, f"{kind.value} {device_id} unassigned")
    consumer_action(ctx, consumer_id, f"{kind.value} {device_id} assigned")
    return {"device_kind": kind.value, "device_id": device_id, "consumer_id": consumer_id,
            "previous_consumer_id": previous}


def device_unassign(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    kind = p.choice("device_kind", DeviceKind)
    device_id = p.req_text("device_id")
    p.done()
    assert kind is not None
    if kind is DeviceKind.METER:
        raise HandlerRejected(HandlerReason.BAD_PARAMETER, "a meter always belongs to a "
                              "consumer: assign it to another one or delete it",
                              parameter="device_kind")
    item = ctx.config.get(_KIND[kind], device_id)
    if item is None:
        raise HandlerRejected(HandlerReason.UNKNOWN_ITEM, f"no {kind.value} {device_id!r}",
                              item=device_id)
    document = dict(item.document)
    previous = document.get("consumer_id")
    if not previous:
        raise HandlerRejected(HandlerReason.NOT_ASSIGNED, f"{kind.value} {device_id} is not "
                              "assigned", item=device_id)
    document["consumer_id"] = None
    ctx.config.put(_KIND[kind], device_id, document, state=item.state)
    consumer_action(ctx, previous, f"{kind.value} {device_id} unassigned")
    return {"device_kind": kind.value, "device_id": device_id, "consumer_id": previous}


# --------------------------------------------------------------------------- consumers


def consumer_create(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    consumer_id = p.req_text("consumer_id", pattern=_CONSUMER_ID)
    label = p.free_text("label", max_length=128)
    p.done()
    if ctx.config.get(ConfigKind.CONSUMER, consumer_id) is not None:
        raise HandlerRejected(HandlerReason.ALREADY_EXISTS, f"consumer {consumer_id} exists",
                              consumer=consumer_id)
    ctx.config.put(ConfigKind.CONSUMER, consumer_id,
                   {"consumer_id": consumer_id, "label": label, "certificates": [],
                    "credentials": None}, state=ItemState.ACTIVE, replace=False)
    consumer_action(ctx, consumer_id, "consumer created")
    return {"consumer_id": consumer_id}


def consumer_update(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    consumer_id = p.req_text("consumer_id", pattern=_CONSUMER_ID)
    label = p.free_text("label", max_length=128, required=True)
    p.done()
    document = _require_consumer(ctx.config, consumer_id)
    document["label"] = label
    ctx.config.put(ConfigKind.CONSUMER, consumer_id, document, state=ItemState.ACTIVE)
    consumer_action(ctx, consumer_id, "consumer data changed")
    return {"consumer_id": consumer_id}


def assigned_devices(config: ConfigStore, consumer_id: str) -> list[tuple[str, str]]:
    """``(device kind, device id)`` of every device and meter assigned to the consumer."""
    found = []
    for kind, config_kind in _KIND.items():
        found += [(kind.value, item.item_id) for item in config.items(config_kind)
                  if item.document.get("consumer_id") == consumer_id]
    return found


def consumer_delete(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    consumer_id = p.req_text("consumer_id", pattern=_CONSUMER_ID)
    p.done()
    _require_consumer(ctx.config, consumer_id)
    devices = assigned_devices(ctx.config, consumer_id)
    if devices:
        raise HandlerRejected(HandlerReason.IN_USE, f"{len(devices)} devices are still "
                              "assigned to the consumer", consumer=consumer_id)
    ctx.config.delete(ConfigKind.CONSUMER, consumer_id)
    consumer_action(ctx, consumer_id, "consumer deleted (the log is kept)")
    return {"consumer_id": consumer_id, "deleted": True}


def consumer_certificate_install(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    consumer_id = p.req_text("consumer_id", pattern=_CONSUMER_ID)
    certificate = p.certificate("certificate")
    chain = p.certificates("chain")
    p.done()
    document = _require_consumer(ctx.config, consumer_id)
    validator_for(ctx).validate(certificate, profile="consumer-tls", chain=chain,
                                at=ctx.clock.now())
    serial = f"{certificate.serial_number:x}"
    if any(c["serial"] == serial for c in document["certificates"]):
        raise HandlerRejected(HandlerReason.ALREADY_EXISTS, "certificate already installed",
                              serial=serial)
    document["certificates"] = [*document["certificates"], certificate_summary(certificate)]
    ctx.config.put(ConfigKind.CONSUMER, consumer_id, document, state=ItemState.ACTIVE)
    consumer_action(ctx, consumer_id, f"HAN certificate installed ({describe(certificate)})")
    return {"consumer_id": consumer_id, "serial": serial}


_SERIAL = re.compile(r"^[0-9a-f]{1,40}$")


def consumer_certificate_delete(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    consumer_id = p.req_text("consumer_id", pattern=_CONSUMER_ID)
    serial = p.req_text("serial", pattern=_SERIAL)
    p.done()
    document = _require_consumer(ctx.config, consumer_id)
    kept = [c for c in document["certificates"] if c["serial"] != serial]
    if len(kept) == len(document["certificates"]):
        raise HandlerRejected(HandlerReason.UNKNOWN_ITEM, "no such certificate", serial=serial)
    document["certificates"] = kept
    ctx.config.put(ConfigKind.CONSUMER, consumer_id, document, state=ItemState.ACTIVE)
    consumer_action(ctx, consumer_id, f"HAN certificate deleted (serial {serial})")
    return {"consumer_id": consumer_id, "serial": serial, "deleted": True}


def _hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                          maxmem=64 * 1024 * 1024, dklen=32)


def consumer_credentials_set(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    consumer_id = p.req_text("consumer_id", pattern=_CONSUMER_ID)
    username = p.req_text("username", pattern=_USERNAME)
    raw = p.secret_text("password", min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)
    p.done()
    document = _require_consumer(ctx.config, consumer_id)
    salt = secrets.token_bytes(16)
    document["credentials"] = {
        "username": username, "scheme": CREDENTIAL_SCHEME,
        "salt": base64.b64encode(salt).decode(),
        "hash": base64.b64encode(_hash_password(raw, salt)).decode()}
    ctx.config.put(ConfigKind.CONSUMER, consumer_id, document, state=ItemState.ACTIVE)
    consumer_action(ctx, consumer_id, "HAN credentials set")
    return {"consumer_id": consumer_id, "username": username}


def verify_credentials(config: ConfigStore, consumer_id: str, username: str,
                       password: str) -> bool:
    """Whether ``username``/``password`` are the consumer's HAN credentials (constant time
    in the hash comparison)."""
    item = config.get(ConfigKind.CONSUMER, consumer_id)
    credentials = None if item is None else item.document.get("credentials")
    if not credentials or credentials.get("scheme") != CREDENTIAL_SCHEME:
        return False
    salt = base64.b64decode(credentials["salt"])
    expected = base64.b64decode(credentials["hash"])
    return (hmac.compare_digest(_hash_password(password, salt), expected)
            and hmac.compare_digest(username.encode(), credentials["username"].encode()))


HANDLERS: HandlerTable = {
    CommandType.CLS_REGISTER: cls_register,
    CommandType.CLS_DELETE: _device_delete(ConfigKind.CLS),
    CommandType.DISPLAY_REGISTER: display_register,
    CommandType.DISPLAY_DELETE: _device_delete(ConfigKind.DISPLAY),
    CommandType.DEVICE_ASSIGN: device_assign,
    CommandType.DEVICE_UNASSIGN: device_unassign,
    CommandType.CONSUMER_CREATE: consumer_create,
    CommandType.CONSUMER_UPDATE: consumer_update,
    CommandType.CONSUMER_DELETE: consumer_delete,
    CommandType.CONSUMER_CERTIFICATE_INSTALL: consumer_certificate_install,
    CommandType.CONSUMER_CERTIFICATE_DELETE: consumer_certificate_delete,
    CommandType.CONSUMER_CREDENTIALS_SET: consumer_credentials_set,
}
