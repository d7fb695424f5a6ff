"""Learned layouts of SML files – the decoder's fast path for what meters push every few seconds.

A meter sends the same file again and again: ``OpenResponse``, ``GetListResponse`` with the same
list entries in the same encodings, ``CloseResponse``; only the value bytes (transaction ids,
readings, times, CRCs) change. :func:`compile_layout` walks one such file and records its
*layout*:

* which bytes are structure – every TL byte, the message tags, the ``72 62 01`` of a time, the
  end-of-message bytes: every byte whose value the general decoder branches on;
* where each value sits, with which width, and which object field it becomes;
* where each message's CRC range lies.

:func:`apply_layout` decodes a later file of the same layout with a few C-level calls instead of a
Python step per field:

* all structural bytes checked at once: the file read as one big integer, masked with the
  structural positions, compared with the recorded structure;
* the message CRCs computed over the recorded ranges;
* every value unpacked by one ``struct.Struct.unpack_from`` (``>B/H/I/Q``, ``>b/h/i/q``, ``?``,
  ``Ns``); unit codes, 3/5/6/7-byte numbers and times converted with ``map``;
* the fields put into object order by one ``operator.itemgetter`` (absent fields point at a
  ``None`` or ``0``); list entries grouped into 7-tuples by ``zip`` and made ``ListEntry`` objects
  by ``map``; the few message objects built from slices of that.

If the structure differs, or a CRC does not match, :func:`apply_layout` returns ``None`` and the
file goes to the normal decoder. So a layout only ever decides *that* the normal decoder would take
exactly the same path through the bytes; the values always come from the bytes being decoded.
:mod:`imsys.lmn.sml.message` keeps a bounded cache of layouts, learns one for a file length seen
the second time, and uses a new layout only if it decodes that file exactly as the normal decoder
did.

Covered: files of ``OpenResponse`` (0x0101), ``GetListResponse`` (0x0701) and ``CloseResponse``
(0x0201) messages in the encodings meters use (one- and two-byte octet string TLs, Unsigned and
Integer of 1–8 bytes, ``SML_Time`` as ``72 62 01|02 6n`` or a bare Unsigned, absent fields as
``01``, boolean values). Anything else is decoded the normal way.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Callable
from itertools import repeat
from operator import itemgetter
from struct import Struct
from typing import Any, NamedTuple

from imsys.lmn.sml.close import _new_close_response
from imsys.lmn.sml.crc import _REV
from imsys.lmn.sml.get_list import _new_get_list_response
from imsys.lmn.sml.model import ListEntry, new_sec_index, new_timestamp
from imsys.lmn.sml.open import _new_open_response
from imsys.lmn.sml.units import UNIT_BY_CODE

#: files longer than this get no layout (meter pushes are a few hundred bytes)
MAX_LAYOUT_BYTES = 2048

_new_tuple = tuple.__new__
#: struct codes of big-endian unsigned / signed numbers by width (others: ``Ns`` + int.from_bytes)
_UFMT = {1: "B", 2: "H", 4: "I", 8: "Q"}
_IFMT = {1: "b", 2: "h", 4: "i", 8: "q"}


def _from_i(b: bytes) -> int:
    return int.from_bytes(b, "big", signed=True)


def _sec_odd(b: bytes) -> Any:
    return new_sec_index(int.from_bytes(b, "big"))


def _ts_odd(b: bytes) -> Any:
    return new_timestamp(int.from_bytes(b, "big"))


#: conversions of unpacked items, applied in this order (``int.from_bytes`` reads big-endian
#: unsigned by default since Python 3.11)
_CONVERSIONS: tuple[Callable[[Any], Any], ...] = (
    UNIT_BY_CODE.__getitem__, int.from_bytes, _from_i, new_sec_index, new_timestamp, _sec_odd,
    _ts_odd,
)
UNIT, UODD, IODD, SEC, TS, SEC_ODD, TS_ODD = range(len(_CONVERSIONS))
#: fields without a value in the bytes: an absent ``OPTIONAL`` (None), an absent groupNo or
#: abortOnError (0)
NONE, ZERO = -1, -2

#: message kinds of a layout
OPEN_RES, GET_LIST_RES, CLOSE_RES = range(3)


class Layout(NamedTuple):
    """The layout of one SML file (see the module docstring)."""

    length: int
    mask: int
    expect: int
    unpack_from: Callable[..., tuple[Any, ...]]
    conversions: tuple[tuple[tuple[int, ...], Callable[[Any], Any]], ...]
    gather: Callable[[list[Any]], tuple[Any, ...]]
    #: (start, end) of each message's CRC range; the CRC bytes follow the 0x63 at ``end``
    crcs: tuple[tuple[int, int], ...]
    #: per message: (kind, index of its first field, list entries, index after its last field)
    program: tuple[tuple[int, int, int, int], ...]


class _NoLayout(Exception):
    """The file uses an encoding the layouts do not cover."""


class _Recorder:
    """Walks a file like the normal decoder and records what each byte is."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.fmt = [">"]
        self.structural: list[int] = []
        self.slots: list[tuple[int, int]] = []  # per field: (struct item or NONE/ZERO, conversion)
        self.items = 0

    def fixed(self, pos: int, count: int = 1) -> int:
        """``count`` structural bytes at ``pos``."""
        self.structural += range(pos, pos + count)
        self.fmt.append("x" * count)
        return pos + count

    def const(self, pos: int, which: int) -> int:
        """A one-byte ``01`` (absent) that decodes to a constant."""
        self.fixed(pos)
        self.slots.append((which, -1))
        return pos + 1

    def value(self, pos: int, tl: int, code: str, size: int, conv: int = -1) -> int:
        """``tl`` structural bytes at ``pos``, then a value of ``size`` bytes (struct ``code``)."""
        self.fixed(pos, tl)
        self.fmt.append(code)
        self.slots.append((self.items, conv))
        self.items += 1
        return pos + tl + size

    def number(self, pos: int, width: int, signed: bool, conv: int = -1) -> int:
        code = (_IFMT if signed else _UFMT).get(width)
        if code is None:
            odd = {-1: IODD if signed else UODD, SEC: SEC_ODD, TS: TS_ODD}[conv]
            return self.value(pos, 1, f"{width}s", width, odd)
        return self.value(pos, 1, code, width, conv)

    # ---------------------------------------------------------------- SML types

    def octets(self, pos: int) -> int:
        """A required octet string (``read_octets``): one- or two-byte TL."""
        b = self.buf[pos]
        if 0 < b < 0x10:
            return self.value(pos, 1, f"{b - 1}s", b - 1)
        b2 = self.buf[pos + 1]
        total = (b & 0x0F) << 4 | b2
        if b & 0xF0 != 0x80 or b2 > 0x0F or total < 2:
            raise _NoLayout
        return self.value(pos, 2, f"{total - 2}s", total - 2)

    def octets_opt(self, pos: int) -> int:
        """``read_octets_opt``: ``01`` is absent."""
        if self.buf[pos] == 0x01:
            return self.const(pos, NONE)
        return self.octets(pos)

    def uint_opt(self, pos: int) -> int:
        """``read_uint_opt``: absent or Unsigned of 1..8 bytes."""
        b = self.buf[pos]
        if b == 0x01:
            return self.const(pos, NONE)
        if 0x62 <= b <= 0x69:
            return self.number(pos, b - 0x61, False)
        raise _NoLayout

    def u8_or_zero(self, pos: int) -> int:
        """groupNo / abortOnError: ``62 xx`` or absent (reads as 0)."""
        b = self.buf[pos]
        if b == 0x01:
            return self.const(pos, ZERO)
        if b == 0x62:
            return self.value(pos, 1, "B", 1)
        raise _NoLayout

    def time_opt(self, pos: int) -> int:
        """``read_time_opt``: absent, ``72 62 01|02 6n`` (secIndex / timestamp of 1..4 bytes) or
        a bare Unsigned of 1..8 bytes (read as secIndex)."""
        buf = self.buf
        b = buf[pos]
        if b == 0x01:
            return self.const(pos, NONE)
        if 0x62 <= b <= 0x69:
            return self.number(pos, b - 0x61, False, SEC)
        if b == 0x72 and buf[pos + 1] == 0x62 and buf[pos + 2] in (1, 2):
            t = buf[pos + 3]
            if 0x62 <= t <= 0x65:
                self.fixed(pos, 3)
                return self.number(pos + 3, t - 0x61, False, SEC if buf[pos + 2] == 1 else TS)
        raise _NoLayout

    def list_entries(self, pos: int) -> tuple[int, int]:
        """``SML_List`` (``read_list_entries``): ``(next index, entry count)``."""
        buf = self.buf
        b = buf[pos]
        if 0x70 <= b <= 0x7F:
            count = b & 0x0F
            pos = self.fixed(pos)
        elif 0xF1 <= b <= 0xFF and buf[pos + 1] <= 0x0F:
            count = (b & 0x0F) << 4 | buf[pos + 1]
            pos = self.fixed(pos, 2)
        else:
            raise _NoLayout
        for _ in range(count):
            if buf[pos] != 0x77:
                raise _NoLayout
            pos = self.fixed(pos)
            pos = self.octets(pos)  # objName
            pos = self.uint_opt(pos)  # status
            pos = self.time_opt(pos)  # valTime
            b = buf[pos]  # unit
            if b == 0x01:
                pos = self.const(pos, NONE)
            elif b == 0x62:
                pos = self.value(pos, 1, "B", 1, UNIT)
            else:
                raise _NoLayout
            b = buf[pos]  # scaler
            if b == 0x01:
                pos = self.const(pos, NONE)
            elif b == 0x52:
                pos = self.value(pos, 1, "b", 1)
            else:
                raise _NoLayout
            b = buf[pos]  # value (SML_Value)
            if b == 0x01:
                pos = self.const(pos, NONE)
            elif 0x62 <= b <= 0x69:
                pos = self.number(pos, b - 0x61, False)
            elif 0x52 <= b <= 0x59:
                pos = self.number(pos, b - 0x51, True)
            elif 1 < b < 0x10 or b & 0xF0 == 0x80:
                pos = self.octets(pos)
            elif b == 0x42:
                pos = self.value(pos, 1, "?", 1)
            else:
                raise _NoLayout
            pos = self.octets_opt(pos)  # valueSignature
        return pos, count


