"""Key and certificate management (TR-03109-1 Schlüssel-/Zertifikatsmanagement; seed 003 §5).

* ``key.install`` – a symmetric key (e.g. a meter key) arrives sealed in the command; the
  gateway keeps it only encrypted under its storage key (``GW_STORAGE_ENC`` in the security
  module, AES-GCM with the key id as associated data). ``key/<key_id>`` holds the metadata and
  the ciphertext, never the key in the clear.
* ``key.certificate.renew`` – a new key pair is generated **in the security module**
  (``<name>_R<n>``, e.g. ``GW_WAN_TLS_R1``) and the result carries its PKCS#10 request (PEM),
  subject CN = gateway id. The GWA has it certified by the Sub-CA and installs the
  certificate with ``key.certificate.install`` (``key_label`` names the new key pair).
* ``key.certificate.install`` – validated against the SM-PKI (path to ROOT_WAN_SIG_CRT, CRLs,
  the expected profile) before anything is stored; imported into the security module under
  ``label``; ``certificate/<label>`` holds the metadata (state ``installed``).
* ``key.certificate.activate`` makes it the one in use for its profile (the previously active
  certificate of that profile is deactivated); ``deactivate`` and ``delete`` (only when not
  active) follow. ``key.algorithm.switch`` sets the curve of future renewals.
"""

from __future__ import annotations

import base64
import re
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imsys.crypto.primitives import CURVES, DEFAULT_CURVE
from imsys.gateway.admin.config_store import ConfigKind, ItemState
from imsys.gateway.admin.context import AdminContext, HandlerTable
from imsys.gateway.admin.device_handlers import (
    HandlerReason,
    HandlerRejected,
    Params,
    certificate_summary,
    require_secmod,
    validator_for,
)
from imsys.pki import SubjectName, build_csr
from imsys.secmod import STORAGE_KEY_LABEL
from imsys.wire.command import Command, CommandType

__all__ = ["CURVE_SETTING", "HANDLERS", "KeyPurpose", "active_certificate", "installed_key"]

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
_RENEWABLE = {"GW_WAN_TLS": "gateway-tls", "GW_WAN_SIG": "gateway-sig",
              "GW_WAN_ENC": "gateway-enc"}
#: Profiles a certificate installed by ``key.certificate.install`` may have.
INSTALLABLE_PROFILES = ("gateway-tls", "gateway-sig", "gateway-enc", "gwa-tls", "gwa-sig",
                        "gwa-enc", "gwa-aut", "emt-tls", "emt-sig", "emt-enc",
                        "manufacturer-sig", "manufacturer-tls", "meter-tls")
CURVE_SETTING = "key-curve"
_PROTECTED = frozenset({"ROOT_WAN_SIG_CRT", STORAGE_KEY_LABEL})


class KeyPurpose(StrEnum):
    METER = "meter"  # wM-Bus / SML meter key (MK)
    HAN = "han"  # a symmetric key of a HAN device
    CLS = "cls"


def _aad(key_id: str) -> bytes:
    return f"imsys-admin-key/1:{key_id}".encode()


