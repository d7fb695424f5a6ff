"""SML transport protocol version 1 (SML 1.04 §8; facts.md §6; SmlLib ``reader.py``).

A frame on the wire::

    1B 1B 1B 1B  01 01 01 01   start: escape sequence + version-1 marker
    <SML file, every aligned 4-byte word 1B1B1B1B doubled>
    00 …                        0–3 fill bytes so the data is a multiple of 4 bytes long
    1B 1B 1B 1B  1A pp cc cc    end: escape, 0x1A, fill count pp, CRC over everything before cc

The transport works on 4-byte words counted from the start sequence, so escapes are recognised
only at aligned positions (as libsml's reader and jSML do); an unaligned ``1B1B1B1B`` is data.
The CRC is CRC-16/X-25 (low byte first) or, for some meters, CRC-16/KERMIT (high byte first):
:func:`decode_frame` accepts either, :func:`encode_frame` writes the one asked for.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Iterator
from dataclasses import dataclass

from imsys.core.errors import UsageError
from imsys.lmn.errors import LmnReason, SmlRejected
from imsys.lmn.sml.crc import _REV, CrcKind, sml_crc
from imsys.lmn.sml.get_list import GetListResponse
from imsys.lmn.sml.message import SmlMessage, _decode_messages, decode_messages, encode_messages
from imsys.lmn.sml.model import ListEntry, fast_init

ESC = b"\x1b\x1b\x1b\x1b"
START = ESC + b"\x01\x01\x01\x01"
#: the version-1 marker that follows an escape at the start of a frame
V1 = b"\x01\x01\x01\x01"
#: fill bytes beyond this are refused (the spec needs at most 3; some meters send 4)
MAX_PADDING = 4
#: CRC-16/X-25 register (bit-reversed domain, see crc.py) after a frame *including* its correct
#: CRC bytes: the CRC is linear, so one pass over the whole frame checks it
X25_RESIDUE = 0x1D0F
_ZEROS = tuple(b"\x00" * k for k in range(MAX_PADDING + 1))
#: ``1A pp`` after the end escape, for pp = 0..3 fill bytes
_TRAILER = tuple(bytes((0x1A, k)) for k in range(4))


@dataclass(frozen=True, slots=True)
class SmlFile:
    """The messages of one transport frame and the CRC convention the frame used."""

    messages: tuple[SmlMessage, ...]
    crc: CrcKind = CrcKind.X25

    def list_entries(self) -> Iterator[ListEntry]:
        """Every ``SML_ListEntry`` of every ``GetList.Res`` in the file, in order."""
        for m in self.messages:
            if isinstance(m.body, GetListResponse):
                yield from m.body.val_list


_new_file = fast_init(SmlFile)


def escape(data: bytes) -> bytes:
    """Double every aligned ``1B1B1B1B`` word of ``data`` (which starts word-aligned)."""
    if data.find(ESC) < 0:
        return data
    out = bytearray()
    i = 0
    while True:
        k = data.find(ESC, i)
        while k >= 0 and k % 4:
            k = data.find(ESC, k + 1)
        if k < 0:
            out += data[i:]
            return bytes(out)
        out += data[i : k + 4]
        out += ESC
        i = k + 4


def encode_frame(file: SmlFile | list[SmlMessage] | tuple[SmlMessage, ...],
                 crc: CrcKind | None = None) -> bytes:
    """One complete transport-v1 frame for ``file`` (CRC kind: argument, else ``file.crc``)."""
    if not isinstance(file, SmlFile):
        file = SmlFile(tuple(file), crc or CrcKind.X25)
    kind = crc or file.crc
    if not isinstance(kind, CrcKind):
        raise UsageError(f"not a CrcKind: {kind!r}")
    body = encode_messages(file.messages, kind)
    pad = -len(body) % 4
    frame = b"".join((START, escape(body + _ZEROS[pad] if pad else body), ESC, _TRAILER[pad]))
    if kind is CrcKind.X25:
        h = crc_hqx(frame.translate(_REV), 0xFFFF) ^ 0xFFFF
        return frame + bytes((_REV[h >> 8], _REV[h & 0xFF]))
    return frame + sml_crc(frame, kind).to_bytes(2, "big")


def find_end(data: bytes, start: int = 0) -> tuple[int, bool]:
    """Scan a frame that begins at ``start``: ``(index of the end escape, had_escapes)``.

    Returns ``(-1, …)`` if the data ends before the end sequence. Raises ``SmlRejected`` on an
    unknown escape or on a start sequence inside the frame.
    """
    i = start + 8
    escaped = False
    n = len(data)
    while True:
        k = data.find(ESC, i)
        if k < 0:
            return -1, escaped
        if (k - start) % 4:
            i = k + 1
            continue
        if k + 8 > n:
            return -1, escaped
        nxt = data[k + 4]
        if nxt == 0x1A:
            return k, escaped
        word = data[k + 4 : k + 8]
        if word == ESC:
            escaped = True
            i = k + 8
            continue
        if word == V1:
            raise SmlRejected(LmnReason.TRUNCATED, "a new frame starts before this one ended",
                              offset=k)
        raise SmlRejected(LmnReason.BAD_ESCAPE, f"unknown escape sequence 1b1b1b1b {word.hex()}",
                          offset=k)


def unescape(data: bytes) -> bytes:
    """Undo :func:`escape` on aligned words (``data`` starts word-aligned)."""
    out = bytearray()
    i = 0
    while True:
        k = data.find(ESC + ESC, i)
        while k >= 0 and k % 4:
            k = data.find(ESC + ESC, k + 1)
        if k < 0:
            out += data[i:]
            return bytes(out)
        out += data[i : k + 4]
        i = k + 8


def check_crc(frame: bytes, crc: CrcKind | None = None) -> CrcKind:
    """Verify the transport CRC of a complete frame; return the convention that matched."""
    got = int.from_bytes(frame[-2:], "big")
    head = frame[:-2]
    if crc in (None, CrcKind.X25) and got == sml_crc(head, CrcKind.X25):
        return CrcKind.X25
    if crc in (None, CrcKind.KERMIT) and got == sml_crc(head, CrcKind.KERMIT):
        return CrcKind.KERMIT
    raise SmlRejected(LmnReason.BAD_CRC, "SML transport CRC does not match", crc=got,
                      length=len(frame))


def frame_payload(frame: bytes, crc: CrcKind | None = None) -> tuple[bytes, CrcKind]:
    """Check a complete frame (framing, escapes, padding, CRC); return ``(sml_file_bytes, crc)``."""
    data = frame if type(frame) is bytes else bytes(frame)
    if data[:8] != START:
        raise SmlRejected(LmnReason.MALFORMED, "frame does not begin with 1b1b1b1b 01010101")
    n = len(data)
    k = data.find(ESC, 8)
    if k == n - 8 and data[k + 4] == 0x1A:  # fast path: no escape inside the frame
        escaped = False
    else:
        k, escaped = find_end(data)
        if k < 0:
            raise SmlRejected(LmnReason.TRUNCATED, "no end sequence", length=n)
        if k + 8 != n:
            raise SmlRejected(LmnReason.MALFORMED, "bytes after the end sequence",
                              extra=n - k - 8)
    # transport CRC (X-25 as SML carries it, else Kermit) over everything before the CRC bytes
    got = data[-2] << 8 | data[-1]
    h = crc_hqx(data[:-2].translate(_REV), 0xFFFF) ^ 0xFFFF
    if crc is not CrcKind.KERMIT and got == (_REV[h >> 8] << 8 | _REV[h & 0xFF]):
        kind = CrcKind.X25
    else:
        kind = check_crc(data, crc)
    pad = data[k + 5]
    if pad > MAX_PADDING:
        raise SmlRejected(LmnReason.MALFORMED, f"fill count {pad}", padding=pad)
    if escaped:
        payload = unescape(data[8:k])
        end = len(payload)
    else:
        payload = data
        end = k
    if pad:
        if end - pad < 8 * (not escaped) or payload[end - pad : end].count(0) != pad:
            raise SmlRejected(LmnReason.MALFORMED, "fill bytes are not zero", padding=pad)
        end -= pad
    return payload[(0 if escaped else 8) : end], kind


def decode_frame(frame: bytes, crc: CrcKind | None = None, *,
                 verify_message_crc: bool = True) -> SmlFile:
    """Decode one complete transport-v1 frame (start sequence to CRC) into an :class:`SmlFile`.

    Raises :class:`~imsys.lmn.errors.SmlRejected` – and nothing else – for any input. Message
    CRCs may use either convention (which one Kermit meters use inside messages is not public);
    ``verify_message_crc=False`` skips them (see :func:`decode_messages`).
    """
    if type(frame) is bytes and crc is not CrcKind.KERMIT:
        # fast path: no escape inside, valid fill, X-25 CRC – else frame_payload decides
        n = len(frame)
        e = n - 8
        if frame.startswith(START) and frame.find(ESC, 8) == e and frame[n - 4] == 0x1A:
            pad = frame[n - 3]
            rev = frame.translate(_REV)
            if (pad <= MAX_PADDING and e - pad >= 8 and frame[e - pad : e] == _ZEROS[pad]
                    and crc_hqx(rev, 0xFFFF) == X25_RESIDUE):
                payload = frame[8 : e - pad]
                try:
                    messages = _decode_messages(payload, None, verify_message_crc, rev[8 : e - pad])
                except IndexError:
                    raise SmlRejected(LmnReason.TRUNCATED, "SML data ends inside a message",
                                      length=len(payload)) from None
                return _new_file(messages, CrcKind.X25)
    payload, kind = frame_payload(frame, crc)
    return _new_file(decode_messages(payload, None, verify_crc=verify_message_crc), kind)


__all__ = [
    "ESC",
    "START",
    "SmlFile",
    "check_crc",
    "decode_frame",
    "encode_frame",
    "escape",
    "find_end",
    "frame_payload",
    "unescape",
]
