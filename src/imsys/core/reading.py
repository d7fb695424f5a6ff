"""Readings: the measured values every role passes around (``Messwert``, ``Zählerstand``).

OBIS codes travel as their canonical text ``"1-0:1.8.0*255"`` (value groups A-B:C.D.E*F);
``imsys.lmn.sml.obis.Obis`` parses and formats them for the wire. Values are integers with a
decimal scaler (value × 10^scaler in ``unit``), as SML and AR 2418-6 carry them, so no value
is ever rounded by a float.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import IntFlag

from imsys.core.errors import UsageError

_OBIS = re.compile(r"^\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3}\*\d{1,3}$")


def canonical_obis(text: str) -> str:
    """``"1-0:1.8.0"`` → ``"1-0:1.8.0*255"``; refuses anything that is not an OBIS code."""
    value = text if "*" in text else f"{text}*255"
    if not _OBIS.match(value) or any(int(p) > 255 for p in re.split(r"[-:.*]", value)):
        raise UsageError(f"not an OBIS code: {text!r}")
    return value


class ReadingFlag(IntFlag):
    """Why a value is not valid (the PTB/FNN view the gateway attaches, facts.md §4.5)."""

    NONE = 0
    METER_ERROR = 1  # the meter's status word reports a fatal error or manipulation
    CLOCK_INVALID = 2  # the gateway's time was not trustworthy when it stamped the value
    SIGNATURE_INVALID = 4
    GAP = 8  # no value was received for the period
    SUBSTITUTE = 16  # formed by the metering point operator, not measured


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one register of one meter at one time (UTC)."""

    meter_id: str
    obis: str
    value: int
    scaler: int
    unit: int  # DLMS unit code: 30 Wh, 27 W, 13 m³, 35 V, 33 A, 8 °, 9 °C …
    timestamp: datetime
    flags: ReadingFlag = ReadingFlag.NONE
    status_word: int | None = None  # the meter's FNN status word as received

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None:
            raise UsageError("reading timestamps are timezone-aware (UTC)")
        if not _OBIS.match(self.obis):
            raise UsageError(f"OBIS code must be canonical 'A-B:C.D.E*F', got {self.obis!r}")

    @property
    def valid(self) -> bool:
        return self.flags == ReadingFlag.NONE

    @property
    def quantity(self) -> Decimal:
        """The value with the scaler applied, exactly."""
        return Decimal(self.value).scaleb(self.scaler)
