"""The MSB side wired to what the EMT received: ``imsys emt export``.

* :class:`StorageSource` – a :class:`~imsys.emt.msb.SeriesSource` over
  :class:`~imsys.emt.storage.EmtStorage`: the stored values of one register (``emt_readings``)
  become :class:`~imsys.core.reading.Reading` objects (ESPI unit → DLMS unit, PTB status →
  flags as :func:`imsys.wire.ar2418.readings_of` maps them) and go through
  :func:`~imsys.emt.msb.substitute` with up to ``history_days`` earlier days as history.
  Nothing is written back: substitutes exist only in the export, the stored originals stay.
* :func:`load_assignments` – the metering points and their recipients (a JSON file, below).
* :func:`export_day` – :func:`~imsys.emt.msb.plan` for a day, then per recipient and data kind
  one MSCONS interchange, one CSV and one JSON file.

Assignment file (``format`` ``imsys-msb-assignments``, ``version`` 1)::

    {"format": "imsys-msb-assignments", "version": 1,
     "metering_points": [
       {"metering_point_id": "DE0001…", "meter_id": "1EMH0012345678", "obis": "1-0:1.8.0*255",
        "scope": "register-series" | "monthly" | "annual", "pseudonym": null | "PSN-1",
        "recipients": [{"role": "dso" | "tso" | "bico" | "supplier", "id": "9900000000002"}]}]}
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from imsys.core.errors import Rejected, UsageError
from imsys.core.reading import Reading, ReadingFlag
from imsys.emt.msb import (
    DataKind,
    DataScope,
    Dispatch,
    MeteringPointAssignment,
    MsbRejected,
    PlausibilityLimits,
    Recipient,
    Role,
    SubstitutionPolicy,
    ValidatedSeries,
    plan,
    substitute,
    to_csv,
    to_json,
    to_mscons,
)
from imsys.emt.msb._calendar import GRID
from imsys.emt.storage import EmtStorage
from imsys.wire.ar2418 import UOM_TO_DLMS, StatusPtb

__all__ = [
    "ASSIGNMENTS_FORMAT",
    "AssignmentReason",
    "AssignmentRejected",
    "ExportFile",
    "StorageSource",
    "export_day",
    "load_assignments",
    "parse_assignments",
]

log = logging.getLogger("imsys.emt.export")

ASSIGNMENTS_FORMAT = "imsys-msb-assignments"
FORMATS = ("mscons", "csv", "json")

_FLAGS = {StatusPtb.FATAL_ERROR: ReadingFlag.METER_ERROR,
          StatusPtb.TEMPORARY_ERROR_INVALID: ReadingFlag.CLOCK_INVALID,
          StatusPtb.TEMPORARY_ERROR_SIGNED_INVALID: ReadingFlag.SUBSTITUTE}


class AssignmentReason(StrEnum):
    """Why an assignment file was refused."""

    NOT_JSON = "not-json"
    WRONG_FORMAT = "wrong-format"  # not imsys-msb-assignments v1
    BAD_ENTRY = "bad-entry"  # a metering point or recipient is incomplete or invalid


class AssignmentRejected(Rejected):
    """An assignment file was refused. ``reason`` is an :class:`AssignmentReason`."""

    reason: AssignmentReason  # type: ignore[assignment]

    def __init__(self, reason: AssignmentReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


def parse_assignments(data: bytes) -> list[MeteringPointAssignment]:
    """The metering points of an assignment file (module docstring)."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise AssignmentRejected(AssignmentReason.NOT_JSON, f"not JSON: {exc}") from None
    if (not isinstance(obj, dict) or obj.get("format") != ASSIGNMENTS_FORMAT
            or obj.get("version") != 1 or not isinstance(obj.get("metering_points"), list)):
        raise AssignmentRejected(AssignmentReason.WRONG_FORMAT,
                                 f"not an {ASSIGNMENTS_FORMAT} version 1 document")
    out = []
    for index, entry in enumerate(obj["metering_points"]):
        try:
            if not isinstance(entry, dict) or not isinstance(entry.get("recipients"), list):
                raise TypeError("a metering point is an object with a recipients list")
            recipients = tuple(Recipient(Role(r["role"]), str(r["id"]))
                               for r in entry["recipients"])
            pseudonym = entry.get("pseudonym")
            out.append(MeteringPointAssignment(
                str(entry["metering_point_id"]), str(entry["meter_id"]), str(entry["obis"]),
                DataScope(entry["scope"]), recipients,
                None if pseudonym is None else str(pseudonym)))
        except (KeyError, TypeError, ValueError, UsageError, MsbRejected) as exc:
            raise AssignmentRejected(AssignmentReason.BAD_ENTRY,
                                     f"metering point {index}: {exc}", index=index) from None
    return out


def load_assignments(path: Path) -> list[MeteringPointAssignment]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the assignment file: {exc}") from exc
    try:
        return parse_assignments(data)
    except AssignmentRejected as exc:
        log.warning("assignment file %s refused (%s): %s", path, exc.reason.value, exc.message)
        raise


