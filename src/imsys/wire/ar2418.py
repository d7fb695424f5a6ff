"""Readings as VDE AR-E 2418-6 XML, the shape TRuDI reads (spec/facts.md §5).

One document is one ``UsagePoints/UsagePoint`` (namespace ``http://vde.de/AR_2418-6.xsd``,
ESPI elements in ``http://naesb.org/espi``) with, in XSD order::

    espi:ServiceCategory/espi:kind, usagePointId, Customer/customerId?,
    InvoicingParty/invoicingPartyId?, SMGW/smgwId, Certificate*, tariffName, MeterReading*

and each ``MeterReading`` as::

    Meter/meterId, meterReadingId,
    ReadingType{espi:powerOfTenMultiplier, espi:uom, scaler, obisCode (12 hex),
                qualifiedLogicalName (<obis-hex>.<meter id>.sm), measurementPeriod?},
    IntervalBlock{interval{duration, start},
                  IntervalReading*{espi:value, timePeriod{duration, start}, targetTime?,
                                   statusFNN?, statusPTB?}}

Register values are a ``MeterReading`` with one ``IntervalReading``; a TAF-7 register series
(Zählerstandsgang, the "originäre Messwertliste") is one ``MeterReading`` per register whose
readings have ``timePeriod.duration = 0`` and ``measurementPeriod`` = the registration period
(900 s). The ``IntervalBlock.interval`` spans the first to the last capture time, so every
reading lies inside its block (TRuDI's TAF-7 check). Times are written in UTC (``Z``); any
ISO 8601 offset is accepted on reading.

Pseudonymisation (seed 003, table 2, step 3.2.2): :func:`pseudonymise` replaces the meter id
– in ``Meter/meterId`` and in every ``qualifiedLogicalName`` – by the pseudonym of the
evaluation profile. Whether a document is pseudonymised is a flag of the delivery metadata
(:class:`imsys.wire.delivery.Delivery`); AR 2418-6 has no element for it.

Parsing is defensive: input is bounded (:data:`DEFAULT_MAX_DOCUMENT`), must be UTF-8, and any
markup declaration (``<!DOCTYPE``, ``<!ENTITY`` …) is refused before the XML parser runs, so no
entity expansion or external reference can happen – the care of defusedxml without the
dependency. Every failure is a :class:`DocumentRejected` with a :class:`DocumentReason`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any, cast

from imsys.core.errors import Rejected, UsageError
from imsys.core.reading import Reading, ReadingFlag

__all__ = [
    "AR_2418_6_NS",
    "CONTENT_TYPE",
    "DEFAULT_MAX_DOCUMENT",
    "ESPI_NS",
    "DocumentReason",
    "DocumentRejected",
    "IntervalReading",
    "MeterReading",
    "ServiceKind",
    "StatusPtb",
    "UsagePointDocument",
    "document_from_readings",
    "encode_document",
    "parse_document",
    "pseudonymise",
    "readings_of",
]

AR_2418_6_NS = "http://vde.de/AR_2418-6.xsd"
ESPI_NS = "http://naesb.org/espi"
#: Media type of a document in a delivery (imsys delivery profile v1).
CONTENT_TYPE = "application/vnd.imsys.ar2418-6+xml"
#: Documents longer than this are refused before parsing.
DEFAULT_MAX_DOCUMENT = 4 * 1024 * 1024

_MAX_ID = 64
_OBIS_HEX = re.compile(r"^[0-9a-f]{12}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}$")
_FNN = re.compile(r"^[0-9A-Fa-f]{16}$")
_INTEGER = re.compile(r"[+-]?\d{1,20}")
_MARKUP_DECL = re.compile(r"<!(?!--|\[CDATA\[)")


class DocumentReason(StrEnum):
    """Why a document was refused."""

    TOO_LARGE = "too-large"
    NOT_UTF8 = "not-utf8"
    FORBIDDEN_MARKUP = "forbidden-markup"  # DTD, entity or other markup declaration
    MALFORMED = "malformed"  # not well-formed XML, or not the AR 2418-6 shape
    INVALID_VALUE = "invalid-value"  # a field is present but its value is out of range


class DocumentRejected(Rejected):
    """An AR 2418-6 document could not be read. ``reason`` is a :class:`DocumentReason`."""

    reason: DocumentReason  # type: ignore[assignment]

    def __init__(self, reason: DocumentReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


class ServiceKind(IntEnum):
    """``espi:ServiceCategory/espi:kind`` (ESPI ServiceKind)."""

    ELECTRICITY = 0
    GAS = 1
    WATER = 2
    TIME = 3
    HEAT = 4


class StatusPtb(IntEnum):
    """PTB status of a value (facts.md §4.5)."""

    NO_ERROR = 0
    WARNING = 1  # value valid
    TEMPORARY_ERROR_SIGNED_INVALID = 2  # invalid, usable as a substitute
    TEMPORARY_ERROR_INVALID = 3  # invalid, not usable
    FATAL_ERROR = 4  # meter broken; this and all later values invalid


#: DLMS unit code (imsys.core.reading) → ESPI UnitSymbolKind (``espi:uom``).
DLMS_TO_UOM: dict[int, int] = {
    30: 72,  # Wh
    27: 38,  # W
    32: 73,  # varh
    29: 63,  # var
    31: 71,  # VAh
    28: 61,  # VA
    35: 29,  # V
    33: 5,  # A
    13: 42,  # m³
    44: 33,  # Hz
    9: 23,  # °C
}
UOM_TO_DLMS: dict[int, int] = {uom: dlms for dlms, uom in DLMS_TO_UOM.items()}


def _check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not _ID.match(value):
        raise UsageError(f"{what} must match {_ID.pattern}, got {value!r}")


def _utc(when: datetime, what: str) -> datetime:
    if when.tzinfo is None:
        raise UsageError(f"{what} must be timezone-aware")
    return when.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class IntervalReading:
    """One value: ``espi:value`` captured at ``start`` (``timePeriod``)."""

    start: datetime
    value: int
    duration: int = 0  # seconds; 0 for a register value at an instant (TAF-7)
    target_time: datetime | None = None
    status_fnn: int | None = None  # 8 bytes: SMGW status (4) ‖ meter status (4)
    status_ptb: StatusPtb | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _utc(self.start, "timePeriod.start"))
        if self.target_time is not None:
            object.__setattr__(self, "target_time", _utc(self.target_time, "targetTime"))
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise UsageError("espi:value is an integer")
        if self.duration < 0:
            raise UsageError("timePeriod.duration is not negative")
        if self.status_fnn is not None and not 0 <= self.status_fnn < 2**64:
            raise UsageError("statusFNN has 8 bytes")
        if self.status_ptb is not None:
            object.__setattr__(self, "status_ptb", StatusPtb(self.status_ptb))


@dataclass(frozen=True, slots=True)
class MeterReading:
    """The values of one register of one meter (``MeterReading``)."""

    meter_id: str
    obis: str  # canonical "1-0:1.8.0*255"
    scaler: int
    uom: int  # espi UnitSymbolKind (72 = Wh)
    readings: tuple[IntervalReading, ...]
    meter_reading_id: str = ""
    measurement_period: int | None = None  # seconds (900 for a 15-minute series)
    power_of_ten_multiplier: int = 0

    def __post_init__(self) -> None:
        _check_id(self.meter_id, "meter id")
        _obis_hex(self.obis)  # validates
        if not -128 <= self.scaler <= 127:
            raise UsageError("scaler is an Integer8")
        if not self.readings:
            raise UsageError("a MeterReading holds at least one IntervalReading")
        object.__setattr__(self, "readings", tuple(sorted(self.readings, key=lambda r: r.start)))
        if len(self.meter_reading_id) > _MAX_ID:
            raise UsageError("meterReadingId has at most 64 characters")
        if self.measurement_period is not None and self.measurement_period <= 0:
            raise UsageError("measurementPeriod is positive")

    @property
    def obis_hex(self) -> str:
        return _obis_hex(self.obis)

    @property
    def qualified_logical_name(self) -> str:
        """``<OBIS-hex>.<meter id>.sm`` (the COSEM logical name of the series)."""
        return f"{self.obis_hex}.{self.meter_id}.sm"

    @property
    def interval(self) -> tuple[datetime, int]:
        """``IntervalBlock.interval``: first capture time and the span to the last (s)."""
        first, last = self.readings[0].start, self.readings[-1].start
        return first, int((last - first).total_seconds())


@dataclass(frozen=True, slots=True)
class UsagePointDocument:
    """One ``UsagePoint`` with its meter readings."""

    usage_point_id: str
    smgw_id: str
    tariff_name: str
    meter_readings: tuple[MeterReading, ...]
    invoicing_party_id: str | None = None
    customer_id: str | None = None
    service_kind: ServiceKind = ServiceKind.ELECTRICITY
    #: ``Certificate`` elements: (certId, certType, DER) – e.g. the SMGW SIG certificate (1)
    certificates: tuple[tuple[int, int, bytes], ...] = ()

    def __post_init__(self) -> None:
        for value, what in ((self.usage_point_id, "usagePointId"), (self.smgw_id, "smgwId"),
                            (self.tariff_name, "tariffName")):
            if not value or len(value) > _MAX_ID:
                raise UsageError(f"{what} has 1 to 64 characters")
        for optional, what in ((self.invoicing_party_id, "invoicingPartyId"),
                               (self.customer_id, "customerId")):
            if optional is not None and not 0 < len(optional) <= _MAX_ID:
                raise UsageError(f"{what} has 1 to 64 characters")
        object.__setattr__(self, "service_kind", ServiceKind(self.service_kind))
        object.__setattr__(self, "meter_readings", tuple(self.meter_readings))

    @property
    def meter_ids(self) -> frozenset[str]:
        return frozenset(m.meter_id for m in self.meter_readings)


def _obis_hex(obis: str) -> str:
    match = re.fullmatch(r"(\d{1,3})-(\d{1,3}):(\d{1,3})\.(\d{1,3})\.(\d{1,3})\*(\d{1,3})", obis)
    if not match or any(int(g) > 255 for g in match.groups()):
        raise UsageError(f"OBIS code must be canonical 'A-B:C.D.E*F', got {obis!r}")
    return bytes(int(g) for g in match.groups()).hex()


def _obis_text(hex_code: str) -> str:
    a, b, c, d, e, f = bytes.fromhex(hex_code)
    return f"{a}-{b}:{c}.{d}.{e}*{f}"


# --------------------------------------------------------------------------- from readings


def _ptb_of(reading: Reading) -> StatusPtb:
    flags = reading.flags
    if flags & ReadingFlag.METER_ERROR:
        return StatusPtb.FATAL_ERROR
    if flags & (ReadingFlag.CLOCK_INVALID | ReadingFlag.SIGNATURE_INVALID | ReadingFlag.GAP):
        return StatusPtb.TEMPORARY_ERROR_INVALID
    if flags & ReadingFlag.SUBSTITUTE:
        return StatusPtb.TEMPORARY_ERROR_SIGNED_INVALID
    return StatusPtb.NO_ERROR


def document_from_readings(readings: Iterable[Reading], *, usage_point_id: str, smgw_id: str,
                           tariff_name: str, measurement_period: int | None = None,
                           invoicing_party_id: str | None = None,
                           customer_id: str | None = None,
                           service_kind: ServiceKind = ServiceKind.ELECTRICITY,
                           meter_reading_id: str = "") -> UsagePointDocument:
    """Group readings by (meter, OBIS) into ``MeterReading`` elements.

    ``measurement_period`` (s) marks the series as an original value list (TAF-7); leave it
    out for register values. The PTB status is derived from the reading's flags, the FNN
    status word is carried as received.
    """
    groups: dict[tuple[str, str, int, int], list[IntervalReading]] = {}
    for reading in readings:
        if reading.unit not in DLMS_TO_UOM:
            raise UsageError(f"unit {reading.unit} has no ESPI unit symbol in imsys")
        key = (reading.meter_id, reading.obis, reading.scaler, DLMS_TO_UOM[reading.unit])
        groups.setdefault(key, []).append(IntervalReading(
            reading.timestamp, reading.value, 0, None, reading.status_word, _ptb_of(reading)))
    if not groups:
        raise UsageError("a document needs at least one reading")
    series = tuple(
        MeterReading(meter, obis, scaler, uom, tuple(values), meter_reading_id,
                     measurement_period)
        for (meter, obis, scaler, uom), values in groups.items())
    return UsagePointDocument(usage_point_id, smgw_id, tariff_name, series, invoicing_party_id,
                              customer_id, service_kind)


def readings_of(document: UsagePointDocument) -> list[Reading]:
    """The document's values as :class:`~imsys.core.reading.Reading` objects (DLMS units).

    A PTB status other than 0/1 becomes :attr:`ReadingFlag.METER_ERROR` (4),
    :attr:`ReadingFlag.SUBSTITUTE` (2) or :attr:`ReadingFlag.CLOCK_INVALID` (3): the PTB status
    is coarser than the gateway's flags, so this is not the inverse of
    :func:`document_from_readings` for invalid values.
    """
    flags_of = {StatusPtb.FATAL_ERROR: ReadingFlag.METER_ERROR,
                StatusPtb.TEMPORARY_ERROR_INVALID: ReadingFlag.CLOCK_INVALID,
                StatusPtb.TEMPORARY_ERROR_SIGNED_INVALID: ReadingFlag.SUBSTITUTE}
    out = []
    for series in document.meter_readings:
        unit = UOM_TO_DLMS.get(series.uom)
        if unit is None:
            raise DocumentRejected(DocumentReason.INVALID_VALUE,
                                   f"espi:uom {series.uom} is not known to imsys", uom=series.uom)
        for value in series.readings:
            flags = flags_of.get(value.status_ptb, ReadingFlag.NONE) \
                if value.status_ptb is not None else ReadingFlag.NONE
            out.append(Reading(series.meter_id, series.obis, value.value, series.scaler, unit,
                               value.start, flags, value.status_fnn))
    return out


def pseudonymise(document: UsagePointDocument, pseudonym: str) -> UsagePointDocument:
    """The document with every meter id replaced by ``pseudonym`` (seed 003 step 3.2.2).

    The customer id goes too; the usage point id stays (the recipient of non-billing data
    knows the connection point only as a pseudonym, seed 003 footnote 21).
    """
    _check_id(pseudonym, "pseudonym")
    return replace(document, customer_id=None, meter_readings=tuple(
        replace(series, meter_id=pseudonym) for series in document.meter_readings))


# --------------------------------------------------------------------------- encoding


def _time(when: datetime) -> str:
    text = when.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def _q(tag: str) -> str:
    return f"{{{AR_2418_6_NS}}}{tag}"


def _e(tag: str) -> str:
    return f"{{{ESPI_NS}}}{tag}"


def _sub(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = str(text)
    return element


def encode_document(document: UsagePointDocument) -> bytes:
    """The document as UTF-8 XML with a declaration (elements in XSD order)."""
    ET.register_namespace("", AR_2418_6_NS)
    ET.register_namespace("espi", ESPI_NS)
    root = ET.Element(_q("UsagePoints"))
    point = _sub(root, _q("UsagePoint"))
    _sub(_sub(point, _e("ServiceCategory")), _e("kind"), int(document.service_kind))
    _sub(point, _q("usagePointId"), document.usage_point_id)
    if document.customer_id is not None:
        _sub(_sub(point, _q("Customer")), _q("customerId"), document.customer_id)
    if document.invoicing_party_id is not None:
        _sub(_sub(point, _q("InvoicingParty")), _q("invoicingPartyId"),
             document.invoicing_party_id)
    smgw = _sub(point, _q("SMGW"))
    for cert_id, _type, _der in document.certificates:
        _sub(smgw, _q("certId"), cert_id)
    _sub(smgw, _q("smgwId"), document.smgw_id)
    for cert_id, cert_type, der in document.certificates:
        cert = _sub(point, _q("Certificate"))
        _sub(cert, _q("certId"), cert_id)
        _sub(cert, _q("certType"), cert_type)
        _sub(cert, _q("certContent"), der.hex())
    _sub(point, _q("tariffName"), document.tariff_name)
    for series in document.meter_readings:
        reading = _sub(point, _q("MeterReading"))
        _sub(_sub(reading, _q("Meter")), _q("meterId"), series.meter_id)
        _sub(reading, _q("meterReadingId"), series.meter_reading_id)
        kind = _sub(reading, _q("ReadingType"))
        _sub(kind, _e("powerOfTenMultiplier"), series.power_of_ten_multiplier)
        _sub(kind, _e("uom"), series.uom)
        _sub(kind, _q("scaler"), series.scaler)
        _sub(kind, _q("obisCode"), series.obis_hex)
        _sub(kind, _q("qualifiedLogicalName"), series.qualified_logical_name)
        if series.measurement_period is not None:
            _sub(kind, _q("measurementPeriod"), series.measurement_period)
        block = _sub(reading, _q("IntervalBlock"))
        start, span = series.interval
        interval = _sub(block, _q("interval"))
        _sub(interval, _q("duration"), span)
        _sub(interval, _q("start"), _time(start))
        for value in series.readings:
            item = _sub(block, _q("IntervalReading"))
            _sub(item, _e("value"), value.value)
            period = _sub(item, _q("timePeriod"))
            _sub(period, _q("duration"), value.duration)
            _sub(period, _q("start"), _time(value.start))
            if value.target_time is not None:
                _sub(item, _q("targetTime"), _time(value.target_time))
            if value.status_fnn is not None:
                _sub(item, _q("statusFNN"), f"{value.status_fnn:016X}")
            if value.status_ptb is not None:
                _sub(item, _q("statusPTB"), int(value.status_ptb))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


# --------------------------------------------------------------------------- parsing


def _fail(message: str, **context: Any) -> DocumentRejected:
    return DocumentRejected(DocumentReason.MALFORMED, message, **context)


def _one(parent: ET.Element, tag: str, what: str) -> ET.Element:
    found = parent.findall(tag)
    if len(found) != 1:
        raise _fail(f"{what}: expected exactly one element, found {len(found)}")
    return found[0]


def _opt(parent: ET.Element, tag: str, what: str) -> ET.Element | None:
    found = parent.findall(tag)
    if len(found) > 1:
        raise _fail(f"{what}: at most one element allowed, found {len(found)}")
    return found[0] if found else None


def _text(element: ET.Element, what: str) -> str:
    text = (element.text or "").strip()
    if not text:
        raise _fail(f"{what} is empty")
    return text


def _int(element: ET.Element, what: str, low: int | None = None, high: int | None = None) -> int:
    text = _text(element, what)
    if not _INTEGER.fullmatch(text):
        raise DocumentRejected(DocumentReason.INVALID_VALUE, f"{what} is not an integer")
    value = int(text)
    if (low is not None and value < low) or (high is not None and value > high):
        raise DocumentRejected(DocumentReason.INVALID_VALUE, f"{what} out of range")
    return value


def _parse_time(element: ET.Element, what: str) -> datetime:
    text = _text(element, what)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise DocumentRejected(DocumentReason.INVALID_VALUE, f"{what} is not ISO 8601") from None
    if when.tzinfo is None:
        raise DocumentRejected(DocumentReason.INVALID_VALUE, f"{what} has no UTC offset")
    return when.astimezone(UTC)


def _bounded_id(element: ET.Element, what: str) -> str:
    text = _text(element, what)
    if len(text) > _MAX_ID:
        raise DocumentRejected(DocumentReason.INVALID_VALUE, f"{what} longer than 64")
    return text


_T_VALUE, _T_PERIOD, _T_DURATION, _T_START = (
    f"{{{ESPI_NS}}}value", f"{{{AR_2418_6_NS}}}timePeriod", f"{{{AR_2418_6_NS}}}duration",
    f"{{{AR_2418_6_NS}}}start")
_T_TARGET, _T_FNN, _T_PTB = (f"{{{AR_2418_6_NS}}}targetTime", f"{{{AR_2418_6_NS}}}statusFNN",
                             f"{{{AR_2418_6_NS}}}statusPTB")
_READING_CHILDREN = frozenset({_T_VALUE, _T_PERIOD, _T_TARGET, _T_FNN, _T_PTB})


def _children(element: ET.Element, known: frozenset[str], what: str) -> dict[str, ET.Element]:
    """The known children by tag (one pass); a known tag twice is malformed."""
    found: dict[str, ET.Element] = {}
    for child in element:
        tag = child.tag
        if tag in known:
            if tag in found:
                raise _fail(f"{what}: {tag.rpartition('}')[2]} twice")
            found[tag] = child
    return found


def _parse_interval_reading(item: ET.Element) -> IntervalReading:
    # the hot path of a TAF-7 series: one pass over the children instead of a findall each
    fields = _children(item, _READING_CHILDREN, "IntervalReading")
    value_el, period = fields.get(_T_VALUE), fields.get(_T_PERIOD)
    if value_el is None or period is None:
        raise _fail("IntervalReading needs espi:value and timePeriod")
    value = _int(value_el, "espi:value", -(2**63), 2**63 - 1)
    times = _children(period, frozenset({_T_DURATION, _T_START}), "timePeriod")
    if len(times) != 2:
        raise _fail("timePeriod needs duration and start")
    duration = _int(times[_T_DURATION], "timePeriod.duration", 0, 2**32)
    start = _parse_time(times[_T_START], "timePeriod.start")
    target, fnn, ptb = fields.get(_T_TARGET), fields.get(_T_FNN), fields.get(_T_PTB)
    status_fnn = None
    if fnn is not None:
        text = _text(fnn, "statusFNN")
        if not _FNN.match(text):
            raise DocumentRejected(DocumentReason.INVALID_VALUE, "statusFNN is 16 hex digits")
        status_fnn = int(text, 16)
    return IntervalReading(
        start, value, duration,
        None if target is None else _parse_time(target, "targetTime"), status_fnn,
        None if ptb is None else StatusPtb(_int(ptb, "statusPTB", 0, 4)))


def _parse_meter_reading(element: ET.Element) -> MeterReading:
    meter_id = _bounded_id(_one(_one(element, _q("Meter"), "Meter"), _q("meterId"), "meterId"),
                           "meterId")
    reading_id_el = _opt(element, _q("meterReadingId"), "meterReadingId")
    reading_id = (reading_id_el.text or "").strip() if reading_id_el is not None else ""
    kind = _one(element, _q("ReadingType"), "ReadingType")
    multiplier_el = _opt(kind, _e("powerOfTenMultiplier"), "espi:powerOfTenMultiplier")
    multiplier = 0 if multiplier_el is None else _int(multiplier_el, "powerOfTenMultiplier",
                                                      -128, 127)
    uom = _int(_one(kind, _e("uom"), "espi:uom"), "espi:uom", 0, 65535)
    scaler_el = _opt(kind, _q("scaler"), "scaler")
    scaler = 0 if scaler_el is None else _int(scaler_el, "scaler", -128, 127)
    obis_hex = _text(_one(kind, _q("obisCode"), "obisCode"), "obisCode").lower()
    if not _OBIS_HEX.match(obis_hex):
        raise DocumentRejected(DocumentReason.INVALID_VALUE, "obisCode is 12 hex digits")
    name = _text(_one(kind, _q("qualifiedLogicalName"), "qualifiedLogicalName"),
                 "qualifiedLogicalName")
    if name.lower() != f"{obis_hex}.{meter_id}.sm".lower():
        raise DocumentRejected(DocumentReason.INVALID_VALUE, "qualifiedLogicalName does not "
                               "match obisCode and meterId", meter=meter_id)
    period_el = _opt(kind, _q("measurementPeriod"), "measurementPeriod")
    period = None if period_el is None else _int(period_el, "measurementPeriod", 1, 2**32)
    values: list[IntervalReading] = []
    for block in element.findall(_q("IntervalBlock")):
        interval = _one(block, _q("interval"), "interval")
        span = _int(_one(interval, _q("duration"), "interval.duration"), "interval.duration",
                    0, 2**40)
        start = _parse_time(_one(interval, _q("start"), "interval.start"), "interval.start")
        end = start + timedelta(seconds=span)
        for item in block.findall(_q("IntervalReading")):
            value = _parse_interval_reading(item)
            if not start <= value.start <= end:
                raise DocumentRejected(DocumentReason.INVALID_VALUE, "an IntervalReading lies "
                                       "outside its IntervalBlock", meter=meter_id)
            values.append(value)
    if not values:
        raise _fail("MeterReading without IntervalReading", meter=meter_id)
    try:
        return MeterReading(meter_id, _obis_text(obis_hex), scaler, uom, tuple(values),
                            reading_id, period, multiplier)
    except UsageError as exc:
        raise DocumentRejected(DocumentReason.INVALID_VALUE, str(exc)) from None


def _safe_root(data: bytes, max_size: int) -> ET.Element:
    if len(data) > max_size:
        raise DocumentRejected(DocumentReason.TOO_LARGE, f"document longer than {max_size}",
                               size=len(data))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentRejected(DocumentReason.NOT_UTF8, "document is not UTF-8") from None
    text = text.removeprefix("\ufeff")
    if _MARKUP_DECL.search(text):
        raise DocumentRejected(DocumentReason.FORBIDDEN_MARKUP,
                               "markup declarations (DTD, entities) are refused")
    declaration = re.match(r"<\?xml[^>]*\?>", text)
    if declaration and re.search(r"encoding\s*=\s*[\"'](?!utf-?8[\"'])", declaration.group(0),
                                 re.IGNORECASE):
        raise DocumentRejected(DocumentReason.NOT_UTF8, "declared encoding is not UTF-8")
    try:
        parser = ET.XMLParser(encoding="utf-8")
        parser.feed(text.encode("utf-8"))
        return parser.close()
    except ET.ParseError as exc:
        raise _fail(f"not well-formed XML: {exc}") from None


def parse_document(data: bytes, *, max_size: int = DEFAULT_MAX_DOCUMENT) -> UsagePointDocument:
    """Read a document written by :func:`encode_document` (or any AR 2418-6 file of the same
    shape); ``LogEntry``, ``AnalysisProfile`` and unknown elements are ignored."""
    root = _safe_root(data, max_size)
    if root.tag != _q("UsagePoints"):
        raise _fail("root element is not UsagePoints", tag=root.tag[:80])
    point = _one(root, _q("UsagePoint"), "UsagePoint")
    category = _one(point, _e("ServiceCategory"), "espi:ServiceCategory")
    kind = _int(_one(category, _e("kind"), "espi:kind"), "espi:kind", 0, 4)
    usage_point_id = _bounded_id(_one(point, _q("usagePointId"), "usagePointId"), "usagePointId")
    customer = _opt(point, _q("Customer"), "Customer")
    customer_id = None if customer is None else _bounded_id(
        _one(customer, _q("customerId"), "customerId"), "customerId")
    party = _opt(point, _q("InvoicingParty"), "InvoicingParty")
    party_id = None if party is None else _bounded_id(
        _one(party, _q("invoicingPartyId"), "invoicingPartyId"), "invoicingPartyId")
    smgw_id = _bounded_id(_one(_one(point, _q("SMGW"), "SMGW"), _q("smgwId"), "smgwId"),
                          "smgwId")
    certificates = []
    for cert in point.findall(_q("Certificate")):
        content = _text(_one(cert, _q("certContent"), "certContent"), "certContent")
        try:
            der = bytes.fromhex(content)
        except ValueError:
            raise DocumentRejected(DocumentReason.INVALID_VALUE, "certContent is hex") from None
        certificates.append((_int(_one(cert, _q("certId"), "certId"), "certId", 0, 255),
                             _int(_one(cert, _q("certType"), "certType"), "certType", 0, 255),
                             der))
    tariff = _bounded_id(_one(point, _q("tariffName"), "tariffName"), "tariffName")
    series = tuple(_parse_meter_reading(m) for m in point.findall(_q("MeterReading")))
    return UsagePointDocument(usage_point_id, smgw_id, tariff, series, party_id, customer_id,
                              ServiceKind(kind), tuple(certificates))

