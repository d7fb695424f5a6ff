"""Parameter access for the command handlers of this package (commissioning, profiles).

Handlers validate ``command.parameters`` themselves (docs/admin-protocol.md §2.1); these
helpers turn every structural problem into a :class:`HandlerRejected` with a
:class:`HandlerReason`, which the executor answers with a signed ``failed`` result and a
system-log entry.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from cryptography import x509

from imsys.core.errors import CertificateRejected, Rejected
from imsys.pki.directory import parsed
from imsys.wire.command import Command

__all__ = ["HandlerReason", "HandlerRejected", "b64", "parameter", "parameters_exactly",
           "require_certificate", "require_time"]


class HandlerReason(StrEnum):
    """Why a handler refused a command's parameters or could not run it."""

    #: a parameter is missing, unknown, of the wrong type or not decodable
    BAD_PARAMETERS = "bad-parameters"
    #: the gateway runs without the part the command needs (no security module or
    #: commissioning: the PEM-key test mode of ``imsys gateway run``)
    NOT_AVAILABLE = "not-available"
    #: the command refers to a meter the gateway does not know
    UNKNOWN_METER = "unknown-meter"
    #: a certificate in the parameters failed validation against the gateway's root
    CERTIFICATE_INVALID = "certificate-invalid"
    #: the item is still referenced (a meter named by an evaluation profile)
    IN_USE = "in-use"


class HandlerRejected(Rejected):
    """A handler refused a command; ``reason`` is a :class:`HandlerReason`."""

    reason: HandlerReason  # type: ignore[assignment]

    def __init__(self, reason: HandlerReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


def parameters_exactly(command: Command, required: set[str],
                       optional: set[str] | frozenset[str] = frozenset()) -> Mapping[str, Any]:
    """The parameters, refused unless they have all of ``required`` and nothing unknown."""
    params = command.parameters
    missing = sorted(required - set(params))
    unknown = sorted(set(params) - required - set(optional))
    if missing or unknown:
        raise HandlerRejected(HandlerReason.BAD_PARAMETERS,
                              f"{command.type.value}: missing {missing}, unknown {unknown}",
                              missing=missing, unknown=unknown)
    return params


def parameter(command: Command, name: str, kind: type) -> Any:
    value = command.parameters.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise HandlerRejected(HandlerReason.BAD_PARAMETERS,
                              f"{command.type.value}: {name} must be a {kind.__name__}",
                              parameter=name)
    return value


def b64(value: object, name: str, *, max_size: int = 64 * 1024) -> bytes:
    """Decode strict base64 (``BAD_PARAMETERS`` otherwise)."""
    if not isinstance(value, str) or len(value) > max_size * 4 // 3 + 4:
        raise HandlerRejected(HandlerReason.BAD_PARAMETERS, f"{name} must be base64 text",
                              parameter=name)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise HandlerRejected(HandlerReason.BAD_PARAMETERS, f"{name} is not base64",
                              parameter=name) from None


def require_certificate(value: object, name: str) -> x509.Certificate:
    """A DER certificate from base64 text."""
    try:
        return parsed(x509.load_der_x509_certificate(b64(value, name)))
    except (ValueError, x509.InvalidVersion, CertificateRejected):
        raise HandlerRejected(HandlerReason.BAD_PARAMETERS, f"{name} is no DER certificate",
                              parameter=name) from None


def require_time(value: object, name: str) -> datetime:
    """An ISO 8601 time with offset (``…Z`` or ``…+00:00``), as UTC."""
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        when = None
    if not isinstance(value, str) or when is None or when.tzinfo is None:
        raise HandlerRejected(HandlerReason.BAD_PARAMETERS, f"{name} is an ISO time with offset",
                              parameter=name)
    return when.astimezone(UTC)


def der_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
