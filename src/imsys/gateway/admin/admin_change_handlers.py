"""Change of the gateway administrator, gateway side (seed 003 §7, table 5 steps 2.1–2.16).

The old administrator (A) and the new one (N) each send commands signed with their own SIG
key; the admin session verifies them with a :class:`~imsys.wire.command.CommandVerifier` for
the administrator it is connected to (A: :func:`current_administrator`; N before the take-over:
:func:`pending_administrator`). Each handler also checks *who* sent it
(``command.administrator_id``) – a command of this group from the wrong party is ``WRONG_PARTY``.

=====  ======================================  ====  ==========================================
step   command / function                      by    gateway
=====  ======================================  ====  ==========================================
2.5    ``admin-change.delete-profiles``        A     deletes the tariff (evaluation) and
                                                     communication profiles N must not see;
                                                     readings and logs are never touched
2.6    ``admin-change.prepare``                A     receives N's connection data and
                                                     certificates, as a configuration document
                                                     CMS-signed by A (``configuration``)
2.7    (in ``prepare``)                              checks the document's signature against
                                                     A's GWADM_SIG certificate
2.8    (in ``prepare``)                              checks N's four certificates against the
                                                     root (ROOT_WAN_SIG_CRT), with CRLs, profiles
2.9    :func:`pending_administrator`                 the process connects to N
fail   :func:`report_connection_failure`             system log; A sees it in the status
fail   ``admin-change.abort``                  A     removes N's data; A stays responsible
2.10   ``admin-change.read-configuration``     N     the configuration, without secrets
2.11   ``admin-change.check-result``           N     N's result into the system log; negative:
                                                     the change stops (A aborts)
2.13   ``admin-change.take-over`` /            N     after N's wake-up: N becomes the current
       :func:`take_over`                             administrator (:func:`set_administrator`)
2.14   ``admin-change.remove-old``             N     A's communication profiles and keys are
                                                     deleted; A can do nothing any more
=====  ======================================  ====  ==========================================

The change's state is ``setting/admin-change`` (:class:`ChangeState`); every step is in the
system log (step 4.1).
"""

from __future__ import annotations

import base64
import json
from enum import StrEnum
from typing import Any, LiteralString

from cryptography import x509

from imsys.core.errors import CmsRejected, UsageError
from imsys.crypto import cms
from imsys.gateway.admin.administrator import (
    ADMINISTRATOR_ITEM,
    Administrator,
    current_administrator,
    set_administrator,
)
from imsys.gateway.admin.config_store import ConfigKind, ItemState
from imsys.gateway.admin.context import AdminContext, HandlerTable
from imsys.gateway.admin.device_handlers import (
    HandlerRejected,
    Params,
    validator_for,
)
from imsys.gateway.initial_config import CERTIFICATE_PROFILES, GwaAddress
from imsys.gateway.logs import Level, Outcome, SystemEvent
from imsys.pki.validation import common_name
from imsys.secmod.base import SecurityModule
from imsys.wire.command import Command, CommandType

__all__ = ["CHANGE_ITEM", "CONFIGURATION_FORMAT", "HANDLERS", "PENDING_SESSION_COMMANDS",
           "ChangeReason", "ChangeState", "pending_administrator", "report_connection_failure",
           "sign_change_configuration", "take_over"]

CHANGE_ITEM = "admin-change"
#: What the admin session to the *pending* new administrator may carry (steps 2.10–2.13);
#: anything else from N before the take-over is refused by the session.
PENDING_SESSION_COMMANDS = frozenset({CommandType.ADMIN_CHANGE_READ_CONFIGURATION,
                                      CommandType.ADMIN_CHANGE_CHECK_RESULT,
                                      CommandType.ADMIN_CHANGE_TAKE_OVER})
CONFIGURATION_FORMAT = "imsys-admin-change/1"
MAX_CONFIGURATION = 64 * 1024


