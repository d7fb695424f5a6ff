"""Administrator challenge-response (GWADM_AUT, seed 003 §2.3.3) and the access-rule table."""

from __future__ import annotations

import datetime as dt

import pytest
from secmod_helpers import SYSTEM_PIN, Administrator, ModuleOpener, make_root

from imsys.core.clock import SimulatedClock
from imsys.core.errors import Reason, SecmodRejected
from imsys.crypto.primitives import SoftwareKey
from imsys.secmod import (
    ACCESS_RULES,
    OPERATIONAL_KEY_PAIR_LABELS,
    AdminNeed,
    Operation,
    Phase,
    SecurityModule,
)


def rejected(call: object, *args: object) -> SecmodRejected:
    with pytest.raises(SecmodRejected) as excinfo:
        call(*args)  # type: ignore[operator]
    return excinfo.value


# --------------------------------------------------------------------------- challenge-response


def test_a_good_answer_authenticates_the_administrator(module: SecurityModule,
                                                       admin: Administrator) -> None:
    admin.install(module)
    challenge = module.admin_challenge()
    assert len(challenge) == 32
    assert not module.admin_authenticated
    module.admin_authenticate(admin.answer(challenge))
    assert module.admin_authenticated
    module.admin_logout()
    assert not module.admin_authenticated


def test_a_bad_signature_is_rejected(module: SecurityModule, admin: Administrator) -> None:
    admin.install(module)
    challenge = module.admin_challenge()
    impostor = SoftwareKey.generate()
    assert rejected(module.admin_authenticate, impostor.sign(challenge)).reason is \
        Reason.BAD_SIGNATURE
    assert not module.admin_authenticated
    assert rejected(module.admin_authenticate, b"\x30\x00").reason is Reason.NOT_AUTHENTICATED


def test_garbage_signature_bytes_are_bad_signature(module: SecurityModule,
                                                   admin: Administrator) -> None:
    admin.install(module)
    module.admin_challenge()
    assert rejected(module.admin_authenticate, b"not DER").reason is Reason.BAD_SIGNATURE


def test_a_replayed_answer_is_refused(module: SecurityModule, admin: Administrator) -> None:
    admin.install(module)
    answer = admin.answer(module.admin_challenge())
    module.admin_authenticate(answer)
    module.admin_logout()
    error = rejected(module.admin_authenticate, answer)
    assert error.reason is Reason.NOT_AUTHENTICATED  # the challenge was used up
    module.admin_challenge()
    assert rejected(module.admin_authenticate, answer).reason is Reason.BAD_SIGNATURE


def test_a_signature_over_another_challenge_is_refused(module: SecurityModule,
                                                       admin: Administrator) -> None:
    admin.install(module)
    old = module.admin_challenge()
    module.admin_challenge()  # a newer challenge replaces the old one
    assert rejected(module.admin_authenticate, admin.answer(old)).reason is Reason.BAD_SIGNATURE
    assert rejected(module.admin_authenticate, admin.answer(b"\x00" * 32)).reason is \
        Reason.NOT_AUTHENTICATED  # the failed attempt consumed the newer challenge too


def test_a_stale_challenge_is_refused(opener: ModuleOpener, admin: Administrator) -> None:
    clock = SimulatedClock(dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC))
    module = opener.open(clock)
    admin.install(module)
    challenge = module.admin_challenge()
    clock.advance(module.challenge_lifetime + dt.timedelta(seconds=1))
    assert rejected(module.admin_authenticate, admin.answer(challenge)).reason is \
        Reason.NOT_AUTHENTICATED
    challenge = module.admin_challenge()
    clock.advance(module.challenge_lifetime)
    module.admin_authenticate(admin.answer(challenge))


def test_authentication_needs_an_imported_public_key(module: SecurityModule,
                                                     admin: Administrator) -> None:
    challenge = module.admin_challenge()
    assert rejected(module.admin_authenticate, admin.answer(challenge)).reason is \
        Reason.UNKNOWN_OBJECT
    module.generate_key_pair("GW_WAN_SIG_PRE")  # the module's own key cannot stand in
    own = module.key("GW_WAN_SIG_PRE")
    challenge = module.admin_challenge()
    error = rejected(module.admin_authenticate, own.sign(challenge), "GW_WAN_SIG_PRE")
    assert error.reason is Reason.UNKNOWN_OBJECT


