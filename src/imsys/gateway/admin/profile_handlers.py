"""``profile.*`` and ``device.meter.*``: communication profiles, evaluation profiles and meter
profiles into the gateway's :class:`~imsys.gateway.admin.ConfigStore` (seed 003 §2.3.4 and
§5.1: "Profile (z.B. Tarifprofil, Kommunikationsprofile)", "Zertifikate und Schlüsselmaterial
für die angeschlossenen Zähler").

=================================  ==========================  ===============================
command                            parameters                  stored as
=================================  ==========================  ===============================
``profile.communication.install``  ``profile`` (document)      ``communication-profile``,
                                                               installed
``profile.communication.activate`` ``profile_id``              state ``active``
``profile.communication.delete``   ``profile_id``              removed
``profile.evaluation.install``     ``profile`` (document)      ``evaluation-profile``, installed
``profile.evaluation.activate``    ``profile_id``              state ``active``
``profile.evaluation.delete``      ``profile_id``              removed
``device.meter.register``          ``profile`` (document)      ``meter``, active (sealed cmd)
``device.meter.delete``            ``meter_id``                removed
=================================  ==========================  ===============================

Documents are validated by their own classes (:class:`CommunicationProfile`,
:meth:`EvaluationProfile.from_dict`, :meth:`MeterProfile.from_dict`); install refuses an id
that exists (``already-exists``: replace = delete + install). An evaluation profile needs its
meter registered; a meter named by an evaluation profile cannot be deleted (``in-use``). The
EMT certificates of a communication profile are validated against the gateway's
``ROOT_WAN_SIG_CRT`` (profiles ``emt-enc``/``emt-sig``).

Meter keys: ``device.meter.register`` carries the wireless meter's AES key and therefore
arrives sealed (the verifier enforces it). The key is not kept in clear: the stored document
is the profile's ``to_dict()`` with ``aes_key`` set to ``null`` and ``aes_key_sealed`` = the
key under the gateway's storage key in the security module (AES-GCM, AAD = meter id);
:func:`stored_meter_profile` gives back the :class:`MeterProfile`.

Every change that concerns a consumer (meter register/delete, evaluation profile of that
consumer's meter) is also written to that consumer's log (``ADMIN_ACTION``).
"""

from __future__ import annotations

from typing import Any

from imsys.core.errors import CertificateRejected
from imsys.gateway._commissioning_base import SmPkiTrust
from imsys.gateway.admin._params import (
    HandlerReason,
    HandlerRejected,
    parameter,
    parameters_exactly,
)
from imsys.gateway.admin.communication_profile import CommunicationProfile
from imsys.gateway.admin.config_store import ConfigItem, ConfigKind, ItemState
from imsys.gateway.admin.context import AdminContext, HandlerTable
from imsys.gateway.logs import ConsumerEvent, Level, Outcome
from imsys.gateway.meter_profile import MeterProfile
from imsys.gateway.taf import EvaluationProfile
from imsys.secmod import STORAGE_KEY_LABEL
from imsys.wire.command import Command, CommandType

__all__ = ["HANDLERS", "stored_meter_profile"]

_ROOT_LABEL = "ROOT_WAN_SIG_CRT"
_K = ConfigKind


def _profile_document(command: Command) -> dict[str, Any]:
    parameters_exactly(command, {"profile"})
    document: dict[str, Any] = parameter(command, "profile", dict)
    return document


def _profile_id(command: Command, name: str = "profile_id") -> str:
    parameters_exactly(command, {name})
    value: str = parameter(command, name, str)
    return value


def _consumer_note(context: AdminContext, consumer_id: str | None, text: str) -> None:
    if consumer_id is not None:
        context.logs.consumer(consumer_id).append(Level.INFO, Outcome.SUCCESS, text,
                                                  event=ConsumerEvent.ADMIN_ACTION)


def _meter_consumer(context: AdminContext, meter_id: str) -> str | None:
    item = context.config.get(_K.METER, meter_id)
    return None if item is None else str(item.document["consumer_id"])


# --------------------------------------------------------------------------- communication


def _check_emt_certificates(context: AdminContext, profile: CommunicationProfile) -> None:
    secmod = context.secmod
    if secmod is None or not secmod.has(_ROOT_LABEL):
        return  # PEM-key test mode: no anchor to validate against
    root = secmod.certificate(_ROOT_LABEL)
    trust = SmPkiTrust(clock=context.clock)
    for name, cert, spec in (("enc_certificate", profile.enc_certificate, "emt-enc"),
                             ("sig_certificate", profile.sig_certificate, "emt-sig")):
        try:
            trust.validate(cert, anchor=root, profile=spec, chain=profile.chain)
        except CertificateRejected as exc:
            raise HandlerRejected(HandlerReason.CERTIFICATE_INVALID, f"{name}: {exc.message}",
                                  certificate=name, pki_reason=exc.reason.value) from exc


def communication_install(context: AdminContext, command: Command) -> dict[str, Any]:
    profile = CommunicationProfile.from_dict(_profile_document(command))
    _check_emt_certificates(context, profile)
    context.config.put(_K.COMMUNICATION_PROFILE, profile.profile_id, profile.to_dict(),
                       replace=False)
    return {"profile_id": profile.profile_id, "state": ItemState.INSTALLED.value}


def communication_activate(context: AdminContext, command: Command) -> dict[str, Any]:
    item = context.config.set_state(_K.COMMUNICATION_PROFILE, _profile_id(command),
                                    ItemState.ACTIVE)
    return {"profile_id": item.item_id, "state": item.state.value}


