"""Commissioning of the Smart Meter Gateway ("Inbetriebnahme", seed 003 §2.3), gateway side.

One persistent state machine: the phase is the state, each task of the seed is a frozen event
dataclass, and :data:`TRANSITIONS` maps ``(phase, event type)`` to the roles allowed to send it
and the phase(s) that follow. :meth:`Commissioning.process_event` refuses every pair not in the
table (``WRONG_PHASE``) and every role not listed (``WRONG_ROLE``); a guard per step refuses
missing prerequisites (``OUT_OF_ORDER``) and bad input. A refused step is logged and leaves
the security module and the stored state as they were.

Phases (seed order, :class:`Phase`)::

    pre_personalisation_1  §2.3.1.1  integrator: ROOT_WAN_SIG_CRT, GW_WAN_*_PRE keys, CSRs,
                                     Gütesiegel certificates GW_WAN_*_CRT_PRE
    integration            §2.3.1.2  integrator: system PIN pairing, storage key
                                     (before or after pre-personalisation 1)
    pre_personalisation_2  §2.3.1.3  integrator (integrator PIN): initial configuration file,
                                     GWADM_*_PUB; at its end all import keys are deleted
    installation           §2.3.2    installer (installer PIN): WAN parameters, GWA address;
                                     at its end the local interface is disabled for good
    personalisation        §2.3.3    SMGW-Admin: authentication with GWADM_AUT, operational
                                     keys GW_WAN_*, CSRs, operational certificates
    operation              §2.3.4    SMGW-Admin: time synchronisation, self-test (the rest of
                                     normal operation is another module's business)

Sans-io: the machine acts on an injected :class:`~imsys.secmod.SecurityModule`, a
:class:`PkiTrust` and a :class:`StatePort`; TLS, the WAN and the local interface's transport
are the caller's. See docs/commissioning.md (generated diagram included).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imsys.core.clock import Clock, SystemClock
from imsys.core.errors import CertificateRejected, KeyRejected, SecmodRejected, UsageError
from imsys.crypto.primitives import ecdsa_verify
from imsys.gateway._commissioning_base import (
    CommissioningLogRecord,
    CommissioningReason,
    CommissioningRejected,
    JsonFileState,
    LogHook,
    MemoryState,
    PkiTrust,
    Role,
    SmPkiTrust,
    StatePort,
    StateTableState,
    no_log,
    system_log_hook,
)
from imsys.gateway.initial_config import (
    GwaAddress,
    InitialConfiguration,
    public_key_label,
    verify_initial_configuration,
)
from imsys.gateway.logs import LogEntry, Outcome, SystemLog
from imsys.pki import SubjectName, build_csr, load_certificate
from imsys.pki.validation import common_name
from imsys.secmod import STORAGE_KEY_LABEL, SYSTEM_PIN_LABEL, SecurityModule

R = CommissioningReason
STATE_FORMAT = "imsys-commissioning-state/1"
ROOT_LABEL = "ROOT_WAN_SIG_CRT"
_USES = ("TLS", "SIG", "ENC")
_GATEWAY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
_APN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,99}$")


class Phase(StrEnum):
    """The commissioning phases in the seed's order (GLOSSARY names)."""

    PRE_PERSONALISATION_1 = "pre_personalisation_1"
    INTEGRATION = "integration"
    PRE_PERSONALISATION_2 = "pre_personalisation_2"
    INSTALLATION = "installation"
    PERSONALISATION = "personalisation"
    OPERATION = "operation"


#: Phases in which the PIN-protected local interface exists (seed 003 §2.3, Hinweis).
LOCAL_INTERFACE_PHASES = frozenset({Phase.PRE_PERSONALISATION_1, Phase.INTEGRATION,
                                    Phase.PRE_PERSONALISATION_2, Phase.INSTALLATION})


class Step(StrEnum):
    """Each commissioning step by name (for logs, the table and the diagram)."""

    IMPORT_ROOT_CERTIFICATE = "import-root-certificate"
    GENERATE_PRE_KEYS = "generate-pre-keys"
    EXPORT_PRE_PUBLIC_KEYS = "export-pre-public-keys"
    CREATE_PRE_CERTIFICATE_REQUESTS = "create-pre-certificate-requests"
    IMPORT_PRE_CERTIFICATES = "import-pre-certificates"
    COMPLETE_PRE_PERSONALISATION_1 = "complete-pre-personalisation-1"
    START_INTEGRATION = "start-integration"
    PAIR_SECURITY_MODULE = "pair-security-module"
    GENERATE_STORAGE_KEY = "generate-storage-key"
    COMPLETE_INTEGRATION = "complete-integration"
    LOAD_INITIAL_CONFIGURATION = "load-initial-configuration"
    COMPLETE_PRE_PERSONALISATION_2 = "complete-pre-personalisation-2"
    SET_WAN_PARAMETERS = "set-wan-parameters"
    READ_SYSTEM_LOG = "read-system-log"
    UPDATE_GWA_ADDRESS = "update-gwa-address"
    COMPLETE_INSTALLATION = "complete-installation"
    REQUEST_ADMIN_CHALLENGE = "request-admin-challenge"
    AUTHENTICATE_ADMINISTRATOR = "authenticate-administrator"
    GENERATE_OPERATIONAL_KEYS = "generate-operational-keys"
    EXPORT_OPERATIONAL_PUBLIC_KEYS = "export-operational-public-keys"
    CREATE_OPERATIONAL_CERTIFICATE_REQUESTS = "create-operational-certificate-requests"
    IMPORT_OPERATIONAL_CERTIFICATES = "import-operational-certificates"
    COMPLETE_PERSONALISATION = "complete-personalisation"
    SYNCHRONISE_TIME = "synchronise-time"
    RUN_SELF_TEST = "run-self-test"
    LOCAL_LOGIN = "local-login"


class Milestone(StrEnum):
    """What has been done (persisted; guards read it)."""

    ROOT_CERTIFICATE = "root-certificate"
    PRE_KEYS = "pre-keys"
    PRE_CERTIFICATES = "pre-certificates"
    PRE_PERSONALISATION_1 = "pre-personalisation-1"
    INTEGRATION_STARTED = "integration-started"
    SYSTEM_PIN = "system-pin"
    STORAGE_KEY = "storage-key"
    INTEGRATION = "integration"
    INITIAL_CONFIGURATION = "initial-configuration"
    IMPORT_KEYS_DELETED = "import-keys-deleted"
    WAN_PARAMETERS = "wan-parameters"
    LOCAL_INTERFACE_DISABLED = "local-interface-disabled"
    OPERATIONAL_KEYS = "operational-keys"
    OPERATIONAL_CERTIFICATES = "operational-certificates"
    TIME_SYNCHRONISED = "time-synchronised"
    SELF_TEST = "self-test"


