"""Session-wide fixtures: one SM-PKI for the whole run (brainpool operations are not free)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
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


def _postgres_unavailable(reason: str) -> None:
    if os.environ.get("IMSYS_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL required but unavailable: {reason}")
    pytest.skip(f"no PostgreSQL: {reason}")


def _as_postgres_user(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "nobody", "--", *argv]
    return argv


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server URL for the whole run: ``IMSYS_POSTGRES_URL``, else a throwaway
    cluster from ``initdb``/``pg_ctl`` (as ``nobody`` when running as root). Without either
    the tests using it skip – unless ``IMSYS_REQUIRE_POSTGRES=1``, then they fail."""
    pytest.importorskip("psycopg")
    given = os.environ.get("IMSYS_POSTGRES_URL")
    if given:
        yield given
        return
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl or (os.geteuid() == 0 and not shutil.which("runuser")):
        _postgres_unavailable("set IMSYS_POSTGRES_URL or install initdb/pg_ctl")
    folder = Path(tempfile.mkdtemp(prefix="imsys-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "nobody")
    data = folder / "data"
    try:
        subprocess.run(_as_postgres_user([initdb, "-D", str(data), "-A", "trust", "-U",
                                          "imsys", "--no-sync", "-E", "UTF8"]),
                       check=True, capture_output=True, timeout=120)
        subprocess.run(_as_postgres_user([
            pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
            f"-k {folder} -c listen_addresses='' -c fsync=off", "start"]),
            check=True, capture_output=True, timeout=120)
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        _postgres_unavailable(f"could not start a throwaway cluster: {exc}")
    try:
        yield f"postgresql://imsys@/postgres?host={folder}"
    finally:
        subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w",
                                          "stop"]), capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server, dropped after the test."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    name = f"imsys_test_{uuid.uuid4().hex[:12]}"
    admin = make_url(postgres_server).set(drivername="postgresql")
    conninfo = admin.render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        _postgres_unavailable(str(exc))
    yield admin.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
