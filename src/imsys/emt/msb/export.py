"""CSV and JSON exports of dispatches (for recipients that do not take MSCONS, and for people).

Both carry the same values as the MSCONS export (:mod:`imsys.emt.msb._values`): per value the
interval ``(start, end]``, the exact integer value with its decimal scaler and DLMS unit, the
quantity as a decimal string, whether it is a substitute and the substitute method. Times are
ISO 8601 in UTC.

JSON document (``format`` ``imsys-msb-export``, ``version`` 1)::

    {"format": "imsys-msb-export", "version": 1, "sender_id": …, "created": …,
     "dispatches": [{"recipient_id", "role", "kind", "metering_point_id", "obis",
                     "period": {"start", "end"}, "legal_basis", "taf", "missing": [...],
                     "values": [{"start", "end", "value", "scaler", "unit", "quantity",
                                 "substitute", "method"}]}]}
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from imsys.emt.msb._calendar import as_utc
from imsys.emt.msb._errors import MsbReason, MsbRejected
from imsys.emt.msb._values import export_values
from imsys.emt.msb.distribution import Dispatch, check_identifier

JSON_FORMAT = "imsys-msb-export"
JSON_VERSION = 1

#: CSV columns, in order.
CSV_COLUMNS = (
    "recipient_id",
    "role",
    "kind",
    "metering_point_id",
    "obis",
    "interval_start",
    "interval_end",
    "value",
    "scaler",
    "unit",
    "quantity",
    "substitute",
    "method",
)


def _iso(instant: datetime) -> str:
    return as_utc(instant).isoformat().replace("+00:00", "Z")


def _quantity(value: int, scaler: int) -> str:
    return format(Decimal(value).scaleb(scaler), "f")


def _check(dispatches: Sequence[Dispatch]) -> None:
    if not dispatches:
        raise MsbRejected(MsbReason.EMPTY, "nothing to export")


def to_csv(dispatches: Sequence[Dispatch]) -> str:
    """One row per exported value (header row first, RFC 4180 line ends)."""
    _check(dispatches)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for d in dispatches:
        obis = d.readings[0].obis if d.readings else ""
        for v in export_values(d):
            writer.writerow(
                (
                    d.recipient_id,
                    d.role.value,
                    d.kind.value,
                    d.metering_point_id,
                    obis,
                    _iso(v.start),
                    _iso(v.end),
                    v.value,
                    v.scaler,
                    v.unit,
                    _quantity(v.value, v.scaler),
                    "true" if v.substitute else "false",
                    v.method.value if v.method else "",
                )
            )
    return out.getvalue()


def to_json_document(
    dispatches: Sequence[Dispatch], *, sender_id: str, created: datetime
) -> dict[str, Any]:
    """The JSON document as Python objects (see the module docstring)."""
    check_identifier(sender_id, "sender_id")
    _check(dispatches)
    return {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "sender_id": sender_id,
        "created": _iso(created),
        "dispatches": [
            {
                "recipient_id": d.recipient_id,
                "role": d.role.value,
                "kind": d.kind.value,
                "metering_point_id": d.metering_point_id,
                "obis": d.readings[0].obis if d.readings else None,
                "period": {"start": _iso(d.period.start), "end": _iso(d.period.end)},
                "legal_basis": d.rule.legal_basis if d.rule else None,
                "taf": d.rule.taf if d.rule else None,
                "missing": [_iso(m) for m in d.missing],
                "values": [
                    {
                        "start": _iso(v.start),
                        "end": _iso(v.end),
                        "value": v.value,
                        "scaler": v.scaler,
                        "unit": v.unit,
                        "quantity": _quantity(v.value, v.scaler),
                        "substitute": v.substitute,
                        "method": v.method.value if v.method else None,
                    }
                    for v in export_values(d)
                ],
            }
            for d in dispatches
        ],
    }


def to_json(dispatches: Sequence[Dispatch], *, sender_id: str, created: datetime) -> str:
    """The JSON document as text (UTF-8 safe, keys in a fixed order, two-space indent)."""
    return json.dumps(
        to_json_document(dispatches, sender_id=sender_id, created=created),
        indent=2,
        ensure_ascii=False,
    )
