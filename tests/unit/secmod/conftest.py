"""Fixtures: every module test runs against both backends (software store, SoftHSM2 token).

SoftHSM2: one configuration and one token per test session (made before python-pkcs11 loads
the library, see imsys.secmod._softhsm), emptied before each test. Without SoftHSM2 the
PKCS#11 cases skip – unless ``IMSYS_REQUIRE_PKCS11=1`` (CI), where they fail.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from secmod_helpers import (
    BACKENDS,
    PASSPHRASE,
    TEST_KDF_LOG2_N,
    Administrator,
    ModuleOpener,
    pkcs11_unavailable,
    wipe_token,
)

from imsys.core.clock import Clock
from imsys.secmod import SecurityModule, SoftwareSecurityModule
from imsys.secmod._softhsm import SoftHsmToken, find_pkcs11_library, softhsm_token


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsmToken:
    if importlib.util.find_spec("pkcs11") is None:
        pkcs11_unavailable("python-pkcs11 is not installed")
    library = find_pkcs11_library()
    if library is None:
        pkcs11_unavailable("SoftHSM2 is not installed (no libsofthsm2.so, IMSYS_PKCS11_LIB unset)")
    if shutil.which("softhsm2-util") is None:
        pkcs11_unavailable("softhsm2-util is not on PATH")
    return softhsm_token(tmp_path_factory.mktemp("softhsm"), "imsys-secmod-test")


@pytest.fixture(params=BACKENDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModuleOpener]:
    if request.param == "software":
        store = tmp_path / "secmod"
        SoftwareSecurityModule.create(store, PASSPHRASE, kdf_log2_n=TEST_KDF_LOG2_N).close()

        def factory(clock: Clock | None) -> SecurityModule:
            return SoftwareSecurityModule(store, PASSPHRASE, clock=clock)
    else:
        token: SoftHsmToken = request.getfixturevalue("softhsm")
        wipe_token(token)
        from imsys.secmod.pkcs11 import Pkcs11SecurityModule

        def factory(clock: Clock | None) -> SecurityModule:
            return Pkcs11SecurityModule(*token, clock=clock, kdf_log2_n=TEST_KDF_LOG2_N)
    opener = ModuleOpener(request.param, factory)
    yield opener
    opener.close_all()


@pytest.fixture
def module(opener: ModuleOpener) -> SecurityModule:
    return opener.open()


@pytest.fixture(scope="session")
def admin() -> Administrator:
    return Administrator()
