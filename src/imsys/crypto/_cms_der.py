"""The small DER toolkit under :mod:`imsys.crypto.cms` (private).

A reader that walks a buffer without building objects (the open path of a sealed message visits
about forty elements, so an object per element would cost more than the ECDH itself), and a
writer of definite-length DER. The reader also accepts BER where RFC 5652 allows it: indefinite
lengths and constructed OCTET STRINGs (streaming encoders such as ``openssl cms -stream`` emit
them). Every defect raises :class:`~imsys.core.errors.CmsRejected`: ``TRUNCATED`` when an
element runs past the end of the whole input, ``MALFORMED`` for anything else.
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


class Cursor:
    """Reads the elements inside one constructed element (or a whole buffer) in order."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, start: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = start
        self.end = len(buf) if end is None else end

    def peek(self) -> int:
        """The tag of the next element, or -1 at the end."""
        return self.buf[self.pos] if self.pos < self.end else -1

    def next(self) -> tuple[int, int, int]:
        """``(tag, contents start, contents end)`` of the next element; advances past it."""
        tag, start, stop, self.pos = _element(self.buf, self.pos, self.end, 0)
        return tag, start, stop

    # enter and value repeat the short-form case of take on purpose: they run about seventy
    # times per message, and an extra call each would cost more than all the AES and hashing.

    def take(self, tag: int) -> tuple[int, int]:
        """Contents bounds of the next element, which must carry ``tag``."""
        buf = self.buf
        pos = self.pos
        if pos + 4 <= self.end and buf[pos] == tag:
            n = buf[pos + 1]
            if n < 0x80:
                start = pos + 2
                stop = start + n
            elif n == 0x81:
                start = pos + 3
                stop = start + buf[pos + 2]
            elif n == 0x82:
                start = pos + 4
                stop = start + (buf[pos + 2] << 8 | buf[pos + 3])
            else:
                return self._take(tag)
            if stop > self.end:
                raise _overrun(buf, stop)
            self.pos = stop
            return start, stop
        return self._take(tag)

    def enter(self, tag: int) -> Cursor:
        """A cursor over the contents of the next element (constructed, tagged ``tag``)."""
        buf = self.buf
        pos = self.pos
        inner = Cursor.__new__(Cursor)
        inner.buf = buf
        if pos + 2 < self.end and buf[pos] == tag and buf[pos + 1] < 0x80:
            inner.pos = pos + 2
            self.pos = inner.end = pos + 2 + buf[pos + 1]
            if inner.end > self.end:
                raise _overrun(buf, inner.end)
        else:
            inner.pos, inner.end = self.take(tag)
        return inner

    def value(self, tag: int) -> bytes:
        """Contents octets of the next (primitive) element."""
        buf = self.buf
        pos = self.pos
        if pos + 2 < self.end and buf[pos] == tag and buf[pos + 1] < 0x80:
            self.pos = stop = pos + 2 + buf[pos + 1]
            if stop > self.end:
                raise _overrun(buf, stop)
            return buf[pos + 2:stop]
        start, stop = self.take(tag)
        return buf[start:stop]

    def _take(self, tag: int) -> tuple[int, int]:
        got, start, stop, after = _element(self.buf, self.pos, self.end, 0)
        if got != tag:
            raise CmsRejected(Reason.MALFORMED, f"expected tag 0x{tag:02x}, found 0x{got:02x}",
                              offset=self.pos)
        self.pos = after
        return start, stop

    def raw(self, tag: int) -> bytes:
        """The whole encoding (identifier, length, contents) of the next element."""
        begin = self.pos
        self.take(tag)
        return self.buf[begin:self.pos]

    def octets(self, tag: int = OCTET_STRING) -> bytes:
        """An OCTET STRING (or one implicitly tagged ``tag``), primitive or BER-constructed."""
        return _octets(self, tag, 0)

    def small_int(self) -> int:
        """A non-negative INTEGER that fits into four octets (such as a GCM ICV length)."""
        data = self.value(INTEGER)
        if not 1 <= len(data) <= 4 or data[0] & 0x80:
            raise CmsRejected(Reason.MALFORMED, "integer out of range")
        return int.from_bytes(data, "big")

    def skip(self, tag: int) -> None:
        """Skip the next element if it carries ``tag`` (an absent OPTIONAL is fine)."""
        if self.pos < self.end and self.buf[self.pos] == tag:
            self.pos = _element(self.buf, self.pos, self.end, 0)[3]

    def finish(self) -> None:
        """Require that every element has been read."""
        if self.pos != self.end:
            raise CmsRejected(Reason.MALFORMED, "unexpected data after the last element",
                              offset=self.pos)


def _octets(cursor: Cursor, tag: int, depth: int) -> bytes:
    got, start, stop = cursor.next()
    if got == tag:
        return cursor.buf[start:stop]
    if got != tag | _CONSTRUCTED or depth >= _MAX_DEPTH:
        raise CmsRejected(Reason.MALFORMED, f"expected an octet string 0x{tag:02x}, "
                          f"found 0x{got:02x}")
    chunks = Cursor(cursor.buf, start, stop)
    parts = []
    while chunks.pos < chunks.end:
        parts.append(_octets(chunks, OCTET_STRING, depth + 1))
    return b"".join(parts)


def algorithm(cursor: Cursor) -> tuple[bytes, Cursor]:
    """Read an AlgorithmIdentifier: its OID contents and a cursor over its parameters."""
    inner = cursor.enter(SEQUENCE)
    oid = inner.value(OID)
    return oid, inner


def algorithm_name(encoding: bytes) -> str:
    """The dotted OID of an encoded AlgorithmIdentifier (for messages about it)."""
    return dotted(algorithm(Cursor(encoding))[0])


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


@lru_cache(maxsize=64)
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
