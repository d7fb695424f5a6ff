"""The FNN status word, meter part ("BZ" word).

Source: the TRuDI sources (``src/TRuDI.Models/BasicData/StatusFNN.cs``): the FNN status is 8
bytes hex, the first 4 the SMGW status, the last 4 the meter status. The meter word has bit 2
always set; bits 8–20 carry the flags below; every other bit is 0 (mask
``00000000000xxxxxxxxxxxxx00000100``). The SMGW half belongs to the gateway, not to a meter.

Interpretation [I] (not in a primary source we could read): ``START_UP`` ("Anlauf") is set while
the meter registers energy, i.e. the load is above the start-up threshold.
"""

from __future__ import annotations

from enum import IntFlag

from imsys.core.errors import UsageError


class MeterStatus(IntFlag):
    """Bits of the FNN meter status word (32 bit)."""

    BIT_POS_2 = 0x4  # always 1
    START_UP = 0x100
    MAGNETIC_INFLUENCE = 0x200
    MANIPULATION = 0x400
    SUM_ENERGY_DIRECTION_NEGATIVE = 0x800
    ENERGY_DIRECTION_L1_NEGATIVE = 0x1000
    ENERGY_DIRECTION_L2_NEGATIVE = 0x2000
    ENERGY_DIRECTION_L3_NEGATIVE = 0x4000
    PHASE_SEQUENCE_NOT_L1_L2_L3 = 0x8000
    BACKSTOP_ACTIVE = 0x10000
    FATAL_ERROR = 0x20000
    VOLTAGE_L1_PRESENT = 0x40000
    VOLTAGE_L2_PRESENT = 0x80000
    VOLTAGE_L3_PRESENT = 0x100000


#: Bits that may be set in a meter status word.
METER_STATUS_ALLOWED = 0x1FFF04
#: Bits that must be set in a meter status word.
METER_STATUS_REQUIRED = 0x4

DIRECTION_NEGATIVE_L = (
    MeterStatus.ENERGY_DIRECTION_L1_NEGATIVE,
    MeterStatus.ENERGY_DIRECTION_L2_NEGATIVE,
    MeterStatus.ENERGY_DIRECTION_L3_NEGATIVE,
)
VOLTAGE_PRESENT_L = (
    MeterStatus.VOLTAGE_L1_PRESENT,
    MeterStatus.VOLTAGE_L2_PRESENT,
    MeterStatus.VOLTAGE_L3_PRESENT,
)


def check_meter_status(word: int) -> MeterStatus:
    """Validate a 32-bit meter status word against the FNN mask and return it as flags."""
    if not 0 <= word <= 0xFFFFFFFF:
        raise UsageError(f"status word out of range: {word:#x}")
    if word & ~METER_STATUS_ALLOWED or not word & METER_STATUS_REQUIRED:
        raise UsageError(f"status word {word:08x} violates the FNN meter mask")
    return MeterStatus(word)


def meter_status_hex(word: int) -> str:
    """The meter half as 8 hex digits (append it to the SMGW half for the 16-digit word)."""
    return f"{check_meter_status(word):08x}"
