"""The SMGW security module (TR-03109-2 role; seed 003 §2.3): one interface, two backends.

Gateway code types against :class:`SecurityModule` and holds :class:`ModuleKey` handles (the
:class:`~imsys.crypto.primitives.KeyHandle` protocol); private keys stay in the module.

* :class:`SoftwareSecurityModule` – encrypted file store (development, simulation, tests);
* :class:`~imsys.secmod.pkcs11.Pkcs11SecurityModule` – a PKCS#11 token (SoftHSM2 in CI);
  imported lazily, it needs the ``pkcs11`` extra (python-pkcs11).

See docs/secmod.md for the object model, the access-rule table and the import-key profile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imsys.secmod._handle import ModuleKey
from imsys.secmod._import import PROFILE as IMPORT_PROFILE
from imsys.secmod._import import wrap_key_for_import
from imsys.secmod._model import (
    MAX_PIN_TRIES,
    STORAGE_KEY_LABEL,
    SYSTEM_PIN_LABEL,
    ObjectInfo,
    ObjectKind,
    Phase,
    key_pair_label,
)
from imsys.secmod._rules import (
    ACCESS_RULES,
    OPERATIONAL_KEY_PAIR_LABELS,
    AccessRule,
    AdminNeed,
    Operation,
)
from imsys.secmod.base import ADMIN_AUTH_KEY_LABEL, SecurityModule
from imsys.secmod.software import SoftwareSecurityModule

if TYPE_CHECKING:
    from imsys.secmod.pkcs11 import Pkcs11SecurityModule

__all__ = [
    "ACCESS_RULES",
    "ADMIN_AUTH_KEY_LABEL",
    "IMPORT_PROFILE",
    "MAX_PIN_TRIES",
    "OPERATIONAL_KEY_PAIR_LABELS",
    "STORAGE_KEY_LABEL",
    "SYSTEM_PIN_LABEL",
    "AccessRule",
    "AdminNeed",
    "ModuleKey",
    "ObjectInfo",
    "ObjectKind",
    "Operation",
    "Phase",
    "Pkcs11SecurityModule",
    "SecurityModule",
    "SoftwareSecurityModule",
    "key_pair_label",
    "wrap_key_for_import",
]


def __getattr__(name: str) -> Any:
    if name == "Pkcs11SecurityModule":
        from imsys.secmod.pkcs11 import Pkcs11SecurityModule

        return Pkcs11SecurityModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
