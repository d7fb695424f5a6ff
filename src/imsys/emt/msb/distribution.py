"""Distribution of validated values to the market per § 60 Abs. 3 MsbG (seed 001, Tabelle 2).

Since MaKo 2020 the MSB prepares (validates, substitutes) and distributes the values of TAF 1, 2
and 7 to the entitled market participants (seed 001 §3.5.1, lines 1363–1379). What goes to whom
is the table :data:`RULES`, taken from seed 001 Tabelle 2 (lines 522–553):

* lines 522–534: daily, for the previous day, all register series (TAF 7) to the DSO (Nr. 2),
  the TSO and the balancing coordinator (Nr. 3) and the supplier (Nr. 4);
* lines 536–539: monthly, the energy consumed in the month, to the DSO (Nr. 1, TAF 1);
* lines 541–553: annual values to DSO, TSO/BiKo and supplier in "all cases not under § 60 Abs. 3
  Nr. 1, Nr. 3, Nr. 4" (TAF 1).

Reading chosen for the ambiguous parts (see docs/msb.md): a metering point has one
:class:`DataScope` – register series (TAF 7), monthly values (TAF 1) or annual values only (the
data-saving tariff, seed 001 lines 1522–1525). "Not under Nr. 1 / 3 / 4" is read per recipient:
the DSO gets annual values when it gets no monthly energy (Nr. 1), TSO and BiKo when they get no
register series (Nr. 3), the supplier when it gets no register series (Nr. 4). The seed names no
pseudonymisation for these flows, so no rule pseudonymises (the field is there for rules that do).

:func:`plan` turns the table into :class:`Dispatch` objects for one day; each recipient gets only
its own metering points and only the kinds its role may receive for the point's scope.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from imsys.core.errors import UsageError
from imsys.core.reading import Reading, ReadingFlag, canonical_obis
from imsys.emt.msb._calendar import DAY, GRID, as_utc, day_end, day_start, previous_month
from imsys.emt.msb._errors import MsbReason, MsbRejected
from imsys.emt.msb.plausibility import PlausibilityLimits
from imsys.emt.msb.substitute import (
    SubstituteMethod,
    SubstitutionPolicy,
    ValidatedSeries,
    substitute,
)


class Role(StrEnum):
    """Recipient roles of § 60 Abs. 3 MsbG (GLOSSARY code names)."""

    DSO = "dso"
    TSO = "tso"
    BICO = "bico"
    SUPPLIER = "supplier"


class DataScope(StrEnum):
    """Which § 60 Abs. 3 case a metering point falls under (its measurement configuration)."""

    REGISTER_SERIES = "register-series"  # TAF 7: 15-min register series (Nr. 2–4)
    MONTHLY = "monthly"  # TAF 1 monthly values (Nr. 1)
    ANNUAL = "annual"  # TAF 1 annual values only (data-saving tariff)


class DataKind(StrEnum):
    """What a dispatch carries."""

    REGISTER_SERIES = "register-series"  # the register at every quarter hour of the period
    MONTHLY_ENERGY = "monthly-energy"  # register at month start and end → energy of the month
    ANNUAL_ENERGY = "annual-energy"  # register at year start and end → energy of the year


class Cadence(StrEnum):
    """How often a rule fires and which period it covers."""

    DAILY = "daily"  # every day, for the previous local day
    MONTHLY = "monthly"  # on the 1st, for the previous calendar month
    ANNUAL = "annual"  # on 1 January, for the previous calendar year


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the distribution table."""

    scope: DataScope
    role: Role
    kind: DataKind
    cadence: Cadence
    granularity: timedelta | None  # spacing of the values; None = one value for the period
    pseudonymised: bool
    legal_basis: str
    taf: str
    seed_lines: str  # where seed 001 says so


_DAILY = "seed 001 l. 522–534"
_MONTHLY = "seed 001 l. 536–539"
_ANNUAL = "seed 001 l. 541–553"