class GatewayItem(StrEnum):
    """Kinds of key material the gateway itself keeps (seed 003 §2.3.1/§2.3.3, "Im Smart
    Meter Gateway")."""

    SYSTEM_PIN = "system-pin"
    STORAGE_KEY = "storage-key"  # a reference: the AES key itself stays in the module
    CERTIFICATE_WITH_CHAIN = "certificate-with-chain"
    COMMUNICATION_PARAMETERS = "communication-parameters"
    CERTIFICATE = "certificate"


#: The label under which :meth:`Commissioning.key_material` lists the GWA address.
GWA_ADDRESS_ITEM = "GWADM_ADDRESS"


class WanMedium(StrEnum):
    """Physical WAN media the installer can configure (§2.3.2)."""

    ETHERNET = "ethernet"
    DSL = "dsl"
    LTE = "lte"
    PLC = "plc"
    FIBRE = "fibre"


@dataclass(frozen=True, slots=True)
class WanParameters:
    """The WAN interface parameters the installer sets (§2.3.2: "Parametrierung und
    Konfiguration der physikalischen Kommunikationsschnittstellen"). ``address`` is a static
    interface address with prefix (``192.0.2.10/24``) or None for DHCP."""

    medium: WanMedium
    address: str | None = None
    router: str | None = None
    dns: tuple[str, ...] = ()
    apn: str | None = None

    def __post_init__(self) -> None:
        bad = CommissioningReason.MALFORMED
        if not isinstance(self.medium, WanMedium):
            raise CommissioningRejected(bad, "medium must be a WanMedium")
        if not isinstance(self.dns, tuple):
            raise CommissioningRejected(bad, "dns is a tuple of at most 4 servers")
        try:
            if self.address is not None:
                ipaddress.ip_interface(self.address)
            if self.router is not None:
                ipaddress.ip_address(self.router)
            for server in self.dns:
                ipaddress.ip_address(server)
        except (TypeError, ValueError) as exc:
            raise CommissioningRejected(bad, f"bad IP parameter: {exc}") from exc
        if not isinstance(self.dns, tuple) or len(self.dns) > 4:
            raise CommissioningRejected(bad, "dns is a tuple of at most 4 servers")
        if self.apn is not None and (self.medium is not WanMedium.LTE
                                     or not isinstance(self.apn, str) or not _APN.match(self.apn)):
            raise CommissioningRejected(bad, "an APN (letters, digits, '.', '-') only for LTE")

    def to_json(self) -> dict[str, Any]:
        return {"medium": self.medium.value, "address": self.address, "router": self.router,
                "dns": list(self.dns), "apn": self.apn}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WanParameters:
        return cls(WanMedium(data["medium"]), data["address"], data["router"],
                   tuple(data["dns"]), data["apn"])


# --------------------------------------------------------------------------- events


def _malformed_unless(ok: bool, message: str) -> None:
    if not ok:
        raise CommissioningRejected(CommissioningReason.MALFORMED, message)


def _certificates(*certificates: object) -> bool:
    return all(isinstance(c, x509.Certificate) for c in certificates)


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every commissioning event; ``step`` names it."""

    step: ClassVar[Step]


@dataclass(frozen=True, slots=True)
class ImportRootCertificate(Event):
    """§2.3.1.1: import ROOT_WAN_SIG_CRT. ``fingerprint_sha256`` is the fingerprint received
    over the second channel ("Abgleich eines Fingerprints über einen zweiten Kanal")."""

    step: ClassVar[Step] = Step.IMPORT_ROOT_CERTIFICATE
    certificate: x509.Certificate
    fingerprint_sha256: bytes

    def __post_init__(self) -> None:
        _malformed_unless(_certificates(self.certificate), "not an X.509 certificate")
        _malformed_unless(isinstance(self.fingerprint_sha256, bytes)
                          and len(self.fingerprint_sha256) == 32,
                          "the fingerprint is the 32-byte SHA-256 of the DER certificate")


@dataclass(frozen=True, slots=True)
class GeneratePreKeys(Event):
    """§2.3.1.1: on-board generation of (GW_WAN_{TLS,SIG,ENC}_PRV_PRE, …_PUB_PRE)."""

    step: ClassVar[Step] = Step.GENERATE_PRE_KEYS


@dataclass(frozen=True, slots=True)
class ExportPrePublicKeys(Event):
    """§2.3.1.1: export GW_WAN_{TLS,SIG,ENC}_PUB_PRE."""

    step: ClassVar[Step] = Step.EXPORT_PRE_PUBLIC_KEYS


@dataclass(frozen=True, slots=True)
class CreatePreCertificateRequests(Event):
    """§2.3.1.1: certificate requests for the Gütesiegel certificates."""

    step: ClassVar[Step] = Step.CREATE_PRE_CERTIFICATE_REQUESTS


@dataclass(frozen=True, slots=True)
class ImportPreCertificates(Event):
    """§2.3.1.1: import GW_WAN_{TLS,SIG,ENC}_CRT_PRE (``chain``: Sub-CA certificates)."""

    step: ClassVar[Step] = Step.IMPORT_PRE_CERTIFICATES
    tls: x509.Certificate
    sig: x509.Certificate
    enc: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        _malformed_unless(isinstance(self.chain, tuple) and len(self.chain) <= 4
                          and _certificates(self.tls, self.sig, self.enc, *self.chain),
                          "three certificates and a tuple of at most 4 chain certificates")


@dataclass(frozen=True, slots=True)
class CompletePrePersonalisation1(Event):
    """End of §2.3.1.1; next is integration, or pre-personalisation 2 if integration was
    done first."""

    step: ClassVar[Step] = Step.COMPLETE_PRE_PERSONALISATION_1


@dataclass(frozen=True, slots=True)
class StartIntegration(Event):
    """§2.3.1: integration before pre-personalisation 1 (allowed before any VP1 step)."""

    step: ClassVar[Step] = Step.START_INTEGRATION


@dataclass(frozen=True, slots=True)
class PairSecurityModule(Event):
    """§2.3.1.2: the gateway generates the Gateway-System-PIN and stores it in the module."""

    step: ClassVar[Step] = Step.PAIR_SECURITY_MODULE


@dataclass(frozen=True, slots=True)
class GenerateStorageKey(Event):
    """§2.3.1.2: "Generierung der Schlüssel für die Speicherverschlüsselung des SMGW"."""

    step: ClassVar[Step] = Step.GENERATE_STORAGE_KEY


@dataclass(frozen=True, slots=True)
class CompleteIntegration(Event):
    """End of §2.3.1.2; next is pre-personalisation 1 or, after it, pre-personalisation 2."""

    step: ClassVar[Step] = Step.COMPLETE_INTEGRATION


@dataclass(frozen=True, slots=True)
class LoadInitialConfiguration(Event):
    """§2.3.1.3: the signed initial configuration file (CMS bytes)."""

    step: ClassVar[Step] = Step.LOAD_INITIAL_CONFIGURATION
    document: bytes

    def __post_init__(self) -> None:
        _malformed_unless(isinstance(self.document, bytes), "the document must be bytes")


@dataclass(frozen=True, slots=True)
class CompletePrePersonalisation2(Event):
    """End of §2.3.1 as a whole: every import key is deleted (§2.3.1 Hinweis)."""

    step: ClassVar[Step] = Step.COMPLETE_PRE_PERSONALISATION_2


@dataclass(frozen=True, slots=True)
class SetWanParameters(Event):
    """§2.3.2: configure the physical WAN interface."""

    step: ClassVar[Step] = Step.SET_WAN_PARAMETERS
    parameters: WanParameters

    def __post_init__(self) -> None:
        _malformed_unless(isinstance(self.parameters, WanParameters),
                          "parameters must be WanParameters")


@dataclass(frozen=True, slots=True)
class ReadSystemLog(Event):
    """§2.3.2: "Diagnose mit lesendem Zugriff auf System-Log" – the last ``limit`` entries."""

    step: ClassVar[Step] = Step.READ_SYSTEM_LOG
    limit: int = 100

    def __post_init__(self) -> None:
        _malformed_unless(isinstance(self.limit, int) and not isinstance(self.limit, bool)
                          and 1 <= self.limit <= 10_000, "limit must be 1..10000")


@dataclass(frozen=True, slots=True)
class UpdateGwaAddress(Event):
    """§2.3.2: "falls erforderlich Update der Kommunikationsadresse des SMGW-Admins"."""

    step: ClassVar[Step] = Step.UPDATE_GWA_ADDRESS
    address: GwaAddress

    def __post_init__(self) -> None:
        _malformed_unless(isinstance(self.address, GwaAddress), "address must be a GwaAddress")


@dataclass(frozen=True, slots=True)
class CompleteInstallation(Event):
    """End of §2.3.2: the local interface is disabled for good."""

    step: ClassVar[Step] = Step.COMPLETE_INSTALLATION


@dataclass(frozen=True, slots=True)
class RequestAdminChallenge(Event):
    """§2.3.3: the security module's challenge for the administrator (GWADM_AUT)."""

    step: ClassVar[Step] = Step.REQUEST_ADMIN_CHALLENGE