class StorageSource:
    """Validated series from the readings the EMT stored (see the module docstring)."""

    def __init__(self, storage: EmtStorage, *, history_days: int = 28,
                 limits: PlausibilityLimits | None = None,
                 policy: SubstitutionPolicy | None = None) -> None:
        if history_days < 0:
            raise UsageError("history_days ≥ 0")
        self.storage = storage
        self.history = timedelta(days=history_days)
        self._limits = limits
        self._policy = policy

    def readings(self, meter: str, obis: str, start: datetime, end: datetime) -> list[Reading]:
        """The stored values of one register with ``start ≤ timestamp ≤ end``, in time order."""
        out = []
        for row in self.storage.series(meter=meter, obis=obis, start=start, end=end):
            unit = UOM_TO_DLMS.get(row["uom"])
            if unit is None:  # refused when it arrived; a foreign row cannot be exported
                log.warning("stored value of %s %s has unknown uom %s; skipped", meter, obis,
                            row["uom"])
                continue
            ptb = row["status_ptb"]
            flags = ReadingFlag.NONE if ptb is None else _FLAGS.get(StatusPtb(ptb),
                                                                   ReadingFlag.NONE)
            fnn = None if row["status_fnn"] is None else int(row["status_fnn"], 16)
            timestamp = row["timestamp"]
            if timestamp.tzinfo is None:
                timestamp = timestamp.replace(tzinfo=UTC)
            out.append(Reading(row["meter"], row["obis"], int(row["value"]), int(row["scaler"]),
                               unit, timestamp, flags, fnn))
        return out

    def validated(self, assignment: MeteringPointAssignment, start: datetime,
                  end: datetime) -> ValidatedSeries:
        readings = self.readings(assignment.meter_id, assignment.obis, start - self.history,
                                 end + GRID)
        lo, hi = start - GRID, end + GRID
        window = [r for r in readings if lo < r.timestamp < hi]
        history = [r for r in readings if r.timestamp <= lo]
        return substitute(window, start, end, history=history, limits=self._limits,
                          policy=self._policy)


@dataclass(frozen=True, slots=True)
class ExportFile:
    """One written export: recipient, data kind, format, path, number of dispatches."""

    recipient_id: str
    kind: DataKind
    format: str
    path: Path
    dispatches: int


def export_day(storage: EmtStorage, assignments: Sequence[MeteringPointAssignment], day: date,
               *, sender_id: str, out_dir: Path, formats: Sequence[str] = FORMATS,
               created: datetime | None = None, history_days: int = 28) -> list[ExportFile]:
    """Plan what is due on ``day`` (:func:`~imsys.emt.msb.plan`) from the stored values and
    write, per recipient and data kind, ``<recipient>_<kind>_<day>.{edi,csv,json}``.

    MSCONS needs complete energy values (``INCOMPLETE`` otherwise); such a dispatch is left out
    of the MSCONS file, logged, and still appears in CSV/JSON with its ``missing`` list. A
    dispatch without any stored value is left out of every file and logged.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise UsageError(f"unknown export formats {sorted(unknown)} (mscons, csv, json)")
    created = created or datetime.now(UTC).replace(microsecond=0)
    dispatches = plan(day, assignments, StorageSource(storage, history_days=history_days))
    groups: dict[tuple[str, DataKind], list[Dispatch]] = defaultdict(list)
    for dispatch in dispatches:
        if not dispatch.readings:  # the export formats carry values; say what is missing
            log.warning("nothing stored for %s %s to %s %s–%s (%d boundaries missing); "
                        "left out", dispatch.kind.value, dispatch.metering_point_id,
                        dispatch.recipient_id, dispatch.period.start, dispatch.period.end,
                        len(dispatch.missing))
            continue
        groups[(dispatch.recipient_id, dispatch.kind)].append(dispatch)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for number, ((recipient, kind), group) in enumerate(sorted(groups.items()), start=1):
        stem = f"{recipient}_{kind.value}_{day.isoformat()}"
        if "mscons" in formats:
            usable = [d for d in group if kind is DataKind.REGISTER_SERIES or d.complete]
            for left_out in set(map(id, group)) - set(map(id, usable)):
                item = next(d for d in group if id(d) == left_out)
                log.warning("MSCONS to %s: %s of %s incomplete (%d boundaries missing); "
                            "left out", recipient, kind.value, item.metering_point_id,
                            len(item.missing))
            if usable:
                reference = f"{day:%y%m%d}{number:04d}"
                path = out_dir / f"{stem}.edi"
                path.write_text(to_mscons(usable, sender_id=sender_id,
                                          interchange_ref=reference, created=created),
                                encoding="utf-8")
                written.append(ExportFile(recipient, kind, "mscons", path, len(usable)))
        if "csv" in formats:
            path = out_dir / f"{stem}.csv"
            path.write_text(to_csv(group), encoding="utf-8")
            written.append(ExportFile(recipient, kind, "csv", path, len(group)))
        if "json" in formats:
            path = out_dir / f"{stem}.json"
            path.write_text(to_json(group, sender_id=sender_id, created=created),
                            encoding="utf-8")
            written.append(ExportFile(recipient, kind, "json", path, len(group)))
    log.info("export for %s: %d dispatches, %d files", day, len(dispatches), len(written))
    return written
