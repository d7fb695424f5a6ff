"""``Pkcs11SecurityModule``: the security module on a PKCS#11 token (SoftHSM2 in tests and CI).

The token is the whole state:

* key pairs: ``CKO_PRIVATE_KEY`` + ``CKO_PUBLIC_KEY``, generated on the token with
  ``CKA_EC_PARAMS`` = DER OID of the brainpool curve; the private key is ``CKA_TOKEN``,
  ``CKA_PRIVATE``, ``CKA_SENSITIVE`` and not ``CKA_EXTRACTABLE``. ``CKA_LABEL`` = our label,
  ``CKA_ID`` = the object's uid.
* imported public keys ``CKO_PUBLIC_KEY``; certificates ``CKO_CERTIFICATE`` (X.509);
  storage secrets ``CKO_SECRET_KEY`` (AES, sensitive, not extractable).
* our records and the module state (phase, PIN reference, retry counter) as private
  ``CKO_DATA`` objects, ``CKA_APPLICATION`` ``imsys.secmod/object`` resp. ``imsys.secmod/state``.
  The state object is replaced by writing a new one with a higher sequence number, then
  destroying the old one; on open the highest wins.

Operations: ECDSA is ``CKM_ECDSA`` over the digest computed in software (raw r||s → DER).
ECDH is ``CKM_ECDH1_DERIVE`` (KDF NULL) into a session generic secret whose value is read
back as Z: the session secret leaves the token, the private key never does. AES-GCM runs on
the token (``CKM_AES_GCM``). Wrapped imports: Z from the import key on the token, the KEK
derived in software, then ``C_UnwrapKey`` with ``CKM_AES_KEY_WRAP_PAD`` (RFC 5649) creates
the private key on the token as sensitive and not extractable – it is never in host memory.
"""

from __future__ import annotations

import json
from typing import Any

import pkcs11
from asn1crypto.core import OctetString
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import (
    KDF,
    Attribute,
    CertificateType,
    GCMParams,
    KeyType,
    Mechanism,
    MechanismFlag,
    ObjectClass,
)
from pkcs11.constants import DEFAULT
from pkcs11.exceptions import (
    NoSuchToken,
    PinIncorrect,
    PinLenRange,
    PinLocked,
    PKCS11Error,
    UserAlreadyLoggedIn,
)
from pkcs11.util.ec import encode_named_curve_parameters

from imsys.core.clock import Clock
from imsys.core.errors import Reason, SecmodRejected, UsageError
from imsys.crypto.primitives import CURVES, public_key_bytes, raw_to_der_signature
from imsys.secmod._model import ModuleState, Record
from imsys.secmod._pin import DEFAULT_LOG2_N
from imsys.secmod._softhsm import (
    LIBRARY_ENV,
    SOFTHSM_CANDIDATES,
    SoftHsmToken,
    find_pkcs11_library,
    softhsm_token,
)
from imsys.secmod.base import SecurityModule

__all__ = [
    "LIBRARY_ENV",
    "SOFTHSM_CANDIDATES",
    "Pkcs11SecurityModule",
    "SoftHsmToken",
    "find_pkcs11_library",
    "softhsm_token",
]

APP_OBJECT = "imsys.secmod/object"
APP_STATE = "imsys.secmod/state"
_STATE_LABEL = "imsys.secmod.state"
_KEY_CLASSES = (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY, ObjectClass.SECRET_KEY,
                ObjectClass.CERTIFICATE)
#: Capability attributes python-pkcs11 would add that do not belong on an EC private key.
_NOT_FOR_PRIVATE = {a: DEFAULT for a in (Attribute.ENCRYPT, Attribute.WRAP, Attribute.VERIFY,
                                         Attribute.DECRYPT, Attribute.UNWRAP)}


def _ec_params(curve: str) -> bytes:
    return encode_named_curve_parameters(CURVES[curve].oid)