#: The distribution table (see the module docstring for how the seed was read).
RULES: tuple[Rule, ...] = (
    # register series metering points (TAF 7)
    Rule(DataScope.REGISTER_SERIES, Role.DSO, DataKind.REGISTER_SERIES, Cadence.DAILY, GRID,
         False, "§ 60 Abs. 3 Nr. 2 MsbG", "TAF 7", _DAILY),
    Rule(DataScope.REGISTER_SERIES, Role.TSO, DataKind.REGISTER_SERIES, Cadence.DAILY, GRID,
         False, "§ 60 Abs. 3 Nr. 3 MsbG", "TAF 7", _DAILY),
    Rule(DataScope.REGISTER_SERIES, Role.BICO, DataKind.REGISTER_SERIES, Cadence.DAILY, GRID,
         False, "§ 60 Abs. 3 Nr. 3 MsbG", "TAF 7", _DAILY),
    Rule(DataScope.REGISTER_SERIES, Role.SUPPLIER, DataKind.REGISTER_SERIES, Cadence.DAILY,
         GRID, False, "§ 60 Abs. 3 Nr. 4 MsbG", "TAF 7", _DAILY),
    Rule(DataScope.REGISTER_SERIES, Role.DSO, DataKind.MONTHLY_ENERGY, Cadence.MONTHLY, None,
         False, "§ 60 Abs. 3 Nr. 1 MsbG", "TAF 1", _MONTHLY),
    # monthly metering points (TAF 1)
    Rule(DataScope.MONTHLY, Role.DSO, DataKind.MONTHLY_ENERGY, Cadence.MONTHLY, None,
         False, "§ 60 Abs. 3 Nr. 1 MsbG", "TAF 1", _MONTHLY),
    Rule(DataScope.MONTHLY, Role.TSO, DataKind.ANNUAL_ENERGY, Cadence.ANNUAL, None,
         False, "§ 60 Abs. 3 MsbG (not Nr. 3)", "TAF 1", _ANNUAL),
    Rule(DataScope.MONTHLY, Role.BICO, DataKind.ANNUAL_ENERGY, Cadence.ANNUAL, None,
         False, "§ 60 Abs. 3 MsbG (not Nr. 3)", "TAF 1", _ANNUAL),
    Rule(DataScope.MONTHLY, Role.SUPPLIER, DataKind.ANNUAL_ENERGY, Cadence.ANNUAL, None,
         False, "§ 60 Abs. 3 MsbG (not Nr. 4)", "TAF 1", _ANNUAL),
    # annual-only metering points (TAF 1, data-saving tariff)
    Rule(DataScope.ANNUAL, Role.DSO, DataKind.ANNUAL_ENERGY, Cadence.ANNUAL, None,
         False, "§ 60 Abs. 3 MsbG (not Nr. 1)", "TAF 1", _ANNUAL),
    Rule(DataScope.ANNUAL, Role.TSO, DataKind.ANNUAL_ENERGY, Cadence.ANNUAL, None,
         False, "§ 60 Abs. 3 MsbG (not Nr. 3)", "TAF 1", _ANNUAL),
    Rule(DataScope.ANNUAL, Role.BICO, DataKind.ANNUAL_ENERGY, Cadence.ANNUAL, None,
         False, "§ 60 Abs. 3 MsbG (not Nr. 3)", "TAF 1", _ANNUAL),
    Rule(DataScope.ANNUAL, Role.SUPPLIER, DataKind.ANNUAL_ENERGY, Cadence.ANNUAL, None,
         False, "§ 60 Abs. 3 MsbG (not Nr. 4)", "TAF 1", _ANNUAL),
)  # fmt: skip


def rules_for(scope: DataScope, role: Role) -> tuple[Rule, ...]:
    """The rows of :data:`RULES` for a metering point's scope and a recipient's role."""
    return tuple(r for r in RULES if r.scope is scope and r.role is role)


def check_entitled(role: Role, kind: DataKind, scope: DataScope | None = None) -> Rule:
    """The rule that lets ``role`` receive ``kind`` (for ``scope``, or for any scope).

    Raises :class:`MsbRejected` (``NOT_ENTITLED``) if there is none.
    """
    for rule in RULES:
        if rule.role is role and rule.kind is kind and (scope is None or rule.scope is scope):
            return rule
    raise MsbRejected(
        MsbReason.NOT_ENTITLED,
        f"{role} may not receive {kind}" + (f" for {scope} metering points" if scope else ""),
        role=role,
        kind=kind,
        scope=scope,
    )


# --- identifiers and assignments -----------------------------------------------------------------

#: Characters an identifier may use (safe in EDIFACT UNOC, CSV and file names).
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,69}$")


