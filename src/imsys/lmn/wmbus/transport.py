"""Layers between link and application (EN 13757-7, OMS Vol. 2): CI dispatch, ELL, AFL, TPL.

CI table (:data:`CI_FIELDS`): 0x72/0x7A/0x78 response from a meter with long/short/no transport
header, 0x8A/0x8B transport header without application data, 0x8C/0x8E extended link layer
(short / with address), 0x90 authentication and fragmentation layer. Listed as not supported:
0x8D/0x8F (ELL with AES-CTR session encryption), 0x79 (compact frame), 0x5A/0x5B/0x51/0x53
(commands to a meter), 0x7E/0x7F (SML application layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from imsys.core.errors import UsageError
from imsys.lmn.errors import LmnReason, WmbusRejected
from imsys.lmn.wmbus.link import Address
from imsys.lmn.wmbus.security import MAC_LENGTHS, SecurityMode


class CiKind(StrEnum):
    LONG_TPL = "long transport header"
    SHORT_TPL = "short transport header"
    NO_TPL = "no transport header"
    ELL = "extended link layer"
    AFL = "authentication and fragmentation layer"


#: CI field → what follows. Not supported (decode → UNSUPPORTED): 0x8D, 0x8F (encrypted ELL),
#: 0x79 (compact frame), 0x51/0x53/0x5A/0x5B (to-meter commands), 0x7E/0x7F (SML payload).
CI_FIELDS: dict[int, CiKind] = {
    0x72: CiKind.LONG_TPL,
    0x7A: CiKind.SHORT_TPL,
    0x78: CiKind.NO_TPL,
    0x8B: CiKind.LONG_TPL,
    0x8A: CiKind.SHORT_TPL,
    0x8C: CiKind.ELL,
    0x8E: CiKind.ELL,
    0x90: CiKind.AFL,
}

# configuration field: bits 12-8 mode, 7-4 number of encrypted blocks, the rest are flags
CFG_MODE_MASK = 0x1F00
CFG_BLOCKS_MASK = 0x00F0


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendedLinkLayer:
    """ELL 0x8C (``CC ACC``) or 0x8E (``CC ACC M A``)."""

    ci: int = 0x8C
    communication_control: int = 0
    access_number: int = 0
    address: Address | None = None

    def to_bytes(self) -> bytes:
        out = bytes((self.ci, self.communication_control, self.access_number))
        if self.ci == 0x8E:
            if self.address is None:
                raise UsageError("ELL 0x8E carries an address")
            out += bytes(self.address)
        elif self.ci != 0x8C:
            raise UsageError(f"ELL CI 0x{self.ci:02x} is not supported")
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Afl:
    """Authentication and fragmentation layer (CI 0x90).

    The MAC is computed by the encoder; the decoder fills ``mac`` with what it verified (it does
    not take part in equality).
    """

    message_counter: int
    mcl: int = 0x25  # message counter present, AT = 5 (CMAC truncated to 8 bytes)
    key_info: int | None = None
    message_length: int | None = None
    more_fragments: bool = False
    fragment_id: int = 0
    mac: bytes = field(default=b"", compare=False)

    @property
    def mac_length(self) -> int:
        return MAC_LENGTHS.get(self.mcl & 0x0F, 0)

    def fcl(self) -> int:
        v = self.fragment_id & 0xFF
        v |= 0x4000 if self.more_fragments else 0
        v |= 0x2000  # MCL present
        v |= 0x1000 if self.message_length is not None else 0
        v |= 0x0800  # message counter present
        v |= 0x0400 if self.mac_length else 0
        v |= 0x0200 if self.key_info is not None else 0
        return v

    def to_bytes(self, mac: bytes) -> bytes:
        body = self.fcl().to_bytes(2, "little") + bytes((self.mcl,))
        if self.key_info is not None:
            body += self.key_info.to_bytes(2, "little")
        body += self.message_counter.to_bytes(4, "little") + mac
        if self.message_length is not None:
            body += self.message_length.to_bytes(2, "little")
        return bytes((0x90, len(body))) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportHeader:
    """TPL header. ``config_flags`` is the configuration word without mode and block count
    (the encoder computes the block count); ``address`` only in a long header."""

    ci: int = 0x7A
    access_number: int = 0
    status: int = 0
    mode: SecurityMode = SecurityMode.NONE
    config_flags: int = 0
    config_ext: int | None = None
    address: Address | None = None

    def __post_init__(self) -> None:
        # Mode 7 always carries the configuration extension; 0x10 (KDF 1, no key version) is
        # what OMS Vol. 2 uses. Making the default explicit keeps decode(encode(h)) == h.
        if self.mode is SecurityMode.AES_CBC_NO_IV and self.config_ext is None:
            object.__setattr__(self, "config_ext", 0x10)

    def config_word(self, blocks: int) -> int:
        return (self.config_flags & ~(CFG_MODE_MASK | CFG_BLOCKS_MASK)) | int(self.mode) << 8 \
            | (blocks & 0x0F) << 4

    def to_bytes(self, blocks: int) -> bytes:
        kind = CI_FIELDS.get(self.ci)
        if kind is CiKind.NO_TPL:
            if self.mode is not SecurityMode.NONE:
                raise UsageError("a telegram without transport header cannot be encrypted")
            return bytes((self.ci,))
        out = bytes((self.ci,))
        if kind is CiKind.LONG_TPL:
            if self.address is None:
                raise UsageError("a long transport header carries the meter address")
            out += self.address.tpl_bytes()
        elif kind is not CiKind.SHORT_TPL:
            raise UsageError(f"CI 0x{self.ci:02x} is not a transport header")
        out += bytes((self.access_number, self.status))
        out += self.config_word(blocks).to_bytes(2, "little")
        if self.mode is SecurityMode.AES_CBC_NO_IV:
            out += bytes((self.config_ext,))  # type: ignore[arg-type]  # set by __post_init__
        return out


def _need(data: bytes, i: int, n: int, what: str) -> None:
    if i + n > len(data):
        raise WmbusRejected(LmnReason.TRUNCATED, f"{what} runs past the end", offset=i)


def parse_ell(data: bytes, i: int) -> tuple[ExtendedLinkLayer, int]:
    ci = data[i]
    size = 3 if ci == 0x8C else 11
    _need(data, i, size, "extended link layer")
    address = Address.from_bytes(data[i + 3 : i + 11]) if ci == 0x8E else None
    return ExtendedLinkLayer(ci=ci, communication_control=data[i + 1],
                             access_number=data[i + 2], address=address), i + size


def parse_afl(data: bytes, i: int) -> tuple[Afl, int]:
    _need(data, i, 4, "AFL")
    afll = data[i + 1]
    end = i + 2 + afll
    _need(data, i, 2 + afll, "AFL")
    fcl = int.from_bytes(data[i + 2 : i + 4], "little")
    j = i + 4
    mcl = 0
    if fcl & 0x2000:
        _need(data, j, 1, "AFL.MCL")
        mcl = data[j]
        j += 1
    key_info = None
    if fcl & 0x0200:
        _need(data, j, 2, "AFL.KI")
        key_info = int.from_bytes(data[j : j + 2], "little")
        j += 2
    if not fcl & 0x0800:
        raise WmbusRejected(LmnReason.UNSUPPORTED, "AFL without message counter")
    _need(data, j, 4, "AFL.MCR")
    counter = int.from_bytes(data[j : j + 4], "little")
    j += 4
    mac = b""
    if fcl & 0x0400:
        n = MAC_LENGTHS.get(mcl & 0x0F)
        if n is None:
            raise WmbusRejected(LmnReason.UNSUPPORTED, f"AFL authentication type {mcl & 0x0F}")
        _need(data, j, n, "AFL.MAC")
        mac = data[j : j + n]
        j += n
    ml = None
    if fcl & 0x1000:
        _need(data, j, 2, "AFL.ML")
        ml = int.from_bytes(data[j : j + 2], "little")
        j += 2
    if j != end:
        raise WmbusRejected(LmnReason.MALFORMED, f"AFL length {afll} does not match its fields")
    if not fcl & 0x2000 and fcl & 0x0400:
        raise WmbusRejected(LmnReason.MALFORMED, "AFL MAC without message control field")
    return Afl(message_counter=counter, mcl=mcl, key_info=key_info, message_length=ml,
               more_fragments=bool(fcl & 0x4000), fragment_id=fcl & 0xFF, mac=mac), end


def parse_tpl(data: bytes, i: int) -> tuple[TransportHeader, int, int]:
    """``(header, encrypted block count, index after the header)``."""
    ci = data[i]
    kind = CI_FIELDS.get(ci)
    if kind is CiKind.NO_TPL:
        return TransportHeader(ci=ci), 0, i + 1
    if kind not in (CiKind.SHORT_TPL, CiKind.LONG_TPL):
        raise WmbusRejected(LmnReason.UNSUPPORTED, f"CI field 0x{ci:02x}", ci=ci)
    j = i + 1
    address = None
    if kind is CiKind.LONG_TPL:
        _need(data, j, 8, "long transport header")
        address = Address.from_tpl_bytes(data[j : j + 8])
        j += 8
    _need(data, j, 4, "transport header")
    acc, status = data[j], data[j + 1]
    cfg = int.from_bytes(data[j + 2 : j + 4], "little")
    j += 4
    mode_value = (cfg & CFG_MODE_MASK) >> 8
    try:
        mode = SecurityMode(mode_value)
    except ValueError:
        raise WmbusRejected(LmnReason.UNSUPPORTED, f"security mode {mode_value}",
                            mode=mode_value) from None
    ext = None
    if mode is SecurityMode.AES_CBC_NO_IV:
        _need(data, j, 1, "configuration extension")
        ext = data[j]
        j += 1
    blocks = (cfg & CFG_BLOCKS_MASK) >> 4
    flags = cfg & ~(CFG_MODE_MASK | CFG_BLOCKS_MASK)
    return TransportHeader(ci=ci, access_number=acc, status=status, mode=mode,
                           config_flags=flags, config_ext=ext, address=address), blocks, j


__all__ = [
    "CI_FIELDS",
    "Afl",
    "CiKind",
    "ExtendedLinkLayer",
    "TransportHeader",
    "parse_afl",
    "parse_ell",
    "parse_tpl",
]
