"""The wake-up packet ``imsys-wakeup/1`` and the gateway's wake-up core (sans-io).

The SMGW accepts no inbound connection. To make it connect, its administrator (GWA) sends a
small signed datagram; the gateway checks it and, if it is good, opens its usual outbound,
mutually authenticated TLS connection to the GWA it is configured for. The packet never
carries an address: the only thing a wake-up can cause is that one outbound connection.

Format (DER, defined in docs/admin-protocol.md)::

    WakeupPacket ::= SEQUENCE {
        version          INTEGER (1),
        gatewayId        UTF8String,        -- 1..128 octets, printable
        administratorId  UTF8String,        -- 1..128 octets, printable
        issuedAt         GeneralizedTime,   -- YYYYMMDDHHMMSSZ, whole seconds
        notAfter         GeneralizedTime,
        nonce            OCTET STRING (SIZE (16)) }

    SignedWakeup ::= SEQUENCE {
        packet              WakeupPacket,
        signatureAlgorithm  AlgorithmIdentifier,  -- ecdsa-with-SHA256/384/512, no parameters
        signature           BIT STRING }          -- DER Ecdsa-Sig-Value over the packet's DER

The hash is the one TR-03116-3 pairs with the curve of the GWA SIG key (brainpoolP256r1 →
SHA-256, P384r1 → SHA-384, P512r1 → SHA-512). The reader accepts DER only (minimal lengths, no
indefinite lengths, nothing trailing), so every accepted packet has exactly one encoding.

:class:`WakeupReceiver` decides; it takes bytes and a :class:`~imsys.core.clock.Clock` and
returns a :class:`WakeupDecision` or raises :class:`WakeupRejected`. Sockets live in
:mod:`imsys.gateway.wakeup_listener`.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from imsys.core.clock import Clock
from imsys.core.errors import KeyRejected, Rejected, UsageError
from imsys.crypto.primitives import (
    KeyHandle,
    check_public_key,
    curve_profile,
    ecdsa_verify,
    hash_for,
    random_bytes,
)

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "DEFAULT_MAX_VALIDITY",
    "MAX_ID_LENGTH",
    "MAX_WAKEUP_SIZE",
    "NONCE_LENGTH",
    "PROFILE",
    "MemoryReplayCache",
    "NonceStatus",
    "ReplayCache",
    "SignedWakeup",
    "WakeupDecision",
    "WakeupPacket",
    "WakeupReason",
    "WakeupReceiver",
    "WakeupRejected",
    "make_wakeup",
    "sign_wakeup",
]

#: Name and version of this profile.
PROFILE = "imsys-wakeup/1"
VERSION = 1
NONCE_LENGTH = 16
#: Identifiers (gateway id, administrator id) are 1..128 octets of printable UTF-8.
MAX_ID_LENGTH = 128
#: Datagrams longer than this are refused unread (with 128-octet ids and a P512 signature a
#: packet stays below 550 octets; typical ones are 170–240).
MAX_WAKEUP_SIZE = 1024
DEFAULT_MAX_VALIDITY = timedelta(minutes=5)
DEFAULT_CLOCK_SKEW = timedelta(seconds=30)
#: Validity the GWA side uses unless told otherwise.
DEFAULT_VALIDITY = timedelta(minutes=2)


class WakeupReason(StrEnum):
    """Why a wake-up packet was refused."""

    TOO_LARGE = "too-large"  # longer than the size bound; not parsed
    MALFORMED = "malformed"  # not DER of SignedWakeup v1, or inconsistent fields
    WRONG_GATEWAY = "wrong-gateway"  # gatewayId is not this gateway
    UNKNOWN_ADMINISTRATOR = "unknown-administrator"  # administratorId is not our GWA
    BAD_SIGNATURE = "bad-signature"  # does not verify with the GWA SIG certificate's key
    NOT_YET_VALID = "not-yet-valid"  # issuedAt later than now + clock skew
    EXPIRED = "expired"  # notAfter reached (now - clock skew ≥ notAfter): stale
    VALIDITY_TOO_LONG = "validity-too-long"  # notAfter - issuedAt above the maximum
    REPLAYED_NONCE = "replayed-nonce"  # this nonce was accepted before
    REPLAY_CACHE_FULL = "replay-cache-full"  # fail closed: no room to remember the nonce
    RATE_LIMITED = "rate-limited"  # dropped by the adapter's token bucket (never by the core)


class WakeupRejected(Rejected):
    """A wake-up packet was refused. ``reason`` is a :class:`WakeupReason`."""

    reason: WakeupReason  # type: ignore[assignment]

    def __init__(self, reason: WakeupReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


# --------------------------------------------------------------------------- strict DER

_SEQUENCE = 0x30
_INTEGER = 0x02
_BIT_STRING = 0x03
_OCTET_STRING = 0x04
_OID = 0x06
_UTF8_STRING = 0x0C
_GENERALIZED_TIME = 0x18

# ecdsa-with-SHA256/384/512 (RFC 5758), AlgorithmIdentifier with the parameters absent
_ALGORITHM_BY_HASH = {
    "sha256": bytes.fromhex("300a06082a8648ce3d040302"),
    "sha384": bytes.fromhex("300a06082a8648ce3d040303"),
    "sha512": bytes.fromhex("300a06082a8648ce3d040304"),
}
_HASH_BY_ALGORITHM = {encoded: name for name, encoded in _ALGORITHM_BY_HASH.items()}


class _Malformed(ValueError):
    """Internal: the bytes are not the DER this profile defines."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + _length(len(value)) + value


