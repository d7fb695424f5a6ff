"""Session-wide fixtures: one SM-PKI for the whole run (brainpool operations are not free)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from imsys.crypto import SoftwareKey
from imsys.pki import PkiDirectory

# Rich sizes tables to the terminal; tests read whole lines
os.environ.setdefault("COLUMNS", "200")

IssueFn = Callable[..., tuple[SoftwareKey, x509.Certificate]]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDirectory:
    """Root-CA with two Sub-CAs (``sub-ca`` for gateways and administrators, ``emt-ca``)."""
    return PkiDirectory.init(tmp_path_factory.mktemp("pki") / "pki",
                             sub_cas=("sub-ca", "emt-ca"))


@pytest.fixture(scope="session")
def issue(pki: PkiDirectory) -> IssueFn:
    """Issue (once per session and arguments) a certificate with a fresh software key."""
    cache: dict[tuple[object, ...], tuple[SoftwareKey, x509.Certificate]] = {}

    def _issue(profile: str, identifier: str, **kwargs: object
               ) -> tuple[SoftwareKey, x509.Certificate]:
        key = (profile, identifier, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = pki.issue_with_new_key(profile, identifier, **kwargs)
        return cache[key]

    return _issue


@pytest.fixture(scope="session")
def pki_path(pki: PkiDirectory) -> Path:
    return pki.path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI (``IMSYS_REQUIRE_INTEROP=1``) a skipped interop test is a failure: the peer
    it needs (openssl, SoftHSM2, libsml) must be installed there."""
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and os.environ.get("IMSYS_REQUIRE_INTEROP") == "1"
            and item.get_closest_marker("interop") is not None):
        report.outcome = "failed"
        report.longrepr = f"interop test skipped in CI, its peer is missing: {report.longrepr}"
