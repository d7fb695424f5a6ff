"""The small DER toolkit under :mod:`imsys.crypto.cms` (private).

A reader that walks a buffer without building objects (opening a sealed message visits about
sixty elements, and reading them is a large part of what an open costs beyond its ECDH and
ECDSA verification), and a writer of definite-length DER. The reader also accepts BER
where RFC 5652 allows it: indefinite lengths and constructed OCTET STRINGs (streaming encoders
such as ``openssl cms -stream`` emit them). Every defect raises
:class:`~imsys.core.errors.CmsRejected`: ``TRUNCATED`` when an element runs past the end of
the whole input, ``MALFORMED`` for anything else.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TypeVar

from asn1crypto.core import ObjectIdentifier

from imsys.core.errors import CmsRejected, Reason, UsageError

INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
SEQUENCE = 0x30
SET = 0x31
#: Context-specific tags [0], [1], [2] (constructed) and [0] (primitive).
CTX_0 = 0xA0
CTX_1 = 0xA1
CTX_2 = 0xA2
CTX_0_PRIMITIVE = 0x80
_CONSTRUCTED = 0x20
_NULL_DER = bytes((NULL, 0))
_V = TypeVar("_V")

#: Nesting bound for indefinite-length elements (CMS needs fewer than ten levels).
_MAX_DEPTH = 32


def _overrun(buf: bytes, needed: int) -> CmsRejected:
    if needed > len(buf):
        return CmsRejected(Reason.TRUNCATED, "input ends inside an element", needed=needed,
                           available=len(buf))
    return CmsRejected(Reason.MALFORMED, "element overruns the element that contains it")


def _element(buf: bytes, pos: int, end: int, depth: int) -> tuple[int, int, int, int]:
    """``(tag, contents start, contents end, next position)`` of the element at ``pos``."""
    if pos + 2 > end:
        raise _overrun(buf, pos + 2)
    tag = buf[pos]
    n = buf[pos + 1]
    pos += 2
    if tag & 0x1F == 0x1F:
        raise CmsRejected(Reason.MALFORMED, "high-numbered tags do not occur in CMS", tag=tag)
    if n < 0x80:
        stop = pos + n
    elif n == 0x80:
        if not tag & _CONSTRUCTED or depth >= _MAX_DEPTH:
            raise CmsRejected(Reason.MALFORMED, "misplaced or too deeply nested indefinite length")
        p = pos
        while True:
            if p + 2 > end:
                raise _overrun(buf, p + 2)
            if buf[p] == 0 and buf[p + 1] == 0:
                return tag, pos, p, p + 2
            p = _element(buf, p, end, depth + 1)[3]
    else:
        k = n & 0x7F
        if k > 4:
            raise CmsRejected(Reason.MALFORMED, "length field longer than four octets")
        if pos + k > end:
            raise _overrun(buf, pos + k)
        stop = pos + k + int.from_bytes(buf[pos:pos + k], "big")
        pos += k
    if stop > end:
        raise _overrun(buf, stop)
    return tag, pos, stop, stop


# The reader is a handful of functions over ``(buf, pos, end)``: ``pos`` is where the next
# element begins, ``end`` where the enclosing element's contents end. Each returns what it read
# and the position after it, and keeps no state (a cursor object per constructed element cost
# more than the reading). ``element``, ``take`` and ``value`` handle the common definite-length
# forms inline and leave everything else (long lengths, BER, errors) to ``_element``; a test
# holds them to answering exactly as ``_element`` does.


def element(buf: bytes, pos: int, end: int) -> tuple[int, int, int, int]:
    """``(tag, contents start, contents end, next position)`` of the element at ``pos``."""
    if pos + 2 < end and buf[pos + 1] < 0x80 and buf[pos] & 0x1F != 0x1F:
        stop = pos + 2 + buf[pos + 1]
        if stop <= end:
            return buf[pos], pos + 2, stop, stop
    return _element(buf, pos, end, 0)


def take(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int, int]:
    """``(contents start, contents end, next position)`` of the element at ``pos``, which must
    carry ``tag``."""
    if pos + 2 < end and buf[pos] == tag:
        n = buf[pos + 1]
        if n < 0x80:
            stop = pos + 2 + n
            if stop <= end:
                return pos + 2, stop, stop
            raise _overrun(buf, stop)
        if n == 0x82 and pos + 3 < end:
            stop = pos + 4 + (buf[pos + 2] << 8 | buf[pos + 3])
            if stop <= end:
                return pos + 4, stop, stop
            raise _overrun(buf, stop)
        if n == 0x81:
            stop = pos + 3 + buf[pos + 2]
            if stop <= end:
                return pos + 3, stop, stop
            raise _overrun(buf, stop)
    return _take(buf, pos, end, tag)


def _take(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int, int]:
    got, start, stop, after = _element(buf, pos, end, 0)
    if got != tag:
        raise CmsRejected(Reason.MALFORMED, f"expected tag 0x{tag:02x}, found 0x{got:02x}",
                          offset=pos)
    return start, stop, after


def value(buf: bytes, pos: int, end: int, tag: int) -> tuple[bytes, int]:
    """The contents octets of the element at ``pos`` (tagged ``tag``) and the next position."""
    if pos + 2 < end and buf[pos] == tag:
        stop = pos + 2 + buf[pos + 1]
        if stop <= end and buf[pos + 1] < 0x80:
            return buf[pos + 2:stop], stop
    start, stop, after = take(buf, pos, end, tag)
    return buf[start:stop], after


def raw(buf: bytes, pos: int, end: int, tag: int) -> tuple[bytes, int]:
    """The whole encoding (identifier, length, contents) of the element at ``pos`` and the next
    position."""
    after = take(buf, pos, end, tag)[2]
    return buf[pos:after], after


def octets(buf: bytes, pos: int, end: int, tag: int = OCTET_STRING) -> tuple[bytes, int]:
    """An OCTET STRING (or one implicitly tagged ``tag``), primitive or BER-constructed, and
    the next position."""
    if pos < end and buf[pos] == tag:
        return value(buf, pos, end, tag)
    return _octets(buf, pos, end, tag, 0)


def _octets(buf: bytes, pos: int, end: int, tag: int, depth: int) -> tuple[bytes, int]:
    got, start, stop, after = _element(buf, pos, end, 0)
    if got == tag:
        return buf[start:stop], after
    if got != tag | _CONSTRUCTED or depth >= _MAX_DEPTH:
        raise CmsRejected(Reason.MALFORMED, f"expected an octet string 0x{tag:02x}, "
                          f"found 0x{got:02x}")
    parts = []
    while start < stop:
        part, start = _octets(buf, start, stop, OCTET_STRING, depth + 1)
        parts.append(part)
    return b"".join(parts), after


def small_int(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A non-negative INTEGER that fits into four octets (such as a GCM ICV length) and the
    next position."""
    data, after = value(buf, pos, end, INTEGER)
    if not 1 <= len(data) <= 4 or data[0] & 0x80:
        raise CmsRejected(Reason.MALFORMED, "integer out of range")
    return int.from_bytes(data, "big"), after


