"""The admin session ``imsys-admin-session/1`` (sans-io): how a gateway pulls its commands.

Seed 003 §2.3.3 and §5 (table 3, steps 3.2–3.6): the gateway – never the GWA – opens a
mutually authenticated WAN-TLS connection to its administrator (client certificate: the
gateway's TLS certificate, ``GW_WAN_TLS_CRT_PRE`` during personalisation and ``GW_WAN_TLS_CRT``
after it; server: ``GWADM_TLS_CRT``). Over it runs HTTP/1.1 with four requests:

=====  =========================  ===============================  ==========================
step   request                    body                             answer
=====  =========================  ===============================  ==========================
1      ``POST /admin/v1/hello``   :class:`Hello` (JSON)            200 :class:`Welcome` (JSON)
2      ``GET /admin/v1/command``  –                                200 command (CMS) | 204
3      ``POST /admin/v1/result``  signed result (CMS)              200 :class:`Ack` (JSON)
3'     ``POST /admin/v1/refusal`` :class:`Refusal` (JSON)          200 :class:`Ack` (JSON)
=====  =========================  ===============================  ==========================

After ``hello`` the gateway repeats 2 → 3 (or 3' for a command it refused before executing
it) until the GWA answers 204; then it closes the connection. The GWA records the contact at
``hello``. Everything here is bytes in, bytes out: :class:`HttpParser` frames HTTP/1.1
messages, :class:`ClientSession` is the gateway's state machine, the message classes encode
and decode canonical JSON. TLS, sockets and timing are the adapters' business
(:mod:`imsys.gateway.admin.session`, :mod:`imsys.gwa.server`). See docs/admin-protocol.md §3.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from imsys.core.errors import Rejected, UsageError

__all__ = [
    "CMS_MEDIA_TYPE",
    "COMMAND_PATH",
    "HELLO_PATH",
    "JSON_MEDIA_TYPE",
    "MAX_BODY",
    "MAX_HEAD",
    "PROFILE",
    "REFUSAL_PATH",
    "RESULT_PATH",
    "Ack",
    "AlarmSummary",
    "ClientSession",
    "Hello",
    "HttpMessage",
    "HttpParser",
    "Refusal",
    "SessionReason",
    "SessionRejected",
    "SessionStep",
    "Welcome",
    "build_request",
    "build_response",
]

PROFILE = "imsys-admin-session/1"
VERSION = 1
HELLO_PATH = "/admin/v1/hello"
COMMAND_PATH = "/admin/v1/command"
RESULT_PATH = "/admin/v1/result"
REFUSAL_PATH = "/admin/v1/refusal"
JSON_MEDIA_TYPE = "application/json"
CMS_MEDIA_TYPE = "application/cms"
#: Largest request line plus headers, and largest body, either side accepts.
MAX_HEAD = 8 * 1024
MAX_BODY = 4 * 1024 * 1024 + 64 * 1024  # a result may carry a log extract (4 MiB) plus CMS

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
_VERSION_TEXT = re.compile(r"^[ -~]{1,64}$")
_REASON_TEXT = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class SessionReason(StrEnum):
    """Why a session message or HTTP frame was refused."""

    MALFORMED = "malformed"  # not canonical v1 JSON of the expected message, bad HTTP
    TOO_LARGE = "too-large"  # head or body above the limit
    UNEXPECTED = "unexpected"  # a status or message the state machine does not expect now
    PROTOCOL = "protocol"  # the peer broke the sequence (e.g. hello from another gateway)


class SessionRejected(Rejected):
    """An admin-session message was refused; ``reason`` is a :class:`SessionReason`."""

    reason: SessionReason  # type: ignore[assignment]

    def __init__(self, reason: SessionReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


def _bad(message: str, **context: Any) -> SessionRejected:
    return SessionRejected(SessionReason.MALFORMED, message, **context)


# --------------------------------------------------------------------------- JSON helpers


def _canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _time(when: datetime) -> str:
    if when.tzinfo is None:
        raise UsageError("admin-session times are timezone-aware")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: object, name: str) -> datetime:
    if not isinstance(value, str) or not _TIME.match(value):
        raise _bad(f"{name} is not YYYY-MM-DDThh:mm:ssZ")
    return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)


def _no_constant(name: str) -> Any:
    raise _bad(f"{name} is not JSON")


def _load(data: bytes, keys: frozenset[str], what: str) -> dict[str, Any]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(items)
        if len(result) != len(items):
            raise _bad(f"{what}: duplicate key")
        return result

    try:
        obj = json.loads(bytes(data).decode("utf-8"), object_pairs_hook=pairs,
                         parse_constant=_no_constant)
    except (UnicodeDecodeError, RecursionError, json.JSONDecodeError) as exc:
        raise _bad(f"{what} is not JSON: {exc}") from None
    if not isinstance(obj, dict) or set(obj) != keys or obj.get("v") != VERSION \
            or isinstance(obj.get("v"), bool):
        raise _bad(f"not a v1 {what}")
    return obj


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31 - 1:
        raise _bad(f"{name} is a count")
    return value


def _identifier(value: object, name: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise _bad(f"{name} must match {_ID.pattern}")
    return value


def _check_canonical(obj: Any, data: bytes, what: str) -> None:
    if obj.encode() != bytes(data):
        raise _bad(f"{what} is not canonical JSON")


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class AlarmSummary:
    """What the gateway's system log holds that the administrator should look at: the number
    of warning and error entries since the last contact, and when the last error was."""

    errors: int = 0
    warnings: int = 0
    last_error_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"errors": self.errors, "warnings": self.warnings,
                "last_error_at": None if self.last_error_at is None
                else _time(self.last_error_at)}

    @classmethod
    def from_json(cls, obj: object) -> AlarmSummary:
        if not isinstance(obj, dict) or set(obj) != {"errors", "warnings", "last_error_at"}:
            raise _bad("alarms is {errors, warnings, last_error_at}")
        last = obj["last_error_at"]
        return cls(_count(obj["errors"], "errors"), _count(obj["warnings"], "warnings"),
                   None if last is None else _parse_time(last, "last_error_at"))


_HELLO_KEYS = frozenset({"v", "gateway_id", "phase", "firmware_version", "alarms", "sent_at"})


@dataclass(frozen=True)
class Hello:
    """The gateway reports itself: id (= its TLS certificate's CN), commissioning phase,
    firmware version, alarm summary and its own time."""

    gateway_id: str
    phase: str
    firmware_version: str
    alarms: AlarmSummary
    sent_at: datetime

    def __post_init__(self) -> None:
        try:
            _identifier(self.gateway_id, "gateway_id")
            _identifier(self.phase, "phase")
            if not isinstance(self.firmware_version, str) \
                    or not _VERSION_TEXT.match(self.firmware_version):
                raise _bad("firmware_version is 1..64 printable ASCII characters")
        except SessionRejected as exc:
            raise UsageError(exc.message) from None
        object.__setattr__(self, "sent_at", self.sent_at.astimezone(UTC).replace(microsecond=0))

    def encode(self) -> bytes:
        return _canonical({"v": VERSION, "gateway_id": self.gateway_id, "phase": self.phase,
                           "firmware_version": self.firmware_version,
                           "alarms": self.alarms.to_json(), "sent_at": _time(self.sent_at)})

    @classmethod
    def decode(cls, data: bytes) -> Hello:
        obj = _load(data, _HELLO_KEYS, "hello")
        version = obj["firmware_version"]
        if not isinstance(version, str) or not _VERSION_TEXT.match(version):
            raise _bad("firmware_version is 1..64 printable ASCII characters")
        hello = cls(_identifier(obj["gateway_id"], "gateway_id"),
                    _identifier(obj["phase"], "phase"), version,
                    AlarmSummary.from_json(obj["alarms"]), _parse_time(obj["sent_at"], "sent_at"))
        _check_canonical(hello, data, "hello")
        return hello


_WELCOME_KEYS = frozenset({"v", "session_id", "administrator_id", "server_time", "pending"})


@dataclass(frozen=True)
class Welcome:
    """The GWA's answer to :class:`Hello`: a session id (for its logs), its id, its time and
    how many commands are waiting (advisory; 204 on ``command`` is what ends the session)."""

    session_id: uuid.UUID
    administrator_id: str
    server_time: datetime
    pending: int

    def encode(self) -> bytes:
        return _canonical({"v": VERSION, "session_id": str(self.session_id),
                           "administrator_id": self.administrator_id,
                           "server_time": _time(self.server_time), "pending": self.pending})

    @classmethod
    def decode(cls, data: bytes) -> Welcome:
        obj = _load(data, _WELCOME_KEYS, "welcome")
        try:
            session = uuid.UUID(str(obj["session_id"]))
        except ValueError:
            raise _bad("session_id is not a UUID") from None
        welcome = cls(session, _identifier(obj["administrator_id"], "administrator_id"),
                      _parse_time(obj["server_time"], "server_time"),
                      _count(obj["pending"], "pending"))
        _check_canonical(welcome, data, "welcome")
        return welcome


_REFUSAL_KEYS = frozenset({"v", "reason", "message"})


@dataclass(frozen=True)
class Refusal:
    """The gateway refused the command it was handed before executing it (signature, replay,
    expiry …): the verifier's reason and a short message. It refers to the last command the
    GWA handed out in this session (a refused command's content is not trusted, not even its
    id)."""

    reason: str
    message: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str) or not _REASON_TEXT.match(self.reason):
            raise UsageError("reason is a lower-case token")
        object.__setattr__(self, "message", str(self.message)[:256])

    def encode(self) -> bytes:
        return _canonical({"v": VERSION, "reason": self.reason, "message": self.message})

    @classmethod
    def decode(cls, data: bytes) -> Refusal:
        obj = _load(data, _REFUSAL_KEYS, "refusal")
        reason, message = obj["reason"], obj["message"]
        if not isinstance(reason, str) or not _REASON_TEXT.match(reason) \
                or not isinstance(message, str) or len(message) > 256:
            raise _bad("refusal needs a token reason and a message of at most 256 characters")
        refusal = cls(reason, message)
        _check_canonical(refusal, data, "refusal")
        return refusal


_ACK_KEYS = frozenset({"v", "recorded"})


@dataclass(frozen=True)
class Ack:
    """The GWA recorded a result or refusal (``recorded`` is the command id)."""

    recorded: uuid.UUID

    def encode(self) -> bytes:
        return _canonical({"v": VERSION, "recorded": str(self.recorded)})

    @classmethod
    def decode(cls, data: bytes) -> Ack:
        obj = _load(data, _ACK_KEYS, "ack")
        try:
            return cls(uuid.UUID(str(obj["recorded"])))
        except ValueError:
            raise _bad("recorded is not a UUID") from None


# --------------------------------------------------------------------------- HTTP/1.1 framing

_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
            411: "Length Required", 413: "Content Too Large", 415: "Unsupported Media Type",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}


@dataclass(frozen=True)
class HttpMessage:
    """One parsed HTTP/1.1 request (``method``, ``target``) or response (``status``)."""

    headers: dict[str, str]
    body: bytes = b""
    method: str = ""
    target: str = ""
    status: int = 0

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def close(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()


def build_request(method: str, target: str, *, host: str, body: bytes = b"",
                  content_type: str | None = None, close: bool = False) -> bytes:
    """An HTTP/1.1 request with ``Content-Length`` (no chunked coding)."""
    if not _TOKEN.match(method) or not target.startswith("/") or any(
            c in target for c in " \r\n"):
        raise UsageError("bad method or target")
    head = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    if content_type is not None:
        head.append(f"Content-Type: {content_type}")
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def build_response(status: int, body: bytes = b"", *, content_type: str | None = None,
                   close: bool = False) -> bytes:
    """An HTTP/1.1 response with ``Content-Length``."""
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"Content-Length: {len(body)}"]
    if content_type is not None:
        head.append(f"Content-Type: {content_type}")
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


class HttpParser:
    """Incremental HTTP/1.1 framing: :meth:`feed` bytes, get complete messages.

    Strict subset: ``Content-Length`` bodies only (``Transfer-Encoding`` is refused), header
    names without spaces, no duplicate ``Content-Length``/``Content-Type``, heads up to
    ``max_head`` and bodies up to ``max_body`` octets (``TOO_LARGE``). ``kind`` is
    ``"request"`` (server side) or ``"response"`` (client side). After a refusal the parser
    is unusable (the connection must close).
    """

    def __init__(self, kind: str, *, max_head: int = MAX_HEAD, max_body: int = MAX_BODY) -> None:
        if kind not in ("request", "response"):
            raise UsageError("kind is 'request' or 'response'")
        self.kind = kind
        self.max_head = max_head
        self.max_body = max_body
        self._buffer = bytearray()
        self._pending: tuple[HttpMessage, int] | None = None
        self._broken = False

    def feed(self, data: bytes) -> list[HttpMessage]:
        if self._broken:
            raise SessionRejected(SessionReason.PROTOCOL, "parser used after a refusal")
        self._buffer += data
        out: list[HttpMessage] = []
        try:
            while True:
                message = self._next()
                if message is None:
                    return out
                out.append(message)
        except SessionRejected:
            self._broken = True
            raise

    def _next(self) -> HttpMessage | None:
        if self._pending is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > self.max_head:
                    raise SessionRejected(SessionReason.TOO_LARGE, "HTTP head too large")
                return None
            if end > self.max_head:
                raise SessionRejected(SessionReason.TOO_LARGE, "HTTP head too large")
            head = bytes(self._buffer[:end])
            del self._buffer[:end + 4]
            self._pending = self._parse_head(head)
        message, length = self._pending
        if len(self._buffer) < length:
            return None
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        self._pending = None
        return HttpMessage(message.headers, body, message.method, message.target,
                           message.status)

    def _parse_head(self, head: bytes) -> tuple[HttpMessage, int]:
        try:
            lines = head.decode("ascii").split("\r\n")
        except UnicodeDecodeError:
            raise _bad("HTTP head is not ASCII") from None
        first = lines[0].split(" ", 2)
        if len(first) < 2:
            raise _bad("bad HTTP start line")
        method = target = ""
        status = 0
        if self.kind == "request":
            if len(first) != 3 or first[2] != "HTTP/1.1" or not _TOKEN.match(first[0]) \
                    or not first[1].startswith("/"):
                raise _bad("bad HTTP request line")
            method, target = first[0], first[1]
        else:
            if first[0] != "HTTP/1.1" or not first[1].isdigit() or len(first[1]) != 3:
                raise _bad("bad HTTP status line")
            status = int(first[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or not _TOKEN.match(name):
                raise _bad("bad HTTP header line")
            key = name.lower()
            if key in headers and key in ("content-length", "content-type"):
                raise _bad(f"duplicate {key}")
            headers[key] = value.strip()
        if "transfer-encoding" in headers:
            raise _bad("transfer codings are not supported")
        text = headers.get("content-length", "0")
        if not text.isdigit() or len(text) > 12:
            raise _bad("bad Content-Length")
        length = int(text)
        if length > self.max_body:
            raise SessionRejected(SessionReason.TOO_LARGE, "HTTP body too large", size=length)
        return HttpMessage(headers, b"", method, target, status), length


# --------------------------------------------------------------------------- gateway side


class SessionStep(StrEnum):
    """Where :class:`ClientSession` is."""

    HELLO = "hello"  # hello sent, waiting for the welcome
    PULL = "pull"  # asked for a command
    ANSWER = "answer"  # a command is with the gateway; it must send result or refusal
    ANSWERED = "answered"  # result or refusal sent, waiting for the ack
    DONE = "done"  # the GWA has nothing more


@dataclass
class ClientSession:
    """The gateway's side of one session as a state machine (no I/O).

    ``start(hello)`` gives the first request; every response goes to :meth:`receive`, which
    returns what happened (``Welcome``, ``bytes`` = a command to verify and execute, ``Ack``,
    or ``None`` = the GWA has nothing more) and prepares :meth:`next_request` where the
    sequence continues on its own. After a command, :meth:`answer` (the signed result) or
    :meth:`refuse` gives the next request. Anything out of order is ``SessionRejected``.
    """

    host: str
    step: SessionStep = SessionStep.HELLO
    welcome: Welcome | None = None
    commands: int = 0
    _started: bool = field(default=False, repr=False)

    def start(self, hello: Hello) -> bytes:
        if self._started:
            raise UsageError("a ClientSession starts once")
        self._started = True
        return build_request("POST", HELLO_PATH, host=self.host, body=hello.encode(),
                             content_type=JSON_MEDIA_TYPE)

    def next_request(self) -> bytes:
        if self.step is not SessionStep.PULL:
            raise UsageError(f"no request to send in step {self.step}")
        return build_request("GET", COMMAND_PATH, host=self.host)

    def answer(self, signed_result: bytes) -> bytes:
        self._expect_answer()
        self.step = SessionStep.ANSWERED
        return build_request("POST", RESULT_PATH, host=self.host, body=signed_result,
                             content_type=CMS_MEDIA_TYPE)

    def refuse(self, refusal: Refusal) -> bytes:
        self._expect_answer()
        self.step = SessionStep.ANSWERED
        return build_request("POST", REFUSAL_PATH, host=self.host, body=refusal.encode(),
                             content_type=JSON_MEDIA_TYPE)

    def _expect_answer(self) -> None:
        if self.step is not SessionStep.ANSWER:
            raise UsageError(f"no command to answer in step {self.step}")

    def receive(self, response: HttpMessage) -> Welcome | bytes | Ack | None:
        step = self.step
        if response.status == 0:
            raise UsageError("receive() takes responses")
        if step is SessionStep.HELLO:
            self._status(response, 200, JSON_MEDIA_TYPE)
            self.welcome = Welcome.decode(response.body)
            self.step = SessionStep.PULL
            return self.welcome
        if step is SessionStep.PULL:
            if response.status == 204:
                self.step = SessionStep.DONE
                return None
            self._status(response, 200, CMS_MEDIA_TYPE)
            if not response.body:
                raise _bad("empty command")
            self.commands += 1
            self.step = SessionStep.ANSWER
            return response.body
        if step is SessionStep.ANSWERED:
            self._status(response, 200, JSON_MEDIA_TYPE)
            ack = Ack.decode(response.body)
            self.step = SessionStep.PULL
            return ack
        raise SessionRejected(SessionReason.UNEXPECTED, f"no response expected in step {step}")

    def _status(self, response: HttpMessage, status: int, media: str) -> None:
        if response.status != status or response.media_type != media:
            raise SessionRejected(SessionReason.UNEXPECTED,
                                  f"GWA answered {response.status} {response.media_type or '-'} "
                                  f"in step {self.step}", status=response.status,
                                  body=response.body[:64].decode("ascii", "replace"))
