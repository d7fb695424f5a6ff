"""OBIS identifiers (IEC 62056-61) as SML carries them: six bytes ``A B C D E F``.

``Obis.parse("1-0:1.8.0*255")`` and ``str(obis)`` convert between the reduced ID text form and the
value; ``bytes(obis)`` / :meth:`Obis.from_bytes` convert to the 6-byte ``objName`` of SML
(facts.md §6: ``0100010800ff`` is 1-0:1.8.0 import total).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imsys.core.errors import UsageError

_TEXT = re.compile(
    r"^\s*(?:(\d{1,3})-(\d{1,3}):)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:[*&](\d{1,3}))?\s*$"
)
_HEX = re.compile(r"^\s*([0-9A-Fa-f]{12})\s*$")


@dataclass(frozen=True, slots=True, order=True)
class Obis:
    """One OBIS code; each group is 0..255."""

    a: int
    b: int
    c: int
    d: int
    e: int
    f: int = 255

    def __post_init__(self) -> None:
        for name in ("a", "b", "c", "d", "e", "f"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= 255:
                raise UsageError(f"OBIS group {name} must be 0..255, got {v!r}")

    @classmethod
    def from_bytes(cls, data: bytes) -> Obis:
        """The OBIS code in a 6-byte SML ``objName``."""
        if len(data) != 6:
            raise UsageError(f"an OBIS code has 6 bytes, got {len(data)}")
        return cls(*data)

    @classmethod
    def parse(cls, text: str) -> Obis:
        """Parse ``"1-0:1.8.0*255"``, ``"1-0:1.8.0"`` (F = 255), ``"1.8.0"`` or 12 hex digits."""
        m = _HEX.match(text)
        if m:
            return cls.from_bytes(bytes.fromhex(m.group(1)))
        m = _TEXT.match(text)
        if not m:
            raise UsageError(f"not an OBIS code: {text!r}")
        a, b, c, d, e, f = m.groups()
        return cls(
            int(a) if a is not None else 1,
            int(b) if b is not None else 0,
            int(c),
            int(d),
            int(e),
            int(f) if f is not None else 255,
        )

    def __bytes__(self) -> bytes:
        return bytes((self.a, self.b, self.c, self.d, self.e, self.f))

    def __str__(self) -> str:
        return f"{self.a}-{self.b}:{self.c}.{self.d}.{self.e}*{self.f}"

    @property
    def hex(self) -> str:
        """The 12-hex-digit form used in AR 2418-6 ``obisCode`` (``0100010800ff``)."""
        return bytes(self).hex()


#: Well-known codes (facts.md §6, SmlLib ``const.py``).
OBIS_NAMES: dict[Obis, str] = {
    Obis(1, 0, 1, 8, 0): "import energy total",
    Obis(1, 0, 1, 8, 1): "import energy tariff 1",
    Obis(1, 0, 1, 8, 2): "import energy tariff 2",
    Obis(1, 0, 2, 8, 0): "export energy total",
    Obis(1, 0, 2, 8, 1): "export energy tariff 1",
    Obis(1, 0, 2, 8, 2): "export energy tariff 2",
    Obis(1, 0, 16, 7, 0): "active power total",
    Obis(1, 0, 36, 7, 0): "active power L1",
    Obis(1, 0, 56, 7, 0): "active power L2",
    Obis(1, 0, 76, 7, 0): "active power L3",
    Obis(1, 0, 32, 7, 0): "voltage L1",
    Obis(1, 0, 52, 7, 0): "voltage L2",
    Obis(1, 0, 72, 7, 0): "voltage L3",
    Obis(1, 0, 31, 7, 0): "current L1",
    Obis(1, 0, 51, 7, 0): "current L2",
    Obis(1, 0, 71, 7, 0): "current L3",
    Obis(1, 0, 14, 7, 0): "frequency",
    Obis(1, 0, 0, 0, 9): "device id",
    Obis(129, 129, 199, 130, 3): "manufacturer id",
    Obis(129, 129, 199, 130, 5): "public key",
    Obis(7, 0, 3, 1, 0): "gas volume",
}

__all__ = ["OBIS_NAMES", "Obis"]
