"""wM-Bus/OMS security: mode 5 (security profile A) and mode 7 (profile B) – facts.md §7.

Mode 5: AES-128-CBC with the persistent key; IV = M-field (2) ‖ A-field (6: ID, version, device
type – from the long TPL header if present, else the link layer) ‖ access number × 8. The
plaintext starts with ``2F 2F``; a different start means the key is wrong.

Mode 7: per-message keys from the master key by AES-CMAC (OMS Vol. 2 §9.5.3 as quoted in WMBUSM/
IOB): input = derivation constant (0x00 Kenc, 0x01 Kmac for data from the meter; 0x10/0x11 for
data to the meter [I]) ‖ AFL message counter (LE, 4) ‖ meter ID (LE, 4) ‖ seven bytes 0x07.
The payload is AES-128-CBC with IV 0 under Kenc; the AFL MAC is AES-CMAC(Kmac, AFL.MCL ‖ AFL.MCR ‖
[AFL.ML] ‖ TPL header ‖ rest of the telegram), truncated as AFL.MCL.AT says (5 → 8 bytes).

Replay: the message counter must grow. Counters live in a :class:`CounterTracker` that the
caller passes in (sans-io); the decoder records a counter only after the MAC verified.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from imsys.core.errors import UsageError
from imsys.lmn.wmbus.link import Address

ZERO_IV = bytes(16)


class SecurityMode(IntEnum):
    """TPL configuration field bits 12–8 (EN 13757-7). imsys implements 0, 5 and 7."""

    NONE = 0
    AES_CBC_IV = 5
    AES_CBC_NO_IV = 7


class Direction(IntEnum):
    """Key-derivation constants for Kenc (Kmac = constant + 1)."""

    FROM_METER = 0x00
    TO_METER = 0x10


#: AFL.MCL authentication type → MAC length in bytes
MAC_LENGTHS = {4: 4, 5: 8, 6: 12, 7: 16}


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != 16:
        raise UsageError("wM-Bus keys are AES-128 keys (16 bytes)")


def aes_cbc(key: bytes, iv: bytes, data: bytes, *, decrypt: bool) -> bytes:
    """Raw AES-128-CBC over whole blocks (no padding: OMS fills with 0x2F itself)."""
    _check_key(key)
    cipher = Cipher(algorithms.AES(bytes(key)), modes.CBC(iv))
    op = cipher.decryptor() if decrypt else cipher.encryptor()
    return op.update(data) + op.finalize()


def aes_cmac(key: bytes, data: bytes) -> bytes:
    _check_key(key)
    c = cmac.CMAC(algorithms.AES(bytes(key)))
    c.update(data)
    return c.finalize()


def mode5_iv(address: Address, access_number: int) -> bytes:
    """IV of security mode 5: M ‖ ID ‖ version ‖ device type ‖ ACC × 8."""
    return bytes(address) + bytes((access_number & 0xFF,)) * 8


def derive_keys(master: bytes, counter: int, ident: int,
                direction: Direction = Direction.FROM_METER) -> tuple[bytes, bytes]:
    """``(Kenc, Kmac)`` for one message of security mode 7."""
    tail = counter.to_bytes(4, "little") + ident.to_bytes(4, "little") + b"\x07" * 7
    kenc = aes_cmac(master, bytes((int(direction),)) + tail)
    kmac = aes_cmac(master, bytes((int(direction) + 1,)) + tail)
    return kenc, kmac


def afl_mac(kmac: bytes, mcl: int, counter: int, ml: int | None, tpl_and_rest: bytes,
            length: int = 8) -> bytes:
    """The AFL MAC: CMAC over MCL ‖ MCR ‖ [ML] ‖ TPL header and the data after it."""
    data = bytes((mcl,)) + counter.to_bytes(4, "little")
    if ml is not None:
        data += ml.to_bytes(2, "little")
    return aes_cmac(kmac, data + tpl_and_rest)[:length]


def macs_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


@runtime_checkable
class CounterTracker(Protocol):
    """Remembers the last accepted OMS message counter of each meter."""

    def last_counter(self, meter: Address) -> int | None: ...

    def accept_counter(self, meter: Address, counter: int) -> None: ...


class MemoryCounterTracker:
    """A :class:`CounterTracker` in a dict (the gateway stores counters in its own database)."""

    def __init__(self) -> None:
        self._last: dict[tuple[int, int], int] = {}

    @staticmethod
    def _key(meter: Address) -> tuple[int, int]:
        return (meter.manufacturer, meter.ident)

    def last_counter(self, meter: Address) -> int | None:
        return self._last.get(self._key(meter))

    def accept_counter(self, meter: Address, counter: int) -> None:
        self._last[self._key(meter)] = counter


#: a key source: one key for every meter, a mapping by printed meter id (``"12345678"``) or by
#: :class:`Address`, or a function of the meter address
KeySource = bytes | Mapping[object, bytes] | Callable[[Address], bytes | None]


def lookup_key(keys: KeySource | None, meter: Address) -> bytes | None:
    """The key for ``meter`` from a :data:`KeySource`, or ``None``."""
    if keys is None:
        return None
    if isinstance(keys, bytes | bytearray):
        return bytes(keys)
    if isinstance(keys, Mapping):
        for k in (meter, meter.id_text, meter.ident):
            if k in keys:
                return keys[k]
        return keys.get("*")
    return keys(meter)


__all__ = [
    "MAC_LENGTHS",
    "CounterTracker",
    "Direction",
    "KeySource",
    "MemoryCounterTracker",
    "SecurityMode",
    "aes_cbc",
    "aes_cmac",
    "afl_mac",
    "derive_keys",
    "lookup_key",
    "mode5_iv",
]
