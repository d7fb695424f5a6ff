"""Read-only diagnostics for the authorised service technician (seed 003 §6, table 4 step 2.6).

What the technician may see (seed 003 §6.3 footnote 23): the gateway's state, the meters it
knows and their addressing, which certificates it holds and whether they are valid, whether
TLS and application connections exist, and recent errors from the **system** log. Never
readings, consumer logs, consumer ids, keys or credentials: :func:`collect` builds the report
from an allow-list of fields, and :class:`DiagnosticsSession` refuses every other request.

Sans-io: :class:`DiagnosticsSession` turns one request (a JSON object) into one answer and
writes the system-log entries (table 4 step 4.4); the transport is
:mod:`imsys.gateway.han_diagnostics`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from cryptography import x509

from imsys.core.clock import Clock
from imsys.core.errors import CertificateRejected
from imsys.gateway.admin.config_store import ConfigKind, ConfigStore
from imsys.gateway.logs import GatewayLogs, Level, Outcome, SystemEvent
from imsys.pki.validation import PathValidator

__all__ = ["DiagnosticsRequest", "DiagnosticsSession", "DiagnosticsSources", "Refusal",
           "collect"]

#: Meter-profile fields a technician may see (addressing, never keys or the consumer).
METER_FIELDS = ("meter_id", "protocol", "endpoint", "read_interval_s", "pull_request")
RECENT_ERRORS = 50
ERROR_WINDOW = timedelta(days=7)


class DiagnosticsRequest(StrEnum):
    DIAGNOSTICS = "diagnostics"  # the whole report
    METERS = "meters"
    CERTIFICATES = "certificates"
    CONNECTIONS = "connections"
    ERRORS = "errors"
    LOGOUT = "logout"  # table 4 step 2.7


class Refusal(StrEnum):
    """Why a request was refused (the connection stays open; it is logged)."""

    READ_ONLY = "read-only-diagnostics"  # readings, consumer data, any change
    MALFORMED = "malformed"


@dataclass
class DiagnosticsSources:
    """Where the report comes from. ``certificates`` yields ``(label, certificate)`` of the
    gateway's certificates; ``connections`` the TLS/application connection states the process
    tracks (``{"peer", "interface", "tls", "application"}``); ``visible_meters`` the meter ids
    the LMN currently sees."""

    gateway_id: str
    config: ConfigStore
    logs: GatewayLogs
    clock: Clock
    validator: PathValidator | None = None
    certificates: Callable[[], list[tuple[str, x509.Certificate]]] = lambda: []
    connections: Callable[[], list[dict[str, Any]]] = lambda: []
    visible_meters: Callable[[], set[str]] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meters(src: DiagnosticsSources) -> list[dict[str, Any]]:
    visible = None if src.visible_meters is None else src.visible_meters()
    meters = []
    for item in src.config.items(ConfigKind.METER):
        entry = {name: item.document.get(name) for name in METER_FIELDS}
        entry["meter_id"] = item.item_id
        entry["channels"] = len(item.document.get("channels", []))
        entry["visible"] = None if visible is None else item.item_id in visible
        meters.append(entry)
    return meters


def _certificates(src: DiagnosticsSources) -> list[dict[str, Any]]:
    now = src.clock.now()
    result = []
    for label, cert in src.certificates():
        entry: dict[str, Any] = {
            "label": label, "subject": cert.subject.rfc4514_string(),
            "serial": f"{cert.serial_number:x}",
            "not_before": _iso(cert.not_valid_before_utc),
            "not_after": _iso(cert.not_valid_after_utc)}
        if src.validator is None:
            entry["status"] = "valid" if cert.not_valid_before_utc <= now <= \
                cert.not_valid_after_utc else "outside-validity"
        else:
            try:
                src.validator.validate(cert, at=now)
                entry["status"] = "valid"
            except CertificateRejected as exc:
                entry["status"] = exc.reason.value
        result.append(entry)
    return result


def _errors(src: DiagnosticsSources) -> list[dict[str, Any]]:
    since = src.clock.now() - ERROR_WINDOW
    entries = [e for e in src.logs.system.entries(since=since) if e.level >= Level.WARNING]
    return [{"record": e.record_number, "time": _iso(e.timestamp), "level": e.level.name,
             "event": None if e.event is None else int(e.event), "text": e.text}
            for e in entries[-RECENT_ERRORS:]]


def collect(src: DiagnosticsSources, request: DiagnosticsRequest) -> dict[str, Any]:
    """The report (or one part of it). Built field by field from allowed sources only."""
    parts: dict[DiagnosticsRequest, Callable[[], Any]] = {
        DiagnosticsRequest.METERS: lambda: _meters(src),
        DiagnosticsRequest.CERTIFICATES: lambda: _certificates(src),
        DiagnosticsRequest.CONNECTIONS: lambda: list(src.connections()),
        DiagnosticsRequest.ERRORS: lambda: _errors(src),
    }
    if request is DiagnosticsRequest.DIAGNOSTICS:
        report = {"gateway_id": src.gateway_id, "time": _iso(src.clock.now()),
                  "config_revision": src.config.revision()}
        report.update({part.value: build() for part, build in parts.items()})
        return report
    return {request.value: parts[request]()}


class DiagnosticsSession:
    """One technician's session after the TLS handshake and the certificate check (table 4
    steps 2.3–2.5). ``serial`` is the technician certificate's serial number (logged)."""

    def __init__(self, src: DiagnosticsSources, serial: int) -> None:
        self.src = src
        self.serial = serial
        self.closed = False
        src.logs.system.append(Level.INFO, Outcome.SUCCESS,
                               "service technician logged on at the HAN (diagnostics)",
                               event=SystemEvent.TECHNICIAN_ACCESS, technician_serial=serial)

    def handle(self, request: object) -> dict[str, Any]:
        """Answer one request ``{"request": "<DiagnosticsRequest>"}``."""
        logs = self.src.logs.system
        name = request.get("request") if isinstance(request, dict) else None
        try:
            kind = DiagnosticsRequest(name)
            if set(request) != {"request"}:  # type: ignore[arg-type]
                raise ValueError("extra keys")
        except (ValueError, TypeError):
            logs.append(Level.WARNING, Outcome.FAILURE,
                        "service technician request refused: only read-only diagnostics",
                        event=SystemEvent.INPUT_REJECTED, reason=Refusal.READ_ONLY,
                        technician_serial=self.serial)
            return {"ok": False, "error": Refusal.READ_ONLY.value,
                    "allowed": [r.value for r in DiagnosticsRequest]}
        if kind is DiagnosticsRequest.LOGOUT:
            self.close()
            return {"ok": True, "logout": True}
        logs.append(Level.INFO, Outcome.SUCCESS, "service technician read diagnostics",
                    event=SystemEvent.TECHNICIAN_ACCESS, request=kind,
                    technician_serial=self.serial)
        return {"ok": True, **collect(self.src, kind)}

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.src.logs.system.append(Level.INFO, Outcome.SUCCESS,
                                        "service technician logged off",
                                        event=SystemEvent.TECHNICIAN_ACCESS,
                                        technician_serial=self.serial)

