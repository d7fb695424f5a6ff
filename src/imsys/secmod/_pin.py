"""The system PIN reference value: salted scrypt, compared in constant time."""

from __future__ import annotations

import hmac
import os
from datetime import datetime

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from imsys.core.errors import UsageError
from imsys.secmod._model import PinReference

#: Production scrypt cost (N = 2**15, r = 8, p = 1: 32 MiB, tens of milliseconds).
DEFAULT_LOG2_N = 15
MIN_PIN_LENGTH = 6
MAX_PIN_LENGTH = 64


def check_kdf_cost(log2_n: int) -> int:
    """Return ``log2_n`` if it is a usable scrypt cost (1..22; tests use small values)."""
    if not isinstance(log2_n, int) or not 1 <= log2_n <= 22:
        raise UsageError(f"scrypt log2(N) must be 1..22, got {log2_n!r}")
    return log2_n


def pin_bytes(pin: str | bytes) -> bytes:
    """The PIN as bytes (UTF-8 for text); ``UsageError`` if its length is out of range."""
    if isinstance(pin, str):
        pin = pin.encode("utf-8")
    if not isinstance(pin, bytes):
        raise UsageError(f"a PIN is str or bytes, not {type(pin).__name__}")
    if not MIN_PIN_LENGTH <= len(pin) <= MAX_PIN_LENGTH:
        raise UsageError(f"the system PIN must be {MIN_PIN_LENGTH}..{MAX_PIN_LENGTH} bytes")
    return pin


def scrypt(secret: bytes, salt: bytes, log2_n: int, r: int = 8, p: int = 1,
           length: int = 32) -> bytes:
    return Scrypt(salt=salt, length=length, n=2**log2_n, r=r, p=p).derive(secret)


def make_reference(pin: str | bytes, log2_n: int, created: datetime) -> PinReference:
    """A fresh salted reference value for ``pin``."""
    salt = os.urandom(16)
    return PinReference(salt, scrypt(pin_bytes(pin), salt, log2_n), log2_n, 8, 1, created)


def reference_matches(reference: PinReference, pin: str | bytes) -> bool:
    """Whether ``pin`` matches (internal helper; the module turns ``False`` into a rejection)."""
    try:
        candidate = pin_bytes(pin)
    except UsageError:
        return False
    digest = scrypt(candidate, reference.salt, reference.log2_n, reference.r, reference.p)
    return hmac.compare_digest(digest, reference.digest)
