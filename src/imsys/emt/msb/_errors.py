"""Typed rejections of the metering point operator's (MSB) processing."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, cast

from imsys.core.errors import Rejected


class MsbReason(StrEnum):
    """Why the MSB refused input (validation, distribution or export)."""

    MIXED_SERIES = "mixed-series"  # readings of several meters, registers, scalers or units
    NOT_ENTITLED = "not-entitled"  # a role may not receive this data kind (§ 60 MsbG table)
    UNKNOWN_ROLE = "unknown-role"  # an assignment names a recipient role outside the table
    INCOMPLETE = "incomplete"  # an energy value lacks the register value at one end
    UNSUPPORTED_UNIT = "unsupported-unit"  # the export has no unit code for this DLMS unit
    BAD_IDENTIFIER = "bad-identifier"  # an id that cannot travel in EDIFACT / the export
    EMPTY = "empty"  # nothing to export


class MsbRejected(Rejected):
    """Input to the MSB processing was refused; ``reason`` is an :class:`MsbReason`."""

    reason: MsbReason  # type: ignore[assignment]

    def __init__(self, reason: MsbReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)
