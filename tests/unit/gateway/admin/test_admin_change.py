"""Change of the gateway administrator, gateway side (seed 003 §7, table 5 steps 2.1–2.16).

Both administrators sign their commands with their own test GWA keys; the admin session is
played by a :class:`CommandVerifier` built – as the session does – for the administrator the
gateway is connected to (the current one, or the pending new one before the take-over).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from admin_handler_helpers import GATEWAY_ID, Gateway, Gwa, my_handlers
from cryptography import x509

from imsys.core.errors import Rejected
from imsys.core.reading import Reading
from imsys.crypto import SoftwareKey
from imsys.gateway.admin import AdminExecutor, ConfigKind, ItemState
from imsys.gateway.admin import admin_change_handlers as change
from imsys.gateway.admin.administrator import (
    Administrator,
    current_administrator,
    set_administrator,
)
from imsys.gateway.initial_config import GwaAddress
from imsys.gateway.logs import Level, Outcome, SystemEvent
from imsys.gateway.store import ReadingRecord, ReadingSource, ReadingStore
from imsys.pki import PkiDirectory
from imsys.wire.command import (
    CommandRejected,
    CommandResult,
    CommandType,
    CommandVerifier,
    MemorySequenceStore,
    ResultStatus,
)

T = CommandType
IssueFn = Callable[..., tuple[SoftwareKey, x509.Certificate]]
OLD, NEW = "GWA-Admin-A", "GWA-Admin-N"
USES = {"GWADM_TLS_CRT": "gwa-tls", "GWADM_SIG_CRT": "gwa-sig", "GWADM_ENC_CRT": "gwa-enc",
        "GWADM_AUT_CRT": "gwa-aut"}


def administrator(pki: PkiDirectory, issue: IssueFn, admin_id: str, host: str
                  ) -> tuple[Administrator, SoftwareKey]:
    certificates = {}
    sig_key = None
    for name, profile in USES.items():
        key, cert = issue(profile, admin_id)
        certificates[name] = (cert, tuple(pki.chain()[:-1]))
        if name == "GWADM_SIG_CRT":
            sig_key = key
    assert sig_key is not None
    return Administrator(admin_id, GwaAddress(host, 4443), certificates), sig_key


@dataclass
class Change:
    gw: Gateway
    old: Administrator
    new: Administrator
    a: Gwa
    n: Gwa
    pki: PkiDirectory
    stores: dict[str, MemorySequenceStore]

    def send(self, gwa: Gwa, command_type: CommandType,
             parameters: dict[str, Any] | None = None, *, session: str = "current"
             ) -> CommandResult:
        """Command from ``gwa`` through the admin session connected to the current (or the
        pending) administrator."""
        ctx = self.gw.ctx
        connected = (current_administrator(ctx.config, None) if session == "current"
                     else change.pending_administrator(ctx))
        assert connected is not None
        verifier = CommandVerifier(GATEWAY_ID, connected.sig, self.gw.clock,
                                   self.stores.setdefault(connected.administrator_id,
                                                          MemorySequenceStore()),
                                   administrator_id=connected.administrator_id)
        command = verifier.verify(self.gw.command(command_type, parameters, gwa=gwa))
        table = {**my_handlers(), **change.HANDLERS}
        return AdminExecutor(ctx, table).execute(command)

    def configuration(self, *, signer: Gwa | None = None, new: Administrator | None = None,
                      gateway_id: str = GATEWAY_ID) -> str:
        signer = signer or self.a
        return change.sign_change_configuration(gateway_id, new or self.new, signer.key,
                                                signer.certificate,
                                                wan={"apn": "internet.gwa-n.example"})

    def prepare(self) -> CommandResult:
        return self.send(self.a, T.ADMIN_CHANGE_PREPARE,
                         {"configuration": self.configuration()})

    def state(self) -> str | None:
        item = self.gw.ctx.config.get(ConfigKind.SETTING, change.CHANGE_ITEM)
        return None if item is None else item.document["state"]

    def system_texts(self) -> list[str]:
        return [e.text for e in self.gw.ctx.logs.system.entries()]


@pytest.fixture
def ch(gateway: Gateway, pki: PkiDirectory, issue: IssueFn) -> Change:
    old, old_key = administrator(pki, issue, OLD, "gwa-a.example")
    new, new_key = administrator(pki, issue, NEW, "gwa-n.example")
    gateway.gwa = Gwa(old_key, old.sig, OLD)
    ctx = gateway.ctx
    set_administrator(ctx.config, old)
    for name in USES:  # A's public keys in the security module (from commissioning)
        gateway.secmod.import_public_key(name.replace("_CRT", "_PUB"),
                                         old.certificate(name).public_key())  # type: ignore[arg-type]
    # configuration of A's time: a tariff profile, a communication profile to an EMT and the
    # one to A itself, a meter with readings, logs
    ctx.config.put(ConfigKind.EVALUATION_PROFILE, "taf7-lv1", {"taf": 7},
                   state=ItemState.ACTIVE)
    ctx.config.put(ConfigKind.COMMUNICATION_PROFILE, "emt-lieferant", {"recipient": "EMT-1"},
                   state=ItemState.ACTIVE)
    ctx.config.put(ConfigKind.COMMUNICATION_PROFILE, "admin-a", {"administrator_id": OLD},
                   state=ItemState.ACTIVE)
    ctx.config.put(ConfigKind.METER, "1EMH0012345678", {
        "meter_id": "1EMH0012345678", "aes_key": "00" * 16, "consumer_id": "LV-1"})
    when = gateway.clock.now()
    ReadingStore(ctx.db).append_readings([ReadingRecord(
        Reading("1EMH0012345678", "1-0:1.8.0*255", 12345, -1, 30, when), when,
        ReadingSource.LMN_SML, hashlib.sha256(b"frame").digest())])
    ctx.logs.system.append(Level.INFO, Outcome.SUCCESS, "before the change",
                           event=SystemEvent.CONFIGURATION_CHANGE)
    return Change(gateway, old, new, gateway.gwa, Gwa(new_key, new.sig, NEW), pki, {})


def run_to_checked(ch: Change) -> None:
    assert ch.send(ch.a, T.ADMIN_CHANGE_DELETE_PROFILES).status is ResultStatus.OK
    assert ch.prepare().status is ResultStatus.OK
    assert ch.send(ch.n, T.ADMIN_CHANGE_READ_CONFIGURATION, session="pending").status \
        is ResultStatus.OK
    assert ch.send(ch.n, T.ADMIN_CHANGE_CHECK_RESULT, {"result": "positive"},
                   session="pending").status is ResultStatus.OK


def test_step_2_5_profiles_deleted_readings_and_logs_kept(ch: Change) -> None:
    ctx = ch.gw.ctx
    system_before = ctx.logs.system.head().seq
    result = ch.send(ch.a, T.ADMIN_CHANGE_DELETE_PROFILES)
    assert result.status is ResultStatus.OK
    assert sorted(result.details["deleted"]["communication-profile"]) == ["admin-a",
                                                                         "emt-lieferant"]
    assert ctx.config.items(ConfigKind.EVALUATION_PROFILE) == []
    assert ctx.config.items(ConfigKind.COMMUNICATION_PROFILE) == []
    store = ReadingStore(ctx.db)
    assert store.count() == 1
    store.verify_chain()
    ctx.logs.verify_all()
    assert ctx.logs.system.head().seq > system_before
    assert ctx.config.get(ConfigKind.METER, "1EMH0012345678") is not None


def test_step_2_5_only_selected_profiles(ch: Change) -> None:
    result = ch.send(ch.a, T.ADMIN_CHANGE_DELETE_PROFILES, {"communication_profiles": "none"})
    assert "communication-profile" not in result.details["deleted"]
    assert len(ch.gw.ctx.config.items(ConfigKind.COMMUNICATION_PROFILE)) == 2
    assert ch.gw.ctx.config.items(ConfigKind.EVALUATION_PROFILE) == []


def test_step_2_6_to_2_8_connection_data_of_the_new_administrator_accepted(ch: Change) -> None:
    result = ch.prepare()
    assert result.status is ResultStatus.OK, result.details
    assert result.details["new_administrator_id"] == NEW
    pending = change.pending_administrator(ch.gw.ctx)
    assert pending is not None and pending.address == GwaAddress("gwa-n.example", 4443)
    assert pending.sig == ch.new.sig
    # A is still the administrator
    assert current_administrator(ch.gw.ctx.config, None).administrator_id == OLD
    assert any("2.6-2.8" in t for t in ch.system_texts())


def test_step_2_7_configuration_not_signed_by_the_old_administrator_is_refused(
        ch: Change) -> None:
    forged = ch.configuration(signer=ch.n)  # N signs its own connection data
    result = ch.send(ch.a, T.ADMIN_CHANGE_PREPARE, {"configuration": forged})
    assert result.status is ResultStatus.FAILED
    assert result.details["reason"] == "bad-configuration-signature"
    assert change.pending_administrator(ch.gw.ctx) is None
    other = ch.send(ch.a, T.ADMIN_CHANGE_PREPARE,
                    {"configuration": ch.configuration(gateway_id="EIMS0000000001")})
    assert other.details["reason"] == "configuration-mismatch"


def test_step_2_8_certificate_of_the_new_administrator_not_from_the_root_is_refused(
        ch: Change, tmp_path: Path) -> None:
    foreign = PkiDirectory.init(tmp_path / "foreign")
    certificates = {}
    for name, profile in USES.items():
        _, cert = foreign.issue_with_new_key(profile, NEW)
        certificates[name] = (cert, tuple(foreign.chain()[:-1]))
    impostor = Administrator(NEW, GwaAddress("evil.example", 4443), certificates)
    result = ch.send(ch.a, T.ADMIN_CHANGE_PREPARE,
                     {"configuration": ch.configuration(new=impostor)})
    assert result.status is ResultStatus.FAILED
    assert result.details["reason"] in ("unknown-issuer", "name-chaining", "bad-signature")
    assert change.pending_administrator(ch.gw.ctx) is None


def test_step_2_4_and_2_8_revoked_certificate_of_the_new_administrator_is_refused(
        ch: Change, pki: PkiDirectory, issue: IssueFn) -> None:
    revoked, _ = administrator(pki, issue, "GWA-Admin-R", "gwa-r.example")
    pki.revoke(revoked.certificate("GWADM_TLS_CRT").serial_number, "key_compromise")
    ch.gw.clock.advance(timedelta(seconds=5))  # validation after the revocation time
    ch.gw.ctx.extras["pki_validator"] = pki.validator(clock=ch.gw.clock)
    result = ch.send(ch.a, T.ADMIN_CHANGE_PREPARE,
                     {"configuration": ch.configuration(new=revoked)})
    assert result.details["reason"] == "revoked"


def test_step_2_9_connection_failure_is_logged_and_reported_to_the_old_administrator(
        ch: Change) -> None:
    ch.prepare()
    change.report_connection_failure(ch.gw.ctx)
    assert ch.state() == "connection-failed"
    assert any("2.9: connection to the new administrator failed" in t
               for t in ch.system_texts())
    # A re-sends the connection data (the seed's retry), the change goes on
    assert ch.prepare().status is ResultStatus.OK and ch.state() == "prepared"


def test_step_2_10_new_administrator_reads_the_configuration_without_secrets(
        ch: Change) -> None:
    ch.send(ch.a, T.ADMIN_CHANGE_DELETE_PROFILES)
    ch.prepare()
    result = ch.send(ch.n, T.ADMIN_CHANGE_READ_CONFIGURATION, session="pending")
    assert result.status is ResultStatus.OK
    configuration = result.details["configuration"]
    assert [m["id"] for m in configuration["meter"]] == ["1EMH0012345678"]
    assert configuration["evaluation-profile"] == []
    assert configuration["communication-profile"] == []
    assert "aes_key" not in str(configuration) and "00" * 16 not in str(configuration)


def test_step_2_11_check_result_goes_into_the_system_log(ch: Change) -> None:
    ch.prepare()
    result = ch.send(ch.n, T.ADMIN_CHANGE_CHECK_RESULT, {"result": "positive"},
                     session="pending")
    assert result.details == {"state": "checked"}
    entry = ch.gw.ctx.logs.system.entries()[-2]  # the executor's entry comes last
    assert "2.11" in entry.text and "positive" in entry.text


def test_failure_path_old_administrator_stays_responsible_and_new_data_is_removed(
        ch: Change) -> None:
    ch.prepare()
    negative = ch.send(ch.n, T.ADMIN_CHANGE_CHECK_RESULT, {"result": "negative"},
                       session="pending")
    assert negative.details == {"state": "rejected"}
    # after a negative check the gateway keeps no session to N and N cannot take over
    assert change.pending_administrator(ch.gw.ctx) is None
    with pytest.raises(Rejected):
        change.take_over(ch.gw.ctx)
    aborted = ch.send(ch.a, T.ADMIN_CHANGE_ABORT)
    assert aborted.status is ResultStatus.OK and aborted.details["previous_state"] == "rejected"
    assert ch.state() is None and change.pending_administrator(ch.gw.ctx) is None
    assert current_administrator(ch.gw.ctx.config, None).administrator_id == OLD
    # A goes on administering; N's commands are refused by the session's verifier
    assert ch.send(ch.a, T.STATUS_QUERY).status is ResultStatus.OK
    with pytest.raises(CommandRejected) as refused:
        ch.send(ch.n, T.STATUS_QUERY)
    assert refused.value.reason.value == "signer-not-current-administrator"
    assert any("change stopped" in t for t in ch.system_texts())


def test_steps_of_the_change_only_from_the_right_administrator(ch: Change) -> None:
    ch.prepare()
    # N, connected as pending administrator, cannot send A's steps
    wrong = ch.send(ch.n, T.ADMIN_CHANGE_ABORT, session="pending")
    assert wrong.details["reason"] == "wrong-party"
    wrong = ch.send(ch.n, T.ADMIN_CHANGE_DELETE_PROFILES, session="pending")
    assert wrong.details["reason"] == "wrong-party"
    # and A cannot write N's check result or take over
    assert ch.send(ch.a, T.ADMIN_CHANGE_CHECK_RESULT, {"result": "positive"}
                   ).details["reason"] == "wrong-party"
    assert ch.state() == "prepared"
    # a take-over needs N's positive check first
    assert ch.send(ch.n, T.ADMIN_CHANGE_TAKE_OVER, session="pending"
                   ).details["reason"] == "wrong-state"
    # the pending session to N carries only the change's steps
    assert T.ADMIN_CHANGE_READ_CONFIGURATION in change.PENDING_SESSION_COMMANDS
    assert T.CONSUMER_CREATE not in change.PENDING_SESSION_COMMANDS


def test_step_2_13_take_over_and_2_14_old_administrator_can_do_nothing(ch: Change) -> None:
    run_to_checked(ch)
    took = ch.send(ch.n, T.ADMIN_CHANGE_TAKE_OVER, session="pending")
    assert took.status is ResultStatus.OK and took.details["administrator_id"] == NEW
    assert current_administrator(ch.gw.ctx.config, None).administrator_id == NEW
    # from here on A's commands are refused before anything executes
    for command_type in (T.STATUS_QUERY, T.ADMIN_CHANGE_ABORT, T.CONSUMER_CREATE):
        with pytest.raises(CommandRejected) as refused:
            ch.send(ch.a, command_type, {"consumer_id": "LV-X"}
                    if command_type is T.CONSUMER_CREATE else None)
        assert refused.value.reason.value == "signer-not-current-administrator"
    removed = ch.send(ch.n, T.ADMIN_CHANGE_REMOVE_OLD)
    assert removed.status is ResultStatus.OK, removed.details
    assert ch.state() == "completed"
    secmod = ch.gw.secmod
    for name in USES:
        label = name.replace("_CRT", "_PUB")
        assert secmod.public_key(label).public_numbers() == \
            ch.new.certificate(name).public_key().public_numbers()  # type: ignore[union-attr]
    # A with a command that claims to be N: signed with A's key, refused by the signature
    ch.gw.clock.advance(timedelta(seconds=1))
    impostor = Gwa(ch.a.key, ch.a.certificate, NEW)
    with pytest.raises(CommandRejected):
        ch.send(impostor, T.STATUS_QUERY)
    # N administers (step 2.15)
    assert ch.send(ch.n, T.CONSUMER_CREATE, {"consumer_id": "LV-N"}).status is ResultStatus.OK


def test_table_5_whole_change_keeps_readings_and_logs(ch: Change) -> None:
    ctx = ch.gw.ctx
    store = ReadingStore(ctx.db)
    readings_before = store.count()
    run_to_checked(ch)
    change.take_over(ctx)  # 2.13 through the wake-up path
    ch.send(ch.n, T.ADMIN_CHANGE_REMOVE_OLD)
    assert store.count() == readings_before
    store.verify_chain()
    ctx.logs.verify_all()
    texts = ch.system_texts()
    order = [next(i for i, t in enumerate(texts) if step in t)
             for step in ("2.5:", "2.6-2.8", "2.10", "2.11", "2.13", "2.14")]
    assert order == sorted(order)
    assert any("before the change" in t for t in texts)