class _Reader:
    """Reads DER TLVs in sequence: definite minimal lengths only, within the given bytes."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _header(self, tag: int) -> tuple[int, int]:
        data, pos = self._data, self._pos
        if pos + 2 > len(data):
            raise _Malformed("truncated")
        if data[pos] != tag:
            raise _Malformed(f"expected tag 0x{tag:02x}, found 0x{data[pos]:02x}")
        first = data[pos + 1]
        pos += 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 2 or pos + count > len(data):
                raise _Malformed("indefinite or oversized length")
            length = int.from_bytes(data[pos:pos + count], "big")
            if length < 0x80 or data[pos] == 0:
                raise _Malformed("length not in minimal form")
            pos += count
        if pos + length > len(data):
            raise _Malformed("truncated")
        return pos, length

    def value(self, tag: int) -> bytes:
        """The contents octets of the next TLV, which must carry ``tag``."""
        start, length = self._header(tag)
        self._pos = start + length
        return self._data[start:self._pos]

    def raw(self, tag: int) -> bytes:
        """The whole next TLV (header included), which must carry ``tag``."""
        begin = self._pos
        start, length = self._header(tag)
        self._pos = start + length
        return self._data[begin:self._pos]

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise _Malformed("trailing octets")


def _encode_time(when: datetime) -> bytes:
    t = when.astimezone(UTC)
    text = f"{t.year:04d}{t.month:02d}{t.day:02d}{t.hour:02d}{t.minute:02d}{t.second:02d}Z"
    return _tlv(_GENERALIZED_TIME, text.encode("ascii"))


def _decode_time(value: bytes) -> datetime:
    if len(value) != 15 or not value[:14].isdigit() or value[14:] != b"Z":
        raise _Malformed("GeneralizedTime is not YYYYMMDDHHMMSSZ")
    text = value.decode("ascii")
    try:
        return datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]),
                        int(text[10:12]), int(text[12:14]), tzinfo=UTC)
    except ValueError as exc:
        raise _Malformed(f"GeneralizedTime out of range: {exc}") from None


def _decode_id(value: bytes) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed("UTF8String is not UTF-8") from None
    return text


def _check_id(name: str, value: str) -> None:
    if not isinstance(value, str) or not value.isprintable() \
            or not 1 <= len(value.encode("utf-8", "surrogatepass")) <= MAX_ID_LENGTH:
        raise UsageError(f"{name} must be printable, 1..{MAX_ID_LENGTH} octets in UTF-8")


# --------------------------------------------------------------------------- the packet


@dataclass(frozen=True, slots=True)
class WakeupPacket:
    """The signed fields of a wake-up. Times are UTC, whole seconds (sub-seconds dropped)."""

    gateway_id: str
    administrator_id: str
    issued_at: datetime
    not_after: datetime
    nonce: bytes
    version: int = VERSION

    def __post_init__(self) -> None:
        if self.version != VERSION:
            raise UsageError(f"only version {VERSION} is defined")
        _check_id("gateway_id", self.gateway_id)
        _check_id("administrator_id", self.administrator_id)
        for name in ("issued_at", "not_after"):
            when = getattr(self, name)
            if not isinstance(when, datetime) or when.tzinfo is None:
                raise UsageError(f"{name} must be a timezone-aware datetime")
            object.__setattr__(self, name, when.astimezone(UTC).replace(microsecond=0))
        if self.not_after <= self.issued_at:
            raise UsageError("not_after must be later than issued_at")
        if not isinstance(self.nonce, bytes) or len(self.nonce) != NONCE_LENGTH:
            raise UsageError(f"the nonce is {NONCE_LENGTH} octets")

    @property
    def validity(self) -> timedelta:
        """How long the packet claims to be valid (``not_after - issued_at``)."""
        return self.not_after - self.issued_at

    def encode(self) -> bytes:
        """DER ``WakeupPacket``."""
        return _tlv(_SEQUENCE, b"".join((
            _tlv(_INTEGER, bytes((self.version,))),
            _tlv(_UTF8_STRING, self.gateway_id.encode("utf-8")),
            _tlv(_UTF8_STRING, self.administrator_id.encode("utf-8")),
            _encode_time(self.issued_at),
            _encode_time(self.not_after),
            _tlv(_OCTET_STRING, self.nonce),
        )))

    @classmethod
    def decode(cls, data: bytes) -> WakeupPacket:
        """Parse DER ``WakeupPacket``; :class:`WakeupRejected` (``MALFORMED``) otherwise."""
        try:
            outer = _Reader(data)
            body = _Reader(outer.value(_SEQUENCE))
            outer.finish()
            if body.value(_INTEGER) != bytes((VERSION,)):
                raise _Malformed(f"version is not {VERSION}")
            gateway_id = _decode_id(body.value(_UTF8_STRING))
            administrator_id = _decode_id(body.value(_UTF8_STRING))
            issued_at = _decode_time(body.value(_GENERALIZED_TIME))
            not_after = _decode_time(body.value(_GENERALIZED_TIME))
            nonce = body.value(_OCTET_STRING)
            body.finish()
            return cls(gateway_id, administrator_id, issued_at, not_after, nonce)
        except (_Malformed, UsageError) as exc:
            raise WakeupRejected(WakeupReason.MALFORMED,
                                 f"not a {PROFILE} packet: {exc}") from None


@dataclass(frozen=True, slots=True)
class SignedWakeup:
    """A decoded ``SignedWakeup`` (signature not yet checked).

    ``tbs`` is the packet's DER exactly as received – what the signature covers.
    """

    packet: WakeupPacket
    hash_name: str  # "sha256" | "sha384" | "sha512"
    signature: bytes  # DER Ecdsa-Sig-Value
    tbs: bytes

    def encode(self) -> bytes:
        """DER ``SignedWakeup``."""
        return _tlv(_SEQUENCE, self.tbs + _ALGORITHM_BY_HASH[self.hash_name]
                    + _tlv(_BIT_STRING, b"\x00" + self.signature))

    @classmethod
    def decode(cls, data: bytes, *, max_size: int = MAX_WAKEUP_SIZE) -> SignedWakeup:
        """Parse DER ``SignedWakeup``: ``TOO_LARGE`` above ``max_size``, else ``MALFORMED``."""
        if len(data) > max_size:
            raise WakeupRejected(WakeupReason.TOO_LARGE, f"packet longer than {max_size}",
                                 size=len(data))
        try:
            outer = _Reader(bytes(data))
            body = _Reader(outer.value(_SEQUENCE))
            outer.finish()
            tbs = body.raw(_SEQUENCE)
            algorithm = body.raw(_SEQUENCE)
            bits = body.value(_BIT_STRING)
            body.finish()
        except _Malformed as exc:
            raise WakeupRejected(WakeupReason.MALFORMED,
                                 f"not a {PROFILE} signed packet: {exc}") from None
        hash_name = _HASH_BY_ALGORITHM.get(algorithm)
        if hash_name is None:
            raise WakeupRejected(WakeupReason.MALFORMED, "signature algorithm is not "
                                 "ecdsa-with-SHA256/384/512 without parameters")
        if len(bits) < 2 or bits[0] != 0:
            raise WakeupRejected(WakeupReason.MALFORMED, "signature BIT STRING has unused bits")
        return cls(WakeupPacket.decode(tbs), hash_name, bits[1:], tbs)


def sign_wakeup(packet: WakeupPacket, key: KeyHandle) -> bytes:
    """DER ``SignedWakeup``: ``packet`` signed by the GWA SIG ``key`` (hash matched to its
    curve)."""
    hash_name = curve_profile(key.curve_name).hash.name
    tbs = packet.encode()
    return SignedWakeup(packet, hash_name, key.sign(tbs), tbs).encode()


def make_wakeup(gateway_id: str, administrator_id: str, key: KeyHandle, *,
                issued_at: datetime, validity: timedelta = DEFAULT_VALIDITY,
                nonce: bytes | None = None) -> bytes:
    """GWA side: a signed wake-up for ``gateway_id``, valid from ``issued_at`` for ``validity``.

    ``nonce`` defaults to 16 fresh random octets; pass one only in tests.
    """
    if validity <= timedelta(0):
        raise UsageError("validity must be positive")
    packet = WakeupPacket(gateway_id, administrator_id, issued_at, issued_at + validity,
                          random_bytes(NONCE_LENGTH) if nonce is None else nonce)
    return sign_wakeup(packet, key)


# --------------------------------------------------------------------------- replay cache


class NonceStatus(StrEnum):
    """What a :class:`ReplayCache` says about a nonce it was asked to remember."""

    FRESH = "fresh"  # not seen; now remembered
    REPLAYED = "replayed"  # remembered already
    FULL = "full"  # not seen, but there is no room: the caller must refuse (fail closed)


class ReplayCache(Protocol):
    """Port: remembers accepted nonces until they can no longer be valid."""

    def remember(self, nonce: bytes, keep_until: datetime, now: datetime) -> NonceStatus:
        """Forget nonces whose ``keep_until`` ≤ ``now``, then look up and remember ``nonce``."""
        ...


class MemoryReplayCache:
    """In-memory :class:`ReplayCache` with a fixed capacity.

    Entries expire at ``keep_until`` (the receiver passes ``notAfter`` + clock skew, the last
    moment the packet could be accepted); expired entries are dropped on every call, so memory
    is bounded by ``capacity``. A full cache does not evict live entries (that would reopen a
    replay window); it answers :attr:`NonceStatus.FULL`.
    """

    def __init__(self, capacity: int = 1024) -> None:
        if capacity < 1:
            raise UsageError("capacity must be at least 1")
        self.capacity = capacity
        self._expiry: dict[bytes, datetime] = {}
        self._heap: list[tuple[datetime, bytes]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, nonce: object) -> bool:
        return nonce in self._expiry

    def evict(self, now: datetime) -> None:
        """Drop every entry whose ``keep_until`` ≤ ``now``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, nonce = heapq.heappop(heap)
            self._expiry.pop(nonce, None)

    def remember(self, nonce: bytes, keep_until: datetime, now: datetime) -> NonceStatus:
        self.evict(now)
        if nonce in self._expiry:
            return NonceStatus.REPLAYED
        if len(self._expiry) >= self.capacity:
            return NonceStatus.FULL
        self._expiry[nonce] = keep_until
        heapq.heappush(self._heap, (keep_until, nonce))
        return NonceStatus.FRESH