class ChangeState(StrEnum):
    PREPARED = "prepared"  # 2.6–2.8 done: N's data is on the gateway
    CONNECTION_FAILED = "connection-failed"  # 2.9 failed (reported to A)
    CHECKED = "checked"  # 2.11 positive
    REJECTED = "rejected"  # 2.11 negative: the change stops
    TAKEN_OVER = "taken-over"  # 2.13: N is the administrator
    COMPLETED = "completed"  # 2.14: A is gone


class ChangeReason(StrEnum):
    WRONG_PARTY = "wrong-party"  # a command of the change sent by the wrong administrator
    WRONG_STATE = "wrong-state"  # the step does not fit the change's state
    BAD_CONFIGURATION_SIGNATURE = "bad-configuration-signature"  # step 2.7
    CONFIGURATION_MISMATCH = "configuration-mismatch"  # for another gateway, malformed
    SAME_ADMINISTRATOR = "same-administrator"


class ChangeRejected(HandlerRejected):
    """A step of the administrator change was refused; ``reason`` is a :class:`ChangeReason`."""

    def __init__(self, reason: ChangeReason, message: str = "", **context: Any) -> None:
        super().__init__(reason, message, **context)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- state


def _change(ctx: AdminContext) -> dict[str, Any] | None:
    item = ctx.config.get(ConfigKind.SETTING, CHANGE_ITEM)
    return None if item is None else dict(item.document)


def _save(ctx: AdminContext, change: dict[str, Any]) -> None:
    open_ = change["state"] not in (ChangeState.COMPLETED,)
    ctx.config.put(ConfigKind.SETTING, CHANGE_ITEM, change,
                   state=ItemState.ACTIVE if open_ else ItemState.INSTALLED)


def _require_state(change: dict[str, Any] | None, *states: ChangeState) -> dict[str, Any]:
    if change is None or change["state"] not in states:
        now = None if change is None else change["state"]
        raise ChangeRejected(ChangeReason.WRONG_STATE,
                             f"administrator change is {now or 'not started'}, "
                             f"needs {'/'.join(s.value for s in states)}")
    return change


def pending_administrator(ctx: AdminContext) -> Administrator | None:
    """The new administrator while a change is under way before the take-over (step 2.9:
    the process connects to it; its admin session verifies with its SIG certificate)."""
    change = _change(ctx)
    if change is None or change["state"] not in (ChangeState.PREPARED,
                                                 ChangeState.CONNECTION_FAILED,
                                                 ChangeState.CHECKED):
        return None
    return Administrator.from_json(change["new"])


def _current(ctx: AdminContext) -> Administrator:
    try:
        return current_administrator(ctx.config, ctx.commissioning)
    except UsageError:
        raise ChangeRejected(ChangeReason.WRONG_STATE, "the gateway has no administrator") \
            from None


def _by_current(ctx: AdminContext, command: Command) -> Administrator:
    admin = _current(ctx)
    if command.administrator_id != admin.administrator_id:
        raise ChangeRejected(ChangeReason.WRONG_PARTY, "only the current administrator may "
                             "send this step")
    return admin


def _by_new(ctx: AdminContext, command: Command, change: dict[str, Any]) -> None:
    if command.administrator_id != change["new"]["administrator_id"]:
        raise ChangeRejected(ChangeReason.WRONG_PARTY, "only the new administrator may send "
                             "this step")


def _log(ctx: AdminContext, ok: bool, text: LiteralString, **details: Any) -> None:
    ctx.logs.system.append(Level.INFO if ok else Level.WARNING,
                           Outcome.SUCCESS if ok else Outcome.FAILURE, text,
                           event=SystemEvent.ADMIN_SESSION, **details)


# --------------------------------------------------------------------------- A's steps


class ProfileScope(StrEnum):
    ALL = "all"
    NONE = "none"


