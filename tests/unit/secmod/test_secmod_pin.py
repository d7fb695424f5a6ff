"""Gateway-System-PIN pairing (seed 003 §2.3.1.2) on both backends."""

from __future__ import annotations

import pytest
from secmod_helpers import SYSTEM_PIN, Administrator, ModuleOpener

from imsys.core.errors import Reason, SecmodRejected, UsageError
from imsys.secmod import MAX_PIN_TRIES, SYSTEM_PIN_LABEL, ObjectKind, SecurityModule

WRONG = "000000-wrong"


def paired(opener: ModuleOpener) -> SecurityModule:
    """A module with a key, paired, and reopened: a fresh session that has not shown the PIN."""
    module = opener.open()
    module.generate_key_pair("GW_WAN_SIG_PRE")
    module.set_system_pin(SYSTEM_PIN)
    return opener.reopen(module)


def rejected(call: object, *args: object) -> SecmodRejected:
    with pytest.raises(SecmodRejected) as excinfo:
        call(*args)  # type: ignore[operator]
    return excinfo.value


def test_first_pairing_stores_only_a_reference_and_unlocks_the_session(
        opener: ModuleOpener) -> None:
    module = opener.open()
    assert not module.paired
    module.set_system_pin(SYSTEM_PIN)
    assert module.paired and module.pin_verified
    [info] = module.objects()
    assert (info.label, info.kind) == (SYSTEM_PIN_LABEL, ObjectKind.PIN_REFERENCE)
    assert module.has(SYSTEM_PIN_LABEL)
    module.generate_key_pair("GW_WAN_SIG_PRE").sign(b"usable at once")


def test_before_pairing_no_pin_is_needed(module: SecurityModule) -> None:
    module.generate_key_pair("GW_WAN_SIG_PRE").sign(b"pre-personalisation 1, direct access")
    with pytest.raises(SecmodRejected) as excinfo:
        module.check_system_pin(SYSTEM_PIN)
    assert excinfo.value.reason is Reason.UNKNOWN_OBJECT


def test_after_pairing_key_use_needs_the_pin_in_this_session(opener: ModuleOpener) -> None:
    module = paired(opener)
    handle = module.key("GW_WAN_SIG_PRE")  # looking up is allowed, using is not
    for call in (lambda: handle.sign(b"x"), lambda: module.generate_key_pair("GW_WAN_ENC_PRE"),
                 lambda: module.generate_secret("GW_STORAGE_ENC"),
                 lambda: module.admin_challenge(), lambda: module.delete("GW_WAN_SIG_PRE")):
        error = rejected(call)
        assert error.reason is Reason.NOT_AUTHENTICATED
        assert error.context["needs"] == "system-pin"
    assert module.public_key("GW_WAN_SIG_PRE") == handle.public_key()  # public reads are free
    assert len(module.random(8)) == 8
    module.check_system_pin(SYSTEM_PIN)
    assert module.pin_verified
    handle.sign(b"x")


def test_wrong_pin_counts_down_and_the_third_failure_locks(opener: ModuleOpener) -> None:
    module = paired(opener)
    remaining = [rejected(module.check_system_pin, WRONG) for _ in range(MAX_PIN_TRIES)]
    assert [(e.reason, e.context["remaining"]) for e in remaining] == [
        (Reason.WRONG_PIN, 2), (Reason.WRONG_PIN, 1), (Reason.WRONG_PIN, 0)]
    assert rejected(module.check_system_pin, SYSTEM_PIN).reason is Reason.PIN_LOCKED
    assert not module.pin_verified
    assert rejected(module.key("GW_WAN_SIG_PRE").sign, b"x").reason is Reason.PIN_LOCKED


def test_a_correct_pin_resets_the_counter(opener: ModuleOpener) -> None:
    module = paired(opener)
    for _ in range(MAX_PIN_TRIES - 1):
        rejected(module.check_system_pin, WRONG)
    module.check_system_pin(SYSTEM_PIN)
    module = opener.reopen(module)
    assert rejected(module.check_system_pin, WRONG).context["remaining"] == 2


def test_the_retry_counter_and_lock_persist_across_reopen(opener: ModuleOpener) -> None:
    module = paired(opener)
    rejected(module.check_system_pin, WRONG)
    rejected(module.check_system_pin, WRONG)
    module = opener.reopen(module)
    assert rejected(module.check_system_pin, WRONG).context["remaining"] == 0
    module = opener.reopen(module)
    assert rejected(module.check_system_pin, SYSTEM_PIN).reason is Reason.PIN_LOCKED


def test_a_wrong_pin_ends_an_unlocked_session(opener: ModuleOpener) -> None:
    module = paired(opener)
    module.check_system_pin(SYSTEM_PIN)
    rejected(module.check_system_pin, WRONG)
    assert not module.pin_verified
    assert rejected(module.key("GW_WAN_SIG_PRE").sign, b"x").reason is \
        Reason.NOT_AUTHENTICATED


def test_the_pin_state_does_not_survive_close(opener: ModuleOpener) -> None:
    module = paired(opener)
    module.check_system_pin(SYSTEM_PIN)
    module = opener.reopen(module)
    assert not module.pin_verified


def test_a_second_set_is_a_change_that_needs_the_current_pin(opener: ModuleOpener) -> None:
    module = paired(opener)
    assert rejected(module.set_system_pin, "999999-new").reason is Reason.NOT_AUTHENTICATED
    module.check_system_pin(SYSTEM_PIN)
    module.set_system_pin("999999-new")
    module = opener.reopen(module)
    assert rejected(module.check_system_pin, SYSTEM_PIN).reason is Reason.WRONG_PIN
    module.check_system_pin("999999-new")


def test_after_integration_a_pin_change_needs_the_administrator(
        opener: ModuleOpener, admin: Administrator) -> None:
    module = paired(opener)
    module.check_system_pin(SYSTEM_PIN)
    admin.install(module)
    module.delete_import_keys()  # end of integration
    error = rejected(module.set_system_pin, "999999-new")
    assert (error.reason, error.context["needs"]) == (Reason.NOT_AUTHENTICATED, "administrator")
    admin.login(module)
    module.set_system_pin("999999-new")


def test_pins_out_of_range_are_usage_errors(module: SecurityModule) -> None:
    for pin in ("12345", "x" * 65, 123456):
        with pytest.raises(UsageError):
            module.set_system_pin(pin)  # type: ignore[arg-type]
    assert not module.paired


def test_the_pin_reference_cannot_be_deleted(opener: ModuleOpener) -> None:
    module = opener.open()
    module.set_system_pin(SYSTEM_PIN)
    assert rejected(module.delete, SYSTEM_PIN_LABEL).reason is Reason.ACCESS_DENIED
    assert module.paired
