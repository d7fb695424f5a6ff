"""Measurement ("Messung"): from an LMN frame to stored, time-stamped, validity-marked readings.

The sans-io core of seed 003 §3, table 1 ("Prozessschritte Messung"). Every step the gateway
performs is one named function, called in table order by :meth:`Measurement.ingest`:

====  ======================================================  ==================================
step  seed 003 table 1 (SMGW column)                          function
====  ======================================================  ==================================
2.1   receives (push) or asks for and receives (pull) values  :func:`step_2_1_receive`
2.2   accepts data only from meters known by a meter profile  :func:`step_2_2_accept_known_meter`
2.3   verifies the data set; discards it on a wrong result    :func:`step_2_3_verify`,
                                                              ``…_verify_value_signatures``
2.4   decrypts the data set                                   :func:`step_2_4_decrypt`
3.1   evaluates the protocol (SML, wM-Bus)                    :func:`step_3_1_evaluate`
3.2   checks the integrity of the values                      :func:`step_3_2_check_integrity`
3.3   stamps the values with its time                         :func:`step_3_3_timestamp`
3.4   marks every value valid or invalid                      :func:`step_3_4_mark_validity`
4.1   stores all time-stamped values unchangeably             :func:`step_4_1_store`
5.2   logs all actions                                        :func:`step_5_2_log`
====  ======================================================  ==================================

Steps 1.x (the meter measures, encrypts/signs), 5.1 (the administrator monitors) and 5.3
(deletion after 13 months, :mod:`imsys.gateway.retention`) are not performed here.

Bytes arrive as an :class:`LmnFrame`; sockets and TLS live in :mod:`imsys.gateway.lmn_endpoints`.
For a wired meter, the adapter has already run the TLS handshake (LMN decryption, step 2.4) and
the SM-PKI check of the meter's ``meter-tls`` certificate; it hands over the peer's identity
(common name and certificate fingerprint), which step 2.3 compares with the meter profile. For a
wireless meter, step 2.3/2.4 are the OMS security of the telegram (mode 7: CMAC and message
counter, then AES-CBC; mode 5: AES-CBC and the ``2F 2F`` check).

Every refusal is a :class:`ReadingRejected` with a :class:`ReadingReason` and the step that
refused; it is written to the system log (reason, step, transport – no meter or consumer data)
and, for an error of the meter (``BAD_CRC``, ``MALFORMED``, ``METER_CLOCK_OFF``,
``METER_ATTENTION``), to the calibration log. Nothing of a refused frame is stored: readings,
replay state and log entries of an accepted frame commit in one transaction.

Rules (validity, meter clock threshold, replay) are in ``docs/measurement.md``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum, IntFlag, StrEnum
from typing import Any, cast
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric import ec

from imsys.core.clock import Clock
from imsys.core.errors import Rejected, UsageError
from imsys.core.reading import Reading, ReadingFlag
from imsys.crypto.primitives import ecdsa_verify
from imsys.gateway.errors import StoreReason, StoreRejected
from imsys.gateway.logs import (
    CalibrationEvent,
    ConsumerEvent,
    ConsumerLog,
    GatewayLogs,
    Level,
    Outcome,
    SystemEvent,
)
from imsys.gateway.meter_profile import (
    ClockOffPolicy,
    MeterProfile,
    MeterProtocol,
    signature_public_key,
    wmbus_address_key,
)
from imsys.gateway.store import (
    Database,
    ReadingSource,
    ReadingStore,
    StateTable,
    from_micros,
    to_micros,
)
from imsys.lmn.errors import FrameRejected, LmnReason
from imsys.lmn.sml import (
    AttentionResponse,
    CloseResponse,
    GetListResponse,
    GetProfileListResponse,
    LocalTimestamp,
    OpenResponse,
    SmlFile,
    SmlTime,
    Timestamp,
    decode_frame,
)
from imsys.lmn.wmbus import (
    Address,
    CounterTracker,
    DataRecord,
    DateTimeF,
    MemoryCounterTracker,
    SecurityMode,
    Telegram,
    decode_telegram,
    manufacturer_text,
)

#: PTB-A 50.8: ±1 % of the 900 s registration period (facts.md §4.6 [V]); the same tolerance the
#: TAF boundaries use (``imsys.gateway.taf.TOLERANCE``). A meter clock further from the gateway
#: clock than this is "off".
METER_CLOCK_TOLERANCE = timedelta(seconds=9)
#: bound on one LMN frame (SML transport frame or wM-Bus telegram)
MAX_FRAME_SIZE = 64 * 1024
#: the local time of wM-Bus date/time records (data type F) of German meters
METER_TIMEZONE = ZoneInfo("Europe/Berlin")
_MINUTE = timedelta(minutes=1)
_ZERO = timedelta(0)


# --------------------------------------------------------------------------- vocabulary


class Step(StrEnum):
    """The steps of seed 003 table 1 the gateway performs (value: the table's number)."""

    RECEIVE = "2.1"
    ACCEPT_KNOWN_METER = "2.2"
    VERIFY = "2.3"
    DECRYPT = "2.4"
    EVALUATE = "3.1"
    INTEGRITY = "3.2"
    TIMESTAMP = "3.3"
    VALIDITY = "3.4"
    STORE = "4.1"
    LOG = "5.2"


class ReadingReason(StrEnum):
    """Why a frame of meter values was refused (nothing of it is stored)."""

    #: no meter profile for the sender (TLS identity, wM-Bus address or SML server id)
    UNKNOWN_METER = "unknown-meter"
    #: the wired meter's TLS identity does not match its profile (fingerprint pin, protocol)
    BAD_SIGNATURE = "bad-signature"
    #: wM-Bus security failed: AFL MAC (mode 7), wrong key (mode 5), unprotected telegram
    BAD_MAC = "bad-mac"
    #: a transport, message or block CRC does not match
    BAD_CRC = "bad-crc"
    #: the frame or the values do not follow the protocol
    MALFORMED = "malformed"
    #: the frame (or a newer one) was accepted before: message counter, meter time or digest
    REPLAYED = "replayed"
    #: the meter's clock deviates beyond the threshold and the profile says to reject
    METER_CLOCK_OFF = "meter-clock-off"
    #: a value of a register that is not a channel of the meter profile
    UNEXPECTED_CHANNEL = "unexpected-channel"
    #: the meter answered with an SML attention (error) instead of values
    METER_ATTENTION = "meter-attention"
    #: the frame is larger than the bound or empty
    TOO_LARGE = "too-large"


#: rejections that are errors of the meter (also written to the calibration log)
METER_ERRORS = frozenset({ReadingReason.BAD_CRC, ReadingReason.MALFORMED,
                          ReadingReason.METER_CLOCK_OFF, ReadingReason.METER_ATTENTION})


class ReadingRejected(Rejected):
    """A frame of meter values was refused. ``reason`` is a :class:`ReadingReason`; ``step`` is
    the :class:`Step` of seed 003 table 1 that refused it."""

    reason: ReadingReason  # type: ignore[assignment]

    def __init__(self, reason: ReadingReason, step: Step, message: str = "",
                 **context: Any) -> None:
        self.step = step
        super().__init__(cast(Any, reason), message, step=step.value, **context)


class Transport(StrEnum):
    """How a frame crossed the LMN."""

    SML = "sml"  # SML over LMN-TLS (push or pull)
    WMBUS = "wmbus"  # wireless M-Bus telegram


class SmgwStatus(IntFlag):
    """The SMGW half of the 64-bit FNN status word (TRuDI ``StatusFNN.cs``, facts.md §4.5)."""

    IDENTIFICATION_LSB = 0x1
    TRANSPARENCY = 0x2
    BIT_POS_2 = 0x4
    FATAL_ERROR = 0x100
    SYSTEM_TIME_INVALID = 0x200
    PTB_WARNING = 0x1000
    PTB_TEMP_ERROR_SIGNED_INVALID = 0x2000
    PTB_TEMP_ERROR_IS_INVALID = 0x4000


class MeterStatusBit(IntFlag):
    """The bits of the meter ("BZ") half the gateway evaluates (facts.md §4.5)."""

    MAGNETIC_INFLUENCE = 0x200
    MANIPULATION = 0x400
    FATAL_ERROR = 0x20000


class PtbStatus(IntEnum):
    """PTB validity status 0–4 (TRuDI ``StatusPTB.cs``)."""

    NO_ERROR = 0
    WARNING = 1  # value valid
    TEMPORARY_ERROR = 2  # invalid, usable as a substitute
    CRITICAL_TEMPORARY_ERROR = 3  # invalid, not usable
    FATAL_ERROR = 4  # meter broken: this and all later values invalid


#: the SMGW half every word carries (mask ``…000001x1``: identification LSB and bit 2 set)
SMGW_BASE = SmgwStatus.IDENTIFICATION_LSB | SmgwStatus.BIT_POS_2


def ptb_status(fnn_word: int) -> PtbStatus:
    """PTB status of a 64-bit FNN status word, as TRuDI maps it (``MapToStatusPtb``)."""
    smgw, meter = fnn_word >> 32, fnn_word & 0xFFFFFFFF
    if meter & MeterStatusBit.FATAL_ERROR or smgw & SmgwStatus.FATAL_ERROR:
        return PtbStatus.FATAL_ERROR
    if smgw & (SmgwStatus.SYSTEM_TIME_INVALID | SmgwStatus.PTB_TEMP_ERROR_IS_INVALID):
        return PtbStatus.CRITICAL_TEMPORARY_ERROR
    if smgw & SmgwStatus.PTB_TEMP_ERROR_SIGNED_INVALID:
        return PtbStatus.TEMPORARY_ERROR
    if smgw & SmgwStatus.PTB_WARNING:
        return PtbStatus.WARNING
    return PtbStatus.NO_ERROR


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """A wired meter's LMN-TLS identity after the SM-PKI check (``meter-tls`` profile)."""

    meter_id: str  # the certificate's common name
    fingerprint: bytes  # SHA-256 of the certificate (DER)


@dataclass(frozen=True, slots=True)
class LmnFrame:
    """One frame as an LMN adapter received it (step 2.1): SML transport frame (decrypted by
    LMN-TLS) or wM-Bus telegram (still encrypted), with the gateway's time of reception."""

    transport: Transport
    data: bytes
    received_at: datetime
    peer: PeerIdentity | None = None

    def __post_init__(self) -> None:
        if self.received_at.tzinfo is None:
            raise UsageError("received_at must be timezone-aware")
        if not isinstance(self.transport, Transport):
            raise UsageError("transport must be a Transport")
        if self.transport is Transport.SML and self.peer is None:
            raise UsageError("an SML frame comes with the TLS peer identity")


@dataclass(frozen=True, slots=True)
class MeterValue:
    """One measured value as the protocol carried it (step 3.1)."""

    obis: str
    value: int
    scaler: int
    unit: int
    status: int | None  # the meter's 32-bit FNN status word, if sent
    period: datetime | None = None  # registration instant of a load-profile value (UTC)
    signature: bytes | None = None  # SML valueSignature, if sent
    signed: bytes | None = None  # what the signature covers (signed_value_input)


@dataclass(frozen=True, slots=True)
class Evaluated:
    """The content of one frame after step 3.1."""

    server: str  # meter id the frame names (SML server id or wM-Bus address, as meter id key)
    values: tuple[MeterValue, ...]
    meter_time: datetime | None  # the meter's clock when it sent (None: not sent/not absolute)
    resolution: timedelta = _ZERO  # the meter clock's resolution (wM-Bus type F: 1 min)
    profile: bool = False  # values of past registration periods (GetProfileList)


@dataclass(frozen=True, slots=True)
class Validity:
    """Step 3.4 for one frame: the SMGW status bits and the flags they imply."""

    smgw: SmgwStatus
    flags: ReadingFlag
    meter_clock_off: bool
    meter_error: bool


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What :meth:`Measurement.ingest` stored for one frame."""

    meter_id: str
    seqs: tuple[int, ...]
    readings: tuple[Reading, ...]

    @property
    def invalid(self) -> int:
        return sum(1 for r in self.readings if not r.valid)


class _PendingCounters:
    """A :class:`CounterTracker` that holds back new counters until the frame is stored."""

    def __init__(self, inner: CounterTracker) -> None:
        self.inner = inner
        self.pending: list[tuple[Address, int]] = []

    def last_counter(self, meter: Address) -> int | None:
        return self.inner.last_counter(meter)

    def accept_counter(self, meter: Address, counter: int) -> None:
        self.pending.append((meter, counter))

    def commit(self) -> None:
        for meter, counter in self.pending:
            self.inner.accept_counter(meter, counter)


# --------------------------------------------------------------------------- registry


def server_id_of(meter_id: str) -> bytes:
    """The 10-byte SML server id of a DIN 43863-5 meter id (``0A`` ‖ medium ‖ FLAG ‖ block ‖
    serial BE32; the convention of ``imsys.meters.ids``)."""
    return (bytes((0x0A, int(meter_id[0], 16))) + meter_id[1:4].encode("ascii")
            + bytes((int(meter_id[4:6]),)) + int(meter_id[6:14]).to_bytes(4, "big"))


class MeterRegistry:
    """The gateway's meter profiles, found by meter id, SML server id or wM-Bus address."""

    def __init__(self, profiles: Iterable[MeterProfile] = ()) -> None:
        self._by_id: dict[str, MeterProfile] = {}
        self._by_server: dict[bytes, MeterProfile] = {}
        self._by_address: dict[tuple[str, str, int], MeterProfile] = {}
        for p in profiles:
            self.add(p)

    def add(self, profile: MeterProfile) -> None:
        if not isinstance(profile, MeterProfile):
            raise UsageError("the registry holds MeterProfile objects")
        self._by_id[profile.meter_id] = profile
        self._by_server[server_id_of(profile.meter_id)] = profile
        if not profile.protocol.wired:
            self._by_address[wmbus_address_key(profile.meter_id)] = profile

    def __iter__(self) -> Any:
        return iter(self._by_id.values())

    def get(self, meter_id: str) -> MeterProfile | None:
        return self._by_id.get(meter_id)

    def by_server_id(self, server_id: bytes) -> MeterProfile | None:
        return self._by_server.get(server_id)

    def by_address(self, address: Address) -> MeterProfile | None:
        key = (manufacturer_text(address.manufacturer), address.id_text, address.version)
        return self._by_address.get(key)


# --------------------------------------------------------------------------- the steps


def step_2_1_receive(frame: LmnFrame, max_frame_size: int = MAX_FRAME_SIZE) -> bytes:
    """Seed 003 step 2.1: take the frame the LMN adapter received (push) or fetched (pull).

    Checks the size bound and returns the frame's digest (SHA-256), which identifies it in the
    store (duplicate and replay detection).
    """
    if not frame.data or len(frame.data) > max_frame_size:
        raise ReadingRejected(ReadingReason.TOO_LARGE, Step.RECEIVE, "empty or oversized frame",
                              length=len(frame.data), limit=max_frame_size)
    return hashlib.sha256(frame.data).digest()


def step_2_2_accept_known_meter(registry: MeterRegistry, frame: LmnFrame) -> MeterProfile:
    """Seed 003 step 2.2 (and §3.8): accept data only from a meter with a meter profile.

    Wired: the meter id is the common name of the TLS peer's ``meter-tls`` certificate. Wireless:
    the link-layer address of the telegram (read before any cryptography).
    """
    if frame.transport is Transport.SML:
        assert frame.peer is not None
        profile = registry.get(frame.peer.meter_id)
        if profile is None or not profile.protocol.wired:
            raise ReadingRejected(ReadingReason.UNKNOWN_METER, Step.ACCEPT_KNOWN_METER,
                                  "no meter profile for this TLS peer")
        return profile
    if len(frame.data) < 10:
        raise ReadingRejected(ReadingReason.MALFORMED, Step.ACCEPT_KNOWN_METER,
                              "telegram shorter than its link header")
    try:
        address = Address.from_bytes(frame.data[2:10])
    except UsageError as exc:  # pragma: no cover - 8 bytes always form an address
        raise ReadingRejected(ReadingReason.MALFORMED, Step.ACCEPT_KNOWN_METER) from exc
    profile = registry.by_address(address)
    if profile is None:
        raise ReadingRejected(ReadingReason.UNKNOWN_METER, Step.ACCEPT_KNOWN_METER,
                              "no meter profile for this wM-Bus address", address=str(address))
    return profile


def step_2_3_verify(profile: MeterProfile, frame: LmnFrame) -> None:
    """Seed 003 step 2.3: verify the data set; discard it on a wrong result.

    Wired (SML over LMN-TLS): the adapter validated the certificate path (SM-PKI, ``meter-tls``);
    here the certificate must be the one the profile pins (SHA-256 fingerprint) and the profile
    must be a wired one. Wireless: the protocol must match; the OMS MAC (mode 7) is checked by
    the codec in :func:`step_2_4_decrypt` before it decrypts, and reported as this step. SML
    value signatures: :func:`step_2_3_verify_value_signatures`, once the values are read.
    """
    if frame.transport is Transport.SML:
        assert frame.peer is not None
        if not profile.protocol.wired or frame.peer.fingerprint != profile.tls_fingerprint:
            raise ReadingRejected(ReadingReason.BAD_SIGNATURE, Step.VERIFY,
                                  "TLS certificate is not the one of the meter profile")
        return
    if profile.protocol.wired:
        raise ReadingRejected(ReadingReason.BAD_MAC, Step.VERIFY,
                              "a wired meter's profile does not accept radio telegrams")


_LMN_REASONS: Mapping[LmnReason, tuple[ReadingReason, Step]] = {
    LmnReason.BAD_CRC: (ReadingReason.BAD_CRC, Step.INTEGRITY),
    LmnReason.BAD_MAC: (ReadingReason.BAD_MAC, Step.VERIFY),
    LmnReason.WRONG_KEY: (ReadingReason.BAD_MAC, Step.VERIFY),
    LmnReason.REPLAYED: (ReadingReason.REPLAYED, Step.VERIFY),
    LmnReason.UNKNOWN_METER: (ReadingReason.UNKNOWN_METER, Step.ACCEPT_KNOWN_METER),
    LmnReason.TOO_LARGE: (ReadingReason.TOO_LARGE, Step.RECEIVE),
}


def _lmn_rejected(exc: FrameRejected, default: Step) -> ReadingRejected:
    reason, step = _LMN_REASONS.get(exc.reason, (ReadingReason.MALFORMED, default))
    return ReadingRejected(reason, step, exc.message, lmn_reason=exc.reason.value)


_WMBUS_MODES = {MeterProtocol.WMBUS_MODE5: SecurityMode.AES_CBC_IV,
                MeterProtocol.WMBUS_MODE7: SecurityMode.AES_CBC_NO_IV}


def step_2_4_decrypt(profile: MeterProfile, frame: LmnFrame, key: bytes | None,
                     counters: CounterTracker | None) -> SmlFile | Telegram:
    """Seed 003 step 2.4: decrypt the data set.

    SML: LMN-TLS decrypted the bytes in the adapter; the transport frame is decoded here
    (framing, CRCs, grammar – their failures are reported as steps 3.2 and 3.1). wM-Bus: the
    OMS codec verifies (mode 7 MAC and message counter: step 2.3), decrypts with the meter's key
    and checks the ``2F 2F`` marker (mode 5: a wrong key is ``BAD_MAC``). A telegram whose
    security mode is not the profile's is ``BAD_MAC``.
    """
    if frame.transport is Transport.SML:
        try:
            return decode_frame(frame.data)
        except FrameRejected as exc:
            raise _lmn_rejected(exc, Step.EVALUATE) from None
    try:
        telegram = decode_telegram(frame.data, key, counters=counters)
    except FrameRejected as exc:
        raise _lmn_rejected(exc, Step.DECRYPT) from None
    if telegram.tpl.mode is not _WMBUS_MODES[profile.protocol]:
        raise ReadingRejected(ReadingReason.BAD_MAC, Step.VERIFY, "telegram not protected with "
                              "the security mode of the meter profile",
                              mode=int(telegram.tpl.mode))
    return telegram


def _sml_time(t: SmlTime | None) -> datetime | None:
    if isinstance(t, Timestamp | LocalTimestamp):
        return t.datetime.astimezone(UTC)
    return None  # secIndex: not an absolute time


def _obis_text(name: bytes) -> str | None:
    text = _OBIS_TEXTS.get(name)
    if text is None:
        if len(name) != 6:
            return None
        a, b, c, d, e, f = name
        text = f"{a}-{b}:{c}.{d}.{e}*{f}"
        if len(_OBIS_TEXTS) < 4096:
            _OBIS_TEXTS[bytes(name)] = text
    return text


#: OBIS names seen on the LMN and their text (a meter sends the same few codes every time)
_OBIS_TEXTS: dict[bytes, str] = {}


#: domain separation of the imsys SML value-signature input [I]
SIGNATURE_CONTEXT = b"imsys-sml-value-signature/1\x00"


def signed_value_input(server_id: bytes, obj_name: bytes, unit: int, scaler: int, value: int,
                       time: int, status: int | None) -> bytes:
    """What an SML ``valueSignature`` covers in imsys *[I]* (the TR's layout is not public):
    :data:`SIGNATURE_CONTEXT` ‖ u8 len(serverId) ‖ serverId ‖ objName (6) ‖ u8 unit ‖ i8 scaler
    ‖ i72 value ‖ u32 time (``actSensorTime``/``valTime`` seconds) ‖ u32 status (0 if absent),
    integers big-endian. Signed with ECDSA and the hash of the key's curve (TR-03116-3)."""
    return b"".join((SIGNATURE_CONTEXT, bytes((len(server_id),)), server_id, obj_name,
                     bytes((unit & 0xFF, scaler & 0xFF)), value.to_bytes(9, "big", signed=True),
                     (time & 0xFFFFFFFF).to_bytes(4, "big"),
                     (status or 0).to_bytes(4, "big")))


def _time_raw(t: SmlTime | None) -> int:
    if t is None:
        return 0
    return t.timestamp if isinstance(t, LocalTimestamp) else t.value


def _sml_value(server_id: bytes, name: bytes, value: object, scaler: int | None,
               unit: object, status: int | None, period: datetime | None,
               signature: bytes | None, time: SmlTime | None) -> MeterValue | None:
    """A measured value, or None for an identity entry (device id, manufacturer, key)."""
    if unit is None and (value is None or isinstance(value, bytes)):
        return None
    obis = _obis_text(name)
    if (obis is None or type(value) is not int or unit is None
            or (status is not None and not 0 <= status <= 0xFFFFFFFF)
            or (scaler is not None and not -128 <= scaler <= 127)
            or not -(2**71) <= value < 2**71):
        raise ReadingRejected(ReadingReason.MALFORMED, Step.EVALUATE,
                              "a measured value needs an OBIS code, an integer, a unit and at "
                              "most a 32-bit status word")
    signed = None if signature is None else signed_value_input(
        server_id, name, int(cast(int, unit)), int(scaler or 0), value, _time_raw(time), status)
    return MeterValue(obis, value, int(scaler or 0), int(cast(int, unit)), status, period,
                      signature, signed)


def _evaluate_sml(file: SmlFile) -> Evaluated:
    server: bytes | None = None
    values: list[MeterValue] = []
    meter_time: datetime | None = None
    profile = False
    for message in file.messages:
        body = message.body
        if isinstance(body, OpenResponse | CloseResponse):
            continue
        if isinstance(body, AttentionResponse):
            raise ReadingRejected(ReadingReason.METER_ATTENTION, Step.EVALUATE,
                                  "the meter answered with an attention",
                                  attention=body.attention_number.hex())
        if isinstance(body, GetListResponse):
            sid, when = body.server_id, _sml_time(body.act_sensor_time)
            for e in body.val_list:
                v = _sml_value(sid, e.obj_name, e.value, e.scaler, e.unit, e.status, None,
                               e.value_signature, body.act_sensor_time)
                if v is not None:
                    values.append(v)
        elif isinstance(body, GetProfileListResponse):
            sid, when, profile = body.server_id, _sml_time(body.act_time), True
            period = _sml_time(body.val_time)
            if period is None or not 0 <= body.status <= 0xFFFFFFFF:
                raise ReadingRejected(ReadingReason.MALFORMED, Step.EVALUATE,
                                      "a profile period needs an absolute valTime and a 32-bit "
                                      "status word")
            for p in body.period_list:
                v = _sml_value(sid, p.obj_name, p.value, p.scaler, p.unit, body.status,
                               period, p.value_signature, body.val_time)
                if v is not None:
                    values.append(v)
        else:
            raise ReadingRejected(ReadingReason.MALFORMED, Step.EVALUATE,
                                  "not a response a meter sends",
                                  message=type(body).__name__)
        if server is not None and sid != server:
            raise ReadingRejected(ReadingReason.MALFORMED, Step.EVALUATE,
                                  "one frame names two server ids")
        server = sid
        if when is not None:
            meter_time = when
    if server is None or not values:
        raise ReadingRejected(ReadingReason.MALFORMED, Step.EVALUATE, "no measured values")
    return Evaluated(server.hex(), tuple(values), meter_time, _ZERO, profile)


#: (medium digit of the meter id, wM-Bus quantity, storage number) → (OBIS, DLMS unit)
WMBUS_CHANNELS: Mapping[tuple[str, str, int], tuple[str, int]] = {
    ("7", "volume", 0): ("7-0:3.0.0*255", 13),
    ("7", "volume", 1): ("7-0:3.1.0*255", 13),
    ("8", "volume", 0): ("8-0:1.0.0*255", 13),
    ("9", "volume", 0): ("9-0:1.0.0*255", 13),
    ("6", "energy", 0): ("6-0:1.0.0*255", 30),
    ("6", "volume", 0): ("6-0:2.0.0*255", 13),
    ("6", "power", 0): ("6-0:8.0.0*255", 27),
    ("6", "volume flow", 0): ("6-0:9.0.0*255", 14),
    ("6", "flow temperature", 0): ("6-0:10.0.0*255", 9),
    ("6", "return temperature", 0): ("6-0:11.0.0*255", 9),
    ("6", "temperature difference", 0): ("6-0:12.0.0*255", 6),
}
#: records that are not measured values
_WMBUS_META = frozenset({"date and time", "date", "error flags"})


def _type_f_time(value: DateTimeF) -> datetime:
    if value.invalid:
        raise ValueError("invalid time")
    year = 2000 + value.year if not value.hundred_year else 1900 + 100 * value.hundred_year \
        + value.year
    local = datetime(year, value.month, value.day, value.hour, value.minute)
    # the summer-time flag resolves the repeated hour in autumn
    return local.replace(tzinfo=METER_TIMEZONE, fold=0 if value.summer_time else 1
                         ).astimezone(UTC)


def _evaluate_wmbus(profile: MeterProfile, telegram: Telegram) -> Evaluated:
    medium = profile.meter_id[0]
    values: list[MeterValue] = []
    status: int | None = None
    meter_time: datetime | None = None
    pending: list[DataRecord] = []
    for r in telegram.records:
        quantity = r.info.quantity
        if quantity == "error flags" and r.storage == 0 and type(r.value) is int:
            status = r.value
        elif quantity == "date and time" and r.storage == 0 and isinstance(r.value, DateTimeF):
            try:
                meter_time = _type_f_time(r.value)
            except ValueError as exc:
                raise ReadingRejected(ReadingReason.MALFORMED, Step.EVALUATE,
                                      "invalid meter date and time") from exc
        elif quantity not in _WMBUS_META:
            pending.append(r)
    if status is None:  # no FNN word: derive the fault bits from the TPL status byte
        tpl = telegram.tpl.status
        status = 0x4 | (MeterStatusBit.FATAL_ERROR if tpl & 0x08 else 0) | (
            MeterStatusBit.MANIPULATION if tpl & 0x10 else 0)
    if not 0 <= status <= 0xFFFFFFFF:
        raise ReadingRejected(ReadingReason.MALFORMED, Step.EVALUATE, "status word not 32 bit")
    for r in pending:
        channel = WMBUS_CHANNELS.get((medium, r.info.quantity, r.storage))
        if channel is None or type(r.value) is not int:
            raise ReadingRejected(ReadingReason.UNEXPECTED_CHANNEL, Step.EVALUATE,
                                  "a wM-Bus record without an OBIS mapping",
                                  quantity=r.info.quantity, storage=r.storage)
        values.append(MeterValue(channel[0], r.value, r.info.exponent, channel[1], status))
    if not values:
        raise ReadingRejected(ReadingReason.MALFORMED, Step.EVALUATE, "no measured values")
    address = telegram.meter
    server = f"{manufacturer_text(address.manufacturer)}-{address.id_text}-{address.version}"
    return Evaluated(server, tuple(values), meter_time, _MINUTE)


def step_3_1_evaluate(profile: MeterProfile, content: SmlFile | Telegram) -> Evaluated:
    """Seed 003 step 3.1: evaluate the protocol ("wertet das jeweilige Fachprotokoll aus").

    SML: ``GetList.Res`` (current values, ``actSensorTime`` = the meter's clock) or
    ``GetProfileList.Res`` (one registration period per message, ``valTime``); ``Open``/
    ``Close`` responses frame them; an ``Attention.Res`` is ``METER_ATTENTION``; identity
    entries (device id, manufacturer) are not values. wM-Bus: data records mapped to OBIS codes
    by :data:`WMBUS_CHANNELS`, the date/time record (type F, local time) as the meter's clock,
    the error-flags record as the FNN meter status word.
    """
    if isinstance(content, SmlFile):
        return _evaluate_sml(content)
    return _evaluate_wmbus(profile, content)


def step_2_3_verify_value_signatures(profile: MeterProfile, evaluated: Evaluated,
                                     key: ec.EllipticCurvePublicKey | None) -> None:
    """Seed 003 step 2.3 for SML value signatures: with a ``signature_key`` in the profile,
    every value must carry a ``valueSignature`` that verifies over
    :func:`signed_value_input` (``BAD_SIGNATURE`` otherwise). The signature covers the values,
    so this part of the verification runs once step 3.1 has read them. Without a key in the
    profile, signatures a meter sends are kept out of the decision (docs/measurement.md)."""
    if key is None:
        return
    for v in evaluated.values:
        if v.signature is None or v.signed is None:
            raise ReadingRejected(ReadingReason.BAD_SIGNATURE, Step.VERIFY,
                                  "value without the signature the meter profile requires",
                                  channel=v.obis)
        try:
            ecdsa_verify(key, v.signature, v.signed)
        except Rejected as exc:
            raise ReadingRejected(ReadingReason.BAD_SIGNATURE, Step.VERIFY,
                                  "SML value signature does not verify",
                                  channel=v.obis) from exc


def step_3_2_check_integrity(profile: MeterProfile, frame: LmnFrame, evaluated: Evaluated,
                             digest: bytes, last: tuple[int, bytes] | None) -> None:
    """Seed 003 step 3.2: check the integrity of the values.

    The CRCs were verified while decoding (a mismatch is ``BAD_CRC`` of this step). Here: the
    frame names the profile's meter (SML server id, wM-Bus address), every value belongs to a
    channel of the profile (``UNEXPECTED_CHANNEL``), no register appears twice for one instant,
    and the frame is newer than the last accepted one of the meter (``REPLAYED``: meter time
    not after the last one, or the same frame again; see docs/measurement.md).
    """
    if frame.transport is Transport.SML:
        expected = server_id_of(profile.meter_id).hex()
    else:
        manufacturer, ident, version = wmbus_address_key(profile.meter_id)
        expected = f"{manufacturer}-{ident}-{version}"
    if evaluated.server != expected:
        raise ReadingRejected(ReadingReason.UNKNOWN_METER, Step.INTEGRITY,
                              "the frame names another meter than the one that sent it")
    channels = profile.channels
    seen: set[tuple[str, datetime | None]] = set()
    for v in evaluated.values:
        if v.obis not in channels:
            raise ReadingRejected(ReadingReason.UNEXPECTED_CHANNEL, Step.INTEGRITY,
                                  "value of a register the meter profile does not accept",
                                  channel=v.obis)
        key = (v.obis, v.period)
        if key in seen:
            raise ReadingRejected(ReadingReason.MALFORMED, Step.INTEGRITY,
                                  "the same register twice for one instant", channel=v.obis)
        seen.add(key)
    if last is None:
        return
    last_micros, last_digest = last
    if digest == last_digest:
        raise ReadingRejected(ReadingReason.REPLAYED, Step.INTEGRITY, "frame received before")
    marker = _marker(evaluated)
    if marker is None:
        return
    if marker < last_micros or (marker == last_micros and evaluated.profile):
        raise ReadingRejected(ReadingReason.REPLAYED, Step.INTEGRITY,
                              "meter time not after the last accepted frame")


def _marker(evaluated: Evaluated) -> int | None:
    """The replay marker of a frame: its first registration period (profile values) or the
    meter's clock (current values), in µs."""
    if evaluated.profile:
        return to_micros(min(v.period for v in evaluated.values if v.period is not None))
    return None if evaluated.meter_time is None else to_micros(evaluated.meter_time)


def _marker_after(evaluated: Evaluated) -> int | None:
    if evaluated.profile:
        return to_micros(max(v.period for v in evaluated.values if v.period is not None))
    return None if evaluated.meter_time is None else to_micros(evaluated.meter_time)


def step_3_3_timestamp(evaluated: Evaluated, clock: Clock) -> tuple[datetime, ...]:
    """Seed 003 step 3.3: stamp the values with the gateway's time.

    A current value (``GetList.Res``, wM-Bus) gets the gateway clock's time now; a value of a
    past registration period (``GetProfileList.Res``) gets its registration instant, which the
    meter clock check of step 3.4 covers. One time per value, in order.
    """
    now = clock.now()
    return tuple(v.period if v.period is not None else now for v in evaluated.values)


def meter_clock_deviation(meter_time: datetime, resolution: timedelta,
                          gateway_time: datetime) -> timedelta:
    """How far the meter's clock is from the gateway's: 0 if ``gateway_time`` falls inside the
    meter time's resolution interval ``[meter_time, meter_time + resolution]``, else the
    distance to it."""
    if gateway_time < meter_time:
        return meter_time - gateway_time
    if gateway_time > meter_time + resolution:
        return gateway_time - meter_time - resolution
    return _ZERO


def step_3_4_mark_validity(profile: MeterProfile, evaluated: Evaluated, received_at: datetime,
                           *, gateway_clock_valid: bool,
                           tolerance: timedelta = METER_CLOCK_TOLERANCE) -> Validity:
    """Seed 003 step 3.4: mark every value valid or invalid (facts.md §4.5, §4.6).

    * the gateway's clock is not valid → ``SYSTEM_TIME_INVALID`` (PTB 3), ``CLOCK_INVALID``;
    * the meter's clock (``actSensorTime`` / ``actTime`` / wM-Bus date-time) deviates from the
      gateway's reception time by more than ``tolerance`` (9 s) → ``PTB_TEMP_ERROR_IS_INVALID``
      (PTB 3), ``METER_ERROR``; with ``ClockOffPolicy.REJECT`` the frame is refused instead
      (``METER_CLOCK_OFF``);
    * per value, the meter's status word: fatal error → PTB 4; manipulation or magnetic
      influence → ``PTB_TEMP_ERROR_IS_INVALID`` (PTB 3) [I] – both ``METER_ERROR``.

    Returns the frame-level part; :func:`fnn_word` and :func:`value_flags` apply it per value.
    """
    smgw = SMGW_BASE
    flags = ReadingFlag.NONE
    if not gateway_clock_valid:
        smgw |= SmgwStatus.SYSTEM_TIME_INVALID
        flags |= ReadingFlag.CLOCK_INVALID
    clock_off = False
    if evaluated.meter_time is not None:
        deviation = meter_clock_deviation(evaluated.meter_time, evaluated.resolution,
                                          received_at)
        clock_off = deviation > tolerance
    if clock_off:
        if profile.clock_off is ClockOffPolicy.REJECT:
            raise ReadingRejected(ReadingReason.METER_CLOCK_OFF, Step.VALIDITY,
                                  "meter clock deviates beyond the threshold",
                                  threshold_s=tolerance.total_seconds())
        smgw |= SmgwStatus.PTB_TEMP_ERROR_IS_INVALID
        flags |= ReadingFlag.METER_ERROR
    meter_error = clock_off or any(
        v.status is not None and v.status & _METER_FAULTS for v in evaluated.values)
    return Validity(smgw, flags, clock_off, meter_error)


_METER_FAULTS = int(MeterStatusBit.FATAL_ERROR | MeterStatusBit.MANIPULATION
                    | MeterStatusBit.MAGNETIC_INFLUENCE)
_METER_INVALID = int(MeterStatusBit.MANIPULATION | MeterStatusBit.MAGNETIC_INFLUENCE)
_PTB_IS_INVALID = int(SmgwStatus.PTB_TEMP_ERROR_IS_INVALID)
_METER_ERROR_FLAG = int(ReadingFlag.METER_ERROR)


def fnn_word(validity: Validity, meter_status: int | None) -> int:
    """The 64-bit FNN status word stored with a value: SMGW half (upper 32 bits) as the gateway
    sets it, meter half (lower 32 bits) as the meter sent it (0 if it sent none)."""
    smgw = int(validity.smgw)
    status = meter_status or 0
    if status & _METER_INVALID:
        smgw |= SmgwStatus.PTB_TEMP_ERROR_IS_INVALID
    return smgw << 32 | status


def value_flags(validity: Validity, word: int) -> ReadingFlag:
    """The :class:`ReadingFlag` of one value: the frame's flags plus ``METER_ERROR`` when the
    word's PTB status is not valid for a meter reason."""
    flags = validity.flags
    status = word & 0xFFFFFFFF
    if status & _METER_FAULTS:
        flags |= ReadingFlag.METER_ERROR
    return flags


def build_readings(profile: MeterProfile, evaluated: Evaluated, stamps: tuple[datetime, ...],
                   validity: Validity) -> tuple[Reading, ...]:
    """The :class:`Reading` of every value: unchanged value, scaler and unit (the transformer
    factor is assigned by the profile, not multiplied in), the stamp of step 3.3, the flags and
    FNN word of step 3.4 – per value exactly :func:`fnn_word` and :func:`value_flags`, with the
    frame-level parts worked out once per frame."""
    meter_id = profile.meter_id
    smgw = int(validity.smgw)
    word_valid = smgw << 32
    word_invalid = (smgw | _PTB_IS_INVALID) << 32
    flags_valid = validity.flags
    flags_fault = flags_valid | ReadingFlag.METER_ERROR
    out = []
    for v, stamp in zip(evaluated.values, stamps, strict=True):
        status = v.status or 0
        word = (word_invalid if status & _METER_INVALID else word_valid) | status
        out.append(Reading(meter_id, v.obis, v.value, v.scaler, v.unit, stamp,
                           flags_fault if status & _METER_FAULTS else flags_valid, word))
    return tuple(out)


def _state_key(meter_id: str) -> str:
    return f"measurement.last.{meter_id.lower()}"


def step_4_1_store(store: ReadingStore, state: StateTable, frame: LmnFrame,
                   readings: tuple[Reading, ...], digest: bytes, marker: int | None,
                   previous: tuple[int, bytes] | None) -> list[int]:
    """Seed 003 step 4.1: store all time-stamped values unchangeably (append-only, hash-chained)
    together with the meter's replay state. Call inside the frame's transaction. A frame the
    store holds already is ``REPLAYED``."""
    source = ReadingSource.LMN_SML if frame.transport is Transport.SML else ReadingSource.WMBUS
    try:
        seqs = store.append_frame(readings, frame.received_at, source, digest)
    except StoreRejected as exc:
        if exc.reason is StoreReason.DUPLICATE:
            raise ReadingRejected(ReadingReason.REPLAYED, Step.STORE,
                                  "frame stored before") from exc
        raise
    if marker is None and previous is not None:
        marker = previous[0]
    state.set(_state_key(readings[0].meter_id),
              (marker if marker is not None else -(2**63)).to_bytes(8, "big", signed=True)
              + digest)
    return seqs


def step_5_2_log(logs: GatewayLogs, profile: MeterProfile, seqs: list[int],
                 readings: tuple[Reading, ...], validity: Validity,
                 consumer_log: ConsumerLog | None = None) -> None:
    """Seed 003 step 5.2: log the action. The consumer log of the profile's consumer records the
    stored values ("Aufzeichnung"); the calibration log records a meter error (status word, meter
    clock) and an invalid gateway clock. Call inside the frame's transaction."""
    invalid = sum(1 for r in readings if not r.valid)
    consumer = consumer_log or logs.consumer(profile.consumer_id)
    consumer.append(
        Level.INFO, Outcome.SUCCESS,
        f"Aufzeichnung: {len(readings)} Messwerte von Zähler {profile.meter_id} gespeichert "
        f"(seq {seqs[0]}–{seqs[-1]}, ungültig {invalid})",
        event=ConsumerEvent.RECORDING)
    meter_error = validity.meter_error or any(
        int(r.flags) & _METER_ERROR_FLAG for r in readings)
    if meter_error:
        cause = "Zähleruhr abweichend" if validity.meter_clock_off else "Statuswort"
        logs.calibration.append(
            Level.WARNING, Outcome.SUCCESS,
            f"Messwerte von Zähler {profile.meter_id} als ungültig gespeichert: {cause} "
            f"(seq {seqs[0]}–{seqs[-1]})", event=CalibrationEvent.METER_ERROR)
    if validity.flags & ReadingFlag.CLOCK_INVALID:
        logs.calibration.append(
            Level.WARNING, Outcome.SUCCESS,
            f"Messwerte bei ungültiger Systemzeit gespeichert (seq {seqs[0]}–{seqs[-1]})",
            event=CalibrationEvent.CLOCK_INVALID)


def log_rejection(logs: GatewayLogs, transport: Transport, error: ReadingRejected,
                  profile: MeterProfile | None) -> None:
    """Seed 003 step 5.2 for a refused frame: the system log (reason, step, transport; no meter
    or consumer data) and, for an error of the meter, the calibration log."""
    with logs.db.transaction():
        logs.system.append(Level.WARNING, Outcome.FAILURE, "measurement: frame rejected",
                           event=SystemEvent.INPUT_REJECTED, reason=error.reason,
                           step=error.step, transport=transport)
        if error.reason in METER_ERRORS:
            who = profile.meter_id if profile is not None else "unbekannt"
            logs.calibration.append(
                Level.WARNING, Outcome.FAILURE,
                f"Messwerte von Zähler {who} verworfen: {error.reason.value} "
                f"(Schritt {error.step.value})", event=CalibrationEvent.METER_ERROR)


# --------------------------------------------------------------------------- the core


KeyResolver = Callable[[str], bytes]


def _no_resolver(label: str) -> bytes:
    raise UsageError(f"no security-module key resolver for label {label!r}")


class Measurement:
    """The measurement process of one gateway: :meth:`ingest` runs table 1 for a frame.

    ``registry`` holds the meter profiles; ``key_resolver`` turns a profile's
    ``aes_key_label`` into the AES key (the security module); ``counters`` keeps the OMS
    message counters (mode 7); ``gateway_clock_valid`` says whether the gateway's own time is
    trustworthy (time synchronisation) and defaults to always.
    """

    def __init__(self, db: Database, clock: Clock, registry: MeterRegistry | Iterable[
            MeterProfile], *, logs: GatewayLogs | None = None,
                 store: ReadingStore | None = None,
                 key_resolver: KeyResolver = _no_resolver,
                 counters: CounterTracker | None = None,
                 gateway_clock_valid: Callable[[], bool] = lambda: True,
                 meter_clock_tolerance: timedelta = METER_CLOCK_TOLERANCE,
                 max_frame_size: int = MAX_FRAME_SIZE) -> None:
        # A frame's readings, replay state and log entry share one transaction, so the store's
        # own transactions nest as SAVEPOINTs (Database keeps their journals in memory).
        self.db = db
        self.clock = clock
        self.registry = registry if isinstance(registry, MeterRegistry) else MeterRegistry(
            registry)
        self.logs = logs or GatewayLogs(db, clock)
        self.store = store or ReadingStore(db)
        self.state = StateTable(db)
        self.key_resolver = key_resolver
        self.counters: CounterTracker = counters or MemoryCounterTracker()
        self.gateway_clock_valid = gateway_clock_valid
        if not _ZERO <= meter_clock_tolerance < timedelta(minutes=7, seconds=30):
            raise UsageError("meter clock tolerance must be in [0, 7.5 min)")
        self.tolerance = meter_clock_tolerance
        self.max_frame_size = max_frame_size
        self._last: dict[str, tuple[int, bytes] | None] = {}
        self._consumer_logs: dict[str, ConsumerLog] = {}
        self._signature_keys: dict[bytes, ec.EllipticCurvePublicKey] = {}

    def last_accepted(self, meter_id: str) -> datetime | None:
        """The replay marker of the meter's last accepted frame (meter time or last
        registration period), e.g. where a pull request continues."""
        last = self._last_state(meter_id)
        if last is None or last[0] == -(2**63):
            return None
        return from_micros(last[0])

    def _last_state(self, meter_id: str) -> tuple[int, bytes] | None:
        if meter_id not in self._last:
            raw = self.state.get(_state_key(meter_id))
            self._last[meter_id] = (None if not isinstance(raw, bytes) else
                                    (int.from_bytes(raw[:8], "big", signed=True), raw[8:]))
        return self._last[meter_id]

    def _signature_key(self, profile: MeterProfile) -> ec.EllipticCurvePublicKey | None:
        if profile.signature_key is None:
            return None
        key = self._signature_keys.get(profile.signature_key)
        if key is None:
            key = self._signature_keys[profile.signature_key] = signature_public_key(profile)
        return key

    def _consumer_log(self, consumer_id: str) -> ConsumerLog:
        log = self._consumer_logs.get(consumer_id)
        if log is None:
            log = self._consumer_logs[consumer_id] = self.logs.consumer(consumer_id)
        return log

    def _key(self, profile: MeterProfile) -> bytes | None:
        if profile.protocol.wired:
            return None
        if profile.aes_key is not None:
            return profile.aes_key
        assert profile.aes_key_label is not None
        return self.key_resolver(profile.aes_key_label)

    def ingest(self, frame: LmnFrame) -> IngestResult:
        """Run seed 003 table 1 (steps 2.1–5.2) for one frame.

        Returns what was stored; raises :class:`ReadingRejected` after logging the refusal, with
        nothing of the frame stored.
        """
        profile: MeterProfile | None = None
        try:
            digest = step_2_1_receive(frame, self.max_frame_size)
            profile = step_2_2_accept_known_meter(self.registry, frame)
            step_2_3_verify(profile, frame)
            pending = _PendingCounters(self.counters)
            content = step_2_4_decrypt(profile, frame, self._key(profile), pending)
            evaluated = step_3_1_evaluate(profile, content)
            step_2_3_verify_value_signatures(profile, evaluated, self._signature_key(profile))
            last = self._last_state(profile.meter_id)
            step_3_2_check_integrity(profile, frame, evaluated, digest, last)
            stamps = step_3_3_timestamp(evaluated, self.clock)
            validity = step_3_4_mark_validity(
                profile, evaluated, frame.received_at,
                gateway_clock_valid=self.gateway_clock_valid(), tolerance=self.tolerance)
            readings = build_readings(profile, evaluated, stamps, validity)
            marker = _marker_after(evaluated)
            with self.db.transaction():
                seqs = step_4_1_store(self.store, self.state, frame, readings, digest, marker,
                                      last)
                step_5_2_log(self.logs, profile, seqs, readings, validity,
                             self._consumer_log(profile.consumer_id))
        except ReadingRejected as exc:
            log_rejection(self.logs, frame.transport, exc, profile)
            raise
        pending.commit()
        self._last[profile.meter_id] = (marker if marker is not None else (
            last[0] if last is not None else -(2**63)), digest)
        return IngestResult(profile.meter_id, tuple(seqs), readings)


__all__ = [
    "MAX_FRAME_SIZE",
    "METER_CLOCK_TOLERANCE",
    "METER_ERRORS",
    "SIGNATURE_CONTEXT",
    "SMGW_BASE",
    "WMBUS_CHANNELS",
    "Evaluated",
    "IngestResult",
    "LmnFrame",
    "Measurement",
    "MeterRegistry",
    "MeterStatusBit",
    "MeterValue",
    "PeerIdentity",
    "PtbStatus",
    "ReadingReason",
    "ReadingRejected",
    "SmgwStatus",
    "Step",
    "Transport",
    "Validity",
    "build_readings",
    "fnn_word",
    "log_rejection",
    "meter_clock_deviation",
    "ptb_status",
    "server_id_of",
    "signed_value_input",
    "step_2_1_receive",
    "step_2_2_accept_known_meter",
    "step_2_3_verify",
    "step_2_3_verify_value_signatures",
    "step_2_4_decrypt",
    "step_3_1_evaluate",
    "step_3_2_check_integrity",
    "step_3_3_timestamp",
    "step_3_4_mark_validity",
    "step_4_1_store",
    "step_5_2_log",
    "value_flags",
]
