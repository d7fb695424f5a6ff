"""The gateway's PIN-protected local interface (seed 003 §2.3, Hinweis "lokale Schnittstelle").

The seed: the gateway has a local interface (physically its HAN interface) that the
integrator uses during pre-personalisation and integration (§2.3.1) and the installer
("Erstkonfigurator") during installation (§2.3.2), each with a PIN of their own
("Integrator-PIN", "Erstkonfigurator-PIN"). The installer gets no integrator rights. The PIN
mechanism is the gateway's alone – the security module plays no part. The interface exists
only in those phases and is disabled at the end of §2.3.2.

Here:

* the manufacturer provisions both PINs once (:meth:`LocalInterface.provision`); the gateway
  keeps salted scrypt reference values, never the PINs;
* :meth:`LocalInterface.login` opens a session for one role. It is refused without trying the
  PIN when the interface is disabled (``LOCAL_INTERFACE_DISABLED``) or the role has no step in
  the current phase (``WRONG_PHASE``, from the commissioning table); otherwise the failure
  counter of that role is stored *before* the comparison, a wrong PIN answers ``WRONG_PIN``
  with ``remaining``, and after ``max_tries`` consecutive failures the role is locked for good
  (``PIN_LOCKED``, even with the right PIN); a correct PIN resets the counter;
* :meth:`LocalInterface.submit` hands an event to the commissioning state machine with the
  session's role – the rights are those of :data:`~imsys.gateway.commissioning.TRANSITIONS`;
* when commissioning leaves installation the interface disables itself for good: the state
  records it, the PIN references are erased, the session ends.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from imsys.core.errors import UsageError
from imsys.gateway._commissioning_base import (
    CommissioningLogRecord,
    CommissioningReason,
    CommissioningRejected,
    LogHook,
    Role,
    StatePort,
    no_log,
)
from imsys.gateway.commissioning import Answer, Commissioning, Event, Step, roles_in_phase
from imsys.gateway.logs import Outcome

FORMAT = "imsys-local-interface/1"
#: Roles that use the local interface.
LOCAL_ROLES = (Role.INTEGRATOR, Role.INSTALLER)
#: Consecutive wrong PINs after which a role is locked.
MAX_TRIES = 3
DEFAULT_LOG2_N = 15
_R = CommissioningReason


def _reference(pin: str, salt: bytes, log2_n: int) -> bytes:
    return hashlib.scrypt(pin.encode("utf-8"), salt=salt, n=2 ** log2_n, r=8, p=1, dklen=32,
                          maxmem=256 * 1024 * 1024)


def _check_pin(pin: object) -> str:
    if not isinstance(pin, str) or not 6 <= len(pin.encode("utf-8")) <= 64:
        raise UsageError("a local-interface PIN is a str of 6-64 bytes")
    return pin


class LocalInterface:
    """The PIN-protected local interface in front of a :class:`Commissioning`."""

    def __init__(self, commissioning: Commissioning, state: StatePort, *,
                 log: LogHook = no_log, max_tries: int = MAX_TRIES) -> None:
        document = state.load()
        if document is None or document.get("format") != FORMAT:
            raise UsageError("the local interface is not provisioned (LocalInterface.provision)")
        self._commissioning = commissioning
        self._port = state
        self._doc: dict[str, Any] = document
        self._log = log
        self._max_tries = max_tries
        self._session: Role | None = None

    @classmethod
    def provision(cls, state: StatePort, *, integrator_pin: str, installer_pin: str,
                  kdf_log2_n: int = DEFAULT_LOG2_N) -> None:
        """Store the reference values of both PINs (the manufacturer, once, at production)."""
        if state.load() is not None:
            raise UsageError("the local interface is provisioned already")
        _check_pin(integrator_pin)
        _check_pin(installer_pin)
        if hmac.compare_digest(integrator_pin.encode(), installer_pin.encode()):
            raise UsageError("integrator and installer need different PINs")
        if not 4 <= kdf_log2_n <= 20:
            raise UsageError("kdf_log2_n must be 4..20")
        pins = {}
        for role, pin in ((Role.INTEGRATOR, integrator_pin), (Role.INSTALLER, installer_pin)):
            salt = secrets.token_bytes(16)
            pins[role.value] = {"salt": salt.hex(), "log2_n": kdf_log2_n,
                                "reference": _reference(pin, salt, kdf_log2_n).hex()}
        state.save({"format": FORMAT, "pins": pins, "disabled": False,
                    "failures": {role.value: 0 for role in LOCAL_ROLES}})

    # ------------------------------------------------------------------ reading

    @property
    def enabled(self) -> bool:
        """Whether the interface can be used at all (§2.3: up to the end of §2.3.2)."""
        return not self._doc["disabled"] and self._commissioning.local_interface_enabled

    @property
    def session_role(self) -> Role | None:
        return self._session

    def failures(self, role: Role) -> int:
        """Consecutive wrong PINs of ``role`` so far."""
        return int(self._doc["failures"].get(role.value, 0))

    # ------------------------------------------------------------------ session

    def login(self, role: Role, pin: str) -> None:
        """Authenticate ``role`` (integrator or installer) with its PIN; opens the session."""
        if role not in LOCAL_ROLES:
            raise UsageError(f"{role!r} does not use the local interface")
        _check_pin(pin)
        self._session = None
        phase = self._commissioning.phase
        try:
            self._check_enabled()
            if role not in roles_in_phase(phase):
                raise CommissioningRejected(_R.WRONG_PHASE,
                                            f"the {role.value} has no task in {phase.value}",
                                            role=role.value, phase=phase.value)
            failures = self.failures(role)
            if failures >= self._max_tries:
                raise CommissioningRejected(_R.PIN_LOCKED, f"the {role.value} PIN is locked",
                                            role=role.value)
            self._save(failures={**self._doc["failures"], role.value: failures + 1})
            entry = self._doc["pins"][role.value]
            candidate = _reference(pin, bytes.fromhex(entry["salt"]), entry["log2_n"])
            if not hmac.compare_digest(candidate, bytes.fromhex(entry["reference"])):
                remaining = self._max_tries - failures - 1
                raise CommissioningRejected(_R.WRONG_PIN,
                                            f"wrong {role.value} PIN, {remaining} tries left",
                                            role=role.value, remaining=remaining)
            self._save(failures={**self._doc["failures"], role.value: 0})
        except CommissioningRejected as exc:
            self._record(Outcome.FAILURE, role, exc.reason)
            raise
        self._session = role
        self._record(Outcome.SUCCESS, role)

    def logout(self) -> None:
        self._session = None

    def submit(self, event: Event) -> Answer:
        """Hand ``event`` to the commissioning with the session's role."""
        role = self._session
        try:
            self._check_enabled()
            if role is None:
                raise CommissioningRejected(_R.NO_SESSION, "log in with a PIN first")
        except CommissioningRejected as exc:
            self._log(CommissioningLogRecord(Outcome.FAILURE, event.step, role,
                                             self._commissioning.phase, exc.reason))
            raise
        answer = self._commissioning.process_event(role, event)
        if not self._commissioning.local_interface_enabled:
            self._disable()
        elif role not in roles_in_phase(self._commissioning.phase):
            self._session = None  # e.g. the integrator after pre-personalisation 2
        return answer

    # ------------------------------------------------------------------ internals

    def _check_enabled(self) -> None:
        if self._doc["disabled"] or not self._commissioning.local_interface_enabled:
            self._disable()
            raise CommissioningRejected(_R.LOCAL_INTERFACE_DISABLED,
                                        "the local interface is disabled (end of §2.3.2)")

    def _disable(self) -> None:
        """Disable for good: erase the PIN references, end the session."""
        self._session = None
        if not self._doc["disabled"]:
            self._save(disabled=True, pins={})

    def _save(self, **changes: Any) -> None:
        document = {**self._doc, **changes}
        self._port.save(document)
        self._doc = document

    def _record(self, outcome: Outcome, role: Role,
                reason: CommissioningReason | None = None) -> None:
        self._log(CommissioningLogRecord(outcome, Step.LOCAL_LOGIN, role,
                                         self._commissioning.phase, reason))


__all__ = ["FORMAT", "LOCAL_ROLES", "MAX_TRIES", "LocalInterface"]
