"""CRC-16 of the SML transport and of SML messages (SML 1.04 §7/§8, facts.md §6).

SML uses CRC-16/X-25 (reflected polynomial 0x1021, init 0xFFFF, final XOR 0xFFFF). The value is
placed on the wire low byte first, so the *SML value* of the CRC (what an ``Unsigned16`` CRC field
holds, and what libsml's ``sml_crc16_calculate`` returns) is the byte-swapped X-25 CRC. Some meters
use CRC-16/KERMIT (init 0, no final XOR) and put it high byte first; SmlLib supports both
conventions, and so do we.

Speed: both are reflected CRCs over the CCITT polynomial, and :func:`binascii.crc_hqx` computes the
non-reflected CCITT CRC in C. A reflected CRC equals the bit-reversed non-reflected CRC of the
bit-reversed input, and ``bytes.translate`` reverses the bits of every byte in C too, so a frame's
CRC costs two C calls instead of a Python loop per byte.
"""

from __future__ import annotations

from binascii import crc_hqx
from enum import StrEnum

#: bit-reversal table for ``bytes.translate``
_REV = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


class CrcKind(StrEnum):
    """Which CRC convention a frame uses."""

    X25 = "x25"
    KERMIT = "kermit"


def reflect_bytes(data: bytes | bytearray | memoryview) -> bytes:
    """``data`` with the bits of every byte reversed (compute once, reuse for many CRCs)."""
    return bytes(data).translate(_REV)


def crc16_x25(data: bytes | bytearray | memoryview) -> int:
    """The standard CRC-16/X-25 of ``data`` (check value for ``b"123456789"``: 0x906E)."""
    h = crc_hqx(bytes(data).translate(_REV), 0xFFFF) ^ 0xFFFF
    return _REV[h & 0xFF] << 8 | _REV[h >> 8]


def crc16_kermit(data: bytes | bytearray | memoryview) -> int:
    """The standard CRC-16/KERMIT of ``data`` (check value for ``b"123456789"``: 0x2189)."""
    h = crc_hqx(bytes(data).translate(_REV), 0)
    return _REV[h & 0xFF] << 8 | _REV[h >> 8]


def sml_crc_reflected(reflected: bytes, kind: CrcKind = CrcKind.X25) -> int:
    """SML CRC value of data whose bits were already reversed with :func:`reflect_bytes`."""
    if kind is CrcKind.X25:
        h = crc_hqx(reflected, 0xFFFF) ^ 0xFFFF
        # byte-swapped X-25 == the two bytes of h, each bit-reversed, in the same order
        return _REV[h >> 8] << 8 | _REV[h & 0xFF]
    h = crc_hqx(reflected, 0)
    return _REV[h & 0xFF] << 8 | _REV[h >> 8]


def sml_crc(data: bytes | bytearray | memoryview, kind: CrcKind = CrcKind.X25) -> int:
    """The CRC as SML carries it: the value whose big-endian bytes end a transport frame.

    For ``X25`` this is the byte-swapped CRC-16/X-25 (libsml's ``sml_crc16_calculate``); for
    ``KERMIT`` the plain CRC-16/KERMIT (SmlLib's ``crc.kermit``).
    """
    return sml_crc_reflected(bytes(data).translate(_REV), kind)


__all__ = [
    "CrcKind",
    "crc16_kermit",
    "crc16_x25",
    "reflect_bytes",
    "sml_crc",
    "sml_crc_reflected",
]