@dataclass(frozen=True, slots=True)
class AuthenticateAdministrator(Event):
    """§2.3.3: the administrator's DER ECDSA signature (GWADM_AUT_PRV) over the challenge."""

    step: ClassVar[Step] = Step.AUTHENTICATE_ADMINISTRATOR
    signature: bytes

    def __post_init__(self) -> None:
        _malformed_unless(isinstance(self.signature, bytes) and len(self.signature) <= 160,
                          "the signature is DER ECDSA bytes")


@dataclass(frozen=True, slots=True)
class GenerateOperationalKeys(Event):
    """§2.3.3: on-board generation of (GW_WAN_{TLS,SIG,ENC}_PRV, …_PUB)."""

    step: ClassVar[Step] = Step.GENERATE_OPERATIONAL_KEYS


@dataclass(frozen=True, slots=True)
class ExportOperationalPublicKeys(Event):
    """§2.3.3: export GW_WAN_{TLS,SIG,ENC}_PUB."""

    step: ClassVar[Step] = Step.EXPORT_OPERATIONAL_PUBLIC_KEYS


@dataclass(frozen=True, slots=True)
class CreateOperationalCertificateRequests(Event):
    """§2.3.3: certificate requests for the operational certificates."""

    step: ClassVar[Step] = Step.CREATE_OPERATIONAL_CERTIFICATE_REQUESTS


@dataclass(frozen=True, slots=True)
class ImportOperationalCertificates(Event):
    """§2.3.3: import GW_WAN_{TLS,SIG,ENC}_CRT "in das SMGW und Speicherung im SMGW"."""

    step: ClassVar[Step] = Step.IMPORT_OPERATIONAL_CERTIFICATES
    tls: x509.Certificate
    sig: x509.Certificate
    enc: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        _malformed_unless(isinstance(self.chain, tuple) and len(self.chain) <= 4
                          and _certificates(self.tls, self.sig, self.enc, *self.chain),
                          "three certificates and a tuple of at most 4 chain certificates")


@dataclass(frozen=True, slots=True)
class CompletePersonalisation(Event):
    """End of §2.3.3 (the TLS channel closes; the administrator is logged out)."""

    step: ClassVar[Step] = Step.COMPLETE_PERSONALISATION


@dataclass(frozen=True, slots=True)
class SynchroniseTime(Event):
    """§2.3.4: time synchronisation with the administrator (the offset is recorded)."""

    step: ClassVar[Step] = Step.SYNCHRONISE_TIME
    administrator_time: datetime

    def __post_init__(self) -> None:
        _malformed_unless(isinstance(self.administrator_time, datetime)
                          and self.administrator_time.tzinfo is not None,
                          "the administrator's time must be timezone-aware")


