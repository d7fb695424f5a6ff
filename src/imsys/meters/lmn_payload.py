"""What a simulated meter sends on the LMN: snapshots → SML files and wM-Bus telegrams (sans-io).

Nothing here opens a socket, reads a file or a clock; the adapters :mod:`.lmn_tls` and
:mod:`.radio` move the bytes. Three encoders, each a small stateful object (it owns the
counters a real meter keeps):

* :class:`SmlPushEncoder` – one SML file per snapshot, in one transport-v1 frame:
  ``OpenResponse``, ``GetListResponse`` (``valList``: device id, manufacturer, then every reading
  of the snapshot with OBIS, status word, unit, scaler, value) and ``CloseResponse``. This is what
  a wired meter pushes.
* :class:`SmlResponder` – the meter as an SML server (pull mode): answers a gateway's request
  file (``OpenRequest``, ``GetListRequest``, ``GetProfileListRequest``, ``CloseRequest``) with
  one response file. A ``GetProfileList.Req`` is answered with one ``GetProfileList.Res`` per
  registration period (``regPeriod`` = 900 s by default) between ``beginTime`` and ``endTime``,
  with the register values computed by :meth:`MeterSimulator.series`.
* :class:`WmbusEncoder` – an OMS telegram per snapshot: ``SND_NR`` with a short (CI 0x7A) or long
  (CI 0x72) transport header, security mode 5 (AES-CBC, IV from address and access number) or 7
  (AFL with message counter and CMAC, per-message keys), data records for the registers,
  temperatures, power, flow, the meter's date and time and the FNN status word.

Conventions imsys defines here (the TR is silent, marked [I] in ``docs/meters.md``):

* The SML server id is the 10-byte DIN 43863-5 id (:attr:`MeterId.server_id`).
* Every ``SML_ListEntry`` carries the 32-bit FNN meter status word in ``status``;
  ``actSensorTime`` is the meter's clock as ``SML_Timestamp`` (Unix seconds).
* wM-Bus address: M-field = the FLAG manufacturer code, identification number = the eight-digit
  serial as BCD (so ``Address.id_text`` prints the serial), version = the production block,
  device type from the medium (gas 0x03, heat 0x04, water 0x07).
* The FNN status word travels as an "error flags" record (``DIF 04 VIF FD 17``); the TPL status
  byte says "temporary error" (0x10) for manipulation or magnetic influence and "permanent
  error" (0x08) for a fatal error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from imsys.core.errors import Reason, Rejected, UsageError
from imsys.lmn.errors import SmlRejected
from imsys.lmn.sml import (
    AttentionNumber,
    AttentionResponse,
    CloseRequest,
    CloseResponse,
    CrcKind,
    GetListRequest,
    GetListResponse,
    GetProfileListRequest,
    GetProfileListResponse,
    ListEntry,
    LocalTimestamp,
    OpenRequest,
    OpenResponse,
    PeriodEntry,
    SecIndex,
    SmlFile,
    SmlMessage,
    SmlTime,
    Timestamp,
    encode_frame,
)
from imsys.lmn.sml.units import UNIT_BY_CODE
from imsys.lmn.wmbus import (
    SND_NR,
    Address,
    Afl,
    Coding,
    DataRecord,
    DateTimeF,
    FrameFormat,
    LinkHeader,
    SecurityMode,
    Telegram,
    TransportHeader,
    encode_telegram,
    manufacturer_code,
)
from imsys.meters import registers as R
from imsys.meters.ids import Medium, MeterId
from imsys.meters.registers import Reading, Unit, obis_hex
from imsys.meters.simulator import MeterKind, MeterSimulator, MeterSnapshot
from imsys.meters.status import MeterStatus

log = logging.getLogger(__name__)

#: OBIS of the device id entry (value: the 10-byte server id) and of the manufacturer entry
DEVICE_ID_OBIS = bytes.fromhex("0100000009ff")
MANUFACTURER_OBIS = bytes.fromhex("8181c78203ff")
#: registration period of load-profile answers, seconds
DEFAULT_REG_PERIOD = 900
#: most periods in one GetProfileList answer: six days of quarter hours, about 50 KB – below
#: the 64 KiB frame bound of SmlStreamDecoder
DEFAULT_MAX_PERIODS = 576

_OBIS_BYTES: dict[str, bytes] = {}


def obis_bytes(obis: str) -> bytes:
    """The 6-byte SML ``objName`` of ``"1-0:1.8.0*255"`` (cached: called per value)."""
    b = _OBIS_BYTES.get(obis)
    if b is None:
        b = _OBIS_BYTES[obis] = bytes.fromhex(obis_hex(obis))
    return b


def as_meter_id(meter_id: MeterId | str) -> MeterId:
    """``meter_id`` as a :class:`MeterId` (parses ``"1EMH0012345678"``; Rejected otherwise)."""
    return meter_id if isinstance(meter_id, MeterId) else MeterId.parse(str(meter_id))


def sml_time(when: datetime) -> Timestamp:
    """``SML_Timestamp`` (Unix seconds) of an aware datetime."""
    if when.tzinfo is None:
        raise UsageError("SML times need timezone-aware datetimes")
    return Timestamp(int(when.timestamp()))


def _sml_unit(unit: int) -> int:
    return UNIT_BY_CODE[int(unit)]


# --------------------------------------------------------------------------- SML push


def snapshot_entries(snapshot: MeterSnapshot, server_id: bytes | None = None, *,
                     manufacturer: str | None = None) -> tuple[ListEntry, ...]:
    """The ``valList`` of a snapshot: [device id, manufacturer,] then one entry per reading."""
    status = snapshot.status
    out: list[ListEntry] = []
    if server_id is not None:
        out.append(ListEntry(DEVICE_ID_OBIS, None, None, None, None, server_id, None))
    if manufacturer is not None:
        out.append(ListEntry(MANUFACTURER_OBIS, None, None, None, None,
                             manufacturer.encode("ascii"), None))
    # one entry per reading, ~20 per frame and 35 040 frames for a simulated year: built
    # without the NamedTuple constructor's Python frame
    unit_by_code = UNIT_BY_CODE
    names = _OBIS_BYTES
    new = tuple.__new__
    for obis, value, scaler, unit in snapshot.readings:
        name = names.get(obis) or obis_bytes(obis)
        out.append(new(ListEntry, (name, status, None, unit_by_code[unit], scaler, value, None)))
    return tuple(out)


class SmlPushEncoder:
    """Snapshots → SML transport frames, as a wired meter pushes them.

    Each frame is one SML file with three messages; the transaction ids are the 4-byte file
    number followed by the message index, and ``reqFileId`` is the file number.
    """

    def __init__(self, meter_id: MeterId | str, *, crc: CrcKind = CrcKind.X25,
                 identity_entries: bool = True, first_file: int = 1) -> None:
        self.meter_id = as_meter_id(meter_id)
        self.server_id = self.meter_id.server_id
        self.crc = crc
        self.identity_entries = identity_entries
        if not 0 <= first_file <= 0xFFFFFFFF:
            raise UsageError("first_file must fit 32 bits")
        self.file_number = first_file

    def _next_file(self) -> bytes:
        n = self.file_number
        self.file_number = (n + 1) & 0xFFFFFFFF
        return n.to_bytes(4, "big")

    def file(self, snapshot: MeterSnapshot) -> SmlFile:
        """The SML file for one snapshot (advances the file counter)."""
        if snapshot.meter_id != str(self.meter_id):
            raise UsageError(f"snapshot of {snapshot.meter_id}, encoder for {self.meter_id}")
        fid = self._next_file()
        ident = self.identity_entries
        entries = snapshot_entries(snapshot, self.server_id if ident else None,
                                   manufacturer=self.meter_id.manufacturer if ident else None)
        sid = self.server_id
        return SmlFile((
            SmlMessage(transaction_id=fid + b"\x00",
                       body=OpenResponse(req_file_id=fid, server_id=sid)),
            SmlMessage(transaction_id=fid + b"\x01",
                       body=GetListResponse(server_id=sid,
                                            act_sensor_time=sml_time(snapshot.timestamp),
                                            val_list=entries)),
            SmlMessage(transaction_id=fid + b"\x02", body=CloseResponse()),
        ), self.crc)

    def frame(self, snapshot: MeterSnapshot) -> bytes:
        """One transport-v1 frame for ``snapshot``."""
        return encode_frame(self.file(snapshot))


# --------------------------------------------------------------------------- SML pull


def _to_datetime(t: SmlTime | None, epoch: datetime) -> datetime | None:
    """An ``SML_Time`` of a request as UTC; a ``secIndex`` counts from the meter's epoch [I]."""
    if t is None:
        return None
    if isinstance(t, Timestamp):
        return datetime.fromtimestamp(t.value, UTC)
    if isinstance(t, LocalTimestamp):
        return datetime.fromtimestamp(t.timestamp, UTC)
    if isinstance(t, SecIndex):
        return epoch + timedelta(seconds=t.value)
    raise UsageError(f"not an SML_Time: {t!r}")  # pragma: no cover - closed union