def _point(value: bytes, curve: str) -> bytes:
    """``CKA_EC_POINT`` is a DER OCTET STRING; accept a raw point too (some tokens)."""
    size = 1 + 2 * ((CURVES[curve].key_bits + 7) // 8)
    if len(value) == size and value[0] == 4:
        return bytes(value)
    return bytes(OctetString.load(bytes(value)).native)


class Pkcs11SecurityModule(SecurityModule):
    """A :class:`~imsys.secmod.SecurityModule` on a PKCS#11 token.

    ``library`` is the path of the PKCS#11 module (see
    :func:`~imsys.secmod.pkcs11.find_pkcs11_library`), ``token_label`` the token,
    ``user_pin`` the token's user PIN (WRONG_PIN / PIN_LOCKED if the token refuses it). One
    instance per token and process: PKCS#11 login state is shared by all sessions of a
    process, and :meth:`close` logs out.
    """

    def __init__(self, library: str, token_label: str, user_pin: str, *,
                 clock: Clock | None = None, kdf_log2_n: int = DEFAULT_LOG2_N) -> None:
        super().__init__(clock=clock, kdf_log2_n=kdf_log2_n)
        self._token_label = token_label
        try:
            token = pkcs11.lib(library).get_token(token_label=token_label)
        except NoSuchToken:
            raise UsageError(f"no PKCS#11 token labelled {token_label!r}") from None
        try:
            self._session = token.open(rw=True, user_pin=user_pin)
        except (PinIncorrect, PinLenRange):
            raise SecmodRejected(Reason.WRONG_PIN, "token refused the user PIN",
                                 token=token_label) from None
        except PinLocked:
            raise SecmodRejected(Reason.PIN_LOCKED, "token user PIN is locked",
                                 token=token_label) from None
        except UserAlreadyLoggedIn:
            raise UsageError(f"token {token_label!r} is already open in this process") from None
        self._handles: dict[tuple[str, ObjectClass], Any] = {}
        self._state_object: Any = None
        self._state_seq = 0
        try:
            self._start()
        except BaseException:
            self._session.close()
            raise

    def __repr__(self) -> str:
        return f"Pkcs11SecurityModule(token={self._token_label!r})"

    # ------------------------------------------------------------------ token objects

    def _find(self, record: Record, object_class: ObjectClass) -> Any:
        key = (record.uid, object_class)
        handle = self._handles.get(key)
        if handle is None:
            found = list(self._session.get_objects({
                Attribute.CLASS: object_class,
                Attribute.LABEL: record.label,
                Attribute.ID: bytes.fromhex(record.uid),
            }))
            if len(found) != 1:
                raise SecmodRejected(Reason.UNKNOWN_OBJECT,
                                     f"token holds {len(found)} {object_class.name} objects "
                                     f"for {record.label}", label=record.label)
            handle = self._handles[key] = found[0]
        return handle

    def _labelled(self, label: str) -> list[tuple[Any, bool]]:
        """Every object with ``label`` except the state record, with "is a record" flags."""
        found = []
        for obj in self._session.get_objects({Attribute.LABEL: label}):
            is_data = obj[Attribute.CLASS] == ObjectClass.DATA
            application = obj[Attribute.APPLICATION] if is_data else None
            if application != APP_STATE:
                found.append((obj, application == APP_OBJECT))
        return found

    def _purge(self, label: str) -> None:
        """Remove leftovers under ``label`` (an operation cut off before its record)."""
        for obj, _ in self._labelled(label):
            obj.destroy()

    def _meta_objects(self) -> list[Any]:
        return list(self._session.get_objects({Attribute.CLASS: ObjectClass.DATA,
                                               Attribute.APPLICATION: APP_OBJECT}))

    def _data(self, application: str, label: str, value: dict[str, Any]) -> Any:
        return self._session.create_object({
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.APPLICATION: application,
            Attribute.LABEL: label,
            Attribute.VALUE: json.dumps(value, sort_keys=True).encode("utf-8"),
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
        })

    def _commit_record(self, record: Record) -> None:
        """Write the record – the commit point of every create; undo the objects if it fails."""
        try:
            self._data(APP_OBJECT, record.label, record.to_json())
        except BaseException:
            self._purge(record.label)
            raise

    def _common(self, record: Record, *, private: bool) -> dict[Attribute, Any]:
        return {Attribute.LABEL: record.label, Attribute.ID: bytes.fromhex(record.uid),
                Attribute.TOKEN: True, Attribute.PRIVATE: private}

    def _public_object(self, record: Record, public: ec.EllipticCurvePublicKey) -> None:
        self._session.create_object({
            Attribute.CLASS: ObjectClass.PUBLIC_KEY,
            Attribute.KEY_TYPE: KeyType.EC,
            Attribute.EC_PARAMS: _ec_params(record.curve or ""),
            Attribute.EC_POINT: OctetString(public_key_bytes(public)).dump(),
            Attribute.VERIFY: True,
            **self._common(record, private=False),
        })

    # ------------------------------------------------------------------ backend hooks

    def _load(self) -> tuple[ModuleState, list[Record]]:
        states = list(self._session.get_objects({Attribute.CLASS: ObjectClass.DATA,
                                                 Attribute.APPLICATION: APP_STATE}))
        try:
            decoded = [(json.loads(bytes(obj[Attribute.VALUE])), obj) for obj in states]
            decoded.sort(key=lambda item: int(item[0]["seq"]))
            state = ModuleState.from_json(decoded[-1][0]) if decoded else ModuleState()
            records = [Record.from_json(json.loads(bytes(obj[Attribute.VALUE])))
                       for obj in self._meta_objects()]
        except (ValueError, KeyError, TypeError) as exc:
            raise SecmodRejected(Reason.MALFORMED, f"unreadable imsys data on token "
                                 f"{self._token_label!r}: {exc}") from exc
        if decoded:
            # a state write cut off between "create new" and "destroy old": the newest wins
            for _, stale in decoded[:-1]:
                stale.destroy()
            self._state_object = decoded[-1][1]
            self._state_seq = int(decoded[-1][0]["seq"])
        return state, records

    def _save_state(self, state: ModuleState) -> None:
        seq = self._state_seq + 1
        new = self._data(APP_STATE, _STATE_LABEL, {"seq": seq, **state.to_json()})
        old, self._state_object, self._state_seq = self._state_object, new, seq
        if old is not None:
            old.destroy()

    def _create_key_pair(self, record: Record) -> ec.EllipticCurvePublicKey:
        self._purge(record.label)
        curve = record.curve or ""
        public, _ = self._session.generate_keypair(
            KeyType.EC, 0, id=bytes.fromhex(record.uid), label=record.label, store=True,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY | MechanismFlag.DERIVE,
            public_template={Attribute.EC_PARAMS: _ec_params(curve), Attribute.PRIVATE: False},
            private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                              Attribute.PRIVATE: True},
        )
        self._commit_record(record)
        return ec.EllipticCurvePublicKey.from_encoded_point(
            CURVES[curve].curve(), _point(public[Attribute.EC_POINT], curve))

    def _store_public_key(self, record: Record, key: ec.EllipticCurvePublicKey) -> None:
        self._purge(record.label)
        self._public_object(record, key)
        self._commit_record(record)

    def _store_certificate(self, record: Record, certificate: x509.Certificate) -> None:
        self._purge(record.label)
        self._session.create_object({
            Attribute.CLASS: ObjectClass.CERTIFICATE,
            Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
            Attribute.VALUE: certificate.public_bytes(serialization.Encoding.DER),
            Attribute.SUBJECT: certificate.subject.public_bytes(),
            Attribute.ISSUER: certificate.issuer.public_bytes(),
            **self._common(record, private=False),
        })
        self._commit_record(record)

    def _create_secret(self, record: Record, bits: int) -> None:
        self._purge(record.label)
        self._session.generate_key(
            KeyType.AES, bits, id=bytes.fromhex(record.uid), label=record.label, store=True,
            capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
            template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                      Attribute.PRIVATE: True},
        )
        self._commit_record(record)

    def _store_unwrapped_key_pair(self, record: Record, kek: bytes, wrapped: bytes,
                                  public: ec.EllipticCurvePublicKey) -> None:
        self._purge(record.label)
        unwrapping = self._session.create_object({
            Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: kek, Attribute.TOKEN: False, Attribute.UNWRAP: True,
            Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
        })
        try:
            private = unwrapping.unwrap_key(
                ObjectClass.PRIVATE_KEY, KeyType.EC, wrapped, id=bytes.fromhex(record.uid),
                label=record.label, store=True, mechanism=Mechanism.AES_KEY_WRAP_PAD,
                template={**_NOT_FOR_PRIVATE, Attribute.SENSITIVE: True,
                          Attribute.EXTRACTABLE: False, Attribute.PRIVATE: True,
                          Attribute.SIGN: True, Attribute.DERIVE: True},
            )
        except PKCS11Error as exc:
            raise SecmodRejected(Reason.TAMPERED, "key unwrap failed (wrong import key or "
                                 "altered wrap)", label=record.label) from exc
        finally:
            unwrapping.destroy()
        if bytes(private[Attribute.EC_PARAMS]) != _ec_params(record.curve or ""):
            private.destroy()
            raise SecmodRejected(Reason.WRONG_CURVE, "unwrapped key is not on the announced "
                                 "curve", label=record.label, curve=record.curve)
        try:
            self._public_object(record, public)
        except BaseException:
            self._purge(record.label)
            raise
        self._commit_record(record)

    def _destroy(self, record: Record) -> None:
        labelled = self._labelled(record.label)
        for obj, is_record in labelled:  # the record first: the commit point of a delete
            if is_record:
                obj.destroy()
        uid = bytes.fromhex(record.uid)
        for obj, is_record in labelled:
            if not is_record and obj[Attribute.CLASS] in _KEY_CLASSES and \
                    bytes(obj[Attribute.ID]) == uid:
                obj.destroy()
        for object_class in _KEY_CLASSES:
            self._handles.pop((record.uid, object_class), None)

    def _read_public_key(self, record: Record) -> ec.EllipticCurvePublicKey:
        curve = record.curve or ""
        obj = self._find(record, ObjectClass.PUBLIC_KEY)
        return ec.EllipticCurvePublicKey.from_encoded_point(
            CURVES[curve].curve(), _point(obj[Attribute.EC_POINT], curve))

    def _read_certificate(self, record: Record) -> x509.Certificate:
        obj = self._find(record, ObjectClass.CERTIFICATE)
        return x509.load_der_x509_certificate(bytes(obj[Attribute.VALUE]))

    def _sign_digest(self, record: Record, digest: bytes) -> bytes:
        raw = self._find(record, ObjectClass.PRIVATE_KEY).sign(digest, mechanism=Mechanism.ECDSA)
        return raw_to_der_signature(raw)

    def _ecdh(self, record: Record, peer: ec.EllipticCurvePublicKey) -> bytes:
        private = self._find(record, ObjectClass.PRIVATE_KEY)
        secret = private.derive_key(
            KeyType.GENERIC_SECRET, CURVES[record.curve or ""].key_bits,
            mechanism=Mechanism.ECDH1_DERIVE,
            mechanism_param=(KDF.NULL, None, public_key_bytes(peer)),
            template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True,
                      Attribute.TOKEN: False},
        )
        try:
            return bytes(secret[Attribute.VALUE])
        finally:
            secret.destroy()

    def _aead_seal(self, record: Record, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        key = self._find(record, ObjectClass.SECRET_KEY)
        return bytes(key.encrypt(plaintext, mechanism=Mechanism.AES_GCM,
                                 mechanism_param=GCMParams(nonce, aad or None)))

    def _aead_open(self, record: Record, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
        key = self._find(record, ObjectClass.SECRET_KEY)
        try:
            return bytes(key.decrypt(sealed, mechanism=Mechanism.AES_GCM,
                                     mechanism_param=GCMParams(nonce, aad or None)))
        except PKCS11Error as exc:
            raise SecmodRejected(Reason.TAMPERED, "AES-GCM tag does not match",
                                 label=record.label) from exc

    def _random(self, n: int) -> bytes:
        return bytes(self._session.generate_random(n * 8))

    def _close_backend(self) -> None:
        self._handles.clear()
        self._session.close()

