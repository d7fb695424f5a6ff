"""The evaluation profile ("Auswertungsprofil", tariff profile): what a TAF evaluates, and how.

An :class:`EvaluationProfile` is a frozen document validated on construction (STYLE.md §4): an
invalid profile cannot exist; each refusal is a :class:`ProfileRejected` with a
:class:`TafReason`. Its fields follow the order of a tariff profile (AR 2418-6
``AnalysisProfile`` and the TR-03109-1 evaluation profile as far as public, facts.md §5):
identity and use case, meter and registers, billing and registration periods, tariff stages
and day profiles, recipients, pseudonym, validity.

Which fields each TAF uses (``_FIELDS``):

======  =======================================  ==============================
TAF     required                                 optional
======  =======================================  ==============================
TAF1    ``billing_period``                       –
TAF2    ``tariff_stages``, ``tariff_calendar``   ``billing_period``
TAF6    –                                        –
TAF7    ``registration_period``                  ``billing_period``
======  =======================================  ==============================

A field a TAF does not use must be empty (``FIELD_NOT_APPLICABLE``). The optional billing
period of TAF2/TAF7 is carried for the caller (delivery schedule); the evaluation does not use
it. Only the TAFs of the mandatory device profile SMGW_G1_BASIS – 1, 2, 6, 7 (seed 001, facts.md
§1.1) – are supported; :data:`UNSUPPORTED_TAFS` gives the reason for each other one.

:meth:`EvaluationProfile.to_dict` / :meth:`EvaluationProfile.from_dict` map the profile to a
JSON-compatible document (format :data:`PROFILE_FORMAT`) so it can travel signed by the GWA.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum
from typing import Any

from imsys.core.errors import UsageError
from imsys.core.reading import canonical_obis
from imsys.gateway.taf._obis import ERROR_E, TOTAL_E, tariff_e, with_tariff
from imsys.gateway.taf.calendar import (
    MAX_TARIFF_STAGES,
    BillingPeriod,
    DayProfile,
    SpecialDay,
    Switch,
    TariffCalendar,
    validate_registration_period,
)
from imsys.gateway.taf.errors import ProfileRejected, TafReason

#: The document format written by :meth:`EvaluationProfile.to_dict`.
PROFILE_FORMAT = "imsys-evaluation-profile/1"


class Taf(IntEnum):
    """Tariff use cases (TRuDI ``TafId``, facts.md §1.1 [V]; TAF16 [S]; there is no TAF15)."""

    TAF1 = 1
    TAF2 = 2
    TAF3 = 3
    TAF4 = 4
    TAF5 = 5
    TAF6 = 6
    TAF7 = 7
    TAF8 = 8
    TAF9 = 9
    TAF10 = 10
    TAF11 = 11
    TAF12 = 12
    TAF13 = 13
    TAF14 = 14
    TAF16 = 16

    @property
    def title(self) -> str:
        """The German name (TRuDI ``TafId``)."""
        return _TITLES[self]


_TITLES: Mapping[Taf, str] = {
    Taf.TAF1: "Datensparsamer Tarif",
    Taf.TAF2: "Zeitvariabler Tarif",
    Taf.TAF3: "Lastvariable Tarife",
    Taf.TAF4: "Verbrauchsvariable Tarife",
    Taf.TAF5: "Ereignisvariable Tarife",
    Taf.TAF6: "Abruf von Messwerten im Bedarfsfall",
    Taf.TAF7: "Zählerstandsgangsmessung",
    Taf.TAF8: "Erfassung von Extremwerten",
    Taf.TAF9: "Abruf der Ist-Einspeisung einer Erzeugungsanlage",
    Taf.TAF10: "Abruf von Netzzustandsdaten",
    Taf.TAF11: "Steuerung von unterbrechbaren Verbrauchseinrichtungen und Erzeugungsanlagen",
    Taf.TAF12: "Prepaid Tarif",
    Taf.TAF13: "Bereitstellung von Messwertsätzen zur Visualisierung über die WAN-Schnittstelle",
    Taf.TAF14: "Hochfrequente Messwertbereitstellung für Mehrwertdienste",
    Taf.TAF16: "Ereignisbasierte Zählerstandserfassung",
}

_NOT_BASIS = "not in the mandatory device profile SMGW_G1_BASIS (seed 001: TAF 1, 2, 6, 7)"

#: Why each TAF outside TAF1/2/6/7 is refused. The dispatcher's table lists the same entries.
UNSUPPORTED_TAFS: Mapping[Taf, str] = {
    Taf.TAF3: f"load-variable tariff: stages by power thresholds; rules only [S]/[I]; {_NOT_BASIS}",
    Taf.TAF4: f"consumption-variable tariff: energy-quota stages; rules only [S]; {_NOT_BASIS}",
    Taf.TAF5: f"event-variable tariff: needs external events (AR 2418-6 ExternalEvent); "
    f"{_NOT_BASIS}",
    Taf.TAF8: f"extreme values: needs power readings, not registers; {_NOT_BASIS}",
    Taf.TAF9: "actual feed-in: device profile SMGW_G1_Netz, not yet implemented",
    Taf.TAF10: "grid-state data: device profile SMGW_G1_Netz; thresholds not found (facts.md §9)",
    Taf.TAF11: f"control of loads and generation: a CLS function, not an evaluation; {_NOT_BASIS}",
    Taf.TAF12: f"prepaid tariff: thresholds and notifications not specified; {_NOT_BASIS}",
    Taf.TAF13: f"WAN visualisation: a delivery of TAF1–12 data, not an evaluation; {_NOT_BASIS}",
    Taf.TAF14: f"high-frequency values: rate not found (facts.md §9); {_NOT_BASIS}",
    Taf.TAF16: "event-driven measurement (seed 004 FlexMC): no primary text (facts.md §9)",
}

_FIELDS: Mapping[Taf, tuple[frozenset[str], frozenset[str]]] = {
    # TAF: (required, optional) among the TAF-specific fields
    Taf.TAF1: (frozenset({"billing_period"}), frozenset()),
    Taf.TAF2: (frozenset({"tariff_stages", "tariff_calendar"}), frozenset({"billing_period"})),
    Taf.TAF6: (frozenset(), frozenset()),
    Taf.TAF7: (frozenset({"registration_period"}), frozenset({"billing_period"})),
}
_SPECIFIC = ("billing_period", "registration_period", "tariff_stages", "tariff_calendar")


@dataclass(frozen=True, slots=True)
class TariffStage:
    """A tariff stage of TAF2: its number (OBIS value group E, 1..20) and a description."""

    number: int
    description: str = ""

    def __post_init__(self) -> None:
        if type(self.number) is not int or not 1 <= self.number <= MAX_TARIFF_STAGES:
            raise ProfileRejected(
                TafReason.BAD_TARIFF_STAGE,
                f"tariff stage number must be 1..{MAX_TARIFF_STAGES}, not {self.number!r}",
                stage=self.number,
            )
        if not isinstance(self.description, str):
            raise ProfileRejected(TafReason.MALFORMED, "tariff stage description must be text")


def _identifier(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProfileRejected(TafReason.BAD_IDENTIFIER, f"{name} must be non-empty text")
    return value


def _aware(value: object, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ProfileRejected(TafReason.BAD_VALIDITY, f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class EvaluationProfile:
    """An evaluation (tariff) profile for one TAF of one meter. See the module docstring."""

    profile_id: str
    taf: Taf
    meter_id: str
    registers: tuple[str, ...]
    billing_period: BillingPeriod | None
    registration_period: timedelta | None
    tariff_stages: tuple[TariffStage, ...]
    tariff_calendar: TariffCalendar | None
    recipients: tuple[str, ...]
    pseudonym: str | None
    valid_from: datetime
    valid_to: datetime | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        _identifier(self.profile_id, "profile id")
        context = {"profile_id": self.profile_id}
        taf = self.taf
        if not isinstance(taf, Taf):
            try:
                taf = Taf(taf)
            except ValueError:
                raise ProfileRejected(
                    TafReason.UNSUPPORTED_TAF, f"there is no TAF {taf!r}", taf=taf, **context
                ) from None
            set_(self, "taf", taf)
        if taf in UNSUPPORTED_TAFS:
            raise ProfileRejected(
                TafReason.UNSUPPORTED_TAF,
                f"{taf.name} ({taf.title}) is not supported: {UNSUPPORTED_TAFS[taf]}",
                taf=int(taf),
                **context,
            )
        _identifier(self.meter_id, "meter id")
        for name in ("registers", "tariff_stages", "recipients"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, tuple | list):
                raise ProfileRejected(TafReason.MALFORMED, f"{name} must be a sequence", **context)
            set_(self, name, tuple(value))
        self._check_registers(context)
        self._check_specific(context)
        if not self.recipients:
            raise ProfileRejected(TafReason.MISSING_FIELD, "at least one recipient", **context)
        for recipient in self.recipients:
            _identifier(recipient, "recipient")
        if len(set(self.recipients)) != len(self.recipients):
            raise ProfileRejected(
                TafReason.BAD_IDENTIFIER, "a recipient is listed twice", **context
            )
        if self.pseudonym is not None:
            _identifier(self.pseudonym, "pseudonym")
        set_(self, "valid_from", _aware(self.valid_from, "valid_from"))
        if self.valid_to is not None:
            set_(self, "valid_to", _aware(self.valid_to, "valid_to"))
            if self.valid_to <= self.valid_from:
                raise ProfileRejected(
                    TafReason.BAD_VALIDITY, "valid_to must be after valid_from", **context
                )

    def _check_registers(self, context: dict[str, Any]) -> None:
        if not self.registers:
            raise ProfileRejected(TafReason.BAD_REGISTER, "no register to evaluate", **context)
        canonical: list[str] = []
        for register in self.registers:
            try:
                canonical.append(canonical_obis(register))
            except (UsageError, TypeError):
                raise ProfileRejected(
                    TafReason.BAD_REGISTER, f"not an OBIS code: {register!r}", **context
                ) from None
        if len(set(canonical)) != len(canonical):
            raise ProfileRejected(TafReason.BAD_REGISTER, "a register is listed twice", **context)
        if self.taf is Taf.TAF2:
            for register in canonical:
                if tariff_e(register) != TOTAL_E:
                    raise ProfileRejected(
                        TafReason.BAD_REGISTER,
                        f"TAF2 evaluates total registers (OBIS E = 0), not {register}",
                        register=register,
                        **context,
                    )
        object.__setattr__(self, "registers", tuple(canonical))

    def _check_specific(self, context: dict[str, Any]) -> None:
        required, optional = _FIELDS[self.taf]
        for name in _SPECIFIC:
            present = getattr(self, name) not in (None, ())
            if name in required and not present:
                raise ProfileRejected(
                    TafReason.MISSING_FIELD,
                    f"{self.taf.name} needs {name}",
                    field=name,
                    **context,
                )
            if present and name not in required | optional:
                raise ProfileRejected(
                    TafReason.FIELD_NOT_APPLICABLE,
                    f"{self.taf.name} does not use {name}",
                    field=name,
                    **context,
                )
        if self.billing_period is not None and not isinstance(self.billing_period, BillingPeriod):
            raise ProfileRejected(TafReason.MALFORMED, "billing_period type", **context)
        if self.registration_period is not None:
            validate_registration_period(self.registration_period)
        if self.tariff_stages:
            self._check_stages(context)

    def _check_stages(self, context: dict[str, Any]) -> None:
        if len(self.tariff_stages) > MAX_TARIFF_STAGES:
            raise ProfileRejected(
                TafReason.TOO_MANY_TARIFF_STAGES,
                f"{len(self.tariff_stages)} tariff stages; at most {MAX_TARIFF_STAGES}",
                count=len(self.tariff_stages),
                **context,
            )
        if not all(isinstance(s, TariffStage) for s in self.tariff_stages):
            raise ProfileRejected(TafReason.MALFORMED, "tariff stages must be TariffStage")
        numbers = [s.number for s in self.tariff_stages]
        if len(set(numbers)) != len(numbers):
            raise ProfileRejected(
                TafReason.BAD_TARIFF_STAGE, "a tariff stage number is declared twice", **context
            )
        if not isinstance(self.tariff_calendar, TariffCalendar):
            raise ProfileRejected(TafReason.MALFORMED, "tariff_calendar type", **context)
        unknown = self.tariff_calendar.stages - set(numbers)
        if unknown:
            raise ProfileRejected(
                TafReason.UNKNOWN_TARIFF_STAGE,
                f"day profiles switch to undeclared stages {sorted(unknown)}",
                stages=sorted(unknown),
                **context,
            )

    # -- derived -------------------------------------------------------------------------------

    @property
    def stage_numbers(self) -> tuple[int, ...]:
        """The declared tariff stage numbers, ascending."""
        return tuple(sorted(s.number for s in self.tariff_stages))

    def output_registers(self) -> tuple[str, ...]:
        """The OBIS codes the evaluation produces (TAF2: E = 0, stages, 63 per register)."""
        if self.taf is not Taf.TAF2:
            return self.registers
        return tuple(
            with_tariff(register, e)
            for register in self.registers
            for e in (TOTAL_E, *self.stage_numbers, ERROR_E)
        )

    def valid_at(self, instant: datetime) -> bool:
        """True if ``instant`` lies in [valid_from, valid_to)."""
        if instant.tzinfo is None:
            raise UsageError("valid_at needs a timezone-aware instant")
        return self.valid_from <= instant and (self.valid_to is None or instant < self.valid_to)

    # -- document ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The profile as a JSON-compatible document (keys in field order)."""
        calendar = self.tariff_calendar
        return {
            "format": PROFILE_FORMAT,
            "profile_id": self.profile_id,
            "taf": int(self.taf),
            "meter_id": self.meter_id,
            "registers": list(self.registers),
            "billing_period": None
            if self.billing_period is None
            else {
                "start": self.billing_period.start.isoformat(),
                "months": self.billing_period.months,
            },
            "registration_period": None
            if self.registration_period is None
            else int(self.registration_period.total_seconds()),
            "tariff_stages": [
                {"number": s.number, "description": s.description} for s in self.tariff_stages
            ],
            "tariff_calendar": None if calendar is None else _calendar_to_dict(calendar),
            "recipients": list(self.recipients),
            "pseudonym": self.pseudonym,
            "valid_from": _instant_text(self.valid_from),
            "valid_to": None if self.valid_to is None else _instant_text(self.valid_to),
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> EvaluationProfile:
        """Build and validate a profile from :meth:`to_dict`'s document; strict about keys."""
        doc = _Doc(document, "profile")
        fmt = doc.get("format", str)
        if fmt != PROFILE_FORMAT:
            raise ProfileRejected(
                TafReason.UNSUPPORTED_FORMAT, f"unknown profile format {fmt!r}", format=fmt
            )
        doc.only({"format", *(f.name for f in fields(cls))})
        billing = doc.get("billing_period", dict, optional=True)
        period = doc.get("registration_period", int, optional=True)
        calendar = doc.get("tariff_calendar", dict, optional=True)
        valid_to = doc.get("valid_to", str, optional=True)
        stages = doc.items("tariff_stages", dict)
        if len(stages) > MAX_TARIFF_STAGES:  # say so before a stage number > 20 does
            raise ProfileRejected(
                TafReason.TOO_MANY_TARIFF_STAGES,
                f"{len(stages)} tariff stages; at most {MAX_TARIFF_STAGES}",
                count=len(stages),
            )
        return cls(
            profile_id=doc.get("profile_id", str),
            taf=doc.get("taf", int),
            meter_id=doc.get("meter_id", str),
            registers=tuple(doc.items("registers", str)),
            billing_period=None if billing is None else _billing_from(billing),
            registration_period=None if period is None else timedelta(seconds=period),
            tariff_stages=tuple(_stage_from(s) for s in stages),
            tariff_calendar=None if calendar is None else _calendar_from(calendar),
            recipients=tuple(doc.items("recipients", str)),
            pseudonym=doc.get("pseudonym", str, optional=True),
            valid_from=_parse_instant(doc.get("valid_from", str), "valid_from"),
            valid_to=None if valid_to is None else _parse_instant(valid_to, "valid_to"),
        )


# --- document helpers ---------------------------------------------------------------------------


class _Doc:
    """Typed access to one JSON object; any structural problem is ``MALFORMED``."""

    def __init__(self, document: object, where: str) -> None:
        if not isinstance(document, Mapping):
            raise ProfileRejected(TafReason.MALFORMED, f"{where} must be an object")
        self.document, self.where = document, where

    def get(self, key: str, kind: type, *, optional: bool = False) -> Any:
        if key not in self.document:
            raise ProfileRejected(TafReason.MALFORMED, f"{self.where}.{key} is missing", key=key)
        value = self.document[key]
        if value is None and optional:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ProfileRejected(
                TafReason.MALFORMED, f"{self.where}.{key} must be {kind.__name__}", key=key
            )
        return value

    def items(self, key: str, kind: type) -> list[Any]:
        values = self.get(key, list)
        for value in values:
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ProfileRejected(
                    TafReason.MALFORMED, f"{self.where}.{key}[] must be {kind.__name__}", key=key
                )
        return values

    def only(self, keys: set[str]) -> None:
        extra = set(self.document) - keys
        if extra:
            raise ProfileRejected(
                TafReason.MALFORMED, f"{self.where} has unknown keys {sorted(extra)}"
            )


def _instant_text(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_instant(text: str, key: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ProfileRejected(TafReason.MALFORMED, f"{key} is not ISO 8601", key=key) from None
    return _aware(value, key)


def _parse_date(text: str, key: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ProfileRejected(TafReason.MALFORMED, f"{key} is not a date", key=key) from None


def _parse_time(text: str) -> time:
    try:
        value = time.fromisoformat(text)
    except ValueError:
        raise ProfileRejected(TafReason.MALFORMED, f"{text!r} is not a time of day") from None
    return value


def _billing_from(document: Mapping[str, Any]) -> BillingPeriod:
    doc = _Doc(document, "billing_period")
    doc.only({"start", "months"})
    return BillingPeriod(_parse_date(doc.get("start", str), "start"), doc.get("months", int))


def _stage_from(document: Mapping[str, Any]) -> TariffStage:
    doc = _Doc(document, "tariff_stages[]")
    doc.only({"number", "description"})
    return TariffStage(doc.get("number", int), doc.get("description", str))


def _calendar_to_dict(calendar: TariffCalendar) -> dict[str, Any]:
    return {
        "day_profiles": [
            {
                "day_id": p.day_id,
                "switches": [
                    {"at": s.at.isoformat(timespec="minutes"), "stage": s.stage} for s in p.switches
                ],
            }
            for p in calendar.day_profiles
        ],
        "weekday": calendar.weekday,
        "saturday": calendar.saturday,
        "sunday_holiday": calendar.sunday_holiday,
        "special_days": [
            {"date": s.day.isoformat(), "day_id": s.day_id} for s in calendar.special_days
        ],
        "holiday_subdivision": calendar.holiday_subdivision,
    }


def _calendar_from(document: Mapping[str, Any]) -> TariffCalendar:
    doc = _Doc(document, "tariff_calendar")
    doc.only(
        {
            "day_profiles",
            "weekday",
            "saturday",
            "sunday_holiday",
            "special_days",
            "holiday_subdivision",
        }
    )
    profiles = []
    for item in doc.items("day_profiles", dict):
        p = _Doc(item, "day_profiles[]")
        p.only({"day_id", "switches"})
        switches = []
        for raw in p.items("switches", dict):
            s = _Doc(raw, "switches[]")
            s.only({"at", "stage"})
            switches.append(Switch(_parse_time(s.get("at", str)), s.get("stage", int)))
        profiles.append(DayProfile(p.get("day_id", int), tuple(switches)))
    specials = []
    for item in doc.items("special_days", dict):
        s = _Doc(item, "special_days[]")
        s.only({"date", "day_id"})
        specials.append(SpecialDay(_parse_date(s.get("date", str), "date"), s.get("day_id", int)))
    return TariffCalendar(
        tuple(profiles),
        weekday=doc.get("weekday", int),
        saturday=doc.get("saturday", int),
        sunday_holiday=doc.get("sunday_holiday", int),
        special_days=tuple(specials),
        holiday_subdivision=doc.get("holiday_subdivision", str, optional=True),
    )


__all__ = [
    "PROFILE_FORMAT",
    "UNSUPPORTED_TAFS",
    "EvaluationProfile",
    "Taf",
    "TariffStage",
]
