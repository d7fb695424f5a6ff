"""Rejections raised by the TAF evaluation (profiles and readings).

Two kinds, both :class:`imsys.core.errors.Rejected` carrying a :class:`TafReason`:

* :class:`ProfileRejected` – an evaluation profile (or one of its parts: billing period,
  day profile, tariff calendar) is invalid; the profile object is never built.
* :class:`EvaluationRejected` – the readings fed to a TAF cannot be evaluated (a register that
  runs backwards, a scaler that changes) or a readout asks for a value outside its retention
  window.

A caller that misuses the API (naive datetimes, readings out of time order, readings of another
register) gets :class:`imsys.core.errors.UsageError` instead.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, cast

from imsys.core.errors import Rejected


class TafReason(StrEnum):
    """Why a profile or an evaluation was refused (one table for all TAF modules)."""

    # --- the profile document ---------------------------------------------------------------
    #: the document's structure or a field's type is wrong (``from_dict``)
    MALFORMED = "malformed"
    #: the document names a format version this code does not read
    UNSUPPORTED_FORMAT = "unsupported-format"
    #: a TAF outside TAF1, TAF2, TAF6, TAF7 (seed 001: SMGW_G1_BASIS = TAF 1, 2, 6, 7)
    UNSUPPORTED_TAF = "unsupported-taf"
    #: an empty or non-text identifier (profile id, meter id, recipient, pseudonym)
    BAD_IDENTIFIER = "bad-identifier"
    #: no register, a duplicate register, not an OBIS code, or E ≠ 0 for TAF2
    BAD_REGISTER = "bad-register"
    #: billing period not starting on the 1st or not 1/2/3/6/12 months (facts.md §1.2 TAF1)
    BAD_BILLING_PERIOD = "bad-billing-period"
    #: registration period not 15 min × n or not dividing a day (facts.md §1.2 TAF7)
    BAD_REGISTRATION_PERIOD = "bad-registration-period"
    #: more than 20 tariff stages (facts.md §1.2 TAF2, TRuDI ContextValidation)
    TOO_MANY_TARIFF_STAGES = "too-many-tariff-stages"
    #: a tariff stage number outside 1..20 or declared twice
    BAD_TARIFF_STAGE = "bad-tariff-stage"
    #: a day profile switches to a stage the profile does not declare
    UNKNOWN_TARIFF_STAGE = "unknown-tariff-stage"
    #: a switch time not on the 15-minute grid (facts.md §1.2 TAF2)
    OFF_GRID_SWITCH_TIME = "off-grid-switch-time"
    #: a day profile that is empty, does not start at 00:00, is unordered, or is unknown
    BAD_DAY_PROFILE = "bad-day-profile"
    #: a holiday subdivision the ``holidays`` package does not know for Germany
    BAD_HOLIDAY_REGION = "bad-holiday-region"
    #: a field the profile's TAF needs is absent
    MISSING_FIELD = "missing-field"
    #: a field is set that the profile's TAF does not use
    FIELD_NOT_APPLICABLE = "field-not-applicable"
    #: validity end not after validity start, or a naive datetime
    BAD_VALIDITY = "bad-validity"
    # --- the readings -------------------------------------------------------------------------
    #: a valid register reading is lower than an earlier valid one
    REGISTER_DECREASED = "register-decreased"
    #: the readings of one register do not share one scaler and unit
    INCONSISTENT_SCALE = "inconsistent-scale"
    #: a TAF6 billing-day value older than its 42-day retention was asked for
    EXPIRED = "expired"
    #: a value was asked for whose boundary has not been reached yet
    NOT_YET_AVAILABLE = "not-yet-available"


class ProfileRejected(Rejected):
    """An evaluation profile was refused. ``reason`` is a :class:`TafReason`."""

    reason: TafReason  # type: ignore[assignment]

    def __init__(self, reason: TafReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


class EvaluationRejected(Rejected):
    """Readings could not be evaluated. ``reason`` is a :class:`TafReason`."""

    reason: TafReason  # type: ignore[assignment]

    def __init__(self, reason: TafReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


__all__ = ["EvaluationRejected", "ProfileRejected", "TafReason"]