def key_install(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    key_id = p.req_text("key_id", pattern=_LABEL)
    purpose = p.choice("purpose", KeyPurpose)
    material = p.b64("key", max_bytes=32)
    p.done()
    assert purpose is not None and material is not None
    if len(material) not in (16, 32):
        raise HandlerRejected(HandlerReason.BAD_PARAMETER, "symmetric keys are AES-128 or "
                              "AES-256 (16 or 32 bytes)", parameter="key")
    if ctx.config.get(ConfigKind.KEY, key_id) is not None:
        raise HandlerRejected(HandlerReason.ALREADY_EXISTS, f"key {key_id} exists", item=key_id)
    secmod = require_secmod(ctx)
    if not secmod.has(STORAGE_KEY_LABEL):
        raise HandlerRejected(HandlerReason.WRONG_STATE, "no storage key to protect the key")
    sealed = secmod.encrypt_with(STORAGE_KEY_LABEL, material, _aad(key_id))
    ctx.config.put(ConfigKind.KEY, key_id, {
        "key_id": key_id, "kind": "symmetric", "purpose": purpose.value,
        "bits": len(material) * 8, "sealed": base64.b64encode(sealed).decode()},
        replace=False)
    return {"key_id": key_id, "bits": len(material) * 8}


def installed_key(ctx: AdminContext, key_id: str) -> bytes:
    """The clear key of an installed symmetric key (for the component that uses it)."""
    item = ctx.config.require(ConfigKind.KEY, key_id)
    if item.document.get("kind") != "symmetric":
        raise HandlerRejected(HandlerReason.WRONG_STATE, f"{key_id} is not a symmetric key")
    return require_secmod(ctx).decrypt_with(STORAGE_KEY_LABEL,
                                            base64.b64decode(item.document["sealed"]),
                                            _aad(key_id))


def _key_state(state: ItemState) -> Any:
    def handler(ctx: AdminContext, command: Command) -> dict[str, Any]:
        p = Params(command)
        key_id = p.req_text("key_id", pattern=_LABEL)
        p.done()
        item = ctx.config.get(ConfigKind.KEY, key_id)
        if item is None:
            raise HandlerRejected(HandlerReason.UNKNOWN_ITEM, f"no key {key_id!r}", item=key_id)
        if item.state is state:
            raise HandlerRejected(HandlerReason.WRONG_STATE, f"key {key_id} is {state.value} "
                                  "already", item=key_id)
        ctx.config.set_state(ConfigKind.KEY, key_id, state)
        return {"key_id": key_id, "state": state.value}
    return handler


def key_delete(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    key_id = p.req_text("key_id", pattern=_LABEL)
    p.done()
    item = ctx.config.get(ConfigKind.KEY, key_id)
    if item is None:
        raise HandlerRejected(HandlerReason.UNKNOWN_ITEM, f"no key {key_id!r}", item=key_id)
    if item.state is ItemState.ACTIVE:
        raise HandlerRejected(HandlerReason.IN_USE, f"key {key_id} is active; deactivate it "
                              "first", item=key_id)
    users = [c.item_id for c in ctx.config.items(ConfigKind.CERTIFICATE)
             if c.document.get("key_label") == key_id]
    if users:
        raise HandlerRejected(HandlerReason.IN_USE, f"key {key_id} is certified by "
                              f"{len(users)} installed certificates", item=key_id)
    if item.document.get("kind") == "key-pair":
        secmod = require_secmod(ctx)
        if secmod.has(key_id):
            secmod.delete(key_id)
    ctx.config.delete(ConfigKind.KEY, key_id)
    return {"key_id": key_id, "deleted": True}


def _curve(ctx: AdminContext) -> str:
    item = ctx.config.get(ConfigKind.SETTING, CURVE_SETTING)
    return DEFAULT_CURVE if item is None else str(item.document["curve"])


class RenewableKey(StrEnum):
    TLS = "GW_WAN_TLS"
    SIG = "GW_WAN_SIG"
    ENC = "GW_WAN_ENC"


def certificate_renew(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    name = p.choice("key", RenewableKey)
    p.done()
    assert name is not None
    secmod = require_secmod(ctx)
    index = 1
    while secmod.has(f"{name.value}_R{index}") or \
            ctx.config.get(ConfigKind.KEY, f"{name.value}_R{index}") is not None:
        index += 1
    label = f"{name.value}_R{index}"
    curve = _curve(ctx)
    handle = secmod.generate_key_pair(label, curve)
    csr = build_csr(handle, SubjectName(ctx.gateway_id))
    profile = _RENEWABLE[name.value]
    ctx.config.put(ConfigKind.KEY, label, {"key_id": label, "kind": "key-pair",
                                           "renews": name.value, "profile": profile,
                                           "curve": curve}, replace=False)
    return {"key_label": label, "profile": profile, "curve": curve,
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode()}


def _same_key(a: object, b: ec.EllipticCurvePublicKey) -> bool:
    if not isinstance(a, ec.EllipticCurvePublicKey):
        return False
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_bytes(*fmt) == b.public_bytes(*fmt)


def certificate_install(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    label = p.req_text("label", pattern=_LABEL)
    profile = p.req_text("profile", pattern=re.compile("|".join(INSTALLABLE_PROFILES)))
    certificate = p.certificate("certificate")
    chain = p.certificates("chain")
    key_label = p.text("key_label", pattern=_LABEL, required=False)
    p.done()
    if label in _PROTECTED:
        raise HandlerRejected(HandlerReason.BAD_PARAMETER, f"{label} is not managed by "
                              "key.certificate.*", parameter="label")
    secmod = require_secmod(ctx)
    if ctx.config.get(ConfigKind.CERTIFICATE, label) is not None or secmod.has(label):
        raise HandlerRejected(HandlerReason.ALREADY_EXISTS, f"{label} exists", item=label)
    # validation against the SM-PKI comes before anything is stored
    validator_for(ctx).validate(certificate, profile=profile, chain=chain, at=ctx.clock.now())
    if key_label is not None:
        key_item = ctx.config.get(ConfigKind.KEY, key_label)
        if key_item is None or key_item.document.get("kind") != "key-pair":
            raise HandlerRejected(HandlerReason.UNKNOWN_ITEM, f"no key pair {key_label!r}",
                                  item=key_label)
        if not _same_key(certificate.public_key(), secmod.public_key(key_label)):
            raise HandlerRejected(HandlerReason.KEY_MISMATCH, "the certificate does not "
                                  f"certify {key_label}", item=label)
        if key_item.document.get("profile") != profile:
            raise HandlerRejected(HandlerReason.BAD_PARAMETER, f"{key_label} was requested "
                                  f"for {key_item.document.get('profile')}",
                                  parameter="profile")
    secmod.import_certificate(label, certificate)
    summary = certificate_summary(certificate)
    del summary["certificate"]
    ctx.config.put(ConfigKind.CERTIFICATE, label, {"label": label, "profile": profile,
                                                   "key_label": key_label, **summary},
                   replace=False)
    return {"label": label, "serial": summary["serial"], "profile": profile}


def active_certificate(ctx: AdminContext, profile: str) -> str | None:
    """The label of the active certificate of ``profile`` installed by these commands."""
    for item in ctx.config.items(ConfigKind.CERTIFICATE, active_only=True):
        if item.document.get("profile") == profile:
            return item.item_id
    return None


def certificate_activate(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    label = p.req_text("label", pattern=_LABEL)
    p.done()
    item = ctx.config.get(ConfigKind.CERTIFICATE, label)
    if item is None:
        raise HandlerRejected(HandlerReason.UNKNOWN_ITEM, f"no certificate {label!r}",
                              item=label)
    if item.state is ItemState.ACTIVE:
        raise HandlerRejected(HandlerReason.WRONG_STATE, f"{label} is active already")
    validator_for(ctx).validate(require_secmod(ctx).certificate(label),
                                profile=item.document["profile"], at=ctx.clock.now())
    previous = active_certificate(ctx, item.document["profile"])
    if previous is not None:
        ctx.config.set_state(ConfigKind.CERTIFICATE, previous, ItemState.INSTALLED)
        old_key = ctx.config.require(ConfigKind.CERTIFICATE, previous).document.get("key_label")
        if old_key and ctx.config.get(ConfigKind.KEY, old_key) is not None:
            ctx.config.set_state(ConfigKind.KEY, old_key, ItemState.INSTALLED)
    ctx.config.set_state(ConfigKind.CERTIFICATE, label, ItemState.ACTIVE)
    key_label = item.document.get("key_label")
    if key_label:
        ctx.config.set_state(ConfigKind.KEY, key_label, ItemState.ACTIVE)
    return {"label": label, "state": "active", "deactivated": previous}


def certificate_deactivate(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    label = p.req_text("label", pattern=_LABEL)
    p.done()
    item = ctx.config.get(ConfigKind.CERTIFICATE, label)
    if item is None:
        raise HandlerRejected(HandlerReason.UNKNOWN_ITEM, f"no certificate {label!r}",
                              item=label)
    if item.state is not ItemState.ACTIVE:
        raise HandlerRejected(HandlerReason.WRONG_STATE, f"{label} is not active")
    ctx.config.set_state(ConfigKind.CERTIFICATE, label, ItemState.INSTALLED)
    key_label = item.document.get("key_label")
    if key_label and ctx.config.get(ConfigKind.KEY, key_label) is not None:
        ctx.config.set_state(ConfigKind.KEY, key_label, ItemState.INSTALLED)
    return {"label": label, "state": "installed"}


def certificate_delete(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    label = p.req_text("label", pattern=_LABEL)
    p.done()
    item = ctx.config.get(ConfigKind.CERTIFICATE, label)
    if item is None:
        raise HandlerRejected(HandlerReason.UNKNOWN_ITEM, f"no certificate {label!r}",
                              item=label)
    if item.state is ItemState.ACTIVE:
        raise HandlerRejected(HandlerReason.IN_USE, f"{label} is active; deactivate it first",
                              item=label)
    secmod = require_secmod(ctx)
    if secmod.has(label):
        secmod.delete(label)
    ctx.config.delete(ConfigKind.CERTIFICATE, label)
    return {"label": label, "deleted": True}


def algorithm_switch(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    curve = p.req_text("curve", pattern=re.compile("|".join(CURVES)))
    p.done()
    previous = _curve(ctx)
    ctx.config.put(ConfigKind.SETTING, CURVE_SETTING, {"curve": curve},
                   state=ItemState.ACTIVE)
    return {"curve": curve, "previous": previous}


HANDLERS: HandlerTable = {
    CommandType.KEY_INSTALL: key_install,
    CommandType.KEY_ACTIVATE: _key_state(ItemState.ACTIVE),
    CommandType.KEY_DEACTIVATE: _key_state(ItemState.INSTALLED),
    CommandType.KEY_DELETE: key_delete,
    CommandType.CERTIFICATE_INSTALL: certificate_install,
    CommandType.CERTIFICATE_ACTIVATE: certificate_activate,
    CommandType.CERTIFICATE_DEACTIVATE: certificate_deactivate,
    CommandType.CERTIFICATE_DELETE: certificate_delete,
    CommandType.CERTIFICATE_RENEW: certificate_renew,
    CommandType.CRYPTO_ALGORITHM_SWITCH: algorithm_switch,
}
