"""Whole telegrams: link layer, optional ELL and AFL, transport header, security, records.

:func:`decode_telegram` raises :class:`~imsys.lmn.errors.WmbusRejected` – and nothing else – for any
input; :func:`encode_telegram` is its inverse (``decode(encode(t, key), key) == t``).
"""

from __future__ import annotations

from dataclasses import dataclass

from imsys.core.errors import UsageError
from imsys.lmn.errors import LmnReason, WmbusRejected
from imsys.lmn.wmbus.link import Address, FrameFormat, LinkHeader, encode_link, strip_link
from imsys.lmn.wmbus.records import DataRecord, decode_records, encode_records
from imsys.lmn.wmbus.security import (
    ZERO_IV,
    CounterTracker,
    Direction,
    KeySource,
    SecurityMode,
    aes_cbc,
    afl_mac,
    derive_keys,
    lookup_key,
    macs_equal,
    mode5_iv,
)
from imsys.lmn.wmbus.transport import (
    CI_FIELDS,
    Afl,
    CiKind,
    ExtendedLinkLayer,
    TransportHeader,
    parse_afl,
    parse_ell,
    parse_tpl,
)

#: C-field values of a meter's unsolicited telegrams
SND_NR = 0x44
SND_IR = 0x46
RSP_UD = 0x08


@dataclass(frozen=True, slots=True, kw_only=True)
class Telegram:
    """One wM-Bus telegram with its application data in clear."""

    link: LinkHeader
    ell: ExtendedLinkLayer | None = None
    afl: Afl | None = None
    tpl: TransportHeader
    records: tuple[DataRecord, ...] = ()
    manufacturer_data: bytes | None = None
    more_records_follow: bool = False

    @property
    def meter(self) -> Address:
        """The meter's address: from the long transport header if present, else the link layer."""
        return self.tpl.address or self.link.address


def _pad(plain: bytes) -> bytes:
    return plain + b"\x2f" * (-len(plain) % 16)


def encode_telegram(t: Telegram, key: bytes | None = None,
                    fmt: FrameFormat = FrameFormat.A) -> bytes:
    """The wire bytes of ``t`` (encrypted with ``key`` for modes 5 and 7)."""
    apl = encode_records(t.records, t.manufacturer_data, t.more_records_follow)
    mode = t.tpl.mode
    ell = t.ell.to_bytes() if t.ell else b""
    if mode is SecurityMode.NONE:
        if t.afl is not None:
            raise UsageError("an AFL is only written for security mode 7")
        return encode_link(t.link, ell + t.tpl.to_bytes(0) + apl, fmt)
    if key is None:
        raise UsageError(f"security mode {int(mode)} needs a key")
    plain = _pad(b"\x2f\x2f" + apl)
    blocks = len(plain) // 16
    if blocks > 15:
        raise UsageError(f"{blocks} encrypted blocks do not fit the configuration field (≤ 15)")
    tpl = t.tpl.to_bytes(blocks)
    if mode is SecurityMode.AES_CBC_IV:
        if t.afl is not None:
            raise UsageError("an AFL is only written for security mode 7")
        cipher = aes_cbc(key, mode5_iv(t.meter, t.tpl.access_number), plain, decrypt=False)
        return encode_link(t.link, ell + tpl + cipher, fmt)
    if t.afl is None:
        raise UsageError("security mode 7 needs an AFL with the message counter")
    kenc, kmac = derive_keys(key, t.afl.message_counter, t.meter.ident, Direction.FROM_METER)
    cipher = aes_cbc(kenc, ZERO_IV, plain, decrypt=False)
    mac = afl_mac(kmac, t.afl.mcl, t.afl.message_counter, t.afl.message_length, tpl + cipher,
                  t.afl.mac_length)
    return encode_link(t.link, ell + t.afl.to_bytes(mac) + tpl + cipher, fmt)


def decode_telegram(data: bytes, keys: KeySource | None = None, *,
                    counters: CounterTracker | None = None,
                    fmt: FrameFormat = FrameFormat.AUTO) -> Telegram:
    """Decode (and, for modes 5 and 7, decrypt and authenticate) one telegram."""
    try:
        return _decode(bytes(data), keys, counters, fmt)
    except IndexError:
        raise WmbusRejected(LmnReason.TRUNCATED, "telegram ends inside a header") from None