@dataclass(frozen=True, slots=True)
class RunSelfTest(Event):
    """§2.3.4: self-test of the SMGW (its key material against §2.3.3's summary)."""

    step: ClassVar[Step] = Step.RUN_SELF_TEST


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may send an event in a phase and where it leads; with several targets, ``when``
    says (in words, for the diagram) when each one is taken."""

    roles: frozenset[Role]
    targets: tuple[Phase, ...]
    when: tuple[str, ...] = ()


P = Phase
_VP1_ROLES = frozenset({Role.INTEGRATOR, Role.INTEGRATOR_DIRECT})
_INTEGRATOR = frozenset({Role.INTEGRATOR})
_INSTALLER = frozenset({Role.INSTALLER})
_ADMIN = frozenset({Role.ADMINISTRATOR})


def _stay(phase: Phase, roles: frozenset[Role]) -> Rule:
    return Rule(roles, (phase,))


#: The transition table: (phase, event type) → rule. Anything else is WRONG_PHASE.
TRANSITIONS: Mapping[tuple[Phase, type[Event]], Rule] = {
    (P.PRE_PERSONALISATION_1, ImportRootCertificate): _stay(P.PRE_PERSONALISATION_1, _VP1_ROLES),
    (P.PRE_PERSONALISATION_1, GeneratePreKeys): _stay(P.PRE_PERSONALISATION_1, _VP1_ROLES),
    (P.PRE_PERSONALISATION_1, ExportPrePublicKeys): _stay(P.PRE_PERSONALISATION_1, _VP1_ROLES),
    (P.PRE_PERSONALISATION_1, CreatePreCertificateRequests):
        _stay(P.PRE_PERSONALISATION_1, _VP1_ROLES),
    (P.PRE_PERSONALISATION_1, ImportPreCertificates): _stay(P.PRE_PERSONALISATION_1, _VP1_ROLES),
    (P.PRE_PERSONALISATION_1, CompletePrePersonalisation1):
        Rule(_VP1_ROLES, (P.INTEGRATION, P.PRE_PERSONALISATION_2),
             ("integration not done yet", "integration done")),
    (P.PRE_PERSONALISATION_1, StartIntegration):
        Rule(_INTEGRATOR, (P.INTEGRATION,), ("no pre-personalisation 1 step done yet",)),
    (P.INTEGRATION, PairSecurityModule): _stay(P.INTEGRATION, _INTEGRATOR),
    (P.INTEGRATION, GenerateStorageKey): _stay(P.INTEGRATION, _INTEGRATOR),
    (P.INTEGRATION, CompleteIntegration):
        Rule(_INTEGRATOR, (P.PRE_PERSONALISATION_2, P.PRE_PERSONALISATION_1),
             ("pre-personalisation 1 done", "pre-personalisation 1 not done yet")),
    (P.PRE_PERSONALISATION_2, LoadInitialConfiguration): _stay(P.PRE_PERSONALISATION_2,
                                                               _INTEGRATOR),
    (P.PRE_PERSONALISATION_2, CompletePrePersonalisation2): Rule(_INTEGRATOR, (P.INSTALLATION,)),
    (P.INSTALLATION, SetWanParameters): _stay(P.INSTALLATION, _INSTALLER),
    (P.INSTALLATION, ReadSystemLog): _stay(P.INSTALLATION, _INSTALLER),
    (P.INSTALLATION, UpdateGwaAddress): _stay(P.INSTALLATION, _INSTALLER),
    (P.INSTALLATION, CompleteInstallation): Rule(_INSTALLER, (P.PERSONALISATION,)),
    (P.PERSONALISATION, RequestAdminChallenge): _stay(P.PERSONALISATION, _ADMIN),
    (P.PERSONALISATION, AuthenticateAdministrator): _stay(P.PERSONALISATION, _ADMIN),
    (P.PERSONALISATION, GenerateOperationalKeys): _stay(P.PERSONALISATION, _ADMIN),
    (P.PERSONALISATION, ExportOperationalPublicKeys): _stay(P.PERSONALISATION, _ADMIN),
    (P.PERSONALISATION, CreateOperationalCertificateRequests): _stay(P.PERSONALISATION, _ADMIN),
    (P.PERSONALISATION, ImportOperationalCertificates): _stay(P.PERSONALISATION, _ADMIN),
    (P.PERSONALISATION, CompletePersonalisation): Rule(_ADMIN, (P.OPERATION,)),
    (P.OPERATION, SynchroniseTime): _stay(P.OPERATION, _ADMIN),
    (P.OPERATION, RunSelfTest): _stay(P.OPERATION, _ADMIN),
}

_EVENT_TYPES = frozenset(event_type for _, event_type in TRANSITIONS)


def roles_in_phase(phase: Phase) -> frozenset[Role]:
    """Every role that has at least one step in ``phase`` (from :data:`TRANSITIONS`)."""
    return frozenset(role for (p, _), rule in TRANSITIONS.items() if p is phase
                     for role in rule.roles)


# --------------------------------------------------------------------------- state


def _der(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.DER).hex()


def _from_der(value: str) -> x509.Certificate:
    return load_certificate(bytes.fromhex(value))


@dataclass(frozen=True)
class CommissioningState:
    """What the gateway keeps about its commissioning (persisted as one JSON document)."""

    gateway_id: str
    phase: Phase = Phase.PRE_PERSONALISATION_1
    done: frozenset[Milestone] = frozenset()
    system_pin: str | None = None
    pending_system_pin: str | None = None
    storage_key_label: str | None = None
    initial_configuration: InitialConfiguration | None = None
    gwa_address: GwaAddress | None = None
    wan_parameters: WanParameters | None = None
    operational_certificates: Mapping[str, x509.Certificate] = field(default_factory=dict)
    operational_chain: tuple[x509.Certificate, ...] = ()
    time_offset_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        config = self.initial_configuration
        return {
            "format": STATE_FORMAT,
            "gateway_id": self.gateway_id,
            "phase": self.phase.value,
            "done": sorted(m.value for m in self.done),
            "system_pin": self.system_pin,
            "pending_system_pin": self.pending_system_pin,
            "storage_key_label": self.storage_key_label,
            "initial_configuration": None if config is None else config.to_json(),
            "gwa_address": None if self.gwa_address is None else self.gwa_address.to_json(),
            "wan_parameters": None if self.wan_parameters is None
            else self.wan_parameters.to_json(),
            "operational_certificates": {name: _der(cert) for name, cert
                                         in self.operational_certificates.items()},
            "operational_chain": [_der(cert) for cert in self.operational_chain],
            "time_offset_seconds": self.time_offset_seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CommissioningState:
        if data.get("format") != STATE_FORMAT:
            raise UsageError(f"not a commissioning state of format {STATE_FORMAT}")
        config = data["initial_configuration"]
        return cls(
            gateway_id=data["gateway_id"],
            phase=Phase(data["phase"]),
            done=frozenset(Milestone(m) for m in data["done"]),
            system_pin=data["system_pin"],
            pending_system_pin=data["pending_system_pin"],
            storage_key_label=data["storage_key_label"],
            initial_configuration=None if config is None
            else InitialConfiguration.decode(json.dumps(config).encode()),
            gwa_address=None if data["gwa_address"] is None
            else GwaAddress.from_json(data["gwa_address"]),
            wan_parameters=None if data["wan_parameters"] is None
            else WanParameters.from_json(data["wan_parameters"]),
            operational_certificates={name: _from_der(value) for name, value
                                      in data["operational_certificates"].items()},
            operational_chain=tuple(_from_der(v) for v in data["operational_chain"]),
            time_offset_seconds=data["time_offset_seconds"],
        )

    def has(self, *milestones: Milestone) -> bool:
        return all(m in self.done for m in milestones)

    def with_done(self, *milestones: Milestone, **changes: Any) -> CommissioningState:
        return replace(self, done=self.done | frozenset(milestones), **changes)


@dataclass(frozen=True, slots=True)
class Answer:
    """What a step gives back: the phase after it and, for export/request steps, data.

    ``public_keys`` are keyed by the seed's names (``GW_WAN_TLS_PUB_PRE``), ``requests`` by
    the certificate they ask for (``GW_WAN_TLS_CRT_PRE``).
    """

    phase: Phase
    public_keys: Mapping[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    requests: Mapping[str, x509.CertificateSigningRequest] = field(default_factory=dict)
    challenge: bytes | None = None
    deleted_import_keys: tuple[str, ...] = ()
    log_entries: tuple[LogEntry, ...] = ()


def _same_key(a: ec.EllipticCurvePublicKey, b: ec.EllipticCurvePublicKey) -> bool:
    def point(key: ec.EllipticCurvePublicKey) -> bytes:
        return key.public_bytes(serialization.Encoding.X962,
                                serialization.PublicFormat.UncompressedPoint)

    return a.curve.name == b.curve.name and hmac.compare_digest(point(a), point(b))


Handler = Callable[["Commissioning", Role, Any], tuple[CommissioningState, Answer]]


# --------------------------------------------------------------------------- the machine


class Commissioning:
    """The gateway's commissioning state machine (seed 003 §2.3).

    ``secmod`` is the gateway's security module, ``trust`` validates certification paths
    against the module's ROOT_WAN_SIG_CRT, ``state`` keeps :class:`CommissioningState`, and
    ``system_log`` (optional) is what the installer may read for diagnosis (§2.3.2).
    On construction an existing state is loaded and, once paired, the module is unlocked with
    the stored system PIN (the gateway does so at every start). ``log`` receives one
    :class:`CommissioningLogRecord` per step done or refused.
    """

    def __init__(self, secmod: SecurityModule, trust: PkiTrust, state: StatePort, *,
                 gateway_id: str | None = None, clock: Clock | None = None,
                 log: LogHook = no_log, system_log: SystemLog | None = None) -> None:
        self._secmod = secmod
        self._system_log = system_log
        self._trust = trust
        self._port = state
        self._clock: Clock = clock or SystemClock()
        self._log = log
        document = state.load()
        if document is None:
            if gateway_id is None or not _GATEWAY_ID.match(gateway_id):
                raise UsageError("a new commissioning needs a gateway id "
                                 f"matching {_GATEWAY_ID.pattern}")
            self._state = CommissioningState(gateway_id)
            state.save(self._state.to_json())
        else:
            self._state = CommissioningState.from_json(document)
            if gateway_id is not None and gateway_id != self._state.gateway_id:
                raise UsageError(f"the stored commissioning is for {self._state.gateway_id}, "
                                 f"not {gateway_id}")
        self._unlock()

    def _unlock(self) -> None:
        """Present the stored system PIN; finish a pairing a crash interrupted."""
        state = self._state
        if not self._secmod.paired or self._secmod.pin_verified:
            return
        if state.system_pin is not None:
            self._secmod.check_system_pin(state.system_pin)
        elif state.pending_system_pin is not None:
            # set_system_pin succeeded, the state write after it did not: adopt the PIN
            self._secmod.check_system_pin(state.pending_system_pin)
            self._commit(state.with_done(Milestone.SYSTEM_PIN,
                                         system_pin=state.pending_system_pin,
                                         pending_system_pin=None))

    # ------------------------------------------------------------------ reading

    @property
    def state(self) -> CommissioningState:
        return self._state

    @property
    def phase(self) -> Phase:
        return self._state.phase

    @property
    def gateway_id(self) -> str:
        return self._state.gateway_id

    @property
    def local_interface_enabled(self) -> bool:
        """Whether the local interface may be used (§2.3: until the end of §2.3.2)."""
        return (self._state.phase in LOCAL_INTERFACE_PHASES
                and Milestone.LOCAL_INTERFACE_DISABLED not in self._state.done)

    @property
    def gwa_address(self) -> GwaAddress | None:
        return self._state.gwa_address

    def gwa_certificate(self, name: str) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
        """A stored GWADM certificate (``GWADM_SIG_CRT``) with its chain (without the root)."""
        config = self._state.initial_configuration
        if config is None:
            raise UsageError("no initial configuration loaded")
        for stored, item in config.certificates():
            if stored == name:
                return item.certificate, item.chain
        raise UsageError(f"no GWA certificate {name!r}")

    def operational_certificate(self, name: str) -> x509.Certificate:
        """A stored operational certificate (``GW_WAN_SIG_CRT``)."""
        try:
            return self._state.operational_certificates[name]
        except KeyError:
            raise UsageError(f"no operational certificate {name!r}") from None

    def key_material(self) -> dict[str, GatewayItem]:
        """The key material the gateway itself keeps, by the seed's names (the lists "Im Smart
        Meter Gateway" of §2.3.1 and §2.3.3)."""
        state = self._state
        items: dict[str, GatewayItem] = {}
        if state.system_pin is not None:
            items[SYSTEM_PIN_LABEL] = GatewayItem.SYSTEM_PIN
        if state.storage_key_label is not None:
            items[state.storage_key_label] = GatewayItem.STORAGE_KEY
        if state.initial_configuration is not None:
            for name, _ in state.initial_configuration.certificates():
                items[name] = GatewayItem.CERTIFICATE_WITH_CHAIN
        if state.gwa_address is not None:
            items[GWA_ADDRESS_ITEM] = GatewayItem.COMMUNICATION_PARAMETERS
        for name in state.operational_certificates:
            items[name] = GatewayItem.CERTIFICATE
        return items

    # ------------------------------------------------------------------ processing

    def process_event(self, role: Role, event: Event) -> Answer:
        """Apply ``event`` sent by ``role``; raise :class:`CommissioningRejected` otherwise.

        Checks in order: the pair (phase, event type) is in :data:`TRANSITIONS`
        (``WRONG_PHASE``), ``role`` is allowed (``WRONG_ROLE``), then the step's own guards.
        Success and refusal are both logged.
        """
        if not isinstance(event, Event) or type(event) not in _EVENT_TYPES:
            raise UsageError(f"not a commissioning event: {type(event).__name__}")
        if not isinstance(role, Role):
            raise UsageError(f"not a Role: {role!r}")
        phase = self._state.phase
        try:
            rule = TRANSITIONS.get((phase, type(event)))
            if rule is None:
                raise CommissioningRejected(R.WRONG_PHASE,
                                            f"{event.step.value} is not a step of {phase.value}",
                                            phase=phase.value, step=event.step.value)
            if role not in rule.roles:
                raise CommissioningRejected(R.WRONG_ROLE,
                                            f"{role.value} may not {event.step.value}",
                                            phase=phase.value, step=event.step.value,
                                            role=role.value)
            new_state, answer = _HANDLERS[type(event)](self, role, event)
            if new_state.phase not in rule.targets:  # pragma: no cover - table/handler bug
                raise AssertionError(f"{event.step} led to {new_state.phase}, not in the table")
            self._commit(new_state)
        except CommissioningRejected as exc:
            self._log(CommissioningLogRecord(Outcome.FAILURE, event.step, role, phase,
                                             exc.reason))
            raise
        self._log(CommissioningLogRecord(Outcome.SUCCESS, event.step, role, new_state.phase))
        return answer

    def _commit(self, state: CommissioningState) -> None:
        self._port.save(state.to_json())
        self._state = state

    @contextmanager
    def _module(self) -> Iterator[None]:
        """Map the security module's refusals to ``SECURITY_MODULE``."""
        try:
            yield
        except SecmodRejected as exc:
            raise CommissioningRejected(R.SECURITY_MODULE, f"security module: {exc.message}",
                                        module_reason=exc.reason.value) from exc

    def _answer(self, state: CommissioningState, **data: Any) -> tuple[CommissioningState,
                                                                        Answer]:
        return state, Answer(state.phase, **data)

    @staticmethod
    def _require(state: CommissioningState, *milestones: Milestone) -> None:
        missing = [m.value for m in milestones if m not in state.done]
        if missing:
            raise CommissioningRejected(R.OUT_OF_ORDER, "missing: " + ", ".join(missing),
                                        missing=missing)

    @staticmethod
    def _not_done(state: CommissioningState, milestone: Milestone) -> None:
        if milestone in state.done:
            raise CommissioningRejected(R.ALREADY_DONE, f"{milestone.value} is done already",
                                        milestone=milestone.value)

    def _rollback(self, labels: list[str]) -> None:
        for label in reversed(labels):
            with suppress(Exception):
                self._secmod.delete(label)

    # ------------------------------------------------------------------ §2.3.1.1

    def _vp1_guard(self, role: Role) -> CommissioningState:
        state = self._state
        if role is Role.INTEGRATOR_DIRECT and state.has(Milestone.INTEGRATION_STARTED):
            raise CommissioningRejected(
                R.WRONG_ROLE, "after integration, pre-personalisation 1 goes through the local "
                "interface with the integrator PIN (§2.3.1.1 Hinweis)", role=role.value)
        return state

    def _import_root(self, role: Role, event: ImportRootCertificate
                     ) -> tuple[CommissioningState, Answer]:
        state = self._vp1_guard(role)
        self._not_done(state, Milestone.ROOT_CERTIFICATE)
        cert = event.certificate
        actual = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
        if not hmac.compare_digest(actual, event.fingerprint_sha256):
            raise CommissioningRejected(R.FINGERPRINT_MISMATCH,
                                        "ROOT_WAN_SIG_CRT does not match the fingerprint of "
                                        "the second channel", fingerprint=actual.hex())
        try:
            self._trust.validate(cert, anchor=cert, profile="root")
            ecdsa_verify(cert.public_key(), cert.signature, cert.tbs_certificate_bytes)  # type: ignore[arg-type]
        except (CertificateRejected, KeyRejected) as exc:
            raise CommissioningRejected(R.CERTIFICATE_INVALID,
                                        f"ROOT_WAN_SIG_CRT: {exc.message}",
                                        certificate=ROOT_LABEL, pki_reason=exc.reason.value
                                        ) from exc
        with self._module():
            self._secmod.import_certificate(ROOT_LABEL, cert)
        return self._answer(state.with_done(Milestone.ROOT_CERTIFICATE))

    def _generate_pre_keys(self, role: Role, event: GeneratePreKeys
                           ) -> tuple[CommissioningState, Answer]:
        state = self._vp1_guard(role)
        self._not_done(state, Milestone.PRE_KEYS)
        return self._answer(state.with_done(Milestone.PRE_KEYS),
                            public_keys=self._generate(_pre_labels()))

    def _generate(self, labels: dict[str, str]) -> dict[str, ec.EllipticCurvePublicKey]:
        """Generate the key pairs ``{seed public-key name: module label}``; all or none."""
        created: list[str] = []
        exported: dict[str, ec.EllipticCurvePublicKey] = {}
        try:
            with self._module():
                for name, label in labels.items():
                    handle = self._secmod.generate_key_pair(label)
                    created.append(label)
                    exported[name] = handle.public_key()
        except CommissioningRejected:
            self._rollback(created)
            raise
        return exported

    def _export(self, labels: dict[str, str]) -> dict[str, ec.EllipticCurvePublicKey]:
        with self._module():
            return {name: self._secmod.public_key(label) for name, label in labels.items()}

    def _requests(self, labels: dict[str, str]) -> dict[str, x509.CertificateSigningRequest]:
        subject = SubjectName(self._state.gateway_id)
        with self._module():
            return {name: build_csr(self._secmod.key(label), subject)
                    for name, label in labels.items()}

    def _export_pre(self, role: Role, event: ExportPrePublicKeys
                    ) -> tuple[CommissioningState, Answer]:
        state = self._vp1_guard(role)
        self._require(state, Milestone.PRE_KEYS)
        return self._answer(state, public_keys=self._export(_pre_labels()))

    def _pre_requests(self, role: Role, event: CreatePreCertificateRequests
                      ) -> tuple[CommissioningState, Answer]:
        state = self._vp1_guard(role)
        self._require(state, Milestone.PRE_KEYS)
        return self._answer(state, requests=self._requests(_pre_certificate_labels()))

    def _check_gateway_certificates(self, event: ImportPreCertificates
                                    | ImportOperationalCertificates, suffix: str,
                                    profile_prefix: str) -> dict[str, x509.Certificate]:
        """Profile, chain to the module's root, subject = gateway id, key = module key."""
        with self._module():
            root = self._secmod.certificate(ROOT_LABEL)
        checked: dict[str, x509.Certificate] = {}
        for use, cert in zip(_USES, (event.tls, event.sig, event.enc), strict=True):
            name = f"GW_WAN_{use}_CRT{suffix}"
            try:
                self._trust.validate(cert, anchor=root, chain=event.chain,
                                     profile=f"{profile_prefix}-{use.lower()}")
            except CertificateRejected as exc:
                raise CommissioningRejected(R.CERTIFICATE_INVALID, f"{name}: {exc.message}",
                                            certificate=name, pki_reason=exc.reason.value
                                            ) from exc
            if common_name(cert) != self._state.gateway_id:
                raise CommissioningRejected(R.WRONG_GATEWAY, f"{name} names another gateway",
                                            certificate=name, gateway=self._state.gateway_id)
            with self._module():
                module_key = self._secmod.public_key(f"GW_WAN_{use}{suffix}")
            if not _same_key(cert.public_key(), module_key):  # type: ignore[arg-type]
                raise CommissioningRejected(R.KEY_MISMATCH,
                                            f"{name} does not certify the module's key",
                                            certificate=name)
            checked[name] = cert
        return checked

    def _import_pre_certificates(self, role: Role, event: ImportPreCertificates
                                 ) -> tuple[CommissioningState, Answer]:
        state = self._vp1_guard(role)
        self._require(state, Milestone.ROOT_CERTIFICATE, Milestone.PRE_KEYS)
        self._not_done(state, Milestone.PRE_CERTIFICATES)
        checked = self._check_gateway_certificates(event, "_PRE", "gateway-pre")
        created: list[str] = []
        try:
            with self._module():
                for name, cert in checked.items():
                    self._secmod.import_certificate(name, cert)
                    created.append(name)
        except CommissioningRejected:
            self._rollback(created)
            raise
        return self._answer(state.with_done(Milestone.PRE_CERTIFICATES))

    def _complete_vp1(self, role: Role, event: CompletePrePersonalisation1
                      ) -> tuple[CommissioningState, Answer]:
        state = self._vp1_guard(role)
        self._require(state, Milestone.ROOT_CERTIFICATE, Milestone.PRE_KEYS,
                      Milestone.PRE_CERTIFICATES)
        after = (Phase.PRE_PERSONALISATION_2 if state.has(Milestone.INTEGRATION)
                 else Phase.INTEGRATION)
        extra = (Milestone.INTEGRATION_STARTED,) if after is Phase.INTEGRATION else ()
        return self._answer(state.with_done(Milestone.PRE_PERSONALISATION_1, *extra,
                                            phase=after))

    # ------------------------------------------------------------------ §2.3.1.2

    def _start_integration(self, role: Role, event: StartIntegration
                           ) -> tuple[CommissioningState, Answer]:
        state = self._state
        started = state.done & {Milestone.ROOT_CERTIFICATE, Milestone.PRE_KEYS,
                                Milestone.PRE_CERTIFICATES}
        if started:
            raise CommissioningRejected(R.OUT_OF_ORDER,
                                        "pre-personalisation 1 has begun: finish it first "
                                        "(integration comes before it or directly after it)")
        return self._answer(state.with_done(Milestone.INTEGRATION_STARTED,
                                            phase=Phase.INTEGRATION))

    def _pair(self, role: Role, event: PairSecurityModule) -> tuple[CommissioningState, Answer]:
        state = self._state
        self._not_done(state, Milestone.SYSTEM_PIN)
        if self._secmod.paired:
            raise CommissioningRejected(R.SECURITY_MODULE,
                                        "the security module is paired with another gateway",
                                        module_reason="object-exists")
        with self._module():
            pin = self._secmod.random(24).hex()  # 48 hex digits from the module's generator
        # the PIN is stored as pending before the module learns it: a crash in between
        # leaves a gateway that can still unlock its module (see _unlock)
        self._commit(replace(state, pending_system_pin=pin))
        try:
            with self._module():
                self._secmod.set_system_pin(pin)
        except CommissioningRejected:
            self._commit(state)
            raise
        return self._answer(self._state.with_done(Milestone.SYSTEM_PIN, system_pin=pin,
                                                  pending_system_pin=None))

    def _storage_key(self, role: Role, event: GenerateStorageKey
                     ) -> tuple[CommissioningState, Answer]:
        state = self._state
        self._not_done(state, Milestone.STORAGE_KEY)
        with self._module():
            self._secmod.generate_secret(STORAGE_KEY_LABEL)
        return self._answer(state.with_done(Milestone.STORAGE_KEY,
                                            storage_key_label=STORAGE_KEY_LABEL))

    def _complete_integration(self, role: Role, event: CompleteIntegration
                              ) -> tuple[CommissioningState, Answer]:
        state = self._state
        self._require(state, Milestone.SYSTEM_PIN, Milestone.STORAGE_KEY)
        after = (Phase.PRE_PERSONALISATION_2 if state.has(Milestone.PRE_PERSONALISATION_1)
                 else Phase.PRE_PERSONALISATION_1)
        return self._answer(state.with_done(Milestone.INTEGRATION, phase=after))

    # ------------------------------------------------------------------ §2.3.1.3

    def _load_initial_configuration(self, role: Role, event: LoadInitialConfiguration
                                    ) -> tuple[CommissioningState, Answer]:
        state = self._state
        self._not_done(state, Milestone.INITIAL_CONFIGURATION)
        with self._module():
            root = self._secmod.certificate(ROOT_LABEL)
        verified = verify_initial_configuration(event.document, anchor=root, trust=self._trust,
                                                gateway_id=state.gateway_id)
        config = verified.configuration
        created: list[str] = []
        try:
            with self._module():
                for name, item in config.certificates():
                    label = public_key_label(name)
                    self._secmod.import_public_key(label, item.certificate.public_key())  # type: ignore[arg-type]
                    created.append(label)
        except CommissioningRejected:
            self._rollback(created)
            raise
        return self._answer(state.with_done(Milestone.INITIAL_CONFIGURATION,
                                            initial_configuration=config,
                                            gwa_address=config.address))

    def _complete_vp2(self, role: Role, event: CompletePrePersonalisation2
                      ) -> tuple[CommissioningState, Answer]:
        state = self._state
        self._require(state, Milestone.PRE_PERSONALISATION_1, Milestone.INTEGRATION,
                      Milestone.INITIAL_CONFIGURATION)
        with self._module():
            deleted = self._secmod.delete_import_keys()
        return self._answer(state.with_done(Milestone.IMPORT_KEYS_DELETED,
                                            phase=Phase.INSTALLATION),
                            deleted_import_keys=tuple(deleted))

    # ------------------------------------------------------------------ §2.3.2

    def _set_wan(self, role: Role, event: SetWanParameters) -> tuple[CommissioningState, Answer]:
        return self._answer(self._state.with_done(Milestone.WAN_PARAMETERS,
                                                  wan_parameters=event.parameters))

    def _read_system_log(self, role: Role, event: ReadSystemLog
                         ) -> tuple[CommissioningState, Answer]:
        entries = () if self._system_log is None else tuple(self._system_log.entries())
        return self._answer(self._state, log_entries=entries[-event.limit:])

    def _update_address(self, role: Role, event: UpdateGwaAddress
                        ) -> tuple[CommissioningState, Answer]:
        return self._answer(replace(self._state, gwa_address=event.address))

    def _complete_installation(self, role: Role, event: CompleteInstallation
                               ) -> tuple[CommissioningState, Answer]:
        return self._answer(self._state.with_done(Milestone.LOCAL_INTERFACE_DISABLED,
                                                  phase=Phase.PERSONALISATION))

    # ------------------------------------------------------------------ §2.3.3

    def _challenge(self, role: Role, event: RequestAdminChallenge
                   ) -> tuple[CommissioningState, Answer]:
        with self._module():
            challenge = self._secmod.admin_challenge()
        return self._answer(self._state, challenge=challenge)

    def _authenticate(self, role: Role, event: AuthenticateAdministrator
                      ) -> tuple[CommissioningState, Answer]:
        try:
            self._secmod.admin_authenticate(event.signature)
        except SecmodRejected as exc:
            raise CommissioningRejected(R.NOT_AUTHENTICATED,
                                        f"administrator authentication failed: {exc.message}",
                                        module_reason=exc.reason.value) from exc
        return self._answer(self._state)

    def _require_admin(self) -> None:
        if not self._secmod.admin_authenticated:
            raise CommissioningRejected(R.NOT_AUTHENTICATED,
                                        "the administrator has not authenticated to the "
                                        "security module (GWADM_AUT)")

    def _generate_operational(self, role: Role, event: GenerateOperationalKeys
                              ) -> tuple[CommissioningState, Answer]:
        state = self._state
        self._not_done(state, Milestone.OPERATIONAL_KEYS)
        self._require_admin()
        return self._answer(state.with_done(Milestone.OPERATIONAL_KEYS),
                            public_keys=self._generate(_operational_labels()))

    def _export_operational(self, role: Role, event: ExportOperationalPublicKeys
                            ) -> tuple[CommissioningState, Answer]:
        self._require(self._state, Milestone.OPERATIONAL_KEYS)
        return self._answer(self._state, public_keys=self._export(_operational_labels()))

    def _operational_requests(self, role: Role, event: CreateOperationalCertificateRequests
                              ) -> tuple[CommissioningState, Answer]:
        self._require(self._state, Milestone.OPERATIONAL_KEYS)
        self._require_admin()
        labels = {f"GW_WAN_{use}_CRT": f"GW_WAN_{use}" for use in _USES}
        return self._answer(self._state, requests=self._requests(labels))

    def _import_operational(self, role: Role, event: ImportOperationalCertificates
                            ) -> tuple[CommissioningState, Answer]:
        state = self._state
        self._require(state, Milestone.OPERATIONAL_KEYS)
        self._not_done(state, Milestone.OPERATIONAL_CERTIFICATES)
        self._require_admin()
        checked = self._check_gateway_certificates(event, "", "gateway")
        return self._answer(state.with_done(Milestone.OPERATIONAL_CERTIFICATES,
                                            operational_certificates=checked,
                                            operational_chain=tuple(event.chain)))

    def _complete_personalisation(self, role: Role, event: CompletePersonalisation
                                  ) -> tuple[CommissioningState, Answer]:
        state = self._state
        self._require(state, Milestone.OPERATIONAL_KEYS, Milestone.OPERATIONAL_CERTIFICATES)
        self._secmod.admin_logout()
        return self._answer(replace(state, phase=Phase.OPERATION))

    # ------------------------------------------------------------------ §2.3.4

    def _synchronise_time(self, role: Role, event: SynchroniseTime
                          ) -> tuple[CommissioningState, Answer]:
        offset = (event.administrator_time - self._clock.now()).total_seconds()
        return self._answer(self._state.with_done(Milestone.TIME_SYNCHRONISED,
                                                  time_offset_seconds=offset))

    def _self_test(self, role: Role, event: RunSelfTest) -> tuple[CommissioningState, Answer]:
        state = self._state
        with self._module():
            labels = {info.label for info in self._secmod.objects()}
            for use in _USES:
                name = f"GW_WAN_{use}_CRT"
                key = self._secmod.public_key(f"GW_WAN_{use}")
                if not _same_key(state.operational_certificates[name].public_key(),  # type: ignore[arg-type]
                                 key):
                    raise CommissioningRejected(R.KEY_MISMATCH, f"{name} does not match the "
                                                "module's key", certificate=name)
            signer = self._secmod.key("GW_WAN_SIG")
            probe = self._secmod.random(32)
            try:
                ecdsa_verify(signer.public_key(), signer.sign(probe), probe)
            except KeyRejected as exc:
                raise CommissioningRejected(R.SECURITY_MODULE, "GW_WAN_SIG does not sign",
                                            module_reason=exc.reason.value) from exc
        missing = sorted(set(_EXPECTED_AFTER_PERSONALISATION) - labels)
        if missing:
            raise CommissioningRejected(R.SECURITY_MODULE, "module objects missing",
                                        missing=missing)
        return self._answer(state.with_done(Milestone.SELF_TEST))


