"""MSCONS export: one EDIFACT interchange per recipient, one message per dispatch.

The layout follows the public BDEW / edi@energy *MSCONS MIG 2.4c* (message type
``MSCONS:D:04B:UN:2.4c``, "Nachrichtenstruktur" and "Segmentlayout", Stand 26.07.2024),
reduced to the segments the values need::

    UNA:+.? '                                   service string advice
    UNB+UNOC:3+<sender>:500+<recipient>:500+<yymmdd>:<hhmm>+<ref>++<EM|VL>'
      UNH+<n>+MSCONS:D:04B:UN:2.4c'              one message per dispatch
      BGM+7+<document number>+9'                 7 Prozessdatenbericht, 9 Original
      DTM+137:<created>:303'                     message date
      NAD+MS+<sender>::293'                      sender (the MSB), 293 = BDEW code list
      NAD+MR+<recipient>::293'                   recipient
      UNS+D'                                     end of the header section
      NAD+DP'                                    SG5 delivery point
      LOC+172+<metering point id>'               SG6 metering point
      DTM+163:<period start>:303'                SG6 begin of the transfer period
      DTM+164:<period end>:303'                  SG6 end of the transfer period
      LIN+1'                                     SG9
      PIA+5+<OBIS>:SRW'                          OBIS without '*255', ':' released
      QTY+<220|67>:<value>:KWH'                  SG10: 220 wahrer Wert, 67 Ersatzwert
      DTM+163:<interval start>:303'              begin of the measuring period
      DTM+164:<interval end>:303'                end of the measuring period
      DTM+7:<boundary>:303'                      Nutzungszeitpunkt (register values only)
      STS+Z32++<Z92|ZJ2>'                        substitute method (substitutes only)
      UNT+<segments UNH..UNT>+<n>'
    UNZ+<messages>+<ref>'

Times are UTC in format 303 (``CCYYMMDDHHMM?+00``). A register series sends every register
value as one SG10 for the quarter hour ending at its timestamp, with that timestamp as its
Nutzungszeitpunkt (DTM+7); an energy kind sends one SG10 with the energy of the period
(register at the end minus register at the start), 67 if either end is a substitute. Values are
kWh as exact decimals. The substitute method maps to the guide's STS Z32 codes: Z92
Interpolation for linear interpolation, ZJ2 Statistische Methode ("Vergleichswertverfahren …
Ersatzprofilbestimmung und Skalierung") for the comparable-day methods. The UNB application
reference is EM (Energiemenge) for energy kinds and VL (Zählerstand) for register series, so one
interchange carries one kind. Not implemented (see docs/msb.md): SG1 RFF+Z13 check
identifiers and other references, SG4 CTA/COM contacts, SG7/SG8 device number and time-series
type, STS reasons (Z40), correction reasons (Z34) and plausibility notes (Z33).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from imsys.core.errors import UsageError
from imsys.emt.msb._calendar import as_utc
from imsys.emt.msb._errors import MsbReason, MsbRejected
from imsys.emt.msb._values import export_values
from imsys.emt.msb.distribution import DataKind, Dispatch, check_identifier
from imsys.emt.msb.substitute import SubstituteMethod

#: Message type identifier (UNH S009).
MESSAGE_TYPE = ("MSCONS", "D", "04B", "UN", "2.4c")
#: Service string advice: component ':', element '+', decimal '.', release '?', segment "'".
UNA = "UNA:+.? '"
_REF = re.compile(r"^[A-Za-z0-9]{1,10}$")


class QuantityQualifier(StrEnum):
    """QTY 6063 codes used here (MIG 2.4c, SG10 QTY)."""

    TRUE_VALUE = "220"  # wahrer Wert
    SUBSTITUTE = "67"  # Ersatzwert


class SubstituteCode(StrEnum):
    """STS+Z32 (Ersatzwertbildungsverfahren) codes used here (MIG 2.4c, SG10 STS)."""

    INTERPOLATION = "Z92"
    STATISTICAL = "ZJ2"  # Vergleichswertverfahren: Wertebestimmung, Ersatzprofil, Skalierung


#: Substitute method → STS Z32 code.
SUBSTITUTE_CODES: dict[SubstituteMethod, SubstituteCode] = {
    SubstituteMethod.LINEAR: SubstituteCode.INTERPOLATION,
    SubstituteMethod.COMPARABLE_DAY: SubstituteCode.STATISTICAL,
    SubstituteMethod.COMPARABLE_DAY_ESTIMATED: SubstituteCode.STATISTICAL,
}


class ApplicationReference(StrEnum):
    """UNB 0026 codes used here."""

    ENERGY = "EM"  # Energiemenge
    REGISTER = "VL"  # Verrechnungsliste, Zählerstand


#: DLMS unit → (EDIFACT measure unit, decimal shift). Only active energy in Wh is exported.
UNITS: dict[int, tuple[str, int]] = {30: ("KWH", -3)}


def escape(text: str) -> str:
    """Release the EDIFACT service characters in ``text``."""
    return re.sub(r"([?:+'])", r"?\1", text)


def edifact_time(instant: datetime) -> str:
    """``instant`` as DTM format 303 in UTC, escaped: ``202611230000?+00``."""
    return escape(as_utc(instant).strftime("%Y%m%d%H%M") + "+00")


def obis_for_pia(obis: str) -> str:
    """``"1-0:1.8.0*255"`` → ``"1-0?:1.8.0"`` (``*F`` kept if F ≠ 255)."""
    text = obis[: -len("*255")] if obis.endswith("*255") else obis
    return escape(text)


def quantity(value: int, scaler: int, unit: int) -> str:
    """An integer register value with scaler, in the exported unit, as an exact decimal."""
    if unit not in UNITS:
        raise MsbRejected(MsbReason.UNSUPPORTED_UNIT, f"no export unit for DLMS unit {unit}")
    number = Decimal(value).scaleb(scaler + UNITS[unit][1])
    return format(number, "f")


def _message(
    number: int, dispatch: Dispatch, sender_id: str, reference: str, created: datetime
) -> list[str]:
    values = export_values(dispatch)  # raises first: empty or incomplete
    obis = dispatch.readings[0].obis
    texts = [quantity(v.value, v.scaler, v.unit) for v in values]  # raises: unknown unit
    unit = UNITS[dispatch.readings[0].unit][0]
    register = dispatch.kind is DataKind.REGISTER_SERIES
    segments = [
        f"UNH+{number}+{':'.join(MESSAGE_TYPE)}",
        f"BGM+7+{reference}{number:04d}+9",
        f"DTM+137:{edifact_time(created)}:303",
        f"NAD+MS+{sender_id}::293",
        f"NAD+MR+{dispatch.recipient_id}::293",
        "UNS+D",
        "NAD+DP",
        f"LOC+172+{escape(dispatch.metering_point_id)}",
        f"DTM+163:{edifact_time(dispatch.period.start)}:303",
        f"DTM+164:{edifact_time(dispatch.period.end)}:303",
        "LIN+1",
        f"PIA+5+{obis_for_pia(obis)}:SRW",
    ]
    for v, text in zip(values, texts, strict=True):
        qualifier = QuantityQualifier.SUBSTITUTE if v.substitute else QuantityQualifier.TRUE_VALUE
        segments.append(f"QTY+{qualifier}:{text}:{unit}")
        segments.append(f"DTM+163:{edifact_time(v.start)}:303")
        segments.append(f"DTM+164:{edifact_time(v.end)}:303")
        if register:
            segments.append(f"DTM+7:{edifact_time(v.end)}:303")
        if v.substitute and v.method is not None:
            segments.append(f"STS+Z32++{SUBSTITUTE_CODES[v.method]}")
    segments.append(f"UNT+{len(segments) + 1}+{number}")
    return segments


def to_mscons(
    dispatches: Sequence[Dispatch],
    *,
    sender_id: str,
    interchange_ref: str,
    created: datetime,
) -> str:
    """One MSCONS interchange for one recipient: a message per dispatch, segments per line.

    ``sender_id`` is the MSB's market partner id, ``interchange_ref`` 1–10 letters or digits
    (the UNB/UNZ control reference), ``created`` the preparation time (UTC). Raises
    :class:`MsbRejected` (``EMPTY``, ``INCOMPLETE``, ``UNSUPPORTED_UNIT``, ``BAD_IDENTIFIER``)
    and :class:`UsageError` for dispatches to several recipients.
    """
    check_identifier(sender_id, "sender_id")
    if not isinstance(interchange_ref, str) or not _REF.match(interchange_ref):
        raise MsbRejected(MsbReason.BAD_IDENTIFIER, "interchange_ref: 1–10 letters or digits")
    if not dispatches:
        raise MsbRejected(MsbReason.EMPTY, "an interchange needs at least one dispatch")
    recipients = {d.recipient_id for d in dispatches}
    if len(recipients) != 1:
        raise UsageError(f"one interchange per recipient, got {sorted(recipients)}")
    (recipient,) = recipients
    kinds = {d.kind is DataKind.REGISTER_SERIES for d in dispatches}
    if len(kinds) != 1:
        raise UsageError("one interchange carries either register series or energy values")
    application = ApplicationReference.REGISTER if kinds.pop() else ApplicationReference.ENERGY
    utc = as_utc(created, "created")
    lines = [
        UNA,
        f"UNB+UNOC:3+{sender_id}:500+{recipient}:500+{utc:%y%m%d}:{utc:%H%M}"
        f"+{interchange_ref}++{application}",
    ]
    for number, dispatch in enumerate(dispatches, start=1):
        lines.extend(_message(number, dispatch, sender_id, interchange_ref, utc))
    lines.append(f"UNZ+{len(dispatches)}+{interchange_ref}")
    return "\n".join(line if line == UNA else f"{line}'" for line in lines) + "\n"


__all__ = [
    "MESSAGE_TYPE",
    "SUBSTITUTE_CODES",
    "UNITS",
    "ApplicationReference",
    "QuantityQualifier",
    "SubstituteCode",
    "edifact_time",
    "escape",
    "obis_for_pia",
    "quantity",
    "to_mscons",
]