def communication_delete(context: AdminContext, command: Command) -> dict[str, Any]:
    item = context.config.delete(_K.COMMUNICATION_PROFILE, _profile_id(command))
    return {"profile_id": item.item_id, "deleted": True}


# --------------------------------------------------------------------------- evaluation


def evaluation_install(context: AdminContext, command: Command) -> dict[str, Any]:
    profile = EvaluationProfile.from_dict(_profile_document(command))
    consumer = _meter_consumer(context, profile.meter_id)
    if consumer is None:
        raise HandlerRejected(HandlerReason.UNKNOWN_METER,
                              "the evaluation profile names a meter the gateway does not know",
                              profile_id=profile.profile_id)
    context.config.put(_K.EVALUATION_PROFILE, profile.profile_id, profile.to_dict(),
                       replace=False)
    _consumer_note(context, consumer, f"administrator installed evaluation profile "
                   f"{profile.profile_id} (TAF {int(profile.taf)}) for meter {profile.meter_id}")
    return {"profile_id": profile.profile_id, "state": ItemState.INSTALLED.value}


def _evaluation_consumer(context: AdminContext, item: ConfigItem) -> str | None:
    return _meter_consumer(context, str(item.document["meter_id"]))


def evaluation_activate(context: AdminContext, command: Command) -> dict[str, Any]:
    item = context.config.set_state(_K.EVALUATION_PROFILE, _profile_id(command),
                                    ItemState.ACTIVE)
    _consumer_note(context, _evaluation_consumer(context, item),
                   f"administrator activated evaluation profile {item.item_id}")
    return {"profile_id": item.item_id, "state": item.state.value}


def evaluation_delete(context: AdminContext, command: Command) -> dict[str, Any]:
    item = context.config.delete(_K.EVALUATION_PROFILE, _profile_id(command))
    _consumer_note(context, _evaluation_consumer(context, item),
                   f"administrator deleted evaluation profile {item.item_id}")
    return {"profile_id": item.item_id, "deleted": True}


# --------------------------------------------------------------------------- meters


def _seal_key(context: AdminContext, profile: MeterProfile) -> dict[str, Any]:
    document = profile.to_dict()
    if profile.aes_key is None:
        return document
    secmod = context.secmod
    label = STORAGE_KEY_LABEL
    if context.commissioning is not None and context.commissioning.state.storage_key_label:
        label = context.commissioning.state.storage_key_label
    if secmod is None or not secmod.has(label):
        raise HandlerRejected(HandlerReason.NOT_AVAILABLE, "no storage key in a security "
                              "module to keep the meter key in", meter_id=profile.meter_id)
    sealed = secmod.encrypt_with(label, profile.aes_key, aad=profile.meter_id.encode())
    document["aes_key"] = None
    document["aes_key_sealed"] = sealed.hex()
    document["aes_key_sealed_with"] = label
    return document


def stored_meter_profile(context: AdminContext, item: ConfigItem) -> MeterProfile:
    """The :class:`MeterProfile` of a stored ``meter`` item (unsealing the AES key)."""
    document = dict(item.document)
    sealed = document.pop("aes_key_sealed", None)
    label = document.pop("aes_key_sealed_with", STORAGE_KEY_LABEL)
    if sealed is not None:
        if context.secmod is None:
            raise HandlerRejected(HandlerReason.NOT_AVAILABLE, "no security module to unseal "
                                  "the meter key", meter_id=item.item_id)
        key = context.secmod.decrypt_with(label, bytes.fromhex(sealed),
                                          aad=item.item_id.encode())
        document["aes_key"] = key.hex()
    return MeterProfile.from_dict(document)


def meter_register(context: AdminContext, command: Command) -> dict[str, Any]:
    profile = MeterProfile.from_dict(_profile_document(command))
    context.config.put(_K.METER, profile.meter_id, _seal_key(context, profile),
                       state=ItemState.ACTIVE, replace=False)
    _consumer_note(context, profile.consumer_id,
                   f"administrator registered meter {profile.meter_id} "
                   f"({profile.protocol.value}) for this consumer")
    return {"meter_id": profile.meter_id, "state": ItemState.ACTIVE.value}


def meter_delete(context: AdminContext, command: Command) -> dict[str, Any]:
    meter_id = _profile_id(command, "meter_id")
    users = [item.item_id for item in context.config.items(_K.EVALUATION_PROFILE)
             if item.document.get("meter_id") == meter_id]
    if users:
        raise HandlerRejected(HandlerReason.IN_USE, "evaluation profiles still name the meter",
                              profiles=users)
    item = context.config.delete(_K.METER, meter_id)
    _consumer_note(context, str(item.document["consumer_id"]),
                   f"administrator deleted meter {meter_id}")
    return {"meter_id": meter_id, "deleted": True}


_T = CommandType
HANDLERS: HandlerTable = {
    _T.COMMUNICATION_PROFILE_INSTALL: communication_install,
    _T.COMMUNICATION_PROFILE_ACTIVATE: communication_activate,
    _T.COMMUNICATION_PROFILE_DELETE: communication_delete,
    _T.EVALUATION_PROFILE_INSTALL: evaluation_install,
    _T.EVALUATION_PROFILE_ACTIVATE: evaluation_activate,
    _T.EVALUATION_PROFILE_DELETE: evaluation_delete,
    _T.METER_REGISTER: meter_register,
    _T.METER_DELETE: meter_delete,
}
del _T