def delete_profiles(ctx: AdminContext, command: Command) -> dict[str, Any]:
    """Step 2.5: the profiles N must not see. Readings and logs stay (they are not
    configuration and no command can delete them)."""
    p = Params(command)
    tariff = p.choice("evaluation_profiles", ProfileScope, required=False,
                      default=ProfileScope.ALL)
    communication = p.choice("communication_profiles", ProfileScope, required=False,
                             default=ProfileScope.ALL)
    p.done()
    _by_current(ctx, command)
    deleted: dict[str, list[str]] = {}
    for scope, kind in ((tariff, ConfigKind.EVALUATION_PROFILE),
                        (communication, ConfigKind.COMMUNICATION_PROFILE)):
        if scope is ProfileScope.ALL:
            deleted[kind.value] = [item.item_id for item in ctx.config.items(kind)]
            for item_id in deleted[kind.value]:
                ctx.config.delete(kind, item_id)
    _log(ctx, True, "administrator change 2.5: profiles deleted for the new administrator",
         evaluation_profiles=len(deleted.get(ConfigKind.EVALUATION_PROFILE.value, [])),
         communication_profiles=len(deleted.get(ConfigKind.COMMUNICATION_PROFILE.value, [])))
    return {"deleted": deleted}


def sign_change_configuration(gateway_id: str, new: Administrator, signer: Any,
                              signer_certificate: x509.Certificate, *,
                              wan: dict[str, Any] | None = None) -> str:
    """Old administrator's side: the step-2.6 configuration document, CMS-signed with its
    GWADM_SIG key, base64 (the ``configuration`` parameter of ``admin-change.prepare``)."""
    document = {"format": CONFIGURATION_FORMAT, "gateway_id": gateway_id,
                "new_administrator": new.to_json(), "wan": wan or {}}
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return base64.b64encode(cms.sign(data, signer, signer_certificate)).decode()


def _read_configuration(ctx: AdminContext, signed: bytes, old: Administrator
                        ) -> tuple[Administrator, dict[str, Any]]:
    # step 2.7: the configuration's signature, against A's certificate
    try:
        content = cms.verify(signed, signer_certificate=old.sig,
                             max_size=MAX_CONFIGURATION).content
    except CmsRejected as exc:
        raise ChangeRejected(ChangeReason.BAD_CONFIGURATION_SIGNATURE,
                             f"configuration not signed by the current administrator: "
                             f"{exc.message}", cause=exc.reason.value) from None
    try:
        document = json.loads(content)
        if set(document) != {"format", "gateway_id", "new_administrator", "wan"} or \
                document["format"] != CONFIGURATION_FORMAT or \
                not isinstance(document["wan"], dict):
            raise ValueError("not an admin-change configuration")
        new = Administrator.from_json(document["new_administrator"])
        GwaAddress.from_json(document["new_administrator"]["address"])
    except (ValueError, KeyError, TypeError, UsageError) as exc:
        raise ChangeRejected(ChangeReason.CONFIGURATION_MISMATCH,
                             f"malformed configuration: {exc}") from None
    if document["gateway_id"] != ctx.gateway_id:
        raise ChangeRejected(ChangeReason.CONFIGURATION_MISMATCH,
                             "configuration for another gateway")
    if set(new.certificates) != set(CERTIFICATE_PROFILES):
        raise ChangeRejected(ChangeReason.CONFIGURATION_MISMATCH,
                             "the new administrator needs " + ", ".join(CERTIFICATE_PROFILES))
    return new, document["wan"]