def compile_layout(buf: bytes) -> Layout | None:
    """The layout of the SML file ``buf`` (the unescaped transport payload), or ``None`` if it
    has a message or an encoding the layouts do not cover."""
    n = len(buf)
    if not 0 < n <= MAX_LAYOUT_BYTES:
        return None
    r = _Recorder(buf)
    crcs: list[tuple[int, int]] = []
    program: list[tuple[int, int, int, int]] = []
    i = 0
    try:
        while i < n:
            if buf[i] == 0:  # padding between messages
                i = r.fixed(i)
                continue
            if buf[i] != 0x76:
                return None
            start = i
            first = len(r.slots)
            i = r.fixed(i)
            i = r.octets(i)  # transactionId
            i = r.u8_or_zero(i)  # groupNo
            i = r.u8_or_zero(i)  # abortOnError
            t = buf[i + 1]  # messageBody: 72, tag (Unsigned 1..4 bytes)
            if buf[i] != 0x72 or not 0x62 <= t <= 0x65:
                return None
            tag = int.from_bytes(buf[i + 2 : i + 1 + (t & 0x0F)], "big")
            i = r.fixed(i, 1 + (t & 0x0F))
            count = 0
            if tag == 0x0101:  # SML_PublicOpen.Res
                kind = OPEN_RES
                if buf[i] != 0x76:
                    return None
                i = r.fixed(i)
                i = r.octets_opt(i)  # codepage
                i = r.octets_opt(i)  # clientId
                i = r.octets(i)  # reqFileId
                i = r.octets(i)  # serverId
                i = r.time_opt(i)  # refTime
                i = r.uint_opt(i)  # smlVersion
            elif tag == 0x0701:  # SML_GetList.Res
                kind = GET_LIST_RES
                if buf[i] != 0x77:
                    return None
                i = r.fixed(i)
                i = r.octets_opt(i)  # clientId
                i = r.octets(i)  # serverName
                i = r.octets_opt(i)  # listName
                i = r.time_opt(i)  # actSensorTime
                i, count = r.list_entries(i)
                i = r.octets_opt(i)  # listSignature
                i = r.time_opt(i)  # actGatewayTime
            elif tag == 0x0201:  # SML_PublicClose.Res
                kind = CLOSE_RES
                if buf[i] != 0x71:
                    return None
                i = r.fixed(i)
                i = r.octets_opt(i)  # globalSignature
            else:
                return None
            if buf[i] != 0x63 or buf[i + 3] != 0:  # crc16 Unsigned16, endOfSmlMsg
                return None
            crcs.append((start, i))
            i = r.fixed(i)
            r.fmt.append("xx")  # the CRC bytes: checked, not structure, not a field
            i = r.fixed(i + 2)
            program.append((kind, first, count, len(r.slots)))
    except (IndexError, _NoLayout):
        return None
    if i != n:  # pragma: no cover - the walk stops at n or raised IndexError before
        return None
    struct = Struct("".join(r.fmt))
    if struct.size != n:  # pragma: no cover - the walk keeps them equal
        return None
    mask = bytearray(n)
    for p in r.structural:
        mask[p] = 0xFF
    expect = bytes(x & m for x, m in zip(buf, mask, strict=True))
    # source of the gather: struct items, None, 0, then each conversion's results
    groups: list[list[int]] = [[] for _ in _CONVERSIONS]
    for item, conv in r.slots:
        if conv >= 0:
            groups[conv].append(item)
    base: list[int] = []
    at = r.items + 2
    for g in groups:
        base.append(at)
        at += len(g)
    order: list[int] = []
    for item, conv in r.slots:
        if item == NONE:
            order.append(r.items)
        elif item == ZERO:
            order.append(r.items + 1)
        elif conv < 0:
            order.append(item)
        else:
            order.append(base[conv] + groups[conv].index(item))
    if len(order) < 2:  # pragma: no cover - every message has at least four fields
        return None
    conversions = tuple((tuple(g), _CONVERSIONS[c]) for c, g in enumerate(groups) if g)
    return Layout(n, int.from_bytes(mask, "big"), int.from_bytes(expect, "big"), struct.unpack_from,
                  conversions, itemgetter(*order), tuple(crcs), tuple(program))


