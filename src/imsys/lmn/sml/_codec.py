"""The SML type-length grammar: readers and writers of the basic types (SML 1.04 §6.3).

A TL field is one or more bytes: bit 7 says another TL byte follows, bits 6–4 the type (000
octet string, 100 boolean, 101 integer, 110 unsigned, 111 list), bits 3–0 a length nibble. For
scalars the length counts the TL bytes too; for lists it is the number of elements. ``0x01`` is an
absent ``OPTIONAL`` (and, for a required octet string, the empty string); ``0x00`` ends a message.

Readers take ``(buf, i)`` and return ``(value, next_i)``. They slice ``bytes`` and never build
per-byte objects. Reading past the end raises ``IndexError``; slices past the end are caught by
the callers' ``i > len(buf)`` checks. :func:`imsys.lmn.sml.message.decode_messages` turns both into
``SmlRejected(TRUNCATED)``. Writers append to a ``list[bytes]`` that is joined once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NoReturn

from imsys.core.errors import UsageError
from imsys.lmn.errors import LmnReason, SmlRejected
from imsys.lmn.sml.model import (
    ListEntry,
    LocalTimestamp,
    PeriodEntry,
    ProcParKind,
    ProcParValue,
    SecIndex,
    SmlTime,
    SmlValue,
    Timestamp,
    Tree,
    TreePath,
    TupelEntry,
    new_sec_index,
    new_timestamp,
)
from imsys.lmn.sml.units import UNIT_BY_CODE, Unit

T_OCTETS = 0x00
T_BOOL = 0x40
T_INT = 0x50
T_UINT = 0x60
T_LIST = 0x70

#: deepest SML_Tree nesting the decoder follows (a bound against stack exhaustion)
MAX_TREE_DEPTH = 32

_TYPE_NAMES = {0x00: "octet string", 0x40: "boolean", 0x50: "integer", 0x60: "unsigned",
               0x70: "list"}
_new_tuple = tuple.__new__


def malformed(message: str, **context: Any) -> NoReturn:
    raise SmlRejected(LmnReason.MALFORMED, message, **context)


def truncated(i: int, end: int) -> NoReturn:
    raise SmlRejected(LmnReason.TRUNCATED, f"structure runs to byte {i}, data ends at {end}")


# --------------------------------------------------------------------------- reading


def read_tl(buf: bytes, i: int) -> tuple[int, int, int]:
    """``(type, length, i_after_tl)``; length is the data length (scalars) or the element count."""
    b = buf[i]
    t = b & 0x70
    n = b & 0x0F
    i += 1
    k = 1
    while b & 0x80:
        b = buf[i]
        i += 1
        k += 1
        if b & 0x70 or k > 8:
            malformed(f"bad continuation TL byte 0x{b:02x}", offset=i - 1)
        n = (n << 4) | (b & 0x0F)
    if t != T_LIST:
        n -= k
        if n < 0:
            malformed(f"TL length shorter than the TL field itself at byte {i - k}", offset=i - k)
    return t, n, i


def _wrong_type(t: int, want: str, i: int) -> NoReturn:
    malformed(f"expected {want}, found {_TYPE_NAMES.get(t, hex(t))}", offset=i)


def read_list(buf: bytes, i: int, count: int, what: str) -> int:
    """Read a list TL that must announce exactly ``count`` elements; return the next index."""
    b = buf[i]
    if b == 0x70 | count:
        return i + 1
    t, n, j = read_tl(buf, i)
    if t != T_LIST:
        _wrong_type(t, f"{what} (list of {count})", i)
    if n != count:
        malformed(f"{what} has {n} elements, SML defines {count}", offset=i)
    return j


def read_seq(buf: bytes, i: int, what: str) -> tuple[int, int]:
    """Read a ``SEQUENCE OF`` TL: ``(count, next_index)``; the count is checked for plausibility."""
    b = buf[i]
    if 0x70 <= b <= 0x7F:
        n, j = b & 0x0F, i + 1
    else:
        t, n, j = read_tl(buf, i)
        if t != T_LIST:
            _wrong_type(t, what, i)
    if n > len(buf) - j:
        raise SmlRejected(LmnReason.TRUNCATED, f"{what} announces {n} elements, "
                          f"only {len(buf) - j} bytes remain", offset=i)
    return n, j


def read_octets(buf: bytes, i: int) -> tuple[bytes, int]:
    """A required octet string (``0x01`` is the empty string here)."""
    b = buf[i]
    if 0 < b < 0x10:
        j = i + b
        if j > len(buf):
            truncated(j, len(buf))
        return buf[i + 1 : j], j
    t, n, i2 = read_tl(buf, i)
    if t != T_OCTETS:
        _wrong_type(t, "octet string", i)
    j = i2 + n
    if j > len(buf):
        truncated(j, len(buf))
    return buf[i2:j], j


def read_octets_opt(buf: bytes, i: int) -> tuple[bytes | None, int]:
    """An ``OPTIONAL`` octet string: ``0x01`` → ``None``."""
    b = buf[i]
    if b == 0x01:
        return None, i + 1
    if 0 < b < 0x10:
        j = i + b
        if j > len(buf):
            truncated(j, len(buf))
        return buf[i + 1 : j], j
    return read_octets(buf, i)


def _read_number(buf: bytes, i: int, want: int) -> tuple[int, int]:
    b = buf[i]
    if b & 0xF0 == want and b & 0x0F > 1:
        j = i + (b & 0x0F)
        i += 1
    else:
        t, n, i = read_tl(buf, i)
        if t != want or n == 0:
            _wrong_type(t, _TYPE_NAMES[want], i)
        j = i + n
    if j - i > 8:
        malformed(f"{_TYPE_NAMES[want]} of {j - i} bytes (at most 8)", offset=i)
    if j > len(buf):
        truncated(j, len(buf))
    return int.from_bytes(buf[i:j], "big", signed=want == T_INT), j


def read_uint(buf: bytes, i: int) -> tuple[int, int]:
    """A required ``Unsigned8..64`` (any length 1..8 is accepted)."""
    return _read_number(buf, i, T_UINT)


def read_uint_opt(buf: bytes, i: int) -> tuple[int | None, int]:
    if buf[i] == 0x01:
        return None, i + 1
    return _read_number(buf, i, T_UINT)


def read_int(buf: bytes, i: int) -> tuple[int, int]:
    """A required ``Integer8..64``."""
    return _read_number(buf, i, T_INT)


def read_int_opt(buf: bytes, i: int) -> tuple[int | None, int]:
    if buf[i] == 0x01:
        return None, i + 1
    return _read_number(buf, i, T_INT)


def read_u8(buf: bytes, i: int, what: str) -> tuple[int, int]:
    v, j = _read_number(buf, i, T_UINT)
    if v > 0xFF:
        malformed(f"{what} {v} does not fit Unsigned8", offset=i)
    return v, j


def read_unit(buf: bytes, i: int) -> tuple[Any, int]:
    """``SML_Unit`` (Unsigned8) as a :class:`Unit` where the code has a name."""
    if buf[i] == 0x62:
        return UNIT_BY_CODE[buf[i + 1]], i + 2
    v, j = read_u8(buf, i, "unit")
    return UNIT_BY_CODE[v], j


def read_unit_opt(buf: bytes, i: int) -> tuple[Any, int]:
    if buf[i] == 0x01:
        return None, i + 1
    return read_unit(buf, i)


def read_scaler(buf: bytes, i: int) -> tuple[int, int]:
    """``Integer8`` scaler."""
    if buf[i] == 0x52:
        s = buf[i + 1]
        return (s - 256 if s > 127 else s), i + 2
    v, j = _read_number(buf, i, T_INT)
    if not -128 <= v <= 127:
        malformed(f"scaler {v} does not fit Integer8", offset=i)
    return v, j


def read_scaler_opt(buf: bytes, i: int) -> tuple[int | None, int]:
    if buf[i] == 0x01:
        return None, i + 1
    return read_scaler(buf, i)


def read_bool(buf: bytes, i: int) -> tuple[bool, int]:
    b = buf[i]
    if b == 0x42:
        return buf[i + 1] != 0, i + 2
    t, n, j = read_tl(buf, i)
    if t != T_BOOL or n != 1:
        _wrong_type(t, "boolean", i)
    return buf[j] != 0, j + 1


def read_bool_opt(buf: bytes, i: int) -> tuple[bool | None, int]:
    if buf[i] == 0x01:
        return None, i + 1
    return read_bool(buf, i)


def read_time(buf: bytes, i: int) -> tuple[SmlTime, int]:
    """``SML_Time ::= CHOICE { secIndex [1], timestamp [2], localTimestamp [3] }``.

    Lenient like SmlLib: some meters (e.g. the Holley frame in ``tests/data/lmn``) send a bare
    ``Unsigned32`` instead of the choice; it is read as a :class:`SecIndex`.
    """
    b = buf[i]
    if b == 0x72 and buf[i + 1] == 0x62:  # the usual 72 62 tt 6n … encodings
        tag = buf[i + 2]
        t = buf[i + 3]
        if 0x62 <= t <= 0x65 and (tag == 1 or tag == 2):
            j = i + 3 + (t & 0x0F)
            if j > len(buf):
                truncated(j, len(buf))
            v = int.from_bytes(buf[i + 4 : j], "big")
            return (new_sec_index(v) if tag == 1 else new_timestamp(v)), j
    if b & 0xF0 == T_UINT:
        v, i = read_uint(buf, i)
        return new_sec_index(v), i
    i = read_list(buf, i, 2, "SML_Time")
    tag, i = read_uint(buf, i)
    if tag == 1:
        v, i = read_uint(buf, i)
        return SecIndex(v), i
    if tag == 2:
        v, i = read_uint(buf, i)
        return Timestamp(v), i
    if tag == 3:
        i = read_list(buf, i, 3, "SML_TimestampLocal")
        ts, i = read_uint(buf, i)
        lo, i = read_int(buf, i)
        so, i = read_int(buf, i)
        return LocalTimestamp(ts, lo, so), i
    raise SmlRejected(LmnReason.UNSUPPORTED, f"SML_Time choice {tag}", offset=i)


def read_time_opt(buf: bytes, i: int) -> tuple[SmlTime | None, int]:
    if buf[i] == 0x01:
        return None, i + 1
    return read_time(buf, i)


def read_value(buf: bytes, i: int) -> tuple[SmlValue, int]:
    """``SML_Value``: any scalar, or ``SML_ListType`` (choice 1 = ``SML_Time``)."""
    b = buf[i]
    if b == 0x01:
        return None, i + 1
    if 0x62 <= b <= 0x69:
        j = i + (b & 0x0F)
        if j > len(buf):
            truncated(j, len(buf))
        return int.from_bytes(buf[i + 1 : j], "big"), j
    if 0x52 <= b <= 0x59:
        j = i + (b & 0x0F)
        if j > len(buf):
            truncated(j, len(buf))
        return int.from_bytes(buf[i + 1 : j], "big", signed=True), j
    if b < 0x10 or (b & 0xF0) == 0x80:
        return read_octets(buf, i)
    if b == 0x42:
        return buf[i + 1] != 0, i + 2
    if b == 0x72:
        tag, j = read_uint(buf, i + 1)
        if tag == 1:
            return read_time(buf, j)
        raise SmlRejected(LmnReason.UNSUPPORTED, f"SML_ListType choice {tag}", offset=i)
    t, n, j = read_tl(buf, i)
    if t in (T_UINT, T_INT):
        if not 0 < n <= 8:
            malformed(f"number of {n} bytes in SML_Value", offset=i)
        if j + n > len(buf):
            truncated(j + n, len(buf))
        return int.from_bytes(buf[j : j + n], "big", signed=t == T_INT), j + n
    if t == T_BOOL and n == 1:
        return buf[j] != 0, j + 1
    malformed(f"not an SML_Value: TL 0x{b:02x}", offset=i)


def read_tree_path(buf: bytes, i: int) -> tuple[TreePath, int]:
    """``SML_TreePath ::= SEQUENCE OF parameterName Octet String``."""
    n, i = read_seq(buf, i, "SML_TreePath")
    out = []
    for _ in range(n):
        v, i = read_octets(buf, i)
        out.append(v)
    return tuple(out), i


def read_list_entries(buf: bytes, i: int) -> tuple[tuple[ListEntry, ...], int]:
    """``SML_List``: the hot loop of every meter reading, with the common encodings inlined."""
    n, i = read_seq(buf, i, "SML_List")
    end = len(buf)
    out: list[ListEntry] = []
    append = out.append
    from_bytes = int.from_bytes
    units = UNIT_BY_CODE
    new = _new_tuple
    cls = ListEntry
    sec = new_sec_index
    for _ in range(n):
        if buf[i] != 0x77:
            i = read_list(buf, i, 7, "SML_ListEntry")
        else:
            i += 1
        # objName
        b = buf[i]
        if 0 < b < 0x10:
            j = i + b
            obj = buf[i + 1 : j]
            i = j
        else:
            obj, i = read_octets(buf, i)
        # status (SML_Status, Unsigned8..64)
        b = buf[i]
        if b == 0x01:
            status = None
            i += 1
        elif b == 0x62:
            status = buf[i + 1]
            i += 2
        elif 0x63 <= b <= 0x69:
            j = i + (b & 0x0F)
            status = from_bytes(buf[i + 1 : j], "big")
            i = j
        else:
            status, i = read_uint_opt(buf, i)
        # valTime
        b = buf[i]
        if b == 0x01:
            vt = None
            i += 1
        elif b == 0x72 and buf[i + 1] == 0x62 and buf[i + 2] == 0x01 and 0x62 <= buf[i + 3] <= 0x65:
            j = i + 3 + (buf[i + 3] & 0x0F)
            vt = sec(from_bytes(buf[i + 4 : j], "big"))
            i = j
        else:
            vt, i = read_time(buf, i)
        # unit
        b = buf[i]
        if b == 0x62:
            unit = units[buf[i + 1]]
            i += 2
        elif b == 0x01:
            unit = None
            i += 1
        else:
            unit, i = read_unit(buf, i)
        # scaler
        b = buf[i]
        if b == 0x52:
            scaler = buf[i + 1]
            if scaler > 127:
                scaler -= 256
            i += 2
        elif b == 0x01:
            scaler = None
            i += 1
        else:
            scaler, i = read_scaler(buf, i)
        # value
        b = buf[i]
        if 0x62 <= b <= 0x69:
            j = i + (b & 0x0F)
            value: SmlValue = from_bytes(buf[i + 1 : j], "big")
            i = j
        elif 0x52 <= b <= 0x59:
            j = i + (b & 0x0F)
            value = from_bytes(buf[i + 1 : j], "big", signed=True)
            i = j
        elif 1 < b < 0x10:
            j = i + b
            value = buf[i + 1 : j]
            i = j
        else:
            value, i = read_value(buf, i)
        # valueSignature
        if buf[i] == 0x01:
            sig = None
            i += 1
        else:
            sig, i = read_octets(buf, i)
        append(new(cls, (obj, status, vt, unit, scaler, value, sig)))
    # a field sliced past the end only shortened a value; i then lies beyond the end
    if i > end:
        truncated(i, end)
    return tuple(out), i


def read_period_entry(buf: bytes, i: int) -> tuple[PeriodEntry, int]:
    """``SML_PeriodEntry ::= { objName, unit, scaler, value, valueSignature OPTIONAL }``."""
    i = read_list(buf, i, 5, "SML_PeriodEntry")
    obj, i = read_octets(buf, i)
    unit, i = read_unit(buf, i)
    scaler, i = read_scaler(buf, i)
    value, i = read_value(buf, i)
    sig, i = read_octets_opt(buf, i)
    return _new_tuple(PeriodEntry, (obj, unit, scaler, value, sig)), i


def read_list_entry(buf: bytes, i: int) -> tuple[ListEntry, int]:
    """One ``SML_ListEntry`` outside an ``SML_List`` (``SML_ProcParValue`` choice 5)."""
    i = read_list(buf, i, 7, "SML_ListEntry")
    obj, i = read_octets(buf, i)
    status, i = read_uint_opt(buf, i)
    vt, i = read_time_opt(buf, i)
    unit, i = read_unit_opt(buf, i)
    scaler, i = read_scaler_opt(buf, i)
    value, i = read_value(buf, i)
    sig, i = read_octets_opt(buf, i)
    return ListEntry(obj, status, vt, unit, scaler, value, sig), i


def read_tupel_entry(buf: bytes, i: int) -> tuple[TupelEntry, int]:
    """``SML_TupelEntry`` (23 fields)."""
    i = read_list(buf, i, 23, "SML_TupelEntry")
    server_id, i = read_octets(buf, i)
    sec_index, i = read_time(buf, i)
    status, i = read_uint(buf, i)
    vals: list[int] = []
    sigs: list[bytes] = []
    for _ in range(2):
        for _ in range(3):
            u, i = read_u8(buf, i, "unit")
            s, i = read_scaler(buf, i)
            v, i = read_int(buf, i)
            vals += (u, s, v)
        sig, i = read_octets(buf, i)
        sigs.append(sig)
    names = ("pA", "R1", "R4", "mA", "R2", "R3")
    kw: dict[str, Any] = {}
    for k, name in enumerate(names):
        kw[f"unit_{name}"], kw[f"scaler_{name}"], kw[f"value_{name}"] = vals[3 * k : 3 * k + 3]
    return TupelEntry(server_id=server_id, sec_index=sec_index, status=status,
                      signature_pA_R1_R4=sigs[0], signature_mA_R2_R3=sigs[1], **kw), i


def read_proc_par_value(buf: bytes, i: int) -> tuple[ProcParValue, int]:
    """``SML_ProcParValue ::= CHOICE { value [1], periodEntry [2], tupelEntry [3], time [4],
    listEntry [5] }``."""
    i = read_list(buf, i, 2, "SML_ProcParValue")
    tag, i = read_uint(buf, i)
    value: Any
    if tag == ProcParKind.VALUE:
        value, i = read_value(buf, i)
    elif tag == ProcParKind.PERIOD_ENTRY:
        value, i = read_period_entry(buf, i)
    elif tag == ProcParKind.TUPEL_ENTRY:
        value, i = read_tupel_entry(buf, i)
    elif tag == ProcParKind.TIME:
        value, i = read_time(buf, i)
    elif tag == ProcParKind.LIST_ENTRY:
        value, i = read_list_entry(buf, i)
    else:
        raise SmlRejected(LmnReason.UNSUPPORTED, f"SML_ProcParValue choice {tag}", offset=i)
    return ProcParValue(ProcParKind(tag), value), i


def read_tree(buf: bytes, i: int, depth: int = 0) -> tuple[Tree, int]:
    """``SML_Tree ::= { parameterName, parameterValue OPTIONAL, child_List OPTIONAL }``."""
    if depth > MAX_TREE_DEPTH:
        malformed(f"SML_Tree nested deeper than {MAX_TREE_DEPTH}", offset=i)
    i = read_list(buf, i, 3, "SML_Tree")
    name, i = read_octets(buf, i)
    value: ProcParValue | None
    if buf[i] == 0x01:
        value, i = None, i + 1
    else:
        value, i = read_proc_par_value(buf, i)
    children: tuple[Tree, ...] | None
    if buf[i] == 0x01:
        children, i = None, i + 1
    else:
        n, i = read_seq(buf, i, "SML_Tree child_List")
        kids = []
        for _ in range(n):
            kid, i = read_tree(buf, i, depth + 1)
            kids.append(kid)
        children = tuple(kids)
    return Tree(parameter_name=name, value=value, children=children), i


def read_tree_opt(buf: bytes, i: int) -> tuple[Tree | None, int]:
    if buf[i] == 0x01:
        return None, i + 1
    return read_tree(buf, i)


# --------------------------------------------------------------------------- writing

Out = list[bytes]


def tl(t: int, n: int) -> bytes:
    """The TL bytes for type ``t``; ``n`` = data length (scalars) or element count (lists)."""
    if t == T_LIST:
        total = n
        if n < 16:
            return bytes((t | n,))
        k = 1
        while n >= 16**k:
            k += 1
    else:
        k = 1
        while n + k >= 16**k:
            k += 1
        total = n + k
    if k == 1:
        return bytes((t | total,))
    nibbles = [(total >> (4 * (k - 1 - m))) & 0x0F for m in range(k)]
    out = [0x80 | t | nibbles[0]]
    out += [0x80 | x for x in nibbles[1:-1]]
    out.append(nibbles[-1])
    return bytes(out)


#: ready-made encodings: Unsigned8 v (``62 vv``), Integer8 v at [v + 128] (``52 vv``), the TL of
#: an octet string of 0..14 bytes, and ``77`` + that TL (the start of a list entry)
_U8 = tuple(bytes((0x62, v)) for v in range(256))
_I8 = tuple(bytes((0x52, v & 0xFF)) for v in range(-128, 128))
_OCTETS_TL = tuple(bytes((n + 1,)) for n in range(15))
_ENTRY_HEAD = tuple(bytes((0x77, n + 1)) for n in range(15))
_U64_MAX = 2**64 - 1
_LIST_TL = tuple(bytes((0x70 | n,)) for n in range(16))


def w_octets(out: Out, v: bytes, optional: bool = False) -> None:
    if type(v) is bytes and 0 < len(v) < 15:
        out.append(_OCTETS_TL[len(v)])
        out.append(v)
        return
    if not isinstance(v, bytes | bytearray):
        raise UsageError(f"octet string must be bytes, got {type(v).__name__}")
    if optional and not v:
        raise UsageError("an empty octet string in an OPTIONAL field would read back as absent")
    out.append(tl(T_OCTETS, len(v)))
    out.append(bytes(v))


def w_octets_opt(out: Out, v: bytes | None) -> None:
    if v is None:
        out.append(b"\x01")
    else:
        w_octets(out, v, optional=True)


def _uint_bytes(v: int, limit_bits: int = 64) -> bytes:
    """TL and bytes of an Unsigned (shortest encoding); ``limit_bits`` is 8, 16, 32 or 64."""
    if type(v) is int and v >= 0:  # bool and int subclasses take the checked path below
        if v < 0x100:
            return _U8[v]
        k = v.bit_length()
        if k <= limit_bits:
            n = (k + 7) >> 3
            return ((0x61 + n) << (n << 3) | v).to_bytes(n + 1, "big")
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v.bit_length() > limit_bits:
        raise UsageError(f"{v!r} is not an Unsigned{limit_bits}")
    n = max(1, (v.bit_length() + 7) // 8)
    return bytes((T_UINT | (n + 1),)) + v.to_bytes(n, "big")


def _int_bytes(v: int, limit_bits: int = 64) -> bytes:
    """TL and bytes of an Integer (shortest encoding); ``limit_bits`` is 8, 16, 32 or 64."""
    if type(v) is int:
        if -0x80 <= v < 0x80:
            return _I8[v + 0x80]
        bits = (v if v >= 0 else ~v).bit_length() + 1
        if bits <= limit_bits:
            n = (bits + 7) >> 3
            return ((0x51 + n) << (n << 3) | v & ((1 << (n << 3)) - 1)).to_bytes(n + 1, "big")
    if isinstance(v, bool) or not isinstance(v, int):
        raise UsageError(f"{v!r} is not an Integer{limit_bits}")
    bits = (v if v >= 0 else ~v).bit_length() + 1
    if bits > limit_bits:
        raise UsageError(f"{v!r} does not fit Integer{limit_bits}")
    n = (bits + 7) // 8
    return bytes((T_INT | (n + 1),)) + v.to_bytes(n, "big", signed=True)


def w_uint(out: Out, v: int, bits: int = 64) -> None:
    out.append(_uint_bytes(v, bits))


def w_uint_opt(out: Out, v: int | None, bits: int = 64) -> None:
    out.append(b"\x01" if v is None else _uint_bytes(v, bits))


def w_int(out: Out, v: int, bits: int = 64) -> None:
    out.append(_int_bytes(v, bits))


def w_int_opt(out: Out, v: int | None, bits: int = 64) -> None:
    out.append(b"\x01" if v is None else _int_bytes(v, bits))


def w_bool(out: Out, v: bool) -> None:
    if not isinstance(v, bool):
        raise UsageError(f"{v!r} is not a boolean")
    out.append(b"\x42\x01" if v else b"\x42\x00")


def w_bool_opt(out: Out, v: bool | None) -> None:
    if v is None:
        out.append(b"\x01")
    else:
        w_bool(out, v)


def w_time(out: Out, v: SmlTime) -> None:
    if isinstance(v, SecIndex):
        out.append(b"\x72\x62\x01")
        w_uint(out, v.value, 32)
    elif isinstance(v, Timestamp):
        out.append(b"\x72\x62\x02")
        w_uint(out, v.value, 32)
    elif isinstance(v, LocalTimestamp):
        out.append(b"\x72\x62\x03\x73")
        w_uint(out, v.timestamp, 32)
        w_int(out, v.local_offset, 16)
        w_int(out, v.season_offset, 16)
    else:
        raise UsageError(f"not an SML_Time: {v!r}")


def w_time_opt(out: Out, v: SmlTime | None) -> None:
    if v is None:
        out.append(b"\x01")
    else:
        w_time(out, v)


def w_value(out: Out, v: SmlValue) -> None:
    """``SML_Value``: non-negative ints as Unsigned, negative as Integer (shortest encoding)."""
    if v is None:
        out.append(b"\x01")
    elif isinstance(v, bool):
        w_bool(out, v)
    elif isinstance(v, int):
        out.append(_uint_bytes(v) if v >= 0 else _int_bytes(v))
    elif isinstance(v, bytes | bytearray):
        # a value is not OPTIONAL, but 0x01 would read back as "no value"
        w_octets(out, v, optional=True)
    elif isinstance(v, SecIndex | Timestamp | LocalTimestamp):
        out.append(b"\x72\x62\x01")
        w_time(out, v)
    else:
        raise UsageError(f"not an SML_Value: {v!r}")


def w_unit(out: Out, v: int) -> None:
    w_uint(out, int(v), 8)


def w_unit_opt(out: Out, v: int | None) -> None:
    w_uint_opt(out, None if v is None else int(v), 8)


def w_list(out: Out, n: int) -> None:
    out.append(_LIST_TL[n] if 0 <= n < 16 else tl(T_LIST, n))


def w_tree_path(out: Out, path: TreePath) -> None:
    w_list(out, len(path))
    for p in path:
        w_octets(out, p)


def w_list_entry(out: Out, e: ListEntry) -> None:
    w_list_entries(out, (e,))


def w_list_entries(out: Out, entries: Iterable[ListEntry]) -> None:
    """The entries of an ``SML_List`` (after its TL): the usual field types inline, anything else
    (and every error) through :func:`w_list_entry_general`."""
    u8 = _U8
    i8 = _I8
    octets_tl = _OCTETS_TL
    heads = _ENTRY_HEAD
    general = w_list_entry_general
    last_status: object = None  # the status word is mostly one object for a whole list
    last_st = b"\x01"
    for e in entries:
        if type(e) is not ListEntry:
            general(out, e)
            continue
        obj, status, vt, unit, scaler, value, sig = e
        if type(obj) is not bytes or not 0 < len(obj) < 15:
            general(out, e)
            continue
        if status is last_status:
            st = last_st
        elif type(status) is int and 0 <= status <= _U64_MAX:
            if status < 0x100:
                st = u8[status]
            else:
                n = (status.bit_length() + 7) >> 3
                st = ((0x61 + n) << (n << 3) | status).to_bytes(n + 1, "big")
            last_status = status
            last_st = st
        else:
            general(out, e)
            continue
        if vt is None:
            tm = b"\x01"
        else:
            w: Out = []
            w_time(w, vt)
            tm = b"".join(w)
        if type(unit) is Unit:  # members are DLMS codes 1..255 (an index error otherwise)
            un = u8[unit]
        elif unit is None:
            un = b"\x01"
        elif type(unit) is int and 0 <= unit < 0x100:
            un = u8[unit]
        else:
            general(out, e)
            continue
        if type(scaler) is int and -0x80 <= scaler < 0x80:
            sc = i8[scaler + 0x80]
        elif scaler is None:
            sc = b"\x01"
        else:
            general(out, e)
            continue
        t = type(value)
        if t is int and 0 <= value <= _U64_MAX:
            if value < 0x100:
                va = u8[value]
            else:
                n = (value.bit_length() + 7) >> 3
                va = ((0x61 + n) << (n << 3) | value).to_bytes(n + 1, "big")
        elif t is bytes and 0 < len(value) < 15:
            va = octets_tl[len(value)] + value
        elif value is None:
            va = b"\x01"
        else:  # negative numbers, booleans, times, long strings (and every error)
            w = []
            w_value(w, value)
            va = b"".join(w)
        if sig is None:
            out += (heads[len(obj)], obj, st, tm, un, sc, va, b"\x01")
        elif type(sig) is bytes and 0 < len(sig) < 15:
            out += (heads[len(obj)], obj, st, tm, un, sc, va, octets_tl[len(sig)], sig)
        else:
            general(out, e)


def w_list_entry_general(out: Out, e: ListEntry) -> None:
    out.append(b"\x77")
    w_octets(out, e.obj_name)
    w_uint_opt(out, e.status)
    w_time_opt(out, e.val_time)
    w_unit_opt(out, e.unit)
    w_int_opt(out, e.scaler, 8)
    w_value(out, e.value)
    w_octets_opt(out, e.value_signature)


def w_period_entry(out: Out, e: PeriodEntry) -> None:
    out.append(b"\x75")
    w_octets(out, e.obj_name)
    w_unit(out, e.unit)
    w_int(out, e.scaler, 8)
    w_value(out, e.value)
    w_octets_opt(out, e.value_signature)


def w_tupel_entry(out: Out, e: TupelEntry) -> None:
    w_list(out, 23)
    w_octets(out, e.server_id)
    w_time(out, e.sec_index)
    w_uint(out, e.status)
    for group, sig in ((("pA", "R1", "R4"), e.signature_pA_R1_R4),
                       (("mA", "R2", "R3"), e.signature_mA_R2_R3)):
        for name in group:
            w_unit(out, getattr(e, f"unit_{name}"))
            w_int(out, getattr(e, f"scaler_{name}"), 8)
            w_int(out, getattr(e, f"value_{name}"))
        w_octets(out, sig)


def w_proc_par_value(out: Out, p: ProcParValue) -> None:
    out.append(b"\x72")
    w_uint(out, int(p.kind), 8)
    v: Any = p.value
    if p.kind == ProcParKind.VALUE:
        w_value(out, v)
    elif p.kind == ProcParKind.PERIOD_ENTRY:
        w_period_entry(out, v)
    elif p.kind == ProcParKind.TUPEL_ENTRY:
        w_tupel_entry(out, v)
    elif p.kind == ProcParKind.TIME:
        w_time(out, v)
    elif p.kind == ProcParKind.LIST_ENTRY:
        w_list_entry(out, v)
    else:  # pragma: no cover - ProcParKind is closed
        raise UsageError(f"unknown SML_ProcParValue kind {p.kind!r}")


def w_tree(out: Out, t: Tree, depth: int = 0) -> None:
    if depth > MAX_TREE_DEPTH:
        raise UsageError(f"SML_Tree nested deeper than {MAX_TREE_DEPTH}")
    out.append(b"\x73")
    w_octets(out, t.parameter_name)
    if t.value is None:
        out.append(b"\x01")
    else:
        w_proc_par_value(out, t.value)
    if t.children is None:
        out.append(b"\x01")
    else:
        w_list(out, len(t.children))
        for c in t.children:
            w_tree(out, c, depth + 1)


def w_tree_opt(out: Out, t: Tree | None) -> None:
    if t is None:
        out.append(b"\x01")
    else:
        w_tree(out, t)