def check_identifier(value: str, name: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise MsbRejected(
            MsbReason.BAD_IDENTIFIER,
            f"{name} must be 1–70 letters, digits, '.', '_' or '-'",
            field=name,
            value=value,
        )
    return value


@dataclass(frozen=True, slots=True)
class Recipient:
    """A market participant receiving data in a role (``recipient_id``: its market partner id)."""

    role: Role
    recipient_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.role, Role):
            raise MsbRejected(MsbReason.UNKNOWN_ROLE, f"unknown role {self.role!r}")
        check_identifier(self.recipient_id, "recipient_id")


@dataclass(frozen=True, slots=True)
class MeteringPointAssignment:
    """A metering point, the register measured there, its scope and who receives its data.

    ``metering_point_id`` is the metering point designation (e.g. the 33-character
    ``DE…`` Zählpunktbezeichnung); ``pseudonym`` replaces it (and the meter id) for rules that
    pseudonymise.
    """

    metering_point_id: str
    meter_id: str
    obis: str
    scope: DataScope
    recipients: tuple[Recipient, ...]
    pseudonym: str | None = None

    def __post_init__(self) -> None:
        check_identifier(self.metering_point_id, "metering_point_id")
        if not isinstance(self.meter_id, str) or not self.meter_id:
            raise MsbRejected(MsbReason.BAD_IDENTIFIER, "meter_id must be a non-empty string")
        object.__setattr__(self, "obis", canonical_obis(self.obis))
        if not isinstance(self.scope, DataScope):
            raise UsageError(f"scope must be a DataScope, got {self.scope!r}")
        object.__setattr__(self, "recipients", tuple(self.recipients))
        roles = [r.role for r in self.recipients]
        if len(set(roles)) != len(roles):
            raise UsageError(f"one recipient per role, got {roles}")
        if self.pseudonym is not None:
            check_identifier(self.pseudonym, "pseudonym")


