"""Helpers shared by the security-module tests (a unique module name, not ``conftest``)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from imsys.core.clock import Clock
from imsys.crypto.primitives import SoftwareKey, hash_for
from imsys.secmod import SecurityModule
from imsys.secmod._softhsm import SoftHsmToken

PASSPHRASE = b"store passphrase for tests"
SYSTEM_PIN = "483920-system"
TEST_KDF_LOG2_N = 4  # scrypt N = 16: cheap for tests; production default is 2**15
BACKENDS = ("software", "pkcs11")


def pkcs11_unavailable(reason: str) -> None:
    """Skip – or fail when CI demands PKCS#11 (``IMSYS_REQUIRE_PKCS11=1``)."""
    if os.environ.get("IMSYS_REQUIRE_PKCS11") == "1":
        pytest.fail(f"IMSYS_REQUIRE_PKCS11=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def wipe_token(token: SoftHsmToken) -> None:
    """Destroy every object on the test token (faster than re-initialising it)."""
    import pkcs11

    found = pkcs11.lib(token.library).get_token(token_label=token.token_label)
    with found.open(rw=True, user_pin=token.user_pin) as session:
        for obj in list(session.get_objects()):
            obj.destroy()


class ModuleOpener:
    """Opens (and reopens) the module under test on one storage; closes all at teardown."""

    def __init__(self, backend: str, factory: Callable[[Clock | None], SecurityModule]) -> None:
        self.backend = backend
        self._factory = factory
        self._opened: list[SecurityModule] = []

    def open(self, clock: Clock | None = None) -> SecurityModule:
        module = self._factory(clock)
        self._opened.append(module)
        return module

    def reopen(self, module: SecurityModule, clock: Clock | None = None) -> SecurityModule:
        module.close()
        return self.open(clock)

    def close_all(self) -> None:
        for module in self._opened:
            module.close()


# --------------------------------------------------------------------------- administrator


class Administrator:
    """The GWA side of challenge-response: its GWADM_AUT key pair in software."""

    def __init__(self, curve: str = "brainpoolP256r1") -> None:
        self.aut = SoftwareKey.generate(curve)

    def answer(self, challenge: bytes) -> bytes:
        return self.aut.sign(challenge)

    def install(self, module: SecurityModule, label: str = "GWADM_AUT_PUB") -> None:
        module.import_public_key(label, self.aut.public_key())

    def login(self, module: SecurityModule) -> None:
        module.admin_authenticate(self.answer(module.admin_challenge()))


# --------------------------------------------------------------------------- certificates


def make_root(name: str = "SM-Test-Root") -> tuple[x509.Certificate, SoftwareKey]:
    """A self-signed root certificate and its key (stands in for ROOT_WAN_SIG_CRT)."""
    key = SoftwareKey.generate()
    return make_certificate(name, key.public_key(), (None, key), issuer_name=name), key


def make_certificate(subject: str, public_key: ec.EllipticCurvePublicKey,
                     issuer: tuple[x509.Certificate | None, SoftwareKey],
                     issuer_name: str | None = None) -> x509.Certificate:
    """A small X.509 certificate for ``public_key``, signed by ``issuer`` (certificate, key)."""
    issuer_cert, issuer_key = issuer
    if issuer_cert is not None:
        issuer_dn = issuer_cert.subject
    else:
        issuer_dn = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name or subject)])
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_dn)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
    )
    # SoftwareKey hides its private key as well; the test CA reaches it only here.
    private = issuer_key._key
    return builder.sign(private, hash_for(private))
