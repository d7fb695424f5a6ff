"""The security-module interface (TR-03109-2 role; seed 003 §2.3) and its rule engine.

:class:`SecurityModule` is what gateway code types against. Its public methods are the
interface *and* enforce the module's behaviour – access rules (:mod:`imsys.secmod._rules`),
the system-PIN pairing with its retry counter, administrator challenge-response, the import-key
profile – identically for every backend. A backend supplies only storage and key operations
through the abstract ``_``-methods at the end of the class (the shape of pyca/cryptography:
one interface, implementations chosen at construction).

Errors: refusals are :class:`~imsys.core.errors.SecmodRejected` with a
:class:`~imsys.core.errors.Reason`; misuse (bad label, closed module, bad argument type) is
:class:`~imsys.core.errors.UsageError`. Nothing returns ``False`` for a failed check.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum
from types import TracebackType
from typing import Any, ClassVar, Self, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from imsys.core.clock import Clock, SystemClock
from imsys.core.errors import KeyRejected, Reason, SecmodRejected, UsageError
from imsys.crypto.primitives import (
    DEFAULT_CURVE,
    SoftwareKey,
    check_public_key,
    curve_profile,
    ecdsa_verify,
    hash_for,
)
from imsys.secmod._handle import ModuleKey
from imsys.secmod._import import parse_wrapped_key
from imsys.secmod._model import (
    MAX_PIN_TRIES,
    SYSTEM_PIN_LABEL,
    ModuleState,
    ObjectInfo,
    ObjectKind,
    Phase,
    Record,
    check_label,
)
from imsys.secmod._pin import DEFAULT_LOG2_N, check_kdf_cost, make_reference, reference_matches
from imsys.secmod._rules import ACCESS_RULES, Operation, generate_operation

#: The administrator's authentication key (seed 003 §2.3.1.3, §2.3.3).
ADMIN_AUTH_KEY_LABEL = "GWADM_AUT_PUB"
_NONCE = 12
_TAG = 16


class TlsKeyReason(StrEnum):
    """Why :meth:`SecurityModule.tls_private_key` refused to hand out a key."""

    #: the label is no TLS key pair (``GW_WAN_TLS_PRE``, ``GW_WAN_TLS``, ``GWADM_TLS``, …)
    NOT_A_TLS_KEY = "not-a-tls-key"
    #: the backend keeps its keys in a token; OpenSSL would need a PKCS#11 provider (planned)
    BACKEND_UNSUPPORTED = "backend-unsupported"


class TlsKeyRejected(SecmodRejected):
    """:meth:`SecurityModule.tls_private_key` refused; ``reason`` is a :class:`TlsKeyReason`."""

    reason: TlsKeyReason  # type: ignore[assignment]

    def __init__(self, reason: TlsKeyReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


def is_tls_label(label: str) -> bool:
    """Whether ``label`` names a TLS key pair: ``TLS`` is one of its ``_``-separated parts
    after the first (``GW_WAN_TLS_PRE``, ``GW_WAN_TLS``, ``GWADM_TLS``)."""
    return "TLS" in label.split("_")[1:]


class SecurityModule(ABC):
    """The SMGW security module: keys that never leave, PIN pairing, admin authentication.

    Session state (system PIN presented, administrator authenticated, pending challenge) lives
    in the open instance and ends with :meth:`close`; objects, the PIN reference, its retry
    counter and the life-cycle :attr:`phase` persist in the backend.
    """

    #: How long an administrator challenge may be answered.
    challenge_lifetime: ClassVar[timedelta] = timedelta(minutes=2)

    def __init__(self, *, clock: Clock | None = None, kdf_log2_n: int = DEFAULT_LOG2_N) -> None:
        self._clock: Clock = clock or SystemClock()
        self._kdf_log2_n = check_kdf_cost(kdf_log2_n)
        self._lock = threading.RLock()
        self._state = ModuleState()
        self._records: dict[str, Record] = {}
        self._public_cache: dict[str, ec.EllipticCurvePublicKey] = {}
        self._pin_verified = False
        self._admin: str | None = None
        self._challenge: tuple[bytes, datetime] | None = None
        self._open = False

    def _start(self) -> None:
        """Called by a backend's constructor once its storage is open."""
        state, records = self._load()
        self._state = state
        self._records = {record.label: record for record in records}
        self._open = True

    # ------------------------------------------------------------------ session and state

    def close(self) -> None:
        """End the session (PIN and administrator state) and release the backend."""
        with self._lock:
            if not self._open:
                return
            self._open = False
            self._pin_verified = False
            self._admin = None
            self._challenge = None
            self._close_backend()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def phase(self) -> Phase:
        """The life-cycle phase; :meth:`delete_import_keys` moves it to ``OPERATION``."""
        return self._state.phase

    @property
    def paired(self) -> bool:
        """Whether a system PIN reference is set (the module is bound to its gateway)."""
        return self._state.pin is not None

    @property
    def pin_verified(self) -> bool:
        """Whether the system PIN was presented successfully in this session."""
        return self._pin_verified

    @property
    def admin_authenticated(self) -> bool:
        """Whether the administrator authenticated (GWADM_AUT) in this session."""
        return self._admin is not None

    # ------------------------------------------------------------------ objects

    def has(self, label: str) -> bool:
        """Whether an object with ``label`` exists (the PIN reference included)."""
        check_label(label)
        with self._access(Operation.READ_PUBLIC):
            return label in self._records or (label == SYSTEM_PIN_LABEL and self.paired)

    def objects(self) -> list[ObjectInfo]:
        """Every object the module holds, sorted by label (no secret content)."""
        with self._access(Operation.READ_PUBLIC):
            infos = [record.info() for record in self._records.values()]
            if self._state.pin is not None:
                infos.append(ObjectInfo(SYSTEM_PIN_LABEL, ObjectKind.PIN_REFERENCE, None, None,
                                        self._state.pin.created))
            return sorted(infos, key=lambda info: info.label)

    def generate_key_pair(self, label: str, curve: str = DEFAULT_CURVE) -> ModuleKey:
        """Generate a key pair on board; the private part never leaves the module.

        ``label`` is the seed's name without ``_PRV``/``_PUB`` (``GW_WAN_SIG_PRE``).
        Rejected: OBJECT_EXISTS, WRONG_CURVE, and the access rules (operational keys
        ``GW_WAN_TLS/SIG/ENC`` always need the authenticated administrator).
        """
        self._check_new_label(label)
        name = self._permitted_curve(curve)
        with self._access(generate_operation(label)):
            return self._generate(label, name, import_key=False)

    def key(self, label: str) -> ModuleKey:
        """A :class:`~imsys.crypto.primitives.KeyHandle` for the key pair ``label``."""
        check_label(label)
        with self._access(Operation.READ_PUBLIC):
            record = self._record(label, ObjectKind.KEY_PAIR)
            if record.import_key:
                raise SecmodRejected(Reason.ACCESS_DENIED,
                                     f"{label} is an import key; it only unwraps imports",
                                     label=label)
            return ModuleKey(self, label, record.uid, self._public(record))

    def public_key(self, label: str) -> ec.EllipticCurvePublicKey:
        """Export the public key of a key pair or of an imported public key."""
        check_label(label)
        with self._access(Operation.READ_PUBLIC):
            return self._public(self._record(label, ObjectKind.KEY_PAIR, ObjectKind.PUBLIC_KEY))

    def import_public_key(self, label: str, key: ec.EllipticCurvePublicKey) -> None:
        """Store a foreign public key (``GWADM_SIG_PUB``, ``GWADM_AUT_PUB``, ...)."""
        self._check_new_label(label)
        name = self._permitted_curve(key)
        with self._access(Operation.IMPORT_PUBLIC_KEY):
            self._require_free(label)
            record = self._new_record(label, ObjectKind.PUBLIC_KEY, curve=name)
            self._store_public_key(record, key)
            self._records[label] = record

    def import_certificate(self, label: str, certificate: x509.Certificate) -> None:
        """Store a certificate (``ROOT_WAN_SIG_CRT``, ``GW_WAN_TLS_CRT_PRE``, ...).

        The module stores, it does not validate paths (seed 003 §2.3.1.3: that is the
        gateway's job); the certified key must be on a permitted curve (WRONG_CURVE).
        """
        self._check_new_label(label)
        if not isinstance(certificate, x509.Certificate):
            raise UsageError(f"not an x509.Certificate: {type(certificate).__name__}")
        name = self._permitted_curve(certificate.public_key())
        with self._access(Operation.IMPORT_CERTIFICATE):
            self._require_free(label)
            record = self._new_record(label, ObjectKind.CERTIFICATE, curve=name,
                                      subject=certificate.subject.rfc4514_string())
            self._store_certificate(record, certificate)
            self._records[label] = record

    def certificate(self, label: str) -> x509.Certificate:
        """The certificate stored under ``label``."""
        check_label(label)
        with self._access(Operation.READ_PUBLIC):
            return self._read_certificate(self._record(label, ObjectKind.CERTIFICATE))

    def delete(self, label: str) -> None:
        """Delete an object (handles to it stop working). The PIN reference cannot be deleted."""
        check_label(label)
        with self._access(Operation.DELETE):
            if label == SYSTEM_PIN_LABEL:
                raise SecmodRejected(Reason.ACCESS_DENIED,
                                     "the system PIN reference cannot be deleted", label=label)
            self._remove(self._record(label))

    def random(self, n: int) -> bytes:
        """``n`` random bytes from the module's generator (1..1024)."""
        if not isinstance(n, int) or not 1 <= n <= 1024:
            raise UsageError(f"random(n) needs 1 <= n <= 1024, got {n!r}")
        with self._access(Operation.RANDOM):
            return self._random(n)

    # ------------------------------------------------------------------ storage secret

    def generate_secret(self, label: str, bits: int = 256) -> None:
        """Generate an AES key in the module (the SMGW's storage encryption key)."""
        self._check_new_label(label)
        if bits not in (128, 256):
            raise UsageError(f"AES keys are 128 or 256 bit, not {bits!r}")
        with self._access(Operation.GENERATE_SECRET):
            self._require_free(label)
            record = self._new_record(label, ObjectKind.SECRET)
            self._create_secret(record, bits)
            self._records[label] = record

    def encrypt_with(self, label: str, plaintext: bytes, aad: bytes = b"") -> bytes:
        """AES-GCM under the secret ``label``: ``nonce(12) || ciphertext || tag(16)``.

        The nonce is random (96 bit); keep a key below 2**32 messages.
        """
        check_label(label)
        with self._access(Operation.USE_SECRET):
            record = self._record(label, ObjectKind.SECRET)
            nonce = self._random(_NONCE)
            return nonce + self._aead_seal(record, nonce, bytes(plaintext), bytes(aad))

    def decrypt_with(self, label: str, sealed: bytes, aad: bytes = b"") -> bytes:
        """Reverse :meth:`encrypt_with`; TAMPERED if ciphertext, tag or ``aad`` changed."""
        check_label(label)
        with self._access(Operation.USE_SECRET):
            record = self._record(label, ObjectKind.SECRET)
            if len(sealed) < _NONCE + _TAG:
                raise SecmodRejected(Reason.MALFORMED, "sealed data too short", label=label)
            return self._aead_open(record, bytes(sealed[:_NONCE]), bytes(sealed[_NONCE:]),
                                   bytes(aad))

    # ------------------------------------------------------------------ system PIN pairing

    def set_system_pin(self, pin: str | bytes) -> None:
        """Store the reference value of the Gateway-System-PIN (pairing, seed 003 §2.3.1.2).

        The first call needs nothing and unlocks this session. A later call is a PIN *change*:
        it needs this session unlocked with the current PIN and, after integration, the
        authenticated administrator; it resets the retry counter.
        """
        operation = Operation.CHANGE_SYSTEM_PIN if self.paired else Operation.SET_SYSTEM_PIN
        with self._access(operation):
            reference = make_reference(pin, self._kdf_log2_n, self._clock.now())
            self._set_state(replace(self._state, pin=reference, pin_failures=0))
            self._pin_verified = True

    def check_system_pin(self, pin: str | bytes) -> None:
        """Present the system PIN; unlocks this session for the operations that need it.

        WRONG_PIN carries ``remaining`` tries; after three consecutive failures the reference
        is locked and every later attempt, even with the right PIN, is PIN_LOCKED. The
        counter is incremented and stored *before* the comparison, so cutting power during a
        check cannot save an attempt; a correct PIN resets it.
        """
        with self._access(Operation.READ_PUBLIC):
            reference = self._state.pin
            if reference is None:
                raise SecmodRejected(Reason.UNKNOWN_OBJECT, "no system PIN is set",
                                     label=SYSTEM_PIN_LABEL)
            failures = self._state.pin_failures
            if failures >= MAX_PIN_TRIES:
                raise SecmodRejected(Reason.PIN_LOCKED, "system PIN is locked",
                                     label=SYSTEM_PIN_LABEL)
            self._set_state(self._state.with_failures(failures + 1))
            if reference_matches(reference, pin):
                self._set_state(self._state.with_failures(0))
                self._pin_verified = True
                return
            self._pin_verified = False
            self._admin = None
            remaining = MAX_PIN_TRIES - failures - 1
            raise SecmodRejected(Reason.WRONG_PIN, f"wrong system PIN, {remaining} tries left",
                                 label=SYSTEM_PIN_LABEL, remaining=remaining)

    # ------------------------------------------------------------------ administrator

    def admin_challenge(self) -> bytes:
        """A fresh 32-byte challenge for the administrator (single use, replaces older ones)."""
        with self._access(Operation.ADMIN_AUTHENTICATION):
            nonce = self._random(32)
            self._challenge = (nonce, self._clock.now())
            return nonce

    def admin_authenticate(self, signature: bytes,
                           public_key_label: str = ADMIN_AUTH_KEY_LABEL) -> None:
        """Verify the administrator's DER ECDSA signature over the pending challenge.

        The signature is over the 32 challenge bytes themselves, with the hash matched to the
        curve of ``public_key_label`` (an imported public key). The challenge is consumed by
        the attempt: NOT_AUTHENTICATED if none is pending or it is older than
        :attr:`challenge_lifetime`, BAD_SIGNATURE if the signature does not verify.
        """
        check_label(public_key_label)
        with self._access(Operation.ADMIN_AUTHENTICATION):
            pending, self._challenge = self._challenge, None
            self._admin = None
            if pending is None:
                raise SecmodRejected(Reason.NOT_AUTHENTICATED,
                                     "no administrator challenge pending (single use)")
            nonce, issued = pending
            if self._clock.now() - issued > self.challenge_lifetime:
                raise SecmodRejected(Reason.NOT_AUTHENTICATED,
                                     "administrator challenge expired")
            record = self._record(public_key_label, ObjectKind.PUBLIC_KEY)
            try:
                ecdsa_verify(self._public(record), bytes(signature), nonce)
            except KeyRejected as exc:
                raise SecmodRejected(Reason.BAD_SIGNATURE,
                                     "administrator signature does not verify",
                                     label=public_key_label) from exc
            self._admin = public_key_label

    # ------------------------------------------------------------------ TLS key for OpenSSL

    def tls_private_key(self, label: str) -> SoftwareKey:
        """The private key of the TLS key pair ``label`` as a :class:`SoftwareKey`, for
        OpenSSL's handshake (:class:`imsys.crypto.tls.TlsIdentity`) – the one, narrow
        exception to "private keys never leave the module".

        Why: the TLS handshake runs inside OpenSSL, which signs with a key it holds itself;
        Python's ``ssl`` cannot delegate that signature to a :class:`ModuleKey`. Only labels
        whose ``_``-separated parts contain ``TLS`` (after the first) qualify; SIG, ENC, AUT
        and import keys never do (``NOT_A_TLS_KEY``). The use is that of the key (system PIN
        once paired). Backends that keep keys in a token refuse with ``BACKEND_UNSUPPORTED``
        (a PKCS#11 OpenSSL provider is planned, see docs/features.md).
        """
        check_label(label)
        with self._access(Operation.USE_PRIVATE_KEY):
            record = self._records.get(label)
            if (record is None or record.kind is not ObjectKind.KEY_PAIR or record.import_key
                    or not is_tls_label(label)):
                raise TlsKeyRejected(TlsKeyReason.NOT_A_TLS_KEY,
                                     f"{label} is not a TLS key pair of this module", label=label)
            return self._tls_private_key(record)

    def _tls_private_key(self, record: Record) -> SoftwareKey:
        """Backend hook for :meth:`tls_private_key`; by default the backend cannot."""
        raise TlsKeyRejected(TlsKeyReason.BACKEND_UNSUPPORTED,
                             f"{type(self).__name__} cannot hand TLS keys to OpenSSL",
                             label=record.label)

    def admin_logout(self) -> None:
        """End the administrator's authentication in this session."""
        with self._lock:
            self._admin = None
            self._challenge = None

    # ------------------------------------------------------------------ import keys

    def generate_import_key(self, label: str,
                            curve: str = DEFAULT_CURVE) -> ec.EllipticCurvePublicKey:
        """Generate an import key pair (integration phase only) and return its public key.

        The public key goes to the integrator, who wraps keys for it with
        :func:`~imsys.secmod.wrap_key_for_import`.
        """
        self._check_new_label(label)
        name = self._permitted_curve(curve)
        with self._access(Operation.GENERATE_IMPORT_KEY):
            return self._generate(label, name, import_key=True).public_key()

    def import_wrapped_key(self, label: str, wrapped: bytes, import_key_label: str) -> ModuleKey:
        """Unwrap a private key wrapped for the import key ``import_key_label`` into ``label``.

        Profile ``imsys-secmod-import/1`` (see :mod:`imsys.secmod._import`). Rejected:
        ACCESS_DENIED after :meth:`delete_import_keys` or if ``import_key_label`` is no import
        key, MALFORMED, WRONG_CURVE, TAMPERED (wrong import key or altered wrap).
        """
        self._check_new_label(label)
        check_label(import_key_label)
        with self._access(Operation.IMPORT_WRAPPED_KEY):
            self._require_free(label)
            import_record = self._record(import_key_label, ObjectKind.KEY_PAIR)
            if not import_record.import_key:
                raise SecmodRejected(Reason.ACCESS_DENIED,
                                     f"{import_key_label} is not an import key",
                                     label=import_key_label)
            parsed = parse_wrapped_key(wrapped, import_record.curve or DEFAULT_CURVE)
            kek = parsed.kek(self._ecdh(import_record, parsed.ephemeral))
            record = self._new_record(label, ObjectKind.KEY_PAIR, curve=parsed.key_curve)
            self._store_unwrapped_key_pair(record, kek, parsed.wrapped, parsed.public_key)
            self._records[label] = record
            self._check_pair(record, parsed.public_key)
            return ModuleKey(self, label, record.uid, self._public(record))

    def delete_import_keys(self) -> list[str]:
        """Securely delete every import-key object and end the integration phase.

        Seed 003 §2.3.1: at the end of pre-personalisation and integration all import keys are
        deleted; afterwards every import is refused (ACCESS_DENIED) and object changes need
        the authenticated administrator. Returns the deleted labels.
        """
        with self._access(Operation.DELETE_IMPORT_KEYS):
            deleted = sorted(r.label for r in self._records.values() if r.import_key)
            for label in deleted:
                self._remove(self._records[label])
            if self._state.phase is Phase.INTEGRATION:
                self._set_state(replace(self._state, phase=Phase.OPERATION))
            return deleted

    # ------------------------------------------------------------------ key-handle entry points

    def _sign_digest_with(self, label: str, uid: str, digest: bytes) -> bytes:
        with self._access(Operation.USE_PRIVATE_KEY):
            return self._sign_digest(self._handle_record(label, uid), digest)

    def _exchange_with(self, label: str, uid: str, peer: ec.EllipticCurvePublicKey) -> bytes:
        check_public_key(peer)
        with self._access(Operation.USE_PRIVATE_KEY):
            record = self._handle_record(label, uid)
            if peer.curve.name != record.curve:
                raise KeyRejected(Reason.WRONG_CURVE,
                                  f"peer key on {peer.curve.name}, own key on {record.curve}")
            return self._ecdh(record, peer)

    # ------------------------------------------------------------------ helpers

    @contextmanager
    def _access(self, operation: Operation) -> Iterator[None]:
        """Hold the module lock and enforce the access-rule row of ``operation``."""
        with self._lock:
            if not self._open:
                raise UsageError("the security module is closed")
            rule = ACCESS_RULES[operation]
            phase = self._state.phase
            if phase not in rule.phases:
                raise SecmodRejected(Reason.ACCESS_DENIED,
                                     f"{operation} is not available in phase {phase}",
                                     operation=operation.value, phase=phase.value)
            if rule.pin and self.paired and not self._pin_verified:
                if self._state.pin_failures >= MAX_PIN_TRIES:
                    raise SecmodRejected(Reason.PIN_LOCKED, "system PIN is locked",
                                         operation=operation.value)
                raise SecmodRejected(Reason.NOT_AUTHENTICATED,
                                     f"{operation} needs the system PIN in this session",
                                     operation=operation.value, needs="system-pin")
            if rule.needs_admin(phase) and self._admin is None:
                raise SecmodRejected(Reason.NOT_AUTHENTICATED,
                                     f"{operation} needs the authenticated administrator",
                                     operation=operation.value, needs="administrator")
            yield

    def _generate(self, label: str, curve: str, *, import_key: bool) -> ModuleKey:
        self._require_free(label)
        record = self._new_record(label, ObjectKind.KEY_PAIR, curve=curve,
                                  import_key=import_key)
        public = self._create_key_pair(record)
        self._records[label] = record
        self._public_cache[record.uid] = public
        return ModuleKey(self, label, record.uid, public)

    def _check_pair(self, record: Record, public: ec.EllipticCurvePublicKey) -> None:
        """Sign a random digest with the new private key and verify it with ``public``."""
        algorithm = hash_for(public)
        digest = os.urandom(algorithm.digest_size)
        try:
            public.verify(self._sign_digest(record, digest), digest,
                          ec.ECDSA(Prehashed(algorithm)))
        except InvalidSignature as exc:
            self._remove(record)
            raise SecmodRejected(Reason.MALFORMED,
                                 "imported private key does not match its public key",
                                 label=record.label) from exc

    def _remove(self, record: Record) -> None:
        self._destroy(record)
        del self._records[record.label]
        self._public_cache.pop(record.uid, None)

    def _set_state(self, state: ModuleState) -> None:
        self._save_state(state)
        self._state = state

    def _record(self, label: str, *kinds: ObjectKind) -> Record:
        record = self._records.get(label)
        if record is None:
            raise SecmodRejected(Reason.UNKNOWN_OBJECT, f"no object {label}", label=label)
        if kinds and record.kind not in kinds:
            wanted = "/".join(kind.value for kind in kinds)
            raise SecmodRejected(Reason.UNKNOWN_OBJECT,
                                 f"{label} is a {record.kind.value}, not a {wanted}",
                                 label=label, kind=record.kind.value)
        return record

    def _handle_record(self, label: str, uid: str) -> Record:
        record = self._records.get(label)
        if record is None or record.uid != uid:
            raise SecmodRejected(Reason.UNKNOWN_OBJECT, f"key {label} was deleted", label=label)
        return record

    def _public(self, record: Record) -> ec.EllipticCurvePublicKey:
        public = self._public_cache.get(record.uid)
        if public is None:
            public = self._public_cache[record.uid] = self._read_public_key(record)
        return public

    def _new_record(self, label: str, kind: ObjectKind, *, curve: str | None = None,
                    subject: str | None = None, import_key: bool = False) -> Record:
        return Record(label=label, kind=kind, uid=os.urandom(16).hex(),
                      created=self._clock.now(), curve=curve, subject=subject,
                      import_key=import_key)

    def _require_free(self, label: str) -> None:
        if label in self._records:
            raise SecmodRejected(Reason.OBJECT_EXISTS, f"{label} exists already", label=label)

    @staticmethod
    def _check_new_label(label: str) -> None:
        check_label(label)
        if label == SYSTEM_PIN_LABEL:
            raise UsageError(f"{SYSTEM_PIN_LABEL} is reserved for the system PIN reference")

    @staticmethod
    def _permitted_curve(curve: str | ec.EllipticCurvePublicKey | object) -> str:
        if not isinstance(curve, str | ec.EllipticCurvePublicKey):
            raise SecmodRejected(Reason.WRONG_CURVE,
                                 f"not an elliptic-curve key: {type(curve).__name__}")
        try:
            return curve_profile(curve).name
        except KeyRejected as exc:
            raise SecmodRejected(Reason.WRONG_CURVE, exc.message, **exc.context) from exc

    # ------------------------------------------------------------------ backend hooks
    # Each hook is one unit for the backend: it creates or removes the object *and* its record
    # so that a crash leaves either the old or the new state.

    @abstractmethod
    def _load(self) -> tuple[ModuleState, list[Record]]:
        """Read the persisted state and object records."""

    @abstractmethod
    def _save_state(self, state: ModuleState) -> None:
        """Persist the module state (phase, PIN reference, retry counter) atomically."""

    @abstractmethod
    def _create_key_pair(self, record: Record) -> ec.EllipticCurvePublicKey:
        """Generate a key pair on ``record.curve`` inside the module; return the public key."""

    @abstractmethod
    def _store_public_key(self, record: Record, key: ec.EllipticCurvePublicKey) -> None: ...

    @abstractmethod
    def _store_certificate(self, record: Record, certificate: x509.Certificate) -> None: ...

    @abstractmethod
    def _create_secret(self, record: Record, bits: int) -> None: ...

    @abstractmethod
    def _store_unwrapped_key_pair(self, record: Record, kek: bytes, wrapped: bytes,
                                  public: ec.EllipticCurvePublicKey) -> None:
        """Unwrap (RFC 5649) the PKCS#8 ``wrapped`` under ``kek`` into a key pair.

        TAMPERED if the unwrap fails, MALFORMED/WRONG_CURVE for a key that does not fit.
        """

    @abstractmethod
    def _destroy(self, record: Record) -> None: ...

    @abstractmethod
    def _read_public_key(self, record: Record) -> ec.EllipticCurvePublicKey: ...

    @abstractmethod
    def _read_certificate(self, record: Record) -> x509.Certificate: ...

    @abstractmethod
    def _sign_digest(self, record: Record, digest: bytes) -> bytes:
        """DER ECDSA signature over a digest with the private key of ``record``."""

    @abstractmethod
    def _ecdh(self, record: Record, peer: ec.EllipticCurvePublicKey) -> bytes:
        """The ECDH shared secret Z of ``record``'s private key with ``peer``."""

    @abstractmethod
    def _aead_seal(self, record: Record, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """AES-GCM: ``ciphertext || tag``."""

    @abstractmethod
    def _aead_open(self, record: Record, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
        """AES-GCM decryption; ``SecmodRejected(TAMPERED)`` on a bad tag."""

    @abstractmethod
    def _random(self, n: int) -> bytes: ...

    @abstractmethod
    def _close_backend(self) -> None: ...
