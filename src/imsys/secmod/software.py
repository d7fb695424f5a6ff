"""``SoftwareSecurityModule``: the security module as an encrypted file store.

For development, simulation and tests where no token is at hand. One directory holds one
module in ``secmod.json`` (format ``imsys-secmod-store/1``):

* ``kdf`` – scrypt salt and cost; ``scrypt(passphrase) → 64 bytes = enc key || mac key``
  (default N = 2**15, r = 8, p = 1; tests pass a small ``kdf_log2_n``). The same cost is used
  for the system-PIN reference value.
* ``objects`` – per label the record (kind, curve, subject, created, import flag), public keys
  (SPKI DER) and certificates (DER) in clear, private keys (PKCS#8 DER) and secrets sealed with
  AES-256-GCM under the enc key, AAD = ``label|uid|kind`` (a blob cannot be moved to another
  label).
* ``state`` – phase, PIN reference, retry counter.
* ``check`` – HMAC(mac key, fixed text): tells a wrong passphrase (WRONG_PIN) from tampering;
  ``mac`` – HMAC-SHA256 over the canonical JSON of everything else (TAMPERED if it fails).

Each change rewrites the file atomically (temp file, fsync, ``os.replace``, fsync of the
folder); the in-memory copy changes only after the write succeeded. An exclusive ``flock`` on
``.lock`` keeps a second process (or a second open instance) out. Limits, as for any software
module: a copy of an old file can be put back (rollback of the PIN counter), and deleted
blobs may survive in freed disk blocks.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import json
import os
from hashlib import sha256
from pathlib import Path
from typing import Any, Self

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from imsys.core.clock import Clock
from imsys.core.errors import Reason, SecmodRejected, UsageError
from imsys.crypto.primitives import CURVES, SoftwareKey, hash_for
from imsys.secmod._atomic import atomic_write
from imsys.secmod._model import ModuleState, Record
from imsys.secmod._pin import DEFAULT_LOG2_N, check_kdf_cost, scrypt
from imsys.secmod.base import SecurityModule

FORMAT = "imsys-secmod-store/1"
STORE_FILE = "secmod.json"
LOCK_FILE = ".lock"
_CHECK_TEXT = FORMAT.encode("ascii") + b" passphrase check"


def _canonical(doc: dict[str, Any]) -> bytes:
    body = {key: value for key, value in doc.items() if key != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _keys(passphrase: bytes, kdf: dict[str, Any]) -> tuple[bytes, bytes]:
    log2_n, r, p = int(kdf["log2_n"]), int(kdf["r"]), int(kdf["p"])
    if kdf["name"] != "scrypt" or not (1 <= log2_n <= 22 and 1 <= r <= 32 and 1 <= p <= 16):
        raise ValueError("unsupported scrypt parameters")
    material = scrypt(passphrase, bytes.fromhex(kdf["salt"]), log2_n, r, p, length=64)
    return material[:32], material[32:]


def _mac(mac_key: bytes, data: bytes) -> str:
    return hmac.new(mac_key, data, sha256).hexdigest()


class SoftwareSecurityModule(SecurityModule):
    """A :class:`~imsys.secmod.SecurityModule` kept in an encrypted file store.

    ``SoftwareSecurityModule(path, passphrase)`` opens an existing store (same as
    :meth:`open`); :meth:`create` makes a new one. A wrong passphrase is WRONG_PIN, a store
    altered outside the module TAMPERED.
    """

    def __init__(self, path: Path | str, passphrase: bytes, *, clock: Clock | None = None
                 ) -> None:
        if not isinstance(passphrase, bytes):
            raise UsageError("the store passphrase is bytes")
        self._path = Path(path)
        self._file = self._path / STORE_FILE
        if not self._file.is_file():
            raise UsageError(f"no security-module store at {self._path}")
        self._lock_fd = self._acquire_lock(self._path)
        try:
            doc = self._read(self._file)
            self._enc_key, self._mac_key = self._unlock(doc, passphrase)
        except BaseException:
            self._release_lock()
            raise
        self._doc = doc
        super().__init__(clock=clock, kdf_log2_n=int(doc["kdf"]["log2_n"]))
        self._start()

    @classmethod
    def open(cls, path: Path | str, passphrase: bytes, *, clock: Clock | None = None) -> Self:
        """Open an existing store."""
        return cls(path, passphrase, clock=clock)

    @classmethod
    def create(cls, path: Path | str, passphrase: bytes, *, kdf_log2_n: int = DEFAULT_LOG2_N,
               clock: Clock | None = None) -> Self:
        """Create an empty store in ``path`` (made if missing) and open it.

        OBJECT_EXISTS if ``path`` holds a store already.
        """
        if not isinstance(passphrase, bytes) or not passphrase:
            raise UsageError("the store passphrase must be non-empty bytes")
        directory = Path(path)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (directory / STORE_FILE).exists():
            raise SecmodRejected(Reason.OBJECT_EXISTS, f"a store exists in {directory}",
                                 path=str(directory))
        kdf = {"name": "scrypt", "salt": os.urandom(16).hex(),
               "log2_n": check_kdf_cost(kdf_log2_n), "r": 8, "p": 1}
        _, mac_key = _keys(passphrase, kdf)
        doc: dict[str, Any] = {
            "format": FORMAT,
            "kdf": kdf,
            "check": _mac(mac_key, _CHECK_TEXT),
            "state": ModuleState().to_json(),
            "objects": {},
        }
        doc["mac"] = _mac(mac_key, _canonical(doc))
        atomic_write(directory / STORE_FILE, json.dumps(doc, indent=1).encode("utf-8"))
        return cls(directory, passphrase, clock=clock)

    def __repr__(self) -> str:
        return f"SoftwareSecurityModule({str(self._path)!r})"

    # ------------------------------------------------------------------ store file

    @staticmethod
    def _acquire_lock(directory: Path) -> int:
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(f"the store in {directory} is open elsewhere") from None
        return fd

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @staticmethod
    def _read(file: Path) -> dict[str, Any]:
        try:
            doc = json.loads(file.read_bytes())
            if doc.get("format") != FORMAT:
                raise ValueError(f"unknown format {doc.get('format')!r}")
            missing = [k for k in ("kdf", "check", "state", "objects", "mac") if k not in doc]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
        except (ValueError, KeyError, AttributeError) as exc:
            raise SecmodRejected(Reason.MALFORMED, f"not a security-module store: {exc}",
                                 path=str(file)) from exc
        return doc

    @staticmethod
    def _unlock(doc: dict[str, Any], passphrase: bytes) -> tuple[bytes, bytes]:
        try:
            enc_key, mac_key = _keys(passphrase, doc["kdf"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SecmodRejected(Reason.MALFORMED, f"bad key-derivation parameters: {exc}"
                                 ) from exc
        if not hmac.compare_digest(_mac(mac_key, _CHECK_TEXT), str(doc["check"])):
            raise SecmodRejected(Reason.WRONG_PIN, "wrong store passphrase")
        if not hmac.compare_digest(_mac(mac_key, _canonical(doc)), str(doc["mac"])):
            raise SecmodRejected(Reason.TAMPERED, "the store was changed outside the module")
        return enc_key, mac_key

    def _commit(self, *, objects: dict[str, Any] | None = None,
                state: ModuleState | None = None) -> None:
        doc = dict(self._doc)
        if objects is not None:
            doc["objects"] = objects
        if state is not None:
            doc["state"] = state.to_json()
        doc["mac"] = _mac(self._mac_key, _canonical(doc))
        atomic_write(self._file, json.dumps(doc, indent=1).encode("utf-8"))
        self._doc = doc

    def _put(self, record: Record, **fields: str) -> None:
        objects = dict(self._doc["objects"])
        objects[record.label] = {"record": record.to_json(), **fields}
        self._commit(objects=objects)

    def _entry(self, record: Record) -> dict[str, Any]:
        entry: dict[str, Any] = self._doc["objects"][record.label]
        return entry

    # ------------------------------------------------------------------ sealing

    @staticmethod
    def _aad(record: Record) -> bytes:
        return f"{record.label}|{record.uid}|{record.kind.value}".encode()

    def _seal(self, record: Record, secret: bytes) -> str:
        nonce = os.urandom(12)
        return (nonce + AESGCM(self._enc_key).encrypt(nonce, secret, self._aad(record))).hex()

    def _unseal(self, record: Record) -> bytes:
        blob = bytes.fromhex(self._entry(record)["sealed"])
        try:
            return AESGCM(self._enc_key).decrypt(blob[:12], blob[12:], self._aad(record))
        except InvalidTag as exc:
            raise SecmodRejected(Reason.TAMPERED, f"sealed object {record.label} was altered",
                                 label=record.label) from exc

    def _private_key(self, record: Record) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_der_private_key(self._unseal(record), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SecmodRejected(Reason.MALFORMED, f"{record.label} holds no EC key",
                                 label=record.label)
        return key

    @staticmethod
    def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    @staticmethod
    def _spki(key: ec.EllipticCurvePublicKey) -> str:
        return key.public_bytes(serialization.Encoding.DER,
                                serialization.PublicFormat.SubjectPublicKeyInfo).hex()

    # ------------------------------------------------------------------ backend hooks

    def _load(self) -> tuple[ModuleState, list[Record]]:
        state = ModuleState.from_json(self._doc["state"])
        records = [Record.from_json(entry["record"]) for entry in self._doc["objects"].values()]
        return state, records

    def _save_state(self, state: ModuleState) -> None:
        self._commit(state=state)

    def _create_key_pair(self, record: Record) -> ec.EllipticCurvePublicKey:
        key = ec.generate_private_key(CURVES[record.curve or ""].curve())
        self._put(record, public=self._spki(key.public_key()),
                  sealed=self._seal(record, self._pkcs8(key)))
        return key.public_key()

    def _store_public_key(self, record: Record, key: ec.EllipticCurvePublicKey) -> None:
        self._put(record, public=self._spki(key))

    def _store_certificate(self, record: Record, certificate: x509.Certificate) -> None:
        self._put(record, certificate=certificate.public_bytes(serialization.Encoding.DER).hex())

    def _create_secret(self, record: Record, bits: int) -> None:
        self._put(record, sealed=self._seal(record, os.urandom(bits // 8)))

    def _store_unwrapped_key_pair(self, record: Record, kek: bytes, wrapped: bytes,
                                  public: ec.EllipticCurvePublicKey) -> None:
        try:
            pkcs8 = keywrap.aes_key_unwrap_with_padding(kek, wrapped)
        except (keywrap.InvalidUnwrap, ValueError) as exc:
            raise SecmodRejected(Reason.TAMPERED, "key unwrap failed (wrong import key or "
                                 "altered wrap)", label=record.label) from exc
        try:
            key = serialization.load_der_private_key(pkcs8, None)
        except (ValueError, TypeError) as exc:
            raise SecmodRejected(Reason.MALFORMED, "unwrapped data is no PKCS#8 key",
                                 label=record.label) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != record.curve:
            raise SecmodRejected(Reason.WRONG_CURVE, "unwrapped key is not on the announced "
                                 "curve", label=record.label, curve=record.curve)
        if key.public_key() != public:
            raise SecmodRejected(Reason.MALFORMED, "unwrapped key does not match its public "
                                 "key", label=record.label)
        self._put(record, public=self._spki(public), sealed=self._seal(record, self._pkcs8(key)))

    def _destroy(self, record: Record) -> None:
        objects = dict(self._doc["objects"])
        del objects[record.label]
        self._commit(objects=objects)

    def _read_public_key(self, record: Record) -> ec.EllipticCurvePublicKey:
        key = serialization.load_der_public_key(bytes.fromhex(self._entry(record)["public"]))
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise SecmodRejected(Reason.MALFORMED, f"{record.label} holds no EC public key",
                                 label=record.label)
        return key

    def _read_certificate(self, record: Record) -> x509.Certificate:
        return x509.load_der_x509_certificate(bytes.fromhex(self._entry(record)["certificate"]))

    def _sign_digest(self, record: Record, digest: bytes) -> bytes:
        key = self._private_key(record)
        return key.sign(digest, ec.ECDSA(Prehashed(hash_for(key))))

    def _tls_private_key(self, record: Record) -> SoftwareKey:
        """The TLS key for OpenSSL (see :meth:`SecurityModule.tls_private_key`)."""
        return SoftwareKey(self._private_key(record))

    def _ecdh(self, record: Record, peer: ec.EllipticCurvePublicKey) -> bytes:
        return self._private_key(record).exchange(ec.ECDH(), peer)

    def _aead_seal(self, record: Record, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return AESGCM(self._unseal(record)).encrypt(nonce, plaintext, aad)

    def _aead_open(self, record: Record, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
        try:
            return AESGCM(self._unseal(record)).decrypt(nonce, sealed, aad)
        except InvalidTag as exc:
            raise SecmodRejected(Reason.TAMPERED, "AES-GCM tag does not match",
                                 label=record.label) from exc

    def _random(self, n: int) -> bytes:
        return os.urandom(n)

    def _close_backend(self) -> None:
        self._enc_key = self._mac_key = b""
        self._release_lock()