def prepare(ctx: AdminContext, command: Command) -> dict[str, Any]:
    """Steps 2.6–2.8."""
    p = Params(command)
    signed = p.b64("configuration", max_bytes=MAX_CONFIGURATION)
    p.done()
    assert signed is not None
    old = _by_current(ctx, command)
    change = _change(ctx)
    if change is not None and change["state"] in (ChangeState.CHECKED,
                                                  ChangeState.TAKEN_OVER):
        raise ChangeRejected(ChangeReason.WRONG_STATE, f"a change is {change['state']}")
    new, wan = _read_configuration(ctx, signed, old)
    if new.administrator_id == old.administrator_id:
        raise ChangeRejected(ChangeReason.SAME_ADMINISTRATOR, "that is the administrator now")
    # step 2.8: N's certificates against the root in the security module, with CRLs
    validator = validator_for(ctx)
    for name, (certificate, chain) in new.certificates.items():
        validator.validate(certificate, profile=CERTIFICATE_PROFILES[name], chain=chain,
                           at=ctx.clock.now())
    if common_name(new.sig) != new.administrator_id:
        raise ChangeRejected(ChangeReason.CONFIGURATION_MISMATCH,
                             "the SIG certificate does not name the new administrator")
    _save(ctx, {"state": ChangeState.PREPARED.value, "old_administrator_id":
                old.administrator_id, "new": new.to_json(), "wan": wan,
                "command_id": str(command.command_id), "check": None})
    _log(ctx, True, "administrator change 2.6-2.8: configuration of the new administrator "
         "verified (signature of the current administrator, certificates against the root "
         "and CRLs)", replaced=change is not None)
    return {"state": ChangeState.PREPARED.value, "new_administrator_id": new.administrator_id,
            "address": new.address.to_json()}


def abort(ctx: AdminContext, command: Command) -> dict[str, Any]:
    """Failure path: A stays responsible; N's data that A brought in is removed."""
    Params(command).done()
    _by_current(ctx, command)
    change = _require_state(_change(ctx), ChangeState.PREPARED, ChangeState.CONNECTION_FAILED,
                            ChangeState.REJECTED, ChangeState.CHECKED)
    ctx.config.delete(ConfigKind.SETTING, CHANGE_ITEM)
    _log(ctx, False, "administrator change stopped: the current administrator stays "
         "responsible, the new administrator's data was removed")
    return {"state": "aborted", "previous_state": change["state"]}


def report_connection_failure(ctx: AdminContext) -> None:
    """Step 2.9 failed (the process could not reach N): system log, state for A."""
    change = _require_state(_change(ctx), ChangeState.PREPARED, ChangeState.CONNECTION_FAILED)
    change["state"] = ChangeState.CONNECTION_FAILED.value
    with ctx.db.transaction():
        _save(ctx, change)
        _log(ctx, False, "administrator change 2.9: connection to the new administrator failed")


# --------------------------------------------------------------------------- N's steps


def read_configuration(ctx: AdminContext, command: Command) -> dict[str, Any]:
    """Step 2.10: what N checks against A's information of step 2.2 – meters, devices,
    consumers, profiles and certificates; never keys or credentials."""
    Params(command).done()
    change = _require_state(_change(ctx), ChangeState.PREPARED, ChangeState.CONNECTION_FAILED,
                            ChangeState.CHECKED)
    _by_new(ctx, command, change)
    if change["state"] == ChangeState.CONNECTION_FAILED:
        change["state"] = ChangeState.PREPARED.value  # N is reachable after all
        _save(ctx, change)
    secret_fields = {"aes_key", "credentials", "sealed", "signature_key"}
    configuration: dict[str, Any] = {}
    for kind in ConfigKind:
        if kind in (ConfigKind.SETTING, ConfigKind.KEY):
            continue
        configuration[kind.value] = [
            {"id": item.item_id, "state": item.state.value,
             "document": {k: v for k, v in item.document.items() if k not in secret_fields}}
            for item in ctx.config.items(kind)]
    _log(ctx, True, "administrator change 2.10: configuration read by the new administrator")
    return {"gateway_id": ctx.gateway_id, "configuration": configuration}


class CheckResult(StrEnum):
    POSITIVE = "positive"
    NEGATIVE = "negative"


def check_result(ctx: AdminContext, command: Command) -> dict[str, Any]:
    """Step 2.11: N writes the result of its check into the system log."""
    p = Params(command)
    result = p.choice("result", CheckResult)
    p.done()
    change = _require_state(_change(ctx), ChangeState.PREPARED)
    _by_new(ctx, command, change)
    positive = result is CheckResult.POSITIVE
    change["state"] = (ChangeState.CHECKED if positive else ChangeState.REJECTED).value
    change["check"] = result.value if result else None
    _save(ctx, change)
    if positive:
        _log(ctx, True, "administrator change 2.11: the new administrator checked the "
             "configuration: positive")
    else:
        _log(ctx, False, "administrator change 2.11: the new administrator checked the "
             "configuration: negative - the change stops")
    return {"state": change["state"]}


