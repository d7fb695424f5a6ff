"""Wireless M-Bus data link layer (EN 13757-4): L, C, M, A fields and the block CRCs.

Frame format A: block 1 is ``L C M(2) A(6)`` + CRC, then blocks of 16 bytes + CRC (the last one
shorter); L counts the bytes after L without the CRCs. Frame format B: blocks 1 and 2 (at most
126 bytes including L) share one CRC, block 3 has its own; L counts the CRCs too. ``NONE`` is the
form most radio dongles hand over: format A with the CRCs already removed.

The CRC is CRC-16/EN-13757: polynomial 0x3D65, init 0, final XOR 0xFFFF, not reflected, sent
high byte first (check value for ``b"123456789"``: 0xC2B7).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from imsys.core.errors import UsageError
from imsys.lmn.errors import LmnReason, WmbusRejected


def _table() -> tuple[int, ...]:
    out = []
    for i in range(256):
        r = i << 8
        for _ in range(8):
            r = ((r << 1) ^ 0x3D65) if r & 0x8000 else (r << 1)
        out.append(r & 0xFFFF)
    return tuple(out)


_CRC_TABLE = _table()


def crc16_en13757(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/EN-13757 of ``data``."""
    crc = 0
    t = _CRC_TABLE
    for b in data:
        crc = t[((crc >> 8) ^ b) & 0xFF] ^ ((crc << 8) & 0xFFFF)
    return crc ^ 0xFFFF


class FrameFormat(StrEnum):
    """How a telegram is laid out on the wire."""

    A = "a"
    B = "b"
    #: format A without the block CRCs (what most receivers deliver)
    NONE = "none"
    #: decoding only: try A, then B, then NONE
    AUTO = "auto"


def manufacturer_code(text: str) -> int:
    """The 2-byte M-field value of a three-letter FLAG manufacturer id (``"ELS"`` → 0x1593)."""
    if len(text) != 3 or not text.isascii() or not text.isalpha():
        raise UsageError(f"manufacturer id must be three letters A-Z, got {text!r}")
    a, b, c = (ord(ch) - 64 for ch in text.upper())
    return a << 10 | b << 5 | c


def manufacturer_text(code: int) -> str:
    """The three letters of an M-field value; codes outside A–Z show as ``?``."""
    letters = [(code >> 10) & 0x1F, (code >> 5) & 0x1F, code & 0x1F]
    return "".join(chr(x + 64) if 1 <= x <= 26 else "?" for x in letters)


@dataclass(frozen=True, slots=True)
class Address:
    """A meter address: M-field and A-field (identification number, version, device type).

    ``ident`` is the 32-bit identification number as sent (little endian); for the usual BCD
    numbers ``f"{ident:08x}"`` is the printed meter number (``0x12345678`` → ``"12345678"``).
    """

    manufacturer: int
    ident: int
    version: int
    device_type: int

    def __post_init__(self) -> None:
        if not (0 <= self.manufacturer <= 0xFFFF and 0 <= self.ident <= 0xFFFFFFFF
                and 0 <= self.version <= 0xFF and 0 <= self.device_type <= 0xFF):
            raise UsageError(f"address field out of range: {self!r}")

    @classmethod
    def from_bytes(cls, data: bytes) -> Address:
        """From the 8 bytes ``M(2) ID(4) version type`` as on the wire."""
        return cls(int.from_bytes(data[0:2], "little"), int.from_bytes(data[2:6], "little"),
                   data[6], data[7])

    @classmethod
    def from_tpl_bytes(cls, data: bytes) -> Address:
        """From the long TPL header order ``ID(4) M(2) version type``."""
        return cls(int.from_bytes(data[4:6], "little"), int.from_bytes(data[0:4], "little"),
                   data[6], data[7])

    def __bytes__(self) -> bytes:
        return (self.manufacturer.to_bytes(2, "little") + self.ident.to_bytes(4, "little")
                + bytes((self.version, self.device_type)))

    def tpl_bytes(self) -> bytes:
        """The long-TPL-header order: ``ID(4) M(2) version type``."""
        return (self.ident.to_bytes(4, "little") + self.manufacturer.to_bytes(2, "little")
                + bytes((self.version, self.device_type)))

    @property
    def id_text(self) -> str:
        return f"{self.ident:08x}"

    @property
    def manufacturer_id(self) -> str:
        return manufacturer_text(self.manufacturer)

    def __str__(self) -> str:
        return (f"{self.manufacturer_id}-{self.id_text}-v{self.version:02x}"
                f"-t{self.device_type:02x}")


@dataclass(frozen=True, slots=True)
class LinkHeader:
    """C-field and address of the data link layer (the L-field is derived)."""

    c_field: int
    address: Address


def _blocks_a(n_after_block1: int) -> int:
    return (n_after_block1 + 15) // 16