def apply_layout(buf: bytes, layout: Layout, rev: bytes | None, verify: bool,
                 new_message: Callable[..., Any]) -> tuple[Any, ...] | None:
    """The messages of ``buf`` decoded with ``layout`` (``rev``: ``buf`` bit-reversed, or
    ``None``); ``None`` if the structure differs or a message CRC is not X-25."""
    length, mask, expect, unpack_from, conversions, gather, crcs, program = layout
    if len(buf) != length or int.from_bytes(buf, "big") & mask != expect:
        return None
    if verify:
        if rev is None:
            rev = buf.translate(_REV)
        for s, e in crcs:  # X-25 as SML carries it, compared in the bit-reversed domain
            if crc_hqx(rev[s:e], 0xFFFF) != (rev[e + 1] << 8 | rev[e + 2]) ^ 0xFFFF:
                return None
    v = [*unpack_from(buf), None, 0]
    for idx, fn in conversions:
        v += map(fn, map(v.__getitem__, idx))
    f = gather(v)
    out = []
    for kind, p, count, e in program:
        if kind == GET_LIST_RES:
            fields = iter(f[p + 7 : e - 2])  # 7 per entry: zip cuts them into entries
            entries = zip(*(fields,) * 7, strict=False)
            body = _new_get_list_response(
                f[p + 3], f[p + 4], f[p + 5], f[p + 6],
                tuple(map(_new_tuple, repeat(ListEntry, count), entries)), f[e - 2], f[e - 1])
        elif kind == OPEN_RES:
            body = _new_open_response(*f[p + 3 : e])
        else:
            body = _new_close_response(f[p + 3])
        out.append(new_message(f[p], f[p + 1], f[p + 2], body))
    return tuple(out)


__all__ = ["MAX_LAYOUT_BYTES", "Layout", "apply_layout", "compile_layout"]
