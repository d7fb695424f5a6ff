"""The metering point operator's (MSB) processing: validate, substitute, distribute, export.

Since MaKo 2020 the MSB prepares the values the gateways deliver (plausibility checks and
substitute values) and sends them to the entitled market participants (seed 001 §3.5.1 and
Tabelle 2, § 60 MsbG). Pure logic, no I/O:

* :mod:`~imsys.emt.msb.plausibility` – :func:`validate` → :class:`PlausibilityReport`;
* :mod:`~imsys.emt.msb.substitute` – :func:`substitute` → :class:`ValidatedSeries`;
* :mod:`~imsys.emt.msb.distribution` – the § 60 table :data:`RULES` and :func:`plan`;
* :mod:`~imsys.emt.msb.mscons`, :mod:`~imsys.emt.msb.export` – MSCONS, CSV and JSON.

See docs/msb.md.
"""

from __future__ import annotations

from imsys.emt.msb._errors import MsbReason, MsbRejected
from imsys.emt.msb._values import ExportValue, export_values
from imsys.emt.msb.distribution import (
    RULES,
    Cadence,
    DataKind,
    DataScope,
    Dispatch,
    InMemorySource,
    MeteringPointAssignment,
    Period,
    Recipient,
    Role,
    Rule,
    SeriesSource,
    check_entitled,
    plan,
    rules_for,
)
from imsys.emt.msb.export import to_csv, to_json, to_json_document
from imsys.emt.msb.mscons import QuantityQualifier, to_mscons
from imsys.emt.msb.plausibility import (
    Finding,
    FindingKind,
    PlausibilityLimits,
    PlausibilityReport,
    max_power_from_fuse,
    validate,
)
from imsys.emt.msb.substitute import (
    Substitute,
    SubstituteMethod,
    SubstitutionPolicy,
    ValidatedSeries,
    comparable_days,
    substitute,
)

__all__ = [
    "RULES",
    "Cadence",
    "DataKind",
    "DataScope",
    "Dispatch",
    "ExportValue",
    "Finding",
    "FindingKind",
    "InMemorySource",
    "MeteringPointAssignment",
    "MsbReason",
    "MsbRejected",
    "Period",
    "PlausibilityLimits",
    "PlausibilityReport",
    "QuantityQualifier",
    "Recipient",
    "Role",
    "Rule",
    "SeriesSource",
    "Substitute",
    "SubstituteMethod",
    "SubstitutionPolicy",
    "ValidatedSeries",
    "check_entitled",
    "comparable_days",
    "export_values",
    "max_power_from_fuse",
    "plan",
    "rules_for",
    "substitute",
    "to_csv",
    "to_json",
    "to_json_document",
    "to_mscons",
    "validate",
]
