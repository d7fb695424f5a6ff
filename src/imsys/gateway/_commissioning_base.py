"""Shared parts of the gateway's commissioning (seed 003 §2.3): roles, rejections, ports.

* :class:`CommissioningReason` / :class:`CommissioningRejected` – every refusal of the
  commissioning state machine, the local interface and the initial configuration file;
* :class:`Role` – who drives a step (integrator, installer = "Erstkonfigurator", SMGW-Admin);
* :class:`StatePort` with :class:`JsonFileState`, :class:`StateTableState` and
  :class:`MemoryState` – where the gateway keeps its commissioning state (sans-io: the state
  machine only calls ``load``/``save``);
* :class:`PkiTrust` with :class:`SmPkiTrust` – certification-path checks against the trust
  anchor the security module holds (``ROOT_WAN_SIG_CRT``, §2.3.1.3);
* :class:`CommissioningLogRecord` and :func:`system_log_hook` – the log hook.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, cast

from cryptography import x509

from imsys.core.clock import Clock
from imsys.core.errors import Rejected
from imsys.gateway.logs import Level, Outcome, SystemEvent, SystemLog
from imsys.gateway.store import StateTable
from imsys.pki import PathValidator
from imsys.pki.validation import CrlSource

# --------------------------------------------------------------------------- rejections


class CommissioningReason(StrEnum):
    """Why a commissioning step, a local-interface login or an initial configuration was
    refused."""

    #: the step does not belong to the current phase (seed 003 §2.3: each phase has its tasks)
    WRONG_PHASE = "wrong-phase"
    #: the role has no right to this step (§2.3: "keine Integrator-Rechte" for the installer)
    WRONG_ROLE = "wrong-role"
    #: a prerequisite step of the same phase is missing (e.g. certificates before keys)
    OUT_OF_ORDER = "out-of-order"
    #: the step was done already and is not repeatable
    ALREADY_DONE = "already-done"
    #: a certificate failed path validation against ROOT_WAN_SIG_CRT or its profile
    CERTIFICATE_INVALID = "certificate-invalid"
    #: a certificate does not certify the security module's key of that name
    KEY_MISMATCH = "key-mismatch"
    #: the trust anchor's fingerprint differs from the one received over the second channel
    FINGERPRINT_MISMATCH = "fingerprint-mismatch"
    #: the initial configuration file's signature does not verify with GWADM_SIG_CRT
    SIGNATURE_INVALID = "signature-invalid"
    #: the document or a value in it cannot be read (profile, JSON, base64, DER, bounds)
    MALFORMED = "malformed"
    #: a document or certificate names another gateway
    WRONG_GATEWAY = "wrong-gateway"
    #: the administrator has not authenticated to the security module (GWADM_AUT, §2.3.3)
    NOT_AUTHENTICATED = "not-authenticated"
    #: the security module refused the operation (its reason is in ``context["module_reason"]``)
    SECURITY_MODULE = "security-module"
    #: the local interface is disabled for good (end of §2.3.2) or not usable in this phase
    LOCAL_INTERFACE_DISABLED = "local-interface-disabled"
    #: no local-interface session, or a session of another role
    NO_SESSION = "no-session"
    #: wrong local-interface PIN (``context["remaining"]``)
    WRONG_PIN = "wrong-pin"
    #: the local-interface PIN of this role is locked after repeated wrong PINs
    PIN_LOCKED = "pin-locked"


class CommissioningRejected(Rejected):
    """A commissioning step was refused; ``reason`` is a :class:`CommissioningReason`.

    Nothing of the refused step is applied: the security module and the gateway's state are
    as they were before (see docs/commissioning.md for the one limit: a crash between a
    module change and the state write).
    """

    reason: CommissioningReason  # type: ignore[assignment]

    def __init__(self, reason: CommissioningReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


# --------------------------------------------------------------------------- roles


class Role(StrEnum):
    """Who drives a commissioning step (seed 003 §2.3, "Rollen")."""

    #: the integrator working on the security module directly, before it is built into the
    #: gateway (§2.3.1.2 Hinweis: pre-personalisation 1 "ohne Nutzung der lokalen
    #: Schnittstelle"); refused once the module is paired with the gateway
    INTEGRATOR_DIRECT = "integrator-direct"
    #: the integrator at the gateway's local interface, authenticated with the integrator PIN
    INTEGRATOR = "integrator"
    #: the "Erstkonfigurator" at the local interface, authenticated with the installer PIN
    INSTALLER = "installer"
    #: the SMGW-Admin over the WAN (TLS with the preliminary keys, §2.3.3)
    ADMINISTRATOR = "administrator"


# --------------------------------------------------------------------------- state ports


class StatePort(Protocol):
    """Where a commissioning component keeps its state: one JSON-able document.

    ``save`` must be atomic (the old or the new document survives a crash, nothing between).
    The document holds the Gateway-System-PIN (seed 003 §2.3.1: "Im Smart Meter Gateway:
    Gateway-System-PIN"), so the port must live in the gateway's protected storage.
    """

    def load(self) -> dict[str, Any] | None: ...

    def save(self, document: dict[str, Any]) -> None: ...


class MemoryState:
    """A :class:`StatePort` in memory (tests, simulations); keeps a deep copy."""

    def __init__(self) -> None:
        self._text: str | None = None

    def load(self) -> dict[str, Any] | None:
        return None if self._text is None else cast(dict[str, Any], json.loads(self._text))

    def save(self, document: dict[str, Any]) -> None:
        self._text = json.dumps(document, sort_keys=True)


class JsonFileState:
    """A :class:`StatePort` as one JSON file, written atomically (temp file, fsync,
    ``os.replace``, fsync of the directory), mode 0600."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return cast(dict[str, Any], json.loads(text))

    def save(self, document: dict[str, Any]) -> None:
        data = json.dumps(document, sort_keys=True, indent=1).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class StateTableState:
    """A :class:`StatePort` as one key of the gateway's :class:`~imsys.gateway.store.StateTable`
    (the JSON text; one transaction per save)."""

    def __init__(self, table: StateTable, key: str) -> None:
        self.table = table
        self.key = key

    def load(self) -> dict[str, Any] | None:
        value = self.table.get(self.key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError(f"state {self.key!r} is not a JSON text")
        return cast(dict[str, Any], json.loads(value))

    def save(self, document: dict[str, Any]) -> None:
        self.table.set(self.key, json.dumps(document, sort_keys=True))


# --------------------------------------------------------------------------- PKI trust


class PkiTrust(Protocol):
    """Certification-path validation against a given anchor (seed 003 §2.3.1.3: the gateway
    checks certificates with the root certificate held in its security module)."""

    def validate(self, certificate: x509.Certificate, *, anchor: x509.Certificate,
                 profile: str, chain: Sequence[x509.Certificate] = ()) -> None:
        """Raise :class:`~imsys.core.errors.CertificateRejected` unless ``certificate`` chains
        to ``anchor`` (through ``chain``) and fits ``profile``."""
        ...


class SmPkiTrust:
    """:class:`PkiTrust` over :class:`~imsys.pki.PathValidator`.

    The anchor comes with every call (the gateway passes ``ROOT_WAN_SIG_CRT`` from its
    security module), never from this object. CRLs are optional by default: at the
    integrator (§2.3.1) the gateway has no WAN connection to fetch them.
    """

    def __init__(self, *, clock: Clock | None = None,
                 crls: CrlSource | Iterable[x509.CertificateRevocationList] | None = None,
                 require_crl: bool = False) -> None:
        self._clock = clock
        self._crls = crls if crls is None or hasattr(crls, "crl_for") else list(crls)
        self._require_crl = require_crl

    def validate(self, certificate: x509.Certificate, *, anchor: x509.Certificate,
                 profile: str, chain: Sequence[x509.Certificate] = ()) -> None:
        validator = PathValidator([anchor], (), cast(Any, self._crls), clock=self._clock,
                                  require_crl=self._require_crl)
        validator.validate(certificate, profile=profile, chain=chain)


# --------------------------------------------------------------------------- logging


@dataclass(frozen=True, slots=True)
class CommissioningLogRecord:
    """One commissioning event for the log: what was done or refused, by whom, in which phase.

    ``step`` is the step's name (an enum member); no PINs, keys or document contents.
    """

    outcome: Outcome
    step: StrEnum
    role: Role | None
    phase: StrEnum
    reason: CommissioningReason | None = None


LogHook = Callable[[CommissioningLogRecord], None]


def system_log_hook(log: SystemLog) -> LogHook:
    """A :data:`LogHook` writing to the gateway's system log (enum details only)."""

    def hook(record: CommissioningLogRecord) -> None:
        if record.outcome is Outcome.SUCCESS:
            log.append(Level.INFO, Outcome.SUCCESS, "commissioning step done",
                       event=SystemEvent.CONFIGURATION_CHANGE, step=record.step,
                       role=record.role, phase=record.phase)
        else:
            log.append(Level.WARNING, Outcome.FAILURE, "commissioning step refused",
                       event=SystemEvent.INPUT_REJECTED, step=record.step, role=record.role,
                       phase=record.phase, reason=record.reason)

    return hook


def no_log(record: CommissioningLogRecord) -> None:
    """The default :data:`LogHook`: drop the record."""


__all__ = [
    "CommissioningLogRecord",
    "CommissioningReason",
    "CommissioningRejected",
    "JsonFileState",
    "LogHook",
    "MemoryState",
    "PkiTrust",
    "Role",
    "SmPkiTrust",
    "StatePort",
    "StateTableState",
    "no_log",
    "system_log_hook",
]
