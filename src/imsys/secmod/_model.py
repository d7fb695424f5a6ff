"""What the security module holds: object kinds, the public object listing, persisted records.

Label convention (seed 003 §2.3): a key pair is stored under the seed's name *without* the
``_PRV``/``_PUB`` part (``GW_WAN_TLS_PRV_PRE``/``GW_WAN_TLS_PUB_PRE`` → ``GW_WAN_TLS_PRE``);
imported public keys and certificates keep the seed's full name (``GWADM_AUT_PUB``,
``ROOT_WAN_SIG_CRT``, ``GW_WAN_TLS_CRT_PRE``). :func:`key_pair_label` does the mapping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from imsys.core.errors import UsageError

#: The label under which the Gateway-System-PIN reference value is listed (seed 003 §2.3.1.2).
SYSTEM_PIN_LABEL = "GW_SYSTEM_PIN"
#: Suggested label of the SMGW's storage encryption key (seed 003 §2.3.1.2).
STORAGE_KEY_LABEL = "GW_STORAGE_ENC"
#: Consecutive wrong system PINs after which the reference is locked.
MAX_PIN_TRIES = 3

_LABEL = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_PAIR_PART = re.compile(r"_(PRV|PUB)(?=_PRE$|$)")


class ObjectKind(StrEnum):
    """The kinds of object a security module lists."""

    KEY_PAIR = "key-pair"
    PUBLIC_KEY = "public-key"
    CERTIFICATE = "certificate"
    PIN_REFERENCE = "pin-reference"
    SECRET = "secret"


class Phase(StrEnum):
    """The module's life-cycle phase (persisted; moves forward only).

    ``INTEGRATION`` covers seed 003 §2.3.1 (pre-personalisation 1/2 and integration at the
    integrator); :meth:`~imsys.secmod.SecurityModule.delete_import_keys` ends it. ``OPERATION``
    covers installation, personalisation and normal operation (§2.3.2-§2.3.4), where changes to
    the module's objects need the authenticated administrator.
    """

    INTEGRATION = "integration"
    OPERATION = "operation"


@dataclass(frozen=True)
class ObjectInfo:
    """One entry of :meth:`~imsys.secmod.SecurityModule.objects` (no secret content)."""

    label: str
    kind: ObjectKind
    curve: str | None
    subject: str | None
    created: datetime
    import_key: bool = False


@dataclass(frozen=True)
class Record:
    """The persisted description of one object; ``uid`` binds handles to this very object."""

    label: str
    kind: ObjectKind
    uid: str
    created: datetime
    curve: str | None = None
    subject: str | None = None
    import_key: bool = False

    def info(self) -> ObjectInfo:
        return ObjectInfo(self.label, self.kind, self.curve, self.subject, self.created,
                          self.import_key)

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": self.kind.value,
            "uid": self.uid,
            "created": self.created.isoformat(),
            "curve": self.curve,
            "subject": self.subject,
            "import_key": self.import_key,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(
            label=data["label"],
            kind=ObjectKind(data["kind"]),
            uid=data["uid"],
            created=datetime.fromisoformat(data["created"]),
            curve=data.get("curve"),
            subject=data.get("subject"),
            import_key=bool(data.get("import_key", False)),
        )


@dataclass(frozen=True)
class PinReference:
    """A salted scrypt reference value of the system PIN (never the PIN itself)."""

    salt: bytes
    digest: bytes
    log2_n: int
    r: int
    p: int
    created: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "kdf": "scrypt",
            "salt": self.salt.hex(),
            "digest": self.digest.hex(),
            "log2_n": self.log2_n,
            "r": self.r,
            "p": self.p,
            "created": self.created.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PinReference:
        return cls(
            salt=bytes.fromhex(data["salt"]),
            digest=bytes.fromhex(data["digest"]),
            log2_n=int(data["log2_n"]),
            r=int(data["r"]),
            p=int(data["p"]),
            created=datetime.fromisoformat(data["created"]),
        )


@dataclass(frozen=True)
class ModuleState:
    """Module-wide persisted state: life-cycle phase, PIN reference and retry counter."""

    phase: Phase = Phase.INTEGRATION
    pin: PinReference | None = None
    pin_failures: int = 0

    def with_failures(self, failures: int) -> ModuleState:
        return replace(self, pin_failures=failures)

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "pin": self.pin.to_json() if self.pin else None,
            "pin_failures": self.pin_failures,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModuleState:
        pin = data.get("pin")
        return cls(
            phase=Phase(data.get("phase", Phase.INTEGRATION.value)),
            pin=PinReference.from_json(pin) if pin else None,
            pin_failures=int(data.get("pin_failures", 0)),
        )


def check_label(label: str) -> str:
    """Return ``label`` if it is a valid object label (1-64 of ``A-Z a-z 0-9 _ . -``)."""
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise UsageError(f"invalid security-module label {label!r} (1-64 of A-Za-z0-9_.-)")
    return label


def key_pair_label(seed_name: str) -> str:
    """The label of a key pair named in the seed by its private or public part.

    >>> key_pair_label("GW_WAN_TLS_PRV_PRE")
    'GW_WAN_TLS_PRE'
    >>> key_pair_label("GWADM_AUT_PUB")
    'GWADM_AUT'
    """
    return _PAIR_PART.sub("", check_label(seed_name))