def skip(buf: bytes, pos: int, end: int, tag: int) -> int:
    """The position after the element at ``pos`` if it carries ``tag`` (an absent OPTIONAL is
    fine), else ``pos``."""
    if pos < end and buf[pos] == tag:
        return _element(buf, pos, end, 0)[3]
    return pos


def trailing(pos: int) -> CmsRejected:
    """The error for an element that does not end where its last expected part ends (raise it
    when ``pos != end``)."""
    return CmsRejected(Reason.MALFORMED, "unexpected data after the last element", offset=pos)


def typed(buf: bytes, pos: int, end: int, tag: int = SEQUENCE) -> tuple[bytes, int, int, int]:
    """An element tagged ``tag`` whose contents begin with an OBJECT IDENTIFIER (an
    AlgorithmIdentifier, Attribute, EncapsulatedContentInfo or EncryptedContentInfo): ``(OID
    contents, position after the OID, contents end, next position)``."""
    if pos + 3 < end and buf[pos] == tag:
        n = buf[pos + 1]
        if n < 0x80:
            start = pos + 2
            stop = start + n
        elif n == 0x82:
            start = pos + 4
            stop = start + (buf[pos + 2] << 8 | buf[pos + 3])
        elif n == 0x81:
            start = pos + 3
            stop = start + buf[pos + 2]
        else:
            start = stop = end + 1
        if start + 1 < stop <= end and buf[start] == OID and buf[start + 1] < 0x80:
            after_oid = start + 2 + buf[start + 1]
            if after_oid <= stop:
                return buf[start + 2:after_oid], after_oid, stop, stop
    start, stop, after = take(buf, pos, end, tag)
    oid_contents, start = value(buf, start, stop, OID)
    return oid_contents, start, stop, after


def algorithm_name(encoding: bytes) -> str:
    """The dotted OID of an encoded AlgorithmIdentifier (for messages about it)."""
    return dotted(typed(encoding, 0, len(encoding))[0])


# --------------------------------------------------------------------------- writer


def tlv(tag: int, *parts: bytes) -> bytes:
    """One definite-length element."""
    body = b"".join(parts)
    n = len(body)
    if n < 0x80:
        return bytes((tag, n)) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + body


def sequence(*parts: bytes) -> bytes:
    return tlv(SEQUENCE, *parts)


def set_of(*parts: bytes, tag: int = SET) -> bytes:
    """A SET OF in DER order (encodings sorted)."""
    return tlv(tag, *sorted(parts))


def integer(value: int) -> bytes:
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def octet_string(data: bytes) -> bytes:
    return tlv(OCTET_STRING, data)


@lru_cache(maxsize=64)
def oid(dotted: str) -> bytes:
    """Contents octets of an OBJECT IDENTIFIER (what the reader returns and compares)."""
    try:
        return ObjectIdentifier(dotted).contents
    except ValueError as exc:
        raise UsageError(f"not an object identifier: {dotted!r}") from exc


@lru_cache(maxsize=512)
def dotted(contents: bytes) -> str:
    """The dotted form of OID contents read from a message (cached: a few OIDs recur)."""
    try:
        return ObjectIdentifier.load(tlv(OID, contents)).dotted
    except ValueError as exc:
        raise CmsRejected(Reason.MALFORMED, "invalid object identifier") from exc


def algorithm_id(oid_contents: bytes, *parameters: bytes) -> bytes:
    """An AlgorithmIdentifier; parameters absent unless given."""
    return sequence(tlv(OID, oid_contents), *parameters)


def parameterless(table: dict[bytes, _V]) -> dict[bytes, _V]:
    """Key a table of OIDs by the DER AlgorithmIdentifiers that name them without parameters:
    parameters absent or NULL (RFC 5754 and RFC 5758 ask receivers to accept both)."""
    return {encoding: value for oid, value in table.items()
            for encoding in (algorithm_id(oid), algorithm_id(oid, _NULL_DER))}