def _decode(data: bytes, keys: KeySource | None, counters: CounterTracker | None,
            fmt: FrameFormat) -> Telegram:
    raw, _ = strip_link(data, fmt)
    link = LinkHeader(raw[1], Address.from_bytes(raw[2:10]))
    i = 10
    if i >= len(raw):
        raise WmbusRejected(LmnReason.TRUNCATED, "no CI field")
    ell = afl = None
    if CI_FIELDS.get(raw[i]) is CiKind.ELL:
        ell, i = parse_ell(raw, i)
    elif raw[i] in (0x8D, 0x8F):
        raise WmbusRejected(LmnReason.UNSUPPORTED, "ELL with session encryption (AES-CTR)",
                            ci=raw[i])
    _need_ci(raw, i)
    if raw[i] == 0x90:
        afl, i = parse_afl(raw, i)
        if afl.more_fragments or afl.fragment_id not in (0, 1):
            raise WmbusRejected(LmnReason.UNSUPPORTED, "fragmented message",
                                fragment=afl.fragment_id)
        _need_ci(raw, i)
    tpl_start = i
    tpl, blocks, i = parse_tpl(raw, i)
    meter = tpl.address or link.address
    mode = tpl.mode
    if mode is SecurityMode.NONE:
        apl = raw[i:]
    else:
        key = lookup_key(keys, meter)
        if key is None:
            raise WmbusRejected(LmnReason.UNKNOWN_METER, "encrypted telegram from a meter "
                                "without a key", meter=str(meter))
        n = 16 * blocks
        if n == 0 or i + n > len(raw):
            raise WmbusRejected(LmnReason.MALFORMED if n == 0 else LmnReason.TRUNCATED,
                                f"{blocks} encrypted blocks announced, {len(raw) - i} bytes left",
                                meter=str(meter))
        if mode is SecurityMode.AES_CBC_IV:
            plain = aes_cbc(key, mode5_iv(meter, tpl.access_number), raw[i : i + n],
                            decrypt=True)
        else:
            if afl is None or not afl.mac:
                raise WmbusRejected(LmnReason.MALFORMED, "security mode 7 without AFL MAC",
                                    meter=str(meter))
            kenc, kmac = derive_keys(key, afl.message_counter, meter.ident)
            want = afl_mac(kmac, afl.mcl, afl.message_counter, afl.message_length,
                           raw[tpl_start:], len(afl.mac))
            if not macs_equal(want, afl.mac):
                raise WmbusRejected(LmnReason.BAD_MAC, "AFL MAC does not verify (wrong key or "
                                    "altered telegram)", meter=str(meter))
            if counters is not None:
                last = counters.last_counter(meter)
                if last is not None and afl.message_counter <= last:
                    raise WmbusRejected(LmnReason.REPLAYED, "message counter not newer than "
                                        "the last accepted one", meter=str(meter),
                                        counter=afl.message_counter, last=last)
            plain = aes_cbc(kenc, ZERO_IV, raw[i : i + n], decrypt=True)
        if plain[:2] != b"\x2f\x2f":
            raise WmbusRejected(LmnReason.WRONG_KEY, "decrypted data does not start with 2F 2F",
                                meter=str(meter))
        apl = plain + raw[i + n :]
    records, mfr, more = decode_records(apl)
    if mode is SecurityMode.AES_CBC_NO_IV and counters is not None and afl is not None:
        counters.accept_counter(meter, afl.message_counter)
    return Telegram(link=link, ell=ell, afl=afl, tpl=tpl, records=records,
                    manufacturer_data=mfr, more_records_follow=more)


def _need_ci(raw: bytes, i: int) -> None:
    if i >= len(raw):
        raise WmbusRejected(LmnReason.TRUNCATED, "no CI field after the link layers")


__all__ = ["RSP_UD", "SND_IR", "SND_NR", "Telegram", "decode_telegram", "encode_telegram"]