def take_over(ctx: AdminContext) -> Administrator:
    """Step 2.13: N's wake-up was verified and the TLS channel to N is up – from now on N is
    the administrator and A's commands are refused by the admin session's verifier."""
    change = _require_state(_change(ctx), ChangeState.CHECKED)
    new = Administrator.from_json(change["new"])
    with ctx.db.transaction():
        set_administrator(ctx.config, new)
        change["state"] = ChangeState.TAKEN_OVER.value
        _save(ctx, change)
        _log(ctx, True, "administrator change 2.13: the new administrator is responsible")
    return new


def take_over_command(ctx: AdminContext, command: Command) -> dict[str, Any]:
    Params(command).done()
    change = _require_state(_change(ctx), ChangeState.CHECKED)
    _by_new(ctx, command, change)
    new = take_over(ctx)
    return {"state": ChangeState.TAKEN_OVER.value, "administrator_id": new.administrator_id}


def _replace_module_keys(secmod: SecurityModule, new: Administrator) -> list[str]:
    """A's GWADM_*_PUB keys in the security module become N's (admin authentication with
    GWADM_AUT_PUB follows). The module refuses without the authenticated administrator."""
    replaced = []
    for name in CERTIFICATE_PROFILES:
        label = name.replace("_CRT", "_PUB")
        key = new.certificate(name).public_key()
        if secmod.has(label):
            secmod.delete(label)
        secmod.import_public_key(label, key)  # type: ignore[arg-type]
        replaced.append(label)
    return replaced


def remove_old(ctx: AdminContext, command: Command) -> dict[str, Any]:
    """Step 2.14: N deletes A – in particular the communication profile to A."""
    Params(command).done()
    change = _require_state(_change(ctx), ChangeState.TAKEN_OVER)
    _by_new(ctx, command, change)
    if _current(ctx).administrator_id != change["new"]["administrator_id"]:
        raise ChangeRejected(ChangeReason.WRONG_STATE, "the new administrator is not current")
    old_id = change["old_administrator_id"]
    removed = [item.item_id for item in ctx.config.items(ConfigKind.COMMUNICATION_PROFILE)
               if old_id in (item.document.get("administrator_id"),
                             item.document.get("peer"), item.document.get("recipient"))]
    for item_id in removed:
        ctx.config.delete(ConfigKind.COMMUNICATION_PROFILE, item_id)
    new = Administrator.from_json(change["new"])
    keys = [] if ctx.secmod is None else _replace_module_keys(ctx.secmod, new)
    change["state"] = ChangeState.COMPLETED.value
    change["removed_profiles"] = removed
    _save(ctx, change)
    _log(ctx, True, "administrator change 2.14: the old administrator was deleted; it has "
         "no access any more", communication_profiles=len(removed))
    return {"state": ChangeState.COMPLETED.value, "removed_communication_profiles": removed,
            "security_module_keys": keys, "administrator_item": ADMINISTRATOR_ITEM}


HANDLERS: HandlerTable = {
    CommandType.ADMIN_CHANGE_DELETE_PROFILES: delete_profiles,
    CommandType.ADMIN_CHANGE_PREPARE: prepare,
    CommandType.ADMIN_CHANGE_ABORT: abort,
    CommandType.ADMIN_CHANGE_READ_CONFIGURATION: read_configuration,
    CommandType.ADMIN_CHANGE_CHECK_RESULT: check_result,
    CommandType.ADMIN_CHANGE_TAKE_OVER: take_over_command,
    CommandType.ADMIN_CHANGE_REMOVE_OLD: remove_old,
}