def _pre_labels() -> dict[str, str]:
    return {f"GW_WAN_{use}_PUB_PRE": f"GW_WAN_{use}_PRE" for use in _USES}


def _pre_certificate_labels() -> dict[str, str]:
    return {f"GW_WAN_{use}_CRT_PRE": f"GW_WAN_{use}_PRE" for use in _USES}


def _operational_labels() -> dict[str, str]:
    return {f"GW_WAN_{use}_PUB": f"GW_WAN_{use}" for use in _USES}


_EXPECTED_AFTER_PERSONALISATION = (
    SYSTEM_PIN_LABEL, ROOT_LABEL,
    *(f"GW_WAN_{use}{suffix}" for use in _USES for suffix in ("_PRE", "")),
    *(f"GW_WAN_{use}_CRT_PRE" for use in _USES),
    *(f"GWADM_{use}_PUB" for use in (*_USES, "AUT")),
)

_HANDLERS: dict[type[Event], Handler] = {
    ImportRootCertificate: Commissioning._import_root,
    GeneratePreKeys: Commissioning._generate_pre_keys,
    ExportPrePublicKeys: Commissioning._export_pre,
    CreatePreCertificateRequests: Commissioning._pre_requests,
    ImportPreCertificates: Commissioning._import_pre_certificates,
    CompletePrePersonalisation1: Commissioning._complete_vp1,
    StartIntegration: Commissioning._start_integration,
    PairSecurityModule: Commissioning._pair,
    GenerateStorageKey: Commissioning._storage_key,
    CompleteIntegration: Commissioning._complete_integration,
    LoadInitialConfiguration: Commissioning._load_initial_configuration,
    CompletePrePersonalisation2: Commissioning._complete_vp2,
    SetWanParameters: Commissioning._set_wan,
    ReadSystemLog: Commissioning._read_system_log,
    UpdateGwaAddress: Commissioning._update_address,
    CompleteInstallation: Commissioning._complete_installation,
    RequestAdminChallenge: Commissioning._challenge,
    AuthenticateAdministrator: Commissioning._authenticate,
    GenerateOperationalKeys: Commissioning._generate_operational,
    ExportOperationalPublicKeys: Commissioning._export_operational,
    CreateOperationalCertificateRequests: Commissioning._operational_requests,
    ImportOperationalCertificates: Commissioning._import_operational,
    CompletePersonalisation: Commissioning._complete_personalisation,
    SynchroniseTime: Commissioning._synchronise_time,
    RunSelfTest: Commissioning._self_test,
}
assert set(_HANDLERS) == _EVENT_TYPES, "every event type in the table needs a handler"


