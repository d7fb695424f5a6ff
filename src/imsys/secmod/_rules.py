"""The access-rule table of the security module: one row per operation.

Every public operation of :class:`~imsys.secmod.SecurityModule` names one :class:`Operation`;
the row says

* ``phases`` – the life-cycle phases in which the operation exists at all (else ACCESS_DENIED);
* ``pin`` – once the system PIN is set (pairing), the gateway must have presented it in this
  session (else NOT_AUTHENTICATED, or PIN_LOCKED when the reference is locked);
* ``admin`` – whether the administrator must be authenticated with GWADM_AUT
  (challenge-response): never, once integration has ended, or always (else NOT_AUTHENTICATED).

Checks run in that order. The table is data: docs/secmod.md prints the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from imsys.secmod._model import Phase


class Operation(StrEnum):
    """What a caller asks the module to do (one row of :data:`ACCESS_RULES` each)."""

    READ_PUBLIC = "read-public"  # has, objects, public_key, certificate, key handle lookup
    RANDOM = "random"
    GENERATE_KEY_PAIR = "generate-key-pair"
    GENERATE_OPERATIONAL_KEY_PAIR = "generate-operational-key-pair"
    GENERATE_SECRET = "generate-secret"
    IMPORT_PUBLIC_KEY = "import-public-key"
    IMPORT_CERTIFICATE = "import-certificate"
    DELETE = "delete"
    USE_PRIVATE_KEY = "use-private-key"  # sign, exchange
    USE_SECRET = "use-secret"  # encrypt_with, decrypt_with
    GENERATE_IMPORT_KEY = "generate-import-key"
    IMPORT_WRAPPED_KEY = "import-wrapped-key"
    DELETE_IMPORT_KEYS = "delete-import-keys"
    SET_SYSTEM_PIN = "set-system-pin"  # first pairing
    CHANGE_SYSTEM_PIN = "change-system-pin"  # a reference exists already
    ADMIN_AUTHENTICATION = "admin-authentication"  # admin_challenge, admin_authenticate


class AdminNeed(StrEnum):
    """When an operation needs the authenticated administrator."""

    NEVER = "never"
    AFTER_INTEGRATION = "after-integration"
    ALWAYS = "always"


@dataclass(frozen=True)
class AccessRule:
    """One row of the access-rule table."""

    pin: bool
    admin: AdminNeed
    phases: frozenset[Phase]

    def needs_admin(self, phase: Phase) -> bool:
        if self.admin is AdminNeed.ALWAYS:
            return True
        return self.admin is AdminNeed.AFTER_INTEGRATION and phase is not Phase.INTEGRATION


_BOTH = frozenset(Phase)
_INTEGRATION = frozenset({Phase.INTEGRATION})

#: The access-rule table (read-only).
ACCESS_RULES = MappingProxyType({
    Operation.READ_PUBLIC: AccessRule(False, AdminNeed.NEVER, _BOTH),
    Operation.RANDOM: AccessRule(False, AdminNeed.NEVER, _BOTH),
    Operation.GENERATE_KEY_PAIR: AccessRule(True, AdminNeed.AFTER_INTEGRATION, _BOTH),
    Operation.GENERATE_OPERATIONAL_KEY_PAIR: AccessRule(True, AdminNeed.ALWAYS, _BOTH),
    Operation.GENERATE_SECRET: AccessRule(True, AdminNeed.AFTER_INTEGRATION, _BOTH),
    Operation.IMPORT_PUBLIC_KEY: AccessRule(True, AdminNeed.AFTER_INTEGRATION, _BOTH),
    Operation.IMPORT_CERTIFICATE: AccessRule(True, AdminNeed.AFTER_INTEGRATION, _BOTH),
    Operation.DELETE: AccessRule(True, AdminNeed.AFTER_INTEGRATION, _BOTH),
    Operation.USE_PRIVATE_KEY: AccessRule(True, AdminNeed.NEVER, _BOTH),
    Operation.USE_SECRET: AccessRule(True, AdminNeed.NEVER, _BOTH),
    Operation.GENERATE_IMPORT_KEY: AccessRule(True, AdminNeed.NEVER, _INTEGRATION),
    Operation.IMPORT_WRAPPED_KEY: AccessRule(True, AdminNeed.NEVER, _INTEGRATION),
    Operation.DELETE_IMPORT_KEYS: AccessRule(True, AdminNeed.NEVER, _BOTH),
    Operation.SET_SYSTEM_PIN: AccessRule(False, AdminNeed.NEVER, _BOTH),
    Operation.CHANGE_SYSTEM_PIN: AccessRule(True, AdminNeed.AFTER_INTEGRATION, _BOTH),
    Operation.ADMIN_AUTHENTICATION: AccessRule(True, AdminNeed.NEVER, _BOTH),
})

#: The gateway's operational key pairs (Betriebsschlüssel, seed 003 §2.3.3): generated only by
#: the authenticated administrator during personalisation, in any phase.
OPERATIONAL_KEY_PAIR_LABELS = frozenset({"GW_WAN_TLS", "GW_WAN_SIG", "GW_WAN_ENC"})


def generate_operation(label: str) -> Operation:
    """The row that governs generating the key pair ``label``."""
    if label in OPERATIONAL_KEY_PAIR_LABELS:
        return Operation.GENERATE_OPERATIONAL_KEY_PAIR
    return Operation.GENERATE_KEY_PAIR


#: The public methods behind each operation (for the rendered table).
METHODS = MappingProxyType({
    Operation.READ_PUBLIC: "has, objects, key, public_key, certificate, check_system_pin",
    Operation.RANDOM: "random",
    Operation.GENERATE_KEY_PAIR: "generate_key_pair (other labels)",
    Operation.GENERATE_OPERATIONAL_KEY_PAIR: "generate_key_pair (GW_WAN_TLS/SIG/ENC)",
    Operation.GENERATE_SECRET: "generate_secret",
    Operation.IMPORT_PUBLIC_KEY: "import_public_key",
    Operation.IMPORT_CERTIFICATE: "import_certificate",
    Operation.DELETE: "delete",
    Operation.USE_PRIVATE_KEY: "ModuleKey.sign/sign_prehashed/exchange",
    Operation.USE_SECRET: "encrypt_with, decrypt_with",
    Operation.GENERATE_IMPORT_KEY: "generate_import_key",
    Operation.IMPORT_WRAPPED_KEY: "import_wrapped_key",
    Operation.DELETE_IMPORT_KEYS: "delete_import_keys",
    Operation.SET_SYSTEM_PIN: "set_system_pin (no reference yet)",
    Operation.CHANGE_SYSTEM_PIN: "set_system_pin (reference exists)",
    Operation.ADMIN_AUTHENTICATION: "admin_challenge, admin_authenticate",
})


def render_access_rules() -> str:
    """The table as Markdown (docs/secmod.md embeds it; a test keeps the two equal)."""
    lines = ["| operation | methods | system PIN (once paired) | administrator | phases |",
             "| --- | --- | --- | --- | --- |"]
    for operation, rule in ACCESS_RULES.items():
        phases = ", ".join(phase.value for phase in Phase if phase in rule.phases)
        lines.append(f"| `{operation.value}` | {METHODS[operation]} | "
                     f"{'yes' if rule.pin else 'no'} | {rule.admin.value} | {phases} |")
    return "\n".join(lines)
