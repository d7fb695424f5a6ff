"""Vocabulary shared by every role: errors, the clock."""

from imsys.core.clock import Clock, SimulatedClock, SystemClock
from imsys.core.errors import (
    CertificateRejected,
    CmsRejected,
    ImsysError,
    KeyRejected,
    Reason,
    Rejected,
    SecmodRejected,
    TlsRejected,
    UsageError,
)

__all__ = [
    "CertificateRejected",
    "Clock",
    "CmsRejected",
    "ImsysError",
    "KeyRejected",
    "Reason",
    "Rejected",
    "SecmodRejected",
    "SimulatedClock",
    "SystemClock",
    "TlsRejected",
    "UsageError",
]
