"""Meter identifiers in the style of DIN 43863-5 ("1EMH0012345678").

Layout (14 characters): medium digit (the OBIS value group A: 1 electricity, 6 heat, 7 gas,
8 cold water, 9 hot water …), three-letter FLAG manufacturer code, two-digit production block,
eight-digit serial number. As an SML server id the same id is 10 bytes: ``0A``, the medium,
the three ASCII letters, the block and the serial as a 4-byte big-endian number — e.g.
``0A01454D48000051971E`` for ``1EMH0005347102`` (TRuDI example data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from imsys.core.errors import Reason, Rejected, UsageError

_ID_RE = re.compile(r"^([0-9A-F])([A-Z]{3})([0-9]{2})([0-9]{8})$")


class Medium(IntEnum):
    """The medium digit (OBIS value group A)."""

    ABSTRACT = 0
    ELECTRICITY = 1
    HEAT_COST_ALLOCATOR = 4
    COOLING = 5
    HEAT = 6
    GAS = 7
    WATER_COLD = 8
    WATER_HOT = 9


@dataclass(frozen=True, order=True)
class MeterId:
    """A DIN 43863-5 style meter id."""

    medium: Medium
    manufacturer: str
    block: int
    serial: int

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z]{3}", self.manufacturer):
            raise UsageError(f"manufacturer must be three letters A–Z: {self.manufacturer!r}")
        if not 0 <= self.block <= 99:
            raise UsageError(f"production block must be 0..99: {self.block}")
        if not 0 <= self.serial <= 99_999_999:
            raise UsageError(f"serial must have at most 8 digits: {self.serial}")
        object.__setattr__(self, "medium", Medium(self.medium))

    def __str__(self) -> str:
        return f"{self.medium.value:X}{self.manufacturer}{self.block:02d}{self.serial:08d}"

    @property
    def server_id(self) -> bytes:
        """The 10-byte SML server id (``0A`` ‖ medium ‖ FLAG ‖ block ‖ serial BE32)."""
        return (
            bytes((0x0A, self.medium.value))
            + self.manufacturer.encode("ascii")
            + bytes((self.block,))
            + self.serial.to_bytes(4, "big")
        )

    @classmethod
    def parse(cls, text: str) -> MeterId:
        """Parse ``"1EMH0012345678"``; raises :class:`Rejected` (MALFORMED) otherwise."""
        m = _ID_RE.match(text.strip().upper()) if isinstance(text, str) else None
        if m is None:
            raise Rejected(Reason.MALFORMED, f"not a DIN 43863-5 meter id: {text!r}")
        try:
            medium = Medium(int(m.group(1), 16))
        except ValueError as exc:
            raise Rejected(Reason.MALFORMED, f"unknown medium in {text!r}") from exc
        return cls(medium, m.group(2), int(m.group(3)), int(m.group(4)))

    @classmethod
    def from_server_id(cls, data: bytes) -> MeterId:
        """Inverse of :attr:`server_id`."""
        if len(data) != 10 or data[0] != 0x0A:
            raise Rejected(Reason.MALFORMED, "not a 10-byte DIN 43863-5 server id")
        try:
            return cls(
                Medium(data[1]),
                data[2:5].decode("ascii"),
                data[5],
                int.from_bytes(data[6:10], "big"),
            )
        except (ValueError, UsageError) as exc:
            raise Rejected(Reason.MALFORMED, "invalid server id fields") from exc


def make_meter_id(
    medium: Medium | int = Medium.ELECTRICITY,
    manufacturer: str = "EMH",
    serial: int = 0,
    block: int = 0,
) -> MeterId:
    """Build a meter id, e.g. ``make_meter_id(Medium.ELECTRICITY, "EMH", 12345678)``."""
    return MeterId(Medium(medium), manufacturer.upper(), block, serial)