@dataclass(frozen=True, slots=True)
class Period:
    """The period ``[start, end]`` (UTC) a dispatch covers."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if as_utc(self.end, "end") <= as_utc(self.start, "start"):
            raise UsageError("a period ends after it starts")


@dataclass(frozen=True, slots=True)
class Dispatch:
    """What one recipient receives for one metering point, kind and period.

    ``readings`` are register values in time order: every quarter hour ``start..end`` for a
    register series, the two ends for an energy value. Each is valid or a substitute;
    ``methods`` names the substitute method per timestamp; ``missing`` lists the boundaries for
    which no usable value exists (nothing is left out silently).
    """

    recipient_id: str
    role: Role
    kind: DataKind
    period: Period
    readings: tuple[Reading, ...]
    metering_point_id: str = ""
    rule: Rule | None = None
    methods: tuple[tuple[datetime, SubstituteMethod], ...] = field(default=())
    missing: tuple[datetime, ...] = field(default=())

    def __post_init__(self) -> None:
        check_entitled(self.role, self.kind, self.rule.scope if self.rule else None)
        for r in self.readings:
            if not (r.valid or r.flags == ReadingFlag.SUBSTITUTE):
                raise UsageError("a dispatch carries only valid or substitute values")

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def substituted(self) -> bool:
        return any(r.flags == ReadingFlag.SUBSTITUTE for r in self.readings)

    def method_at(self, timestamp: datetime) -> SubstituteMethod | None:
        return dict(self.methods).get(as_utc(timestamp))

    @property
    def energy(self) -> int | None:
        """For an energy kind with both ends: register at the end minus register at the start
        (in the readings' scaler and unit); else ``None``."""
        if self.kind is DataKind.REGISTER_SERIES or self.missing or len(self.readings) != 2:
            return None
        return self.readings[1].value - self.readings[0].value


# --- the source of validated series ---------------------------------------------------------


class SeriesSource(Protocol):
    """Where :func:`plan` gets validated (and substituted) series from."""

    def validated(
        self, assignment: MeteringPointAssignment, start: datetime, end: datetime
    ) -> ValidatedSeries: ...


class InMemorySource:
    """A :class:`SeriesSource` over readings held in memory (tests, the demo).

    Runs :func:`~imsys.emt.msb.substitute.substitute` on demand, with every earlier reading of
    the register as history.
    """

    def __init__(
        self,
        readings: Iterable[Reading],
        limits: PlausibilityLimits | None = None,
        policy: SubstitutionPolicy | None = None,
    ) -> None:
        self._by_register: dict[tuple[str, str], list[Reading]] = {}
        for r in readings:
            self._by_register.setdefault((r.meter_id, r.obis), []).append(r)
        for rs in self._by_register.values():
            rs.sort(key=lambda r: r.timestamp)
        self._limits = limits
        self._policy = policy

    def validated(
        self, assignment: MeteringPointAssignment, start: datetime, end: datetime
    ) -> ValidatedSeries:
        rs = self._by_register.get((assignment.meter_id, assignment.obis), [])
        lo, hi = start - GRID, end + GRID
        window = [r for r in rs if lo < r.timestamp < hi]
        history = [r for r in rs if r.timestamp <= lo or r.timestamp >= hi]
        return substitute(
            window, start, end, history=history, limits=self._limits, policy=self._policy
        )


# --- planning ----------------------------------------------------------------------------------


def _period(cadence: Cadence, day: date) -> Period | None:
    if cadence is Cadence.DAILY:
        return Period(day_start(day - DAY), day_end(day - DAY))
    if cadence is Cadence.MONTHLY and day.day == 1:
        first, this = previous_month(day)
        return Period(day_start(first), day_start(this))
    if cadence is Cadence.ANNUAL and (day.month, day.day) == (1, 1):
        return Period(day_start(date(day.year - 1, 1, 1)), day_start(day))
    return None


def _usable(reading: Reading) -> bool:
    return reading.valid or reading.flags == ReadingFlag.SUBSTITUTE


def _collect(
    source: SeriesSource,
    assignment: MeteringPointAssignment,
    points: Sequence[tuple[datetime, datetime]],
) -> tuple[list[Reading], list[tuple[datetime, SubstituteMethod]], list[datetime]]:
    readings: list[Reading] = []
    methods: list[tuple[datetime, SubstituteMethod]] = []
    missing: list[datetime] = []
    for start, end in points:
        series = source.validated(assignment, start, end)
        usable = [r for r in series.effective() if _usable(r)]
        readings.extend(usable)
        for r in usable:
            m = series.method_at(r.timestamp)
            if m is not None:
                methods.append((r.timestamp, m))
        missing.extend(series.missing())
    return readings, methods, missing


def plan(
    day: date,
    assignments: Iterable[MeteringPointAssignment],
    source: SeriesSource,
) -> list[Dispatch]:
    """Everything due on local ``day``: one :class:`Dispatch` per recipient, point, kind.

    Daily register series cover the previous local day (``00:00``–``24:00``, both boundaries,
    so 97 values, 93/101 on DST days); energy values cover the previous month (on the 1st) or
    year (on 1 January). Ordered by recipient, metering point and kind.
    """
    if not isinstance(day, date) or isinstance(day, datetime):
        raise UsageError("plan() takes a local calendar date")
    out: list[Dispatch] = []
    for assignment in assignments:
        for recipient in assignment.recipients:
            for rule in rules_for(assignment.scope, recipient.role):
                period = _period(rule.cadence, day)
                if period is None:
                    continue
                if rule.kind is DataKind.REGISTER_SERIES:
                    points = [(period.start, period.end)]
                else:
                    points = [(period.start, period.start), (period.end, period.end)]
                readings, methods, missing = _collect(source, assignment, points)
                mp_id = assignment.metering_point_id
                if rule.pseudonymised:
                    if assignment.pseudonym is None:
                        raise MsbRejected(
                            MsbReason.BAD_IDENTIFIER,
                            "rule pseudonymises but the metering point has no pseudonym",
                            metering_point_id=mp_id,
                        )
                    mp_id = assignment.pseudonym
                    readings = [replace(r, meter_id=assignment.pseudonym) for r in readings]
                out.append(
                    Dispatch(
                        recipient_id=recipient.recipient_id,
                        role=recipient.role,
                        kind=rule.kind,
                        period=period,
                        readings=tuple(readings),
                        metering_point_id=mp_id,
                        rule=rule,
                        methods=tuple(methods),
                        missing=tuple(missing),
                    )
                )
    out.sort(key=lambda d: (d.recipient_id, d.metering_point_id, d.kind.value))
    return out
