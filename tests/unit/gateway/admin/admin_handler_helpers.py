"""A gateway as administration commands see it, and a GWA that signs commands for it.

Fixtures are imported by the test modules (``from admin_handler_helpers import ...``); the
session PKI comes from tests/conftest.py. Commands go the real way: signed (and sealed when
they carry secrets) by the test GWA with ``issue_command``, verified by ``CommandVerifier``,
executed by ``AdminExecutor``.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from imsys.core.clock import SimulatedClock
from imsys.crypto import SoftwareKey
from imsys.gateway.admin import AdminContext, AdminExecutor, ConfigStore
from imsys.gateway.admin.context import HandlerTable
from imsys.gateway.logs import GatewayLogs
from imsys.gateway.store import Database
from imsys.pki import PkiDirectory
from imsys.secmod import STORAGE_KEY_LABEL, SoftwareSecurityModule
from imsys.wire.command import (
    Command,
    CommandResult,
    CommandType,
    CommandVerifier,
    issue_command,
)

GATEWAY_ID = "EIMS0099887766"
GWA_ID = "GWA-Admin-A"
PASSPHRASE = b"admin handler tests"
IssueFn = Callable[..., tuple[SoftwareKey, x509.Certificate]]


@dataclass
class Gwa:
    """A test administrator: SIG key and certificate, its own sequence numbers."""

    key: SoftwareKey
    certificate: x509.Certificate
    administrator_id: str
    sequence: Iterator[int] = field(default_factory=lambda: itertools.count(1))


@dataclass
class Gateway:
    ctx: AdminContext
    clock: SimulatedClock
    secmod: SoftwareSecurityModule
    enc_key: SoftwareKey
    enc_certificate: x509.Certificate
    verifier: CommandVerifier
    gwa: Gwa
    pki: PkiDirectory
    handlers: HandlerTable | None = None

    def command(self, command_type: CommandType, parameters: dict[str, Any] | None = None,
                *, gwa: Gwa | None = None) -> bytes:
        gwa = gwa or self.gwa
        now = self.clock.now().replace(microsecond=0)
        command = Command(uuid.uuid4(), GATEWAY_ID, gwa.administrator_id, next(gwa.sequence),
                          now, now + timedelta(minutes=10), command_type, parameters or {})
        sealed = self.enc_certificate if command_type.carries_secrets else None
        return issue_command(command, gwa.key, gwa.certificate, gateway_enc_certificate=sealed)

    def run(self, command_type: CommandType, parameters: dict[str, Any] | None = None,
            ) -> CommandResult:
        data = self.command(command_type, parameters)
        command = self.verifier.verify(data, self.enc_key, self.enc_certificate)
        return AdminExecutor(self.ctx, self.handlers or my_handlers()).execute(command)


def my_handlers() -> HandlerTable:
    """This package's handler modules (not the whole default table: the tests of one
    module do not depend on the others)."""
    from imsys.gateway.admin import device_handlers, key_handlers, monitoring_handlers

    table: HandlerTable = {}
    for module in (device_handlers, key_handlers, monitoring_handlers):
        table.update(module.HANDLERS)
    return table


def make_gwa(issue: IssueFn, administrator_id: str = GWA_ID) -> Gwa:
    key, certificate = issue("gwa-sig", administrator_id)
    return Gwa(key, certificate, administrator_id)


def make_gateway(tmp_path: Path, pki: PkiDirectory, issue: IssueFn,
                 handlers: HandlerTable | None = None, *, db_path: str = ":memory:",
                 ) -> Gateway:
    clock = SimulatedClock(datetime.now(UTC).replace(microsecond=0))
    db = Database(db_path)
    logs = GatewayLogs(db, clock)
    config = ConfigStore(db)
    store = tmp_path / "secmod"
    SoftwareSecurityModule.create(store, PASSPHRASE, kdf_log2_n=4).close()
    secmod = SoftwareSecurityModule(store, PASSPHRASE, clock=clock)
    secmod.import_certificate("ROOT_WAN_SIG_CRT", pki.root.certificate)
    secmod.generate_secret(STORAGE_KEY_LABEL)
    enc_key, enc_certificate = issue("gateway-enc", GATEWAY_ID)
    gwa = make_gwa(issue)
    ctx = AdminContext(GATEWAY_ID, db, logs, clock, config, tmp_path / "state", secmod,
                       extras={"pki_validator": pki.validator(clock=clock)})
    ctx.state_dir.mkdir(exist_ok=True)
    verifier = CommandVerifier(GATEWAY_ID, gwa.certificate, clock,
                               administrator_id=gwa.administrator_id)
    return Gateway(ctx, clock, secmod, enc_key, enc_certificate, verifier, gwa, pki, handlers)


@pytest.fixture
def gateway(tmp_path: Path, pki: PkiDirectory, issue: IssueFn) -> Iterator[Gateway]:
    gw = make_gateway(tmp_path, pki, issue)
    yield gw
    gw.secmod.close()
    gw.ctx.db.close()