def _ceil_to(when: datetime, step_s: int) -> datetime:
    s = int(when.timestamp())
    if when.microsecond:
        s += 1
    return datetime.fromtimestamp(-(-s // step_s) * step_s, UTC)


def _floor_to(when: datetime, step_s: int) -> datetime:
    return datetime.fromtimestamp(int(when.timestamp()) // step_s * step_s, UTC)


def profile_periods(simulator: MeterSimulator, begin: datetime | None, end: datetime | None,
                    now: datetime, *, reg_period: int = DEFAULT_REG_PERIOD,
                    objects: Iterable[bytes] | None = None,
                    max_periods: int = DEFAULT_MAX_PERIODS,
                    server_id: bytes | None = None,
                    tree_path: tuple[bytes, ...] = ()) -> tuple[GetProfileListResponse, ...]:
    """``GetProfileList.Res`` bodies for the registration instants in ``[begin, end]``.

    Instants are multiples of ``reg_period`` seconds (UTC), not before the meter's epoch and not
    after ``now``; at most ``max_periods`` (the earliest – a gateway asks again from the last
    ``valTime``). Values come from :meth:`MeterSimulator.series`; the status word of each period
    from :meth:`MeterSimulator.snapshot_at`. ``objects`` limits the registers (6-byte OBIS).
    """
    if reg_period <= 0:
        raise UsageError("reg_period must be positive")
    first = _ceil_to(max(begin or simulator.epoch, simulator.epoch), reg_period)
    last = _floor_to(min(end or now, now), reg_period)
    if last < first:
        return ()
    count = int((last - first).total_seconds()) // reg_period + 1
    if count > max_periods:
        last = first + timedelta(seconds=reg_period * (max_periods - 1))
    series = simulator.series(first, last, timedelta(seconds=reg_period))
    wanted = None if objects is None else set(objects)
    columns = [(obis_bytes(obis), series.scalers[obis], values)
               for obis, values in series.registers.items()
               if wanted is None or obis_bytes(obis) in wanted]
    if not columns:
        return ()
    units = {obis_bytes(o): _sml_unit(_register_unit(o)) for o in series.registers}
    sid = server_id if server_id is not None else as_meter_id(simulator.meter_id).server_id
    act_time = sml_time(simulator.meter_time(now))
    lists = [(name, units[name], scaler, values.tolist()) for name, scaler, values in columns]
    out = []
    for k, naive in enumerate(series.times.tolist()):
        snap = simulator.snapshot_at(naive.replace(tzinfo=UTC))
        entries = tuple(PeriodEntry(name, unit, scaler, values[k])
                        for name, unit, scaler, values in lists)
        out.append(GetProfileListResponse(
            server_id=sid, act_time=act_time, reg_period=reg_period, parameter_tree_path=tree_path,
            val_time=sml_time(snap.timestamp), status=snap.status, period_list=entries))
    return tuple(out)


def _register_unit(obis: str) -> Unit:
    return Unit.WATT_HOUR if obis in (R.IMPORT_ENERGY, R.EXPORT_ENERGY, R.HEAT_ENERGY) \
        else Unit.CUBIC_METRE


class SmlResponder:
    """The meter as an SML server: a request file in, one response file out (pull mode).

    Answers ``OpenRequest`` → ``OpenResponse``, ``GetListRequest`` → ``GetListResponse`` (the
    current snapshot, read from the simulator's injected clock), ``GetProfileListRequest`` → one
    ``GetProfileListResponse`` per period, ``CloseRequest`` → ``CloseResponse``. Every response
    carries its request's transaction id and group. Refusals are ``AttentionResponse`` messages:
    a request for another server id → ``RECIPIENT_NOT_FOUND``, a message type the meter does not
    serve → ``UNKNOWN_SML_ID``, a profile request with nothing to read → ``CANNOT_READ``, an
    unparseable frame (:meth:`reject`) → ``UNPARSEABLE``. Each refusal is also logged.
    """

    def __init__(self, simulator: MeterSimulator, meter_id: MeterId | str | None = None, *,
                 crc: CrcKind = CrcKind.X25, reg_period: int = DEFAULT_REG_PERIOD,
                 max_periods: int = DEFAULT_MAX_PERIODS, identity_entries: bool = True) -> None:
        self.simulator = simulator
        self.meter_id = as_meter_id(meter_id if meter_id is not None else simulator.meter_id)
        self.server_id = self.meter_id.server_id
        self.crc = crc
        if reg_period <= 0 or max_periods <= 0:
            raise UsageError("reg_period and max_periods must be positive")
        self.reg_period = reg_period
        self.max_periods = max_periods
        self.identity_entries = identity_entries
        #: how many request messages were refused with an attention response
        self.refused = 0

    # ------------------------------------------------------------------ helpers

    def _attention(self, request: SmlMessage | None, number: AttentionNumber, text: str
                   ) -> SmlMessage:
        self.refused += 1
        log.warning("meter %s refuses SML request: %s", self.meter_id, text)
        return SmlMessage(
            transaction_id=request.transaction_id if request else b"\x00",
            group_no=request.group_no if request else 0,
            body=AttentionResponse(server_id=self.server_id,
                                   attention_number=number.value,
                                   attention_message=text.encode("utf-8")[:64] or None))

    def _for_me(self, server_id: bytes | None) -> bool:
        return server_id is None or server_id == self.server_id

    # ------------------------------------------------------------------ answers

    def get_list(self, request: GetListRequest) -> GetListResponse:
        """The current values (reads the simulator's clock)."""
        snap = self.simulator.sample()
        ident = self.identity_entries
        entries = snapshot_entries(snap, self.server_id if ident else None,
                                   manufacturer=self.meter_id.manufacturer if ident else None)
        return GetListResponse(client_id=request.client_id, server_id=self.server_id,
                               list_name=request.list_name,
                               act_sensor_time=sml_time(snap.timestamp), val_list=entries)

    def get_profile_list(self, request: GetProfileListRequest, now: datetime
                         ) -> tuple[GetProfileListResponse, ...]:
        """One response per registration period in the requested window (may be empty)."""
        epoch = self.simulator.epoch
        return profile_periods(
            self.simulator, _to_datetime(request.begin_time, epoch),
            _to_datetime(request.end_time, epoch), now, reg_period=self.reg_period,
            objects=request.object_list, max_periods=self.max_periods,
            server_id=self.server_id, tree_path=tuple(request.parameter_tree_path))

    def respond(self, request: SmlFile, now: datetime | None = None) -> SmlFile:
        """The response file for a request file (``now``: default the simulator's clock)."""
        out: list[SmlMessage] = []
        for m in request.messages:
            body = m.body
            same = {"transaction_id": m.transaction_id, "group_no": m.group_no}
            if isinstance(body, OpenRequest):
                if not self._for_me(body.server_id):
                    out.append(self._attention(m, AttentionNumber.RECIPIENT_NOT_FOUND,
                                               f"server id {body.server_id!r} is not mine"))
                    continue
                out.append(SmlMessage(**same, body=OpenResponse(
                    codepage=body.codepage, client_id=body.client_id,
                    req_file_id=body.req_file_id, server_id=self.server_id,
                    sml_version=body.sml_version)))
            elif isinstance(body, GetListRequest):
                if not self._for_me(body.server_id):
                    out.append(self._attention(m, AttentionNumber.RECIPIENT_NOT_FOUND,
                                               "GetList.Req for another server id"))
                    continue
                out.append(SmlMessage(**same, body=self.get_list(body)))
            elif isinstance(body, GetProfileListRequest):
                if not self._for_me(body.server_id):
                    out.append(self._attention(m, AttentionNumber.RECIPIENT_NOT_FOUND,
                                               "GetProfileList.Req for another server id"))
                    continue
                answers = self.get_profile_list(
                    body, now if now is not None else self.simulator.clock.now())
                if not answers:
                    out.append(self._attention(m, AttentionNumber.CANNOT_READ,
                                               "no registration period in the requested window"))
                    continue
                out.extend(SmlMessage(**same, body=a) for a in answers)
            elif isinstance(body, CloseRequest):
                out.append(SmlMessage(**same, body=CloseResponse()))
            else:
                out.append(self._attention(m, AttentionNumber.UNKNOWN_SML_ID,
                                           f"{type(body).__name__} is not served by this meter"))
        return SmlFile(tuple(out), self.crc)

    def respond_frame(self, request: SmlFile, now: datetime | None = None) -> bytes:
        """:meth:`respond` as one transport frame."""
        return encode_frame(self.respond(request, now))

    def reject(self, error: SmlRejected | Rejected) -> bytes:
        """The answer to a frame that could not be decoded: an ``UNPARSEABLE`` attention."""
        reason = getattr(error.reason, "value", str(error.reason))
        msg = self._attention(None, AttentionNumber.UNPARSEABLE, f"unparseable frame: {reason}")
        return encode_frame(SmlFile((msg,), self.crc))


# --------------------------------------------------------------------------- wM-Bus

#: EN 13757-7 device types of the wireless meter kinds (electricity meters are wired: SML)
DEVICE_TYPES: dict[MeterKind, int] = {
    MeterKind.GAS: 0x03,
    MeterKind.HEAT: 0x04,
    MeterKind.WATER: 0x07,
}

# (base code, exponent bias, highest n) of the primary VIF ranges; value × 10^(n + bias)
_VIF_RANGES: dict[str, tuple[int, int, int]] = {
    "energy": (0x00, -3, 7),
    "volume": (0x10, -6, 7),
    "power": (0x28, -3, 7),
    "flow": (0x38, -6, 7),
    "flow_temperature": (0x58, -3, 3),
    "return_temperature": (0x5C, -3, 3),
    "temperature_difference": (0x60, -3, 3),
}
_QUANTITY_BY_OBIS: dict[str, str] = {
    R.IMPORT_ENERGY: "energy",
    R.HEAT_ENERGY: "energy",
    R.GAS_VOLUME: "volume",
    R.GAS_VOLUME_HOURLY: "volume",
    R.WATER_VOLUME: "volume",
    R.HEAT_VOLUME: "volume",
    R.HEAT_POWER: "power",
    R.HEAT_FLOW_RATE: "flow",
    R.HEAT_FLOW_TEMPERATURE: "flow_temperature",
    R.HEAT_RETURN_TEMPERATURE: "return_temperature",
    R.HEAT_TEMPERATURE_DIFFERENCE: "temperature_difference",
}
#: readings sent as the value of the last full hour (storage number 1)
_STORAGE_1 = {R.GAS_VOLUME_HOURLY}
_DATE_TIME_VIF = b"\x6d"
_ERROR_FLAGS_VIB = b"\xfd\x17"
_FAULT_BITS = int(MeterStatus.MAGNETIC_INFLUENCE) | int(MeterStatus.MANIPULATION)
_FATAL = int(MeterStatus.FATAL_ERROR)


def vib_for(quantity: str, scaler: int) -> bytes:
    """The VIF for a decimal scaler, plus one correction VIFE where the VIF range ends.

    Correction VIFEs (EN 13757-3): ``E111 0nnn`` multiplies by 10^(nnn−6), ``E111 1101`` by 10^3.
    """
    base, bias, top = _VIF_RANGES[quantity]
    wanted = scaler - bias
    if 0 <= wanted <= top:
        return bytes((base | wanted,))
    for n in range(top, -1, -1) if wanted > top else range(top + 1):
        rest = scaler - (n + bias)
        if rest == 3:
            return bytes((base | n | 0x80, 0x7D))
        if -6 <= rest <= 1:
            return bytes((base | n | 0x80, 0x70 | (rest + 6)))
    raise UsageError(f"scaler {scaler} cannot be expressed for {quantity}")


def _int_record(vib: bytes, value: int, storage: int = 0) -> DataRecord:
    if -(1 << 31) <= value < 1 << 31:
        coding = Coding.INT32
    elif -(1 << 47) <= value < 1 << 47:
        coding = Coding.INT48
    else:
        coding = Coding.INT64
    return DataRecord(coding=coding, vib=vib, value=value, storage=storage)


def date_time_f(when: datetime, tz: ZoneInfo) -> DateTimeF:
    """Data type F (minute resolution) of ``when`` in local time, with the summer-time flag."""
    local = when.astimezone(tz)
    dst = local.dst()
    return DateTimeF(year=local.year % 100, month=local.month, day=local.day, hour=local.hour,
                     minute=local.minute, summer_time=bool(dst), hundred_year=0)


def wmbus_address(meter_id: MeterId | str, kind: MeterKind) -> Address:
    """The wM-Bus address imsys gives a meter id (see the module docstring)."""
    mid = as_meter_id(meter_id)
    if kind not in DEVICE_TYPES:
        raise UsageError(f"no wM-Bus device type for a {kind} meter")
    return Address(manufacturer_code(mid.manufacturer), int(f"{mid.serial:08d}", 16), mid.block,
                   DEVICE_TYPES[kind])


def meter_id_from_address(address: Address, medium: Medium | None = None) -> MeterId:
    """Inverse of :func:`wmbus_address` (medium from the device type unless given)."""
    if medium is None:
        medium = {0x02: Medium.ELECTRICITY, 0x03: Medium.GAS, 0x04: Medium.HEAT,
                  0x07: Medium.WATER_COLD}.get(address.device_type, Medium.ABSTRACT)
    try:
        serial = int(address.id_text)
    except ValueError as exc:
        raise Rejected(Reason.MALFORMED, f"identification {address.id_text} is not BCD") from exc
    return MeterId(medium, address.manufacturer_id, address.version, serial)


def tpl_status(status: int) -> int:
    """The TPL status byte for an FNN meter status word."""
    out = 0
    if status & _FAULT_BITS:
        out |= 0x10 | 0x03  # temporary error, abnormal condition
    if status & _FATAL:
        out |= 0x08 | 0x02  # permanent error, application error
    return out


class WmbusEncoder:
    """Snapshots → wM-Bus telegrams of one wireless meter (OMS security mode 0, 5 or 7).

    Keeps the access number (8 bit, +1 per telegram) and, for mode 7, the AFL message counter
    (32 bit, +1 per telegram, never reused) – the state a real meter holds.
    """

    def __init__(self, meter_id: MeterId | str, kind: MeterKind, *, key: bytes | None,
                 mode: SecurityMode = SecurityMode.AES_CBC_IV, long_header: bool = False,
                 access_number: int = 0, message_counter: int = 1,
                 timezone: str = "Europe/Berlin", fmt: FrameFormat = FrameFormat.A) -> None:
        self.meter_id = as_meter_id(meter_id)
        self.kind = MeterKind(kind)
        if self.kind not in DEVICE_TYPES:
            raise UsageError(f"{self.kind} meters are wired (SML), not wireless")
        self.mode = SecurityMode(mode)
        if self.mode is not SecurityMode.NONE and (key is None or len(key) != 16):
            raise UsageError(f"security mode {int(self.mode)} needs a 16-byte AES key")
        self.key = key
        self.long_header = long_header
        if not 0 <= access_number <= 0xFF or not 0 <= message_counter <= 0xFFFFFFFF:
            raise UsageError("access number is 8 bit, message counter 32 bit")
        self.access_number = access_number
        self.message_counter = message_counter
        self.tz = ZoneInfo(timezone)
        self.fmt = fmt
        self.address = wmbus_address(self.meter_id, self.kind)

    def records(self, snapshot: MeterSnapshot) -> tuple[DataRecord, ...]:
        """Date and time, every reading with a wM-Bus quantity, the status word."""
        recs = [DataRecord(coding=Coding.INT32, vib=_DATE_TIME_VIF,
                           value=date_time_f(snapshot.timestamp, self.tz))]
        hourly: Reading | None = None
        for r in snapshot.readings:
            quantity = _QUANTITY_BY_OBIS.get(r.obis)
            if quantity is None:
                continue
            if r.obis in _STORAGE_1:
                hourly = r
                continue
            recs.append(_int_record(vib_for(quantity, r.scaler), r.value))
        if hourly is not None:
            hour = snapshot.timestamp.replace(minute=0, second=0, microsecond=0)
            recs.append(_int_record(vib_for("volume", hourly.scaler), hourly.value, storage=1))
            recs.append(DataRecord(coding=Coding.INT32, vib=_DATE_TIME_VIF,
                                   value=date_time_f(hour, self.tz), storage=1))
        recs.append(DataRecord(coding=Coding.INT32, vib=_ERROR_FLAGS_VIB, value=snapshot.status))
        return tuple(recs)

    def telegram(self, snapshot: MeterSnapshot) -> Telegram:
        """The telegram for ``snapshot`` (advances access number and message counter)."""
        if snapshot.meter_id != str(self.meter_id):
            raise UsageError(f"snapshot of {snapshot.meter_id}, encoder for {self.meter_id}")
        acc = self.access_number
        self.access_number = (acc + 1) & 0xFF
        afl = None
        if self.mode is SecurityMode.AES_CBC_NO_IV:
            counter = self.message_counter
            if counter > 0xFFFFFFFF:
                raise UsageError("OMS message counter exhausted; the meter needs a new key")
            self.message_counter = counter + 1
            afl = Afl(message_counter=counter)
        tpl = TransportHeader(
            ci=0x72 if self.long_header else 0x7A, access_number=acc,
            status=tpl_status(snapshot.status), mode=self.mode,
            address=self.address if self.long_header else None)
        return Telegram(link=LinkHeader(SND_NR, self.address), afl=afl, tpl=tpl,
                        records=self.records(snapshot))

    def encode(self, snapshot: MeterSnapshot) -> bytes:
        """The wire bytes of the next telegram (frame format ``fmt``, block CRCs included)."""
        return encode_telegram(self.telegram(snapshot), self.key, self.fmt)


__all__ = [
    "DEFAULT_MAX_PERIODS",
    "DEFAULT_REG_PERIOD",
    "DEVICE_ID_OBIS",
    "DEVICE_TYPES",
    "MANUFACTURER_OBIS",
    "SmlPushEncoder",
    "SmlResponder",
    "WmbusEncoder",
    "as_meter_id",
    "date_time_f",
    "meter_id_from_address",
    "obis_bytes",
    "profile_periods",
    "sml_time",
    "snapshot_entries",
    "tpl_status",
    "vib_for",
    "wmbus_address",
]