def test_admin_state_ends_with_the_session(opener: ModuleOpener, admin: Administrator) -> None:
    module = opener.open()
    admin.install(module)
    admin.login(module)
    module = opener.reopen(module)
    assert not module.admin_authenticated


def test_admin_challenge_needs_the_system_pin_once_paired(opener: ModuleOpener,
                                                          admin: Administrator) -> None:
    module = opener.open()
    admin.install(module)
    module.set_system_pin(SYSTEM_PIN)
    module = opener.reopen(module)
    assert rejected(module.admin_challenge).reason is Reason.NOT_AUTHENTICATED
    module.check_system_pin(SYSTEM_PIN)
    admin.login(module)
    assert module.admin_authenticated


def test_a_wrong_system_pin_logs_the_administrator_out(opener: ModuleOpener,
                                                       admin: Administrator) -> None:
    module = opener.open()
    admin.install(module)
    module.set_system_pin(SYSTEM_PIN)
    admin.login(module)
    rejected(module.check_system_pin, "000000-wrong")
    assert not module.admin_authenticated


# --------------------------------------------------------------------------- access rules


def test_every_operation_has_a_rule() -> None:
    assert set(ACCESS_RULES) == set(Operation)
    assert ACCESS_RULES[Operation.GENERATE_OPERATIONAL_KEY_PAIR].admin is AdminNeed.ALWAYS
    assert ACCESS_RULES[Operation.IMPORT_WRAPPED_KEY].phases == {Phase.INTEGRATION}
    assert not ACCESS_RULES[Operation.READ_PUBLIC].pin
    with pytest.raises(TypeError):
        ACCESS_RULES[Operation.READ_PUBLIC] = ACCESS_RULES[Operation.RANDOM]  # type: ignore[index]


@pytest.mark.parametrize("label", sorted(OPERATIONAL_KEY_PAIR_LABELS))
def test_operational_keys_need_the_administrator_even_during_integration(
        module: SecurityModule, admin: Administrator, label: str) -> None:
    error = rejected(module.generate_key_pair, label)
    assert (error.reason, error.context["needs"]) == (Reason.NOT_AUTHENTICATED, "administrator")
    assert not module.has(label)
    admin.install(module)
    admin.login(module)
    module.generate_key_pair(label).sign(b"operational")


def test_after_integration_object_changes_need_the_administrator(
        module: SecurityModule, admin: Administrator) -> None:
    module.generate_key_pair("GW_WAN_SIG_PRE")
    admin.install(module)
    assert module.delete_import_keys() == []
    assert module.phase is Phase.OPERATION
    root, _ = make_root()
    changes = (
        lambda: module.generate_key_pair("GW_HAN_TLS"),
        lambda: module.generate_secret("GW_STORAGE_ENC"),
        lambda: module.import_public_key("GWADM_SIG_PUB", SoftwareKey.generate().public_key()),
        lambda: module.import_certificate("GW_WAN_TLS_CRT", root),
        lambda: module.delete("GW_WAN_SIG_PRE"),
    )
    for change in changes:
        error = rejected(change)
        assert (error.reason, error.context["needs"]) == (Reason.NOT_AUTHENTICATED,
                                                          "administrator")
    # using keys is the gateway's daily work and needs no administrator
    module.key("GW_WAN_SIG_PRE").sign(b"reading")
    admin.login(module)
    for change in changes:
        change()
    assert not module.has("GW_WAN_SIG_PRE")


def test_the_phase_persists(opener: ModuleOpener) -> None:
    module = opener.open()
    assert module.phase is Phase.INTEGRATION
    module.delete_import_keys()
    module = opener.reopen(module)
    assert module.phase is Phase.OPERATION
    assert module.delete_import_keys() == []  # idempotent


def test_the_design_note_shows_the_table_from_the_code() -> None:
    from pathlib import Path

    from imsys.secmod._rules import render_access_rules

    note = (Path(__file__).parents[3] / "docs" / "secmod.md").read_text(encoding="utf-8")
    between = note.split("<!-- access-rules:begin -->\n")[1].split("\n<!-- access-rules:end")[0]
    assert between == render_access_rules()
