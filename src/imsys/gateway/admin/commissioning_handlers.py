"""``commissioning.*`` over the admin session (seed 003 §2.3.3 Personalisierung, §2.3.4
Normalbetrieb): each command is one event of the gateway's commissioning state machine, sent
with :attr:`~imsys.gateway.commissioning.Role.ADMINISTRATOR`.

The state machine decides (phase, role, order, authentication to the security module); a
refusal is its :class:`~imsys.gateway.commissioning.CommissioningRejected`, which the executor
answers with a ``failed`` result. Results carry what the GWA needs for the next step:

=========================================  ==============================  =====================
command                                    parameters                      details
=========================================  ==============================  =====================
``commissioning.admin-challenge``          –                               ``challenge`` (b64)
``commissioning.authenticate``             ``signature`` (b64 DER ECDSA)   ``authenticated``
``commissioning.generate-keys``            –                               ``public_keys``
``commissioning.export-public-keys``       –                               ``public_keys``
``commissioning.certificate-requests``     –                               ``requests``
``commissioning.import-certificates``      ``tls``/``sig``/``enc``,        ``imported``
                                           ``chain`` (b64 DER)
``commissioning.complete-personalisation`` –                               ``phase``,
                                                                           ``key_material``
``commissioning.synchronise-time``         ``administrator_time`` (ISO)    ``offset_seconds``
``commissioning.self-test``                –                               ``self_test``,
                                                                           ``key_material``,
                                                                           ``module_objects``
=========================================  ==============================  =====================

``public_keys`` are base64 DER SubjectPublicKeyInfo by the seed's names (``GW_WAN_TLS_PUB``),
``requests`` base64 DER PKCS#10 by the certificate they ask for (``GW_WAN_TLS_CRT``);
``key_material`` is the gateway's list of §2.3.3 "Im Smart Meter Gateway" (name → kind),
``module_objects`` the module's (label → kind) – the seed's summaries, so the GWA can compare.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization

from imsys.gateway.admin._params import (
    HandlerReason,
    HandlerRejected,
    b64,
    der_b64,
    parameter,
    parameters_exactly,
    require_certificate,
    require_time,
)
from imsys.gateway.admin.context import AdminContext, HandlerTable
from imsys.gateway.commissioning import (
    Answer,
    AuthenticateAdministrator,
    Commissioning,
    CompletePersonalisation,
    CreateOperationalCertificateRequests,
    Event,
    ExportOperationalPublicKeys,
    GenerateOperationalKeys,
    ImportOperationalCertificates,
    RequestAdminChallenge,
    Role,
    RunSelfTest,
    SynchroniseTime,
)
from imsys.gateway.logs import CalibrationEvent, Level, Outcome
from imsys.wire.command import Command, CommandType

__all__ = ["HANDLERS"]


def _commissioning(context: AdminContext) -> Commissioning:
    if context.commissioning is None:
        raise HandlerRejected(HandlerReason.NOT_AVAILABLE,
                              "this gateway runs without a commissioning state machine")
    return context.commissioning


def _run(context: AdminContext, event: Event) -> Answer:
    return _commissioning(context).process_event(Role.ADMINISTRATOR, event)


def _no_parameters(command: Command) -> None:
    parameters_exactly(command, set())


def _public_keys(answer: Answer) -> dict[str, str]:
    return {name: der_b64(key.public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo))
            for name, key in sorted(answer.public_keys.items())}


def _key_material(context: AdminContext) -> dict[str, str]:
    items = _commissioning(context).key_material()
    return {name: kind.value for name, kind in sorted(items.items())}


def challenge(context: AdminContext, command: Command) -> dict[str, Any]:
    _no_parameters(command)
    answer = _run(context, RequestAdminChallenge())
    assert answer.challenge is not None
    return {"challenge": der_b64(answer.challenge)}


def authenticate(context: AdminContext, command: Command) -> dict[str, Any]:
    parameters_exactly(command, {"signature"})
    signature = b64(parameter(command, "signature", str), "signature", max_size=160)
    _run(context, AuthenticateAdministrator(signature))
    return {"authenticated": True}


def generate_keys(context: AdminContext, command: Command) -> dict[str, Any]:
    _no_parameters(command)
    return {"public_keys": _public_keys(_run(context, GenerateOperationalKeys()))}


def export_public_keys(context: AdminContext, command: Command) -> dict[str, Any]:
    _no_parameters(command)
    return {"public_keys": _public_keys(_run(context, ExportOperationalPublicKeys()))}


def certificate_requests(context: AdminContext, command: Command) -> dict[str, Any]:
    _no_parameters(command)
    answer = _run(context, CreateOperationalCertificateRequests())
    return {"requests": {name: der_b64(csr.public_bytes(serialization.Encoding.DER))
                         for name, csr in sorted(answer.requests.items())}}


def import_certificates(context: AdminContext, command: Command) -> dict[str, Any]:
    parameters_exactly(command, {"tls", "sig", "enc", "chain"})
    chain = parameter(command, "chain", list)
    if len(chain) > 4:
        raise HandlerRejected(HandlerReason.BAD_PARAMETERS, "at most 4 chain certificates")
    event = ImportOperationalCertificates(
        require_certificate(command.parameters["tls"], "tls"),
        require_certificate(command.parameters["sig"], "sig"),
        require_certificate(command.parameters["enc"], "enc"),
        tuple(require_certificate(item, "chain") for item in chain))
    _run(context, event)
    return {"imported": ["GW_WAN_ENC_CRT", "GW_WAN_SIG_CRT", "GW_WAN_TLS_CRT"]}


def complete_personalisation(context: AdminContext, command: Command) -> dict[str, Any]:
    _no_parameters(command)
    answer = _run(context, CompletePersonalisation())
    return {"phase": answer.phase.value, "key_material": _key_material(context)}


def synchronise_time(context: AdminContext, command: Command) -> dict[str, Any]:
    parameters_exactly(command, {"administrator_time"})
    _run(context, SynchroniseTime(require_time(command.parameters["administrator_time"],
                                               "administrator_time")))
    offset = _commissioning(context).state.time_offset_seconds
    # legal metrology: every time synchronisation is in the calibration log (seed 003 §2.3.4)
    context.logs.calibration.append(
        Level.INFO, Outcome.SUCCESS, "time synchronised with the administrator's time service "
        f"during commissioning (offset {offset or 0.0:+.3f} s)",
        event=CalibrationEvent.TIME_CORRECTION)
    return {"offset_seconds": offset}


def self_test(context: AdminContext, command: Command) -> dict[str, Any]:
    _no_parameters(command)
    _run(context, RunSelfTest())
    context.logs.calibration.append(Level.INFO, Outcome.SUCCESS,
                                    "self-test passed during commissioning (key material as "
                                    "seed 003 §2.3.3 lists it)", event=CalibrationEvent.SELF_TEST)
    objects: dict[str, str] = {}
    if context.secmod is not None:
        objects = {info.label: info.kind.value for info in context.secmod.objects()}
    return {"self_test": "passed", "key_material": _key_material(context),
            "module_objects": objects}


_T = CommandType
HANDLERS: HandlerTable = {
    _T.COMMISSIONING_ADMIN_CHALLENGE: challenge,
    _T.COMMISSIONING_AUTHENTICATE: authenticate,
    _T.COMMISSIONING_GENERATE_KEYS: generate_keys,
    _T.COMMISSIONING_EXPORT_PUBLIC_KEYS: export_public_keys,
    _T.COMMISSIONING_CERTIFICATE_REQUESTS: certificate_requests,
    _T.COMMISSIONING_IMPORT_CERTIFICATES: import_certificates,
    _T.COMMISSIONING_COMPLETE_PERSONALISATION: complete_personalisation,
    _T.COMMISSIONING_SYNCHRONISE_TIME: synchronise_time,
    _T.COMMISSIONING_SELF_TEST: self_test,
}
del _T
