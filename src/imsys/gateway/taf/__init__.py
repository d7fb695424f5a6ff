"""Tariff use cases of the gateway: TAF1, TAF2, TAF6, TAF7 (device profile SMGW_G1_BASIS).

Pure logic over readings: the caller feeds readings (UTC, in time order per register) and
persists what comes back; nothing here touches the store, the clock or the network.

* :class:`EvaluationProfile` (:mod:`.profile`) – the validated evaluation (tariff) profile;
* :mod:`.calendar` – local time (Europe/Berlin), billing periods, day profiles, tariff stages;
* :mod:`.taf1` billing-period values, :mod:`.taf2` time-of-use registers, :mod:`.taf6`
  billing-day values kept 42 days, :mod:`.taf7` register series;
* :func:`evaluate` – one evaluation of a profile, dispatched by :data:`EVALUATORS`.

Rules and sources: ``docs/taf.md``.
"""

from imsys.gateway.taf import taf1, taf2, taf6, taf7
from imsys.gateway.taf._boundary import TOLERANCE, BoundaryValue
from imsys.gateway.taf._evaluation import (
    EVALUATORS,
    Evaluation,
    TafResult,
    Unsupported,
    Window,
    evaluate,
)
from imsys.gateway.taf.calendar import (
    BillingPeriod,
    DayProfile,
    DayType,
    Period,
    SpecialDay,
    Switch,
    TariffCalendar,
)
from imsys.gateway.taf.errors import EvaluationRejected, ProfileRejected, TafReason
from imsys.gateway.taf.profile import (
    PROFILE_FORMAT,
    UNSUPPORTED_TAFS,
    EvaluationProfile,
    Taf,
    TariffStage,
)
from imsys.gateway.taf.taf1 import BillingValue, Taf1Result
from imsys.gateway.taf.taf2 import Attribution, Cause, Taf2Result, Taf2State
from imsys.gateway.taf.taf6 import RETENTION_DAYS, Taf6Result
from imsys.gateway.taf.taf7 import Taf7Result

__all__ = [
    "EVALUATORS",
    "PROFILE_FORMAT",
    "RETENTION_DAYS",
    "TOLERANCE",
    "UNSUPPORTED_TAFS",
    "Attribution",
    "BillingPeriod",
    "BillingValue",
    "BoundaryValue",
    "Cause",
    "DayProfile",
    "DayType",
    "Evaluation",
    "EvaluationProfile",
    "EvaluationRejected",
    "Period",
    "ProfileRejected",
    "SpecialDay",
    "Switch",
    "Taf",
    "Taf1Result",
    "Taf2Result",
    "Taf2State",
    "Taf6Result",
    "Taf7Result",
    "TafReason",
    "TafResult",
    "TariffCalendar",
    "TariffStage",
    "Unsupported",
    "Window",
    "evaluate",
    "taf1",
    "taf2",
    "taf6",
    "taf7",
]