__all__ = [
    "GWA_ADDRESS_ITEM",
    "LOCAL_INTERFACE_PHASES",
    "TRANSITIONS",
    "Answer",
    "AuthenticateAdministrator",
    "Commissioning",
    "CommissioningLogRecord",
    "CommissioningReason",
    "CommissioningRejected",
    "CommissioningState",
    "CompleteInstallation",
    "CompleteIntegration",
    "CompletePersonalisation",
    "CompletePrePersonalisation1",
    "CompletePrePersonalisation2",
    "CreateOperationalCertificateRequests",
    "CreatePreCertificateRequests",
    "Event",
    "ExportOperationalPublicKeys",
    "ExportPrePublicKeys",
    "GatewayItem",
    "GenerateOperationalKeys",
    "GeneratePreKeys",
    "GenerateStorageKey",
    "ImportOperationalCertificates",
    "ImportPreCertificates",
    "ImportRootCertificate",
    "JsonFileState",
    "LoadInitialConfiguration",
    "LogHook",
    "MemoryState",
    "Milestone",
    "PairSecurityModule",
    "Phase",
    "PkiTrust",
    "ReadSystemLog",
    "RequestAdminChallenge",
    "Role",
    "Rule",
    "RunSelfTest",
    "SetWanParameters",
    "SmPkiTrust",
    "StartIntegration",
    "StatePort",
    "StateTableState",
    "Step",
    "SynchroniseTime",
    "UpdateGwaAddress",
    "WanMedium",
    "WanParameters",
    "roles_in_phase",
    "system_log_hook",
]
