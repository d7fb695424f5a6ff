"""The software backend's file store: passphrase, encryption at rest, tamper and crash safety."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from secmod_helpers import PASSPHRASE, SYSTEM_PIN, TEST_KDF_LOG2_N

from imsys.core.errors import Reason, SecmodRejected, UsageError
from imsys.secmod import SoftwareSecurityModule, wrap_key_for_import
from imsys.secmod.software import STORE_FILE


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "secmod"
    SoftwareSecurityModule.create(path, PASSPHRASE, kdf_log2_n=TEST_KDF_LOG2_N).close()
    return path


def _power_cut(src: object, dst: object) -> None:
    raise OSError("power cut")


def rejected(call: object, *args: object) -> SecmodRejected:
    with pytest.raises(SecmodRejected) as excinfo:
        call(*args)  # type: ignore[operator]
    return excinfo.value


def test_a_wrong_passphrase_is_refused(store: Path) -> None:
    assert rejected(SoftwareSecurityModule, store, b"wrong passphrase").reason is \
        Reason.WRONG_PIN
    SoftwareSecurityModule.open(store, PASSPHRASE).close()  # the lock was released


def test_no_private_key_bytes_are_on_disk_in_clear(store: Path) -> None:
    private = ec.generate_private_key(ec.BrainpoolP256R1())
    with SoftwareSecurityModule(store, PASSPHRASE) as module:
        import_public = module.generate_import_key("GW_IMPORT_1")
        module.import_wrapped_key("GW_WAN_SIG_PRE", wrap_key_for_import(private, import_public),
                                  "GW_IMPORT_1")
        module.generate_key_pair("GW_WAN_TLS_PRE")
        module.set_system_pin(SYSTEM_PIN)
    scalar = private.private_numbers().private_value.to_bytes(32, "big")
    pkcs8 = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    needles = [scalar, scalar.hex().encode(), base64.b64encode(scalar), pkcs8,
               pkcs8.hex().encode(), base64.b64encode(pkcs8), SYSTEM_PIN.encode(),
               b"PRIVATE KEY"]
    files = [path for path in store.rglob("*") if path.is_file()]
    assert files
    for path in files:
        content = path.read_bytes()
        for needle in needles:
            assert needle not in content, (path.name, needle[:8])


def test_the_store_is_readable_only_by_its_owner(store: Path) -> None:
    assert stat.S_IMODE((store / STORE_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    doc = json.loads((store / STORE_FILE).read_text())
    kdf = doc["kdf"]
    assert (kdf["name"], kdf["log2_n"], kdf["r"], kdf["p"]) == ("scrypt", TEST_KDF_LOG2_N, 8, 1)


def test_a_store_changed_outside_the_module_is_tampered(store: Path) -> None:
    with SoftwareSecurityModule(store, PASSPHRASE) as module:
        module.set_system_pin(SYSTEM_PIN)
        with pytest.raises(SecmodRejected):
            module.check_system_pin("000000-wrong")
    file = store / STORE_FILE
    doc = json.loads(file.read_text())
    assert doc["state"]["pin_failures"] == 1
    doc["state"]["pin_failures"] = 0  # an attacker resets the retry counter
    file.write_text(json.dumps(doc))
    assert rejected(SoftwareSecurityModule, store, PASSPHRASE).reason is Reason.TAMPERED


def test_a_file_that_is_no_store_is_malformed(store: Path) -> None:
    (store / STORE_FILE).write_text("{not json")
    assert rejected(SoftwareSecurityModule, store, PASSPHRASE).reason is Reason.MALFORMED
    (store / STORE_FILE).write_text(json.dumps({"format": "other/1"}))
    assert rejected(SoftwareSecurityModule, store, PASSPHRASE).reason is Reason.MALFORMED


def test_a_failed_write_leaves_the_old_store(store: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    module = SoftwareSecurityModule(store, PASSPHRASE)
    module.generate_key_pair("GW_WAN_SIG_PRE")
    before = (store / STORE_FILE).read_bytes()
    monkeypatch.setattr(os, "replace", _power_cut)
    with pytest.raises(OSError, match="power cut"):
        module.generate_key_pair("GW_WAN_TLS_PRE")
    with pytest.raises(OSError, match="power cut"):
        module.delete("GW_WAN_SIG_PRE")
    monkeypatch.undo()
    assert (store / STORE_FILE).read_bytes() == before
    assert sorted(path.name for path in store.iterdir()) == [".lock", STORE_FILE]
    assert not module.has("GW_WAN_TLS_PRE")  # memory follows the disk
    assert module.has("GW_WAN_SIG_PRE")
    module.close()
    with SoftwareSecurityModule(store, PASSPHRASE) as reopened:
        assert [info.label for info in reopened.objects()] == ["GW_WAN_SIG_PRE"]
        reopened.key("GW_WAN_SIG_PRE").sign(b"still works")


def test_a_failed_counter_write_fails_the_pin_check_closed(store: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    with SoftwareSecurityModule(store, PASSPHRASE) as module:
        module.set_system_pin(SYSTEM_PIN)
    module = SoftwareSecurityModule(store, PASSPHRASE)
    monkeypatch.setattr(os, "replace", _power_cut)
    with pytest.raises(OSError):
        module.check_system_pin(SYSTEM_PIN)
    assert not module.pin_verified
    monkeypatch.undo()
    module.close()


def test_one_store_is_open_once(store: Path) -> None:
    with SoftwareSecurityModule(store, PASSPHRASE), pytest.raises(UsageError):
        SoftwareSecurityModule(store, PASSPHRASE)


def test_create_refuses_an_existing_store_and_open_a_missing_one(store: Path,
                                                                 tmp_path: Path) -> None:
    assert rejected(SoftwareSecurityModule.create, store, PASSPHRASE).reason is \
        Reason.OBJECT_EXISTS
    with pytest.raises(UsageError):
        SoftwareSecurityModule(tmp_path / "nowhere", PASSPHRASE)
    with pytest.raises(UsageError):
        SoftwareSecurityModule.create(tmp_path / "new", b"")
    with pytest.raises(UsageError):
        SoftwareSecurityModule.create(tmp_path / "new", PASSPHRASE, kdf_log2_n=40)


def test_the_passphrase_never_shows(store: Path) -> None:
    with SoftwareSecurityModule(store, PASSPHRASE) as module:
        assert PASSPHRASE.decode() not in repr(module)
        assert PASSPHRASE not in (store / STORE_FILE).read_bytes()


def test_absurd_kdf_parameters_in_the_file_are_malformed(store: Path) -> None:
    file = store / STORE_FILE
    doc = json.loads(file.read_text())
    doc["kdf"]["log2_n"] = 40  # would make opening the store exhaust memory
    file.write_text(json.dumps(doc))
    assert rejected(SoftwareSecurityModule, store, PASSPHRASE).reason is Reason.MALFORMED