# --------------------------------------------------------------------------- receiver


@dataclass(frozen=True, slots=True)
class WakeupDecision:
    """Connect out now – to ``connect_to``, the GWA address from the gateway's own
    configuration (never from the packet). ``packet`` is kept for the log."""

    connect_to: str
    packet: WakeupPacket


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if len(names) != 1:
        raise UsageError("the administrator certificate needs exactly one CN")
    return str(names[0].value)


class WakeupReceiver:
    """The gateway's wake-up core: bytes in, :class:`WakeupDecision` or
    :class:`WakeupRejected` out.

    ``administrator_certificate`` is the current GWA's SIG certificate (GWADM_SIG_CRT), validated
    when it was installed; its CN is the administrator id unless ``administrator_id`` is given.
    ``administrator_address`` is the configured GWA endpoint, returned as ``connect_to``.
    After an administrator change, build a new receiver (and keep the replay cache).

    Checks, in this order (cheap structure first; nothing is remembered before the signature
    and the time window passed)::

        TOO_LARGE → MALFORMED → WRONG_GATEWAY → UNKNOWN_ADMINISTRATOR → BAD_SIGNATURE
        → VALIDITY_TOO_LONG → NOT_YET_VALID → EXPIRED → REPLAYED_NONCE / REPLAY_CACHE_FULL

    Not thread-safe; the adapter calls it from one event loop.
    """

    def __init__(self, gateway_id: str, administrator_certificate: x509.Certificate,
                 administrator_address: str, clock: Clock, *,
                 administrator_id: str | None = None,
                 max_validity: timedelta = DEFAULT_MAX_VALIDITY,
                 clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
                 replay_cache: ReplayCache | None = None,
                 max_size: int = MAX_WAKEUP_SIZE) -> None:
        _check_id("gateway_id", gateway_id)
        if not administrator_address:
            raise UsageError("the receiver needs the configured GWA address")
        if max_validity <= timedelta(0) or clock_skew < timedelta(0):
            raise UsageError("max_validity must be positive and clock_skew not negative")
        if not 0 < max_size <= 64 * 1024:
            raise UsageError("max_size must be in 1..65536")
        try:
            self._public_key: ec.EllipticCurvePublicKey = check_public_key(
                administrator_certificate.public_key())
        except KeyRejected as exc:
            raise UsageError(f"administrator certificate key not usable: {exc.message}") from exc
        self._hash = hash_for(self._public_key)
        self.gateway_id = gateway_id
        self.administrator_id = administrator_id or _common_name(administrator_certificate)
        self.administrator_address = administrator_address
        self.clock = clock
        self.max_validity = max_validity
        self.clock_skew = clock_skew
        self.max_size = max_size
        self.replay_cache: ReplayCache = (MemoryReplayCache() if replay_cache is None
                                          else replay_cache)

    def accept(self, data: bytes) -> WakeupDecision:
        """Check one datagram; :class:`WakeupRejected` unless the gateway should connect out."""
        signed = SignedWakeup.decode(data, max_size=self.max_size)
        packet = signed.packet
        ctx = {"nonce": packet.nonce.hex()}
        if packet.gateway_id != self.gateway_id:
            raise WakeupRejected(WakeupReason.WRONG_GATEWAY, "packet for another gateway",
                                 addressed=packet.gateway_id, **ctx)
        if packet.administrator_id != self.administrator_id:
            raise WakeupRejected(WakeupReason.UNKNOWN_ADMINISTRATOR,
                                 "packet from an administrator this gateway does not have",
                                 administrator=packet.administrator_id, **ctx)
        if signed.hash_name != self._hash.name:
            raise WakeupRejected(WakeupReason.BAD_SIGNATURE,
                                 "signature hash does not match the GWA key's curve",
                                 hash=signed.hash_name, **ctx)
        try:
            ecdsa_verify(self._public_key, signed.signature, signed.tbs, self._hash)
        except KeyRejected:
            raise WakeupRejected(WakeupReason.BAD_SIGNATURE,
                                 "signature does not verify with the GWA SIG key",
                                 **ctx) from None
        if packet.validity > self.max_validity:
            raise WakeupRejected(WakeupReason.VALIDITY_TOO_LONG,
                                 f"valid for {packet.validity}, at most {self.max_validity}",
                                 **ctx)
        now = self.clock.now()
        if packet.issued_at > now + self.clock_skew:
            raise WakeupRejected(WakeupReason.NOT_YET_VALID, "issued in the future",
                                 issued_at=packet.issued_at.isoformat(), **ctx)
        try:
            keep_until = packet.not_after + self.clock_skew
        except OverflowError:
            keep_until = datetime.max.replace(tzinfo=UTC)
        if now >= keep_until:
            raise WakeupRejected(WakeupReason.EXPIRED, "packet is stale",
                                 not_after=packet.not_after.isoformat(), **ctx)
        status = self.replay_cache.remember(packet.nonce, keep_until, now)
        if status is NonceStatus.REPLAYED:
            raise WakeupRejected(WakeupReason.REPLAYED_NONCE, "nonce seen before", **ctx)
        if status is NonceStatus.FULL:
            raise WakeupRejected(WakeupReason.REPLAY_CACHE_FULL,
                                 "replay cache full; refusing until entries expire", **ctx)
        return WakeupDecision(self.administrator_address, packet)