def encode_link(header: LinkHeader, payload: bytes, fmt: FrameFormat = FrameFormat.A) -> bytes:
    """The wire form of a telegram: L C M A + ``payload`` (CI onwards), with block CRCs."""
    if not 0 <= header.c_field <= 0xFF:
        raise UsageError("C-field must be one byte")
    body = bytes((header.c_field,)) + bytes(header.address) + payload
    if fmt is FrameFormat.A or fmt is FrameFormat.NONE:
        length = len(body)
        if length > 255:
            raise UsageError(f"telegram too long for frame format A ({length} > 255 bytes)")
        data = bytes((length,)) + body
        if fmt is FrameFormat.NONE:
            return data
        out = bytearray(data[:10])
        out += crc16_en13757(data[:10]).to_bytes(2, "big")
        for i in range(10, len(data), 16):
            block = data[i : i + 16]
            out += block + crc16_en13757(block).to_bytes(2, "big")
        return bytes(out)
    if fmt is FrameFormat.B:
        n = len(body) + 1  # with L
        if n <= 126:
            total = n + 2
            data = bytes((total - 1,)) + body
            return data + crc16_en13757(data).to_bytes(2, "big")
        total = n + 4
        if total - 1 > 255:
            raise UsageError("telegram too long for frame format B")
        data = bytes((total - 1,)) + body
        first, rest = data[:126], data[126:]
        return (first + crc16_en13757(first).to_bytes(2, "big")
                + rest + crc16_en13757(rest).to_bytes(2, "big"))
    raise UsageError(f"cannot encode frame format {fmt!r}")


def _check(block: bytes | bytearray, crc: bytes | bytearray, index: int) -> None:
    if crc16_en13757(block) != int.from_bytes(crc, "big"):
        raise WmbusRejected(LmnReason.BAD_CRC, f"block {index} CRC does not match", block=index)


def strip_link(data: bytes, fmt: FrameFormat) -> tuple[bytes, FrameFormat]:
    """Check the block CRCs and return ``(L C M A … without CRCs, format)`` for one telegram."""
    if len(data) < 11:
        raise WmbusRejected(LmnReason.TRUNCATED, f"telegram of {len(data)} bytes", length=len(data))
    if fmt is FrameFormat.AUTO:
        errors = []
        for candidate in (FrameFormat.A, FrameFormat.B, FrameFormat.NONE):
            try:
                return strip_link(data, candidate)
            except WmbusRejected as exc:
                errors.append(exc)
        raise errors[0]
    L = data[0]
    if fmt is FrameFormat.NONE:
        if len(data) != L + 1:
            raise WmbusRejected(LmnReason.MALFORMED if len(data) > L + 1 else LmnReason.TRUNCATED,
                                f"L-field {L} but {len(data) - 1} bytes follow", l_field=L)
        return data, fmt
    if fmt is FrameFormat.A:
        if L < 9:
            raise WmbusRejected(LmnReason.MALFORMED, f"L-field {L} < 9", l_field=L)
        want = 1 + L + 2 * (1 + _blocks_a(L - 9))
        if len(data) != want:
            raise WmbusRejected(LmnReason.TRUNCATED if len(data) < want else LmnReason.MALFORMED,
                                f"format A with L={L} needs {want} bytes, got {len(data)}",
                                l_field=L)
        _check(data[:10], data[10:12], 1)
        out = bytearray(data[:10])
        i, k = 12, 2
        while i < len(data):
            n = min(16, len(data) - i - 2)
            _check(data[i : i + n], data[i + n : i + n + 2], k)
            out += data[i : i + n]
            i += n + 2
            k += 1
        return bytes(out), fmt
    if fmt is FrameFormat.B:
        if len(data) != L + 1:
            raise WmbusRejected(LmnReason.TRUNCATED if len(data) < L + 1 else LmnReason.MALFORMED,
                                f"format B with L={L} needs {L + 1} bytes, got {len(data)}",
                                l_field=L)
        if L + 1 <= 128:
            _check(data[:-2], data[-2:], 1)
            body = data[:-2]
        else:
            _check(data[:126], data[126:128], 1)
            _check(data[128:-2], data[-2:], 2)
            body = data[:126] + data[128:-2]
        # re-express L as format A does (bytes after L, CRCs excluded)
        return bytes((len(body) - 1,)) + body[1:], fmt
    raise UsageError(f"unknown frame format {fmt!r}")


def wire_length(data: bytes, fmt: FrameFormat) -> int:
    """Wire length of the telegram at the start of ``data`` (for framing a byte stream)."""
    L = data[0]
    if fmt is FrameFormat.A:
        return 1 + L + 2 * (1 + _blocks_a(max(L - 9, 0)))
    return L + 1


__all__ = [
    "Address",
    "FrameFormat",
    "LinkHeader",
    "crc16_en13757",
    "encode_link",
    "manufacturer_code",
    "manufacturer_text",
    "strip_link",
    "wire_length",
]
