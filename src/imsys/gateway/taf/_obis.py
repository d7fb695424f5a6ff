"""OBIS value group E for tariff registers (facts.md §1.2 TAF2, TRuDI ``ObisIdExtensions.cs``).

E = 0 is the total register, E = 1..20 the tariff-stage registers, E = 63 the error register
("Fehlerregister"). OBIS codes are the canonical text ``"A-B:C.D.E*F"`` of
:func:`imsys.core.reading.canonical_obis`.
"""

from __future__ import annotations

import re

from imsys.core.errors import UsageError

#: OBIS value group E of the total register.
TOTAL_E = 0
#: OBIS value group E of the TAF2 error register.
ERROR_E = 63

_PARTS = re.compile(r"^(\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.)(\d{1,3})(\*\d{1,3})$")


def tariff_e(obis: str) -> int:
    """Value group E of a canonical OBIS code."""
    match = _PARTS.match(obis)
    if match is None:
        raise UsageError(f"not a canonical OBIS code: {obis!r}")
    return int(match.group(2))


def with_tariff(obis: str, e: int) -> str:
    """``obis`` with value group E replaced: ``with_tariff("1-0:1.8.0*255", 2)`` → ``1.8.2``."""
    match = _PARTS.match(obis)
    if match is None or not 0 <= e <= 255:
        raise UsageError(f"cannot derive tariff {e} from {obis!r}")
    return f"{match.group(1)}{e}{match.group(3)}"


__all__ = ["ERROR_E", "TOTAL_E", "tariff_e", "with_tariff"]
