"""Application-layer data records (EN 13757-3 §6): DIF, DIFE, VIF, VIFE and the data types.

A record is ``DIF [DIFE…] VIF [VIFE…] data``. The DIF gives the data coding (integers, BCD,
REAL32, variable length), the function (instantaneous, max, min, value during error) and the
lowest storage-number bit; every DIFE adds 4 storage bits, 2 tariff bits and 1 subunit bit. The
VIF (with the 0xFB/0xFD extension tables and combinable VIFEs) gives quantity, unit and decimal
exponent: :func:`describe` turns it into a :class:`VifInfo`, :attr:`DataRecord.scaled_value`
applies it. Idle fillers (DIF 0x2F) are skipped; DIF 0x0F/0x1F starts manufacturer data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum
from typing import NamedTuple

from imsys.core.errors import UsageError
from imsys.lmn.errors import LmnReason, WmbusRejected

MAX_DIFE = 10
MAX_VIFE = 10


class Function(IntEnum):
    """DIF bits 5–4."""

    INSTANTANEOUS = 0
    MAXIMUM = 1
    MINIMUM = 2
    ERROR = 3


class Coding(IntEnum):
    """DIF bits 3–0: the data field."""

    NONE = 0x0
    INT8 = 0x1
    INT16 = 0x2
    INT24 = 0x3
    INT32 = 0x4
    REAL32 = 0x5
    INT48 = 0x6
    INT64 = 0x7
    SELECTION = 0x8
    BCD2 = 0x9
    BCD4 = 0xA
    BCD6 = 0xB
    BCD8 = 0xC
    VARIABLE = 0xD
    BCD12 = 0xE


_INT_LEN = {Coding.INT8: 1, Coding.INT16: 2, Coding.INT24: 3, Coding.INT32: 4, Coding.INT48: 6,
            Coding.INT64: 8}
_BCD_LEN = {Coding.BCD2: 1, Coding.BCD4: 2, Coding.BCD6: 3, Coding.BCD8: 4, Coding.BCD12: 6}


def _calendar_year(year: int, hundred_year: int = 0) -> int:
    # EN 13757-3: 1900 + 100·hundred_year + year; meters without the century bits mean 2000+
    if hundred_year:
        return 1900 + 100 * hundred_year + year
    return 2000 + year if year < 81 else 1900 + year


@dataclass(frozen=True, slots=True)
class DateG:
    """Data type G (date, 16 bit); ``year`` is the 7-bit field as sent."""

    year: int
    month: int
    day: int

    def __str__(self) -> str:
        return f"{_calendar_year(self.year):04d}-{self.month:02d}-{self.day:02d}"


@dataclass(frozen=True, slots=True)
class DateTimeF:
    """Data type F (date and time, 32 bit) with its invalid and summer-time flags."""

    year: int
    month: int
    day: int
    hour: int
    minute: int
    invalid: bool = False
    summer_time: bool = False
    hundred_year: int = 0

    def __str__(self) -> str:
        return (f"{_calendar_year(self.year, self.hundred_year):04d}-{self.month:02d}-"
                f"{self.day:02d}T{self.hour:02d}:{self.minute:02d}")


Value = int | float | str | bytes | DateG | DateTimeF | None


class VifInfo(NamedTuple):
    """What a VIB means: quantity name, unit symbol and decimal exponent of the value."""

    quantity: str
    unit: str
    exponent: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DataRecord:
    """One data record. ``vib`` holds the VIF and all VIFEs as sent (plain-text units too)."""

    coding: Coding
    vib: bytes
    value: Value = None
    function: Function = Function.INSTANTANEOUS
    storage: int = 0
    tariff: int = 0
    subunit: int = 0
    #: the LVAR byte of a non-text variable-length record (``None`` for text and other codings)
    lvar: int | None = None

    @property
    def info(self) -> VifInfo:
        return describe(self.vib)

    @property
    def scaled_value(self) -> Value:
        """The value times ``10^exponent`` (exact decimal, then the nearest float)."""
        v = self.value
        exp = self.info.exponent
        if isinstance(v, bool) or not isinstance(v, int | float) or exp == 0:
            return v
        if isinstance(v, float):
            return v * 10.0**exp
        if exp > 0:
            return v * 10**exp
        return float(Decimal(v).scaleb(exp))


# --------------------------------------------------------------------------- VIF tables

_TIME_UNITS = ("s", "min", "h", "d")


def _primary(code: int) -> VifInfo:
    n3, n2 = code & 0x07, code & 0x03
    groups: list[tuple[int, int, str, str, int]] = [
        # (first code, mask, quantity, unit, exponent bias) for the n-ranged groups
        (0x00, 0x78, "energy", "Wh", -3),
        (0x08, 0x78, "energy", "J", 0),
        (0x10, 0x78, "volume", "m³", -6),
        (0x18, 0x78, "mass", "kg", -3),
        (0x28, 0x78, "power", "W", -3),
        (0x30, 0x78, "power", "J/h", 0),
        (0x38, 0x78, "volume flow", "m³/h", -6),
        (0x40, 0x78, "volume flow", "m³/min", -7),
        (0x48, 0x78, "volume flow", "m³/s", -9),
        (0x50, 0x78, "mass flow", "kg/h", -3),
    ]
    for first, mask, quantity, unit, bias in groups:
        if code & mask == first:
            return VifInfo(quantity, unit, n3 + bias)
    small: list[tuple[int, str, str]] = [
        (0x58, "flow temperature", "°C"), (0x5C, "return temperature", "°C"),
        (0x60, "temperature difference", "K"), (0x64, "external temperature", "°C"),
        (0x68, "pressure", "bar"),
    ]
    for first, quantity, unit in small:
        if code & 0x7C == first:
            return VifInfo(quantity, unit, n2 - 3)
    if code & 0x7C == 0x20:
        return VifInfo("on time", _TIME_UNITS[n2])
    if code & 0x7C == 0x24:
        return VifInfo("operating time", _TIME_UNITS[n2])
    if code & 0x7C == 0x70:
        return VifInfo("averaging duration", _TIME_UNITS[n2])
    if code & 0x7C == 0x74:
        return VifInfo("actuality duration", _TIME_UNITS[n2])
    named = {0x6C: ("date", ""), 0x6D: ("date and time", ""), 0x6E: ("HCA units", ""),
             0x78: ("fabrication number", ""), 0x79: ("enhanced identification", ""),
             0x7A: ("bus address", ""), 0x7E: ("any VIF", ""),
             0x7F: ("manufacturer specific", "")}
    if code in named:
        return VifInfo(*named[code])
    return VifInfo("reserved", "")


def _fd(code: int) -> VifInfo:
    if code & 0x70 == 0x40:
        return VifInfo("voltage", "V", (code & 0x0F) - 9)
    if code & 0x70 == 0x50:
        return VifInfo("current", "A", (code & 0x0F) - 12)
    if code & 0x7C == 0x00:
        return VifInfo("credit", "currency", (code & 3) - 3)
    if code & 0x7C == 0x04:
        return VifInfo("debit", "currency", (code & 3) - 3)
    if code & 0x7C == 0x2C:
        return VifInfo("duration since last readout", _TIME_UNITS[code & 3])
    named = {0x08: "access number", 0x09: "medium", 0x0A: "manufacturer",
             0x0B: "parameter set identification", 0x0C: "model/version",
             0x0D: "hardware version", 0x0E: "firmware version", 0x0F: "software version",
             0x10: "customer location", 0x11: "customer", 0x16: "password", 0x17: "error flags",
             0x18: "error mask", 0x1A: "digital output", 0x1B: "digital input",
             0x3A: "dimensionless", 0x60: "reset counter", 0x61: "cumulation counter",
             0x71: "reception level", 0x74: "remaining battery life"}
    if code in named:
        unit = "dBm" if code == 0x71 else "d" if code == 0x74 else ""
        return VifInfo(named[code], unit)
    return VifInfo(f"FD extension 0x{code:02x}", "")


def _fb(code: int) -> VifInfo:
    n = code & 1
    table = {0x00: ("energy", "MWh", n - 1), 0x08: ("energy", "GJ", n - 1),
             0x10: ("volume", "m³", n + 2), 0x18: ("mass", "t", n + 2),
             0x28: ("power", "MW", n - 1), 0x30: ("power", "GJ/h", n - 1)}
    if code & 0x7E in table:
        q, u, e = table[code & 0x7E]
        return VifInfo(q, u, e)
    if 0x74 <= code & 0x7F <= 0x77:
        return VifInfo("temperature limit", "°C", (code & 3) - 3)
    return VifInfo(f"FB extension 0x{code:02x}", "")


def describe(vib: bytes) -> VifInfo:
    """Quantity, unit and exponent of a VIB (primary VIF, FB/FD tables, correction VIFEs)."""
    if not vib:
        return VifInfo("none", "")
    first = vib[0] & 0x7F
    rest = vib[1:]
    if first == 0x7D and rest:
        info, rest = _fd(rest[0] & 0x7F), rest[1:]
    elif first == 0x7B and rest:
        info, rest = _fb(rest[0] & 0x7F), rest[1:]
    elif first == 0x7C:
        # plain text: [VIFE…] length text — the unit is the text (sent reversed)
        return VifInfo("plain text unit", _plain_text_unit(vib))
    elif first == 0x7F:
        return VifInfo("manufacturer specific", "")
    else:
        info = _primary(first)
    exp = info.exponent
    for vife in rest:
        code = vife & 0x7F
        if code & 0x78 == 0x70:  # E111 0nnn multiplicative correction 10^(nnn-6)
            exp += (code & 0x07) - 6
        elif code == 0x7D:  # E111 1101 multiplicative correction 10^3
            exp += 3
    return VifInfo(info.quantity, info.unit, exp)


def _plain_text_unit(vib: bytes) -> str:
    # vib = 7C/FC [VIFE…] len text; find len as the byte after the last VIFE
    i = 1
    if vib[0] & 0x80:
        while i < len(vib) and vib[i] & 0x80:
            i += 1
        i += 1
    if i >= len(vib):
        return ""
    n = vib[i]
    return vib[i + 1 : i + 1 + n][::-1].decode("latin-1")


# --------------------------------------------------------------------------- decoding


def _bcd(data: bytes) -> int | bytes:
    digits = data[::-1].hex()
    negative = digits[0] == "f"
    if negative:
        digits = digits[1:]
    if not digits.isdigit():
        return data  # not BCD (meters send e.g. FFFF for "no value"): keep the bytes
    v = int(digits) if digits else 0
    return -v if negative else v


def _date_g(b: bytes) -> DateG:
    return DateG(((b[0] & 0xE0) >> 5) | ((b[1] & 0xF0) >> 1), b[1] & 0x0F, b[0] & 0x1F)


def _date_time_f(b: bytes) -> DateTimeF:
    return DateTimeF(year=((b[2] & 0xE0) >> 5) | ((b[3] & 0xF0) >> 1), month=b[3] & 0x0F,
                     day=b[2] & 0x1F, hour=b[1] & 0x1F, minute=b[0] & 0x3F,
                     invalid=bool(b[0] & 0x80), summer_time=bool(b[1] & 0x80),
                     hundred_year=(b[1] & 0x60) >> 5)


def _malformed(message: str, **context: object) -> WmbusRejected:
    return WmbusRejected(LmnReason.MALFORMED, message, **context)


def decode_records(apl: bytes) -> tuple[tuple[DataRecord, ...], bytes | None, bool]:
    """``(records, manufacturer_data, more_records_follow)`` of an application layer."""
    out: list[DataRecord] = []
    i, n = 0, len(apl)
    try:
        while i < n:
            start = i
            dif = apl[i]
            i += 1
            if dif == 0x2F:
                continue
            if dif in (0x0F, 0x1F):
                return tuple(out), apl[i:], dif == 0x1F
            if dif & 0x0F == 0x0F:
                raise WmbusRejected(LmnReason.UNSUPPORTED, f"special DIF 0x{dif:02x}", offset=start)
            coding = Coding(dif & 0x0F)
            function = Function((dif >> 4) & 0x03)
            storage = (dif >> 6) & 0x01
            tariff = subunit = 0
            k = 0
            ext = dif & 0x80
            while ext:
                dife = apl[i]
                i += 1
                if k >= MAX_DIFE:
                    raise _malformed("more than 10 DIFEs", offset=start)
                storage |= (dife & 0x0F) << (1 + 4 * k)
                tariff |= ((dife >> 4) & 0x03) << (2 * k)
                subunit |= ((dife >> 6) & 0x01) << k
                k += 1
                ext = dife & 0x80
            vstart = i
            vif = apl[i]
            i += 1
            k = 0
            ext = vif & 0x80
            while ext:
                if k >= MAX_VIFE:
                    raise _malformed("more than 10 VIFEs", offset=start)
                ext = apl[i] & 0x80
                i += 1
                k += 1
            if vif & 0x7F == 0x7C:  # plain-text unit: length byte and text follow the VIFEs
                i += 1 + apl[i]
            vib = apl[vstart:i]
            if i > n:
                raise WmbusRejected(LmnReason.TRUNCATED, "record header runs past the end")
            value: Value
            lvar = None
            if coding in _INT_LEN:
                size = _INT_LEN[coding]
                raw = apl[i : i + size]
                if len(raw) < size:
                    raise WmbusRejected(LmnReason.TRUNCATED, "record data runs past the end",
                                        offset=start)
                if coding == Coding.INT32 and vib[0] & 0x7F == 0x6D:
                    value = _date_time_f(raw)
                elif coding == Coding.INT16 and vib[0] & 0x7F == 0x6C:
                    value = _date_g(raw)
                else:
                    value = int.from_bytes(raw, "little", signed=True)
            elif coding in _BCD_LEN:
                size = _BCD_LEN[coding]
                raw = apl[i : i + size]
                if len(raw) < size:
                    raise WmbusRejected(LmnReason.TRUNCATED, "record data runs past the end",
                                        offset=start)
                value = _bcd(raw)
            elif coding == Coding.REAL32:
                size = 4
                raw = apl[i : i + 4]
                if len(raw) < 4:
                    raise WmbusRejected(LmnReason.TRUNCATED, "record data runs past the end",
                                        offset=start)
                value = struct.unpack("<f", raw)[0]
            elif coding == Coding.VARIABLE:
                lvar = apl[i]
                i += 1
                size = _lvar_size(lvar, start)
                raw = apl[i : i + size]
                if len(raw) < size:
                    raise WmbusRejected(LmnReason.TRUNCATED, "record data runs past the end",
                                        offset=start)
                if lvar <= 0xBF:
                    value = raw[::-1].decode("latin-1")
                    lvar = None  # the text's length says it all
                elif lvar <= 0xD9:
                    v = _bcd(raw)
                    value = -v if lvar >= 0xD0 and isinstance(v, int) else v
                else:
                    value = raw
            else:  # NONE, SELECTION
                size = 0
                value = None
            i += size
            out.append(DataRecord(coding=coding, vib=vib, value=value, function=function,
                                  storage=storage, tariff=tariff, subunit=subunit, lvar=lvar))
    except IndexError:
        raise WmbusRejected(LmnReason.TRUNCATED, "data record runs past the end") from None
    return tuple(out), None, False


def _lvar_size(lvar: int, offset: int) -> int:
    if lvar <= 0xBF:
        return lvar
    if 0xC0 <= lvar <= 0xC9 or 0xD0 <= lvar <= 0xD9:
        return lvar & 0x0F
    if 0xE0 <= lvar <= 0xEF:
        return lvar - 0xE0
    if 0xF0 <= lvar <= 0xF4:
        return 4 * (lvar - 0xEC)
    if lvar == 0xF5:
        return 48
    if lvar == 0xF6:
        return 64
    raise WmbusRejected(LmnReason.UNSUPPORTED, f"LVAR 0x{lvar:02x}", offset=offset)


# --------------------------------------------------------------------------- encoding


def _bcd_bytes(v: int, size: int) -> bytes:
    digits = 2 * size
    text = "f" + f"{-v:0{digits - 1}d}" if v < 0 else f"{v:0{digits}d}"
    if len(text) > digits:
        raise UsageError(f"{v} does not fit {digits} BCD digits")
    return bytes.fromhex(text)[::-1]


def _check_vib(vib: bytes) -> None:
    if not vib:
        raise UsageError("a record needs a VIF")
    for k, b in enumerate(vib[:-1]):
        if not b & 0x80 and not (vib[0] & 0x7F == 0x7C):
            raise UsageError(f"VIB byte {k} lacks the extension bit but more bytes follow")
    if vib[-1] & 0x80 and vib[0] & 0x7F != 0x7C:
        raise UsageError("last VIB byte has the extension bit set")


def encode_record(r: DataRecord) -> bytes:
    """One data record (minimal DIFE chain for storage, tariff and subunit)."""
    if r.storage < 0 or r.tariff < 0 or r.subunit < 0:
        raise UsageError("storage, tariff and subunit are non-negative")
    _check_vib(r.vib)
    difes = []
    storage, tariff, subunit = r.storage >> 1, r.tariff, r.subunit
    while storage or tariff or subunit:
        difes.append((storage & 0x0F) | (tariff & 0x03) << 4 | (subunit & 0x01) << 6)
        storage, tariff, subunit = storage >> 4, tariff >> 2, subunit >> 1
    if len(difes) > MAX_DIFE:
        raise UsageError("storage/tariff/subunit need more than 10 DIFEs")
    dif = int(r.coding) | int(r.function) << 4 | (r.storage & 1) << 6 | (0x80 if difes else 0)
    head = bytes([dif] + [d | 0x80 for d in difes[:-1]] + difes[-1:]) + r.vib
    v = r.value
    c = r.coding
    if c in _INT_LEN:
        size = _INT_LEN[c]
        if isinstance(v, DateTimeF):
            b0 = v.minute & 0x3F | (0x80 if v.invalid else 0)
            b1 = v.hour & 0x1F | (v.hundred_year & 3) << 5 | (0x80 if v.summer_time else 0)
            b2 = v.day & 0x1F | (v.year & 0x07) << 5
            b3 = v.month & 0x0F | (v.year & 0x78) << 1
            data = bytes((b0, b1, b2, b3))
        elif isinstance(v, DateG):
            data = bytes((v.day & 0x1F | (v.year & 0x07) << 5,
                          v.month & 0x0F | (v.year & 0x78) << 1))
        elif isinstance(v, int) and not isinstance(v, bool):
            try:
                data = v.to_bytes(size, "little", signed=True)
            except OverflowError:
                raise UsageError(f"{v} does not fit a {c.name} record") from None
        else:
            raise UsageError(f"{c.name} record needs an int, got {v!r}")
        if len(data) != size:
            raise UsageError(f"{c.name} record value has the wrong size")
        return head + data
    if c in _BCD_LEN:
        if isinstance(v, bytes) and len(v) == _BCD_LEN[c]:
            return head + v
        if not isinstance(v, int) or isinstance(v, bool):
            raise UsageError(f"{c.name} record needs an int")
        return head + _bcd_bytes(v, _BCD_LEN[c])
    if c == Coding.REAL32:
        if not isinstance(v, float | int) or isinstance(v, bool):
            raise UsageError("REAL32 record needs a float")
        return head + struct.pack("<f", v)
    if c == Coding.VARIABLE:
        if isinstance(v, str):
            data = v.encode("latin-1")[::-1]
            if len(data) > 0xBF:
                raise UsageError("LVAR text longer than 191 bytes")
            return head + bytes((len(data),)) + data
        if r.lvar is None or r.lvar <= 0xBF:
            raise UsageError("a non-text variable-length record needs its LVAR byte")
        if isinstance(v, int):
            size = r.lvar & 0x0F
            data = _bcd_bytes(abs(v) if r.lvar >= 0xD0 else v, size)
        elif isinstance(v, bytes):
            data = v
        else:
            raise UsageError(f"cannot encode {v!r} as LVAR")
        if _lvar_size(r.lvar, 0) != len(data):
            raise UsageError("LVAR byte and data length disagree")
        return head + bytes((r.lvar,)) + data
    if v is not None:
        raise UsageError(f"{c.name} record carries no value")
    return head


def encode_records(records: tuple[DataRecord, ...] | list[DataRecord],
                   manufacturer_data: bytes | None = None, more_follow: bool = False) -> bytes:
    """The application layer: records, then (optionally) DIF 0x0F/0x1F and manufacturer data."""
    body = b"".join(encode_record(r) for r in records)
    if manufacturer_data is not None or more_follow:
        body += (b"\x1f" if more_follow else b"\x0f") + (manufacturer_data or b"")
    return body


__all__ = [
    "Coding",
    "DataRecord",
    "DateG",
    "DateTimeF",
    "Function",
    "Value",
    "VifInfo",
    "decode_records",
    "describe",
    "encode_record",
    "encode_records",
]
