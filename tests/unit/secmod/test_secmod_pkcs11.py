"""The PKCS#11 backend on SoftHSM2: what lands on the token, with which attributes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto.core import ObjectIdentifier
from cryptography.hazmat.primitives.asymmetric import ec
from secmod_helpers import SYSTEM_PIN, TEST_KDF_LOG2_N, pkcs11_unavailable, wipe_token

from imsys.core.errors import Reason, SecmodRejected, UsageError
from imsys.crypto.primitives import CURVES
from imsys.secmod import wrap_key_for_import
from imsys.secmod._softhsm import LIBRARY_ENV, SoftHsmToken, find_pkcs11_library, softhsm_token

# python-pkcs11 is imported inside the tests: without it the ``softhsm`` fixture skips (or,
# with IMSYS_REQUIRE_PKCS11=1, fails) instead of the whole file failing to import.


@pytest.fixture
def token(softhsm: SoftHsmToken) -> SoftHsmToken:
    wipe_token(softhsm)
    return softhsm


@pytest.fixture
def module(token: SoftHsmToken) -> Iterator[Any]:
    from imsys.secmod.pkcs11 import Pkcs11SecurityModule

    opened = Pkcs11SecurityModule(*token, kdf_log2_n=TEST_KDF_LOG2_N)
    yield opened
    opened.close()


@pytest.fixture
def session(module: Any, token: SoftHsmToken) -> Iterator[Any]:
    """A second session of this process: it shares the module's login (PKCS#11 semantics)."""
    import pkcs11 as p11

    found = p11.lib(token.library).get_token(token_label=token.token_label)
    opened = found.open(rw=True)
    yield opened
    opened.close()


def objects(session: Any, **attrs: Any) -> list[Any]:
    from pkcs11 import Attribute

    names = {"cls": "CLASS"}
    return list(session.get_objects({getattr(Attribute, names.get(k, k.upper())): v
                                     for k, v in attrs.items()}))


@pytest.mark.parametrize("curve", sorted(CURVES))
def test_generated_private_keys_are_sensitive_and_never_extractable(module: Any, session: Any,
                                                                    curve: str) -> None:
    from pkcs11 import Attribute, ObjectClass
    from pkcs11.exceptions import AttributeSensitive

    module.generate_key_pair("GW_WAN_SIG_PRE", curve)
    [private] = objects(session, cls=ObjectClass.PRIVATE_KEY, label="GW_WAN_SIG_PRE")
    assert private[Attribute.SENSITIVE] is True
    assert private[Attribute.EXTRACTABLE] is False
    assert private[Attribute.ALWAYS_SENSITIVE] is True
    assert private[Attribute.NEVER_EXTRACTABLE] is True
    assert private[Attribute.TOKEN] is True
    assert private[Attribute.PRIVATE] is True
    assert bytes(private[Attribute.EC_PARAMS]) == ObjectIdentifier(CURVES[curve].oid).dump()
    with pytest.raises(AttributeSensitive):
        private[Attribute.VALUE]
    [public] = objects(session, cls=ObjectClass.PUBLIC_KEY, label="GW_WAN_SIG_PRE")
    assert public[Attribute.ID] == private[Attribute.ID]


def test_unwrapped_keys_land_sensitive_and_not_extractable(module: Any, session: Any) -> None:
    from pkcs11 import Attribute, ObjectClass
    from pkcs11.exceptions import AttributeSensitive

    import_public = module.generate_import_key("GW_IMPORT_1")
    wrapped = wrap_key_for_import(ec.generate_private_key(ec.BrainpoolP384R1()), import_public)
    module.import_wrapped_key("GW_WAN_ENC_PRE", wrapped, "GW_IMPORT_1")
    [private] = objects(session, cls=ObjectClass.PRIVATE_KEY, label="GW_WAN_ENC_PRE")
    assert private[Attribute.SENSITIVE] is True
    assert private[Attribute.EXTRACTABLE] is False
    assert private[Attribute.TOKEN] is True
    with pytest.raises(AttributeSensitive):
        private[Attribute.VALUE]
    # the session AES key used for the unwrap is gone
    assert objects(session, cls=ObjectClass.SECRET_KEY) == []


def test_storage_secrets_are_sensitive_token_keys(module: Any, session: Any) -> None:
    from pkcs11 import Attribute, KeyType, ObjectClass

    module.generate_secret("GW_STORAGE_ENC")
    [secret] = objects(session, cls=ObjectClass.SECRET_KEY, label="GW_STORAGE_ENC")
    assert secret[Attribute.KEY_TYPE] == KeyType.AES
    assert (secret[Attribute.SENSITIVE], secret[Attribute.EXTRACTABLE]) == (True, False)
    assert secret[Attribute.VALUE_LEN] == 32


def test_the_token_holds_the_whole_state(module: Any, session: Any, token: SoftHsmToken) -> None:
    from pkcs11 import Attribute, ObjectClass

    from imsys.secmod.pkcs11 import APP_OBJECT, APP_STATE, Pkcs11SecurityModule

    module.generate_key_pair("GW_WAN_TLS_PRE")
    module.set_system_pin(SYSTEM_PIN)
    with pytest.raises(SecmodRejected):
        module.check_system_pin("000000-wrong")
    [state] = objects(session, cls=ObjectClass.DATA, application=APP_STATE)
    value = json.loads(bytes(state[Attribute.VALUE]))
    assert value["pin_failures"] == 1
    assert SYSTEM_PIN not in json.dumps(value)
    assert state[Attribute.PRIVATE] is True
    [record] = objects(session, cls=ObjectClass.DATA, application=APP_OBJECT)
    assert record[Attribute.LABEL] == "GW_WAN_TLS_PRE"
    assert [o[Attribute.LABEL] for o in objects(session, cls=ObjectClass.CERTIFICATE)] == []
    module.close()
    reopened = Pkcs11SecurityModule(*token, kdf_log2_n=TEST_KDF_LOG2_N)
    try:
        assert [info.label for info in reopened.objects()] == ["GW_SYSTEM_PIN", "GW_WAN_TLS_PRE"]
        assert reopened.paired
    finally:
        reopened.close()


def test_certificates_are_x509_objects(module: Any, session: Any) -> None:
    from pkcs11 import Attribute, CertificateType, ObjectClass
    from secmod_helpers import make_root

    root, _ = make_root("SM-Test-Root")
    module.import_certificate("ROOT_WAN_SIG_CRT", root)
    [cert] = objects(session, cls=ObjectClass.CERTIFICATE, label="ROOT_WAN_SIG_CRT")
    assert cert[Attribute.CERTIFICATE_TYPE] == CertificateType.X_509
    assert bytes(cert[Attribute.SUBJECT]) == root.subject.public_bytes()


def test_delete_removes_every_token_object_of_the_label(module: Any, session: Any) -> None:
    module.generate_key_pair("GW_WAN_SIG_PRE")
    module.delete("GW_WAN_SIG_PRE")
    assert objects(session, label="GW_WAN_SIG_PRE") == []


def test_leftovers_of_an_interrupted_operation_do_not_block_the_label(module: Any,
                                                                      session: Any) -> None:
    from pkcs11 import Attribute, KeyType, ObjectClass

    from imsys.secmod.pkcs11 import _ec_params

    session.create_object({  # a public key object whose record was never written
        Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.EC,
        Attribute.EC_PARAMS: _ec_params("brainpoolP256r1"), Attribute.LABEL: "GW_WAN_SIG_PRE",
        Attribute.EC_POINT: bytes.fromhex("0441") + b"\x04" + b"\x01" * 64,
        Attribute.TOKEN: True,
    })
    assert not module.has("GW_WAN_SIG_PRE")
    module.generate_key_pair("GW_WAN_SIG_PRE").sign(b"fine")
    assert len(objects(session, cls=ObjectClass.PUBLIC_KEY, label="GW_WAN_SIG_PRE")) == 1


def test_a_wrong_user_pin_or_token_is_refused(token: SoftHsmToken) -> None:
    from imsys.secmod.pkcs11 import Pkcs11SecurityModule

    with pytest.raises(SecmodRejected) as excinfo:
        Pkcs11SecurityModule(token.library, token.token_label, "wrong-user-pin")
    assert excinfo.value.reason is Reason.WRONG_PIN
    with pytest.raises(UsageError):
        Pkcs11SecurityModule(token.library, "no-such-token", token.user_pin)


def test_a_second_instance_on_the_same_token_is_a_usage_error(module: Any,
                                                              token: SoftHsmToken) -> None:
    from imsys.secmod.pkcs11 import Pkcs11SecurityModule

    with pytest.raises(UsageError):
        Pkcs11SecurityModule(*token)


def test_new_tokens_after_the_library_loaded_are_refused(softhsm: SoftHsmToken,
                                                         tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="already loaded"):
        softhsm_token(tmp_path, "late-token")


def test_the_library_is_found_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path, softhsm: SoftHsmToken) -> None:
    monkeypatch.setenv(LIBRARY_ENV, softhsm.library)
    assert find_pkcs11_library() == softhsm.library
    monkeypatch.setenv(LIBRARY_ENV, str(tmp_path / "missing.so"))
    with pytest.raises(UsageError):
        find_pkcs11_library()
    monkeypatch.delenv(LIBRARY_ENV)
    assert find_pkcs11_library() is not None


def test_ci_turns_a_missing_softhsm_into_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMSYS_REQUIRE_PKCS11", "1")
    with pytest.raises(pytest.fail.Exception, match="IMSYS_REQUIRE_PKCS11=1"):
        pkcs11_unavailable("SoftHSM2 is not installed")
    monkeypatch.delenv("IMSYS_REQUIRE_PKCS11")
    with pytest.raises(pytest.skip.Exception):
        pkcs11_unavailable("SoftHSM2 is not installed")


def test_an_interrupted_state_write_resolves_to_the_newest_state(module: Any, session: Any,
                                                                 token: SoftHsmToken) -> None:
    from pkcs11 import Attribute, ObjectClass

    from imsys.secmod.pkcs11 import APP_STATE, Pkcs11SecurityModule

    module.set_system_pin(SYSTEM_PIN)
    [current] = objects(session, cls=ObjectClass.DATA, application=APP_STATE)
    newest = json.loads(bytes(current[Attribute.VALUE]))
    stale = {**newest, "seq": newest["seq"] - 1, "pin": None}
    session.create_object({  # as if "destroy old" never ran after an earlier write
        Attribute.CLASS: ObjectClass.DATA, Attribute.APPLICATION: APP_STATE,
        Attribute.LABEL: "imsys.secmod.state", Attribute.TOKEN: True, Attribute.PRIVATE: True,
        Attribute.VALUE: json.dumps(stale).encode(),
    })
    module.close()
    reopened = Pkcs11SecurityModule(*token, kdf_log2_n=TEST_KDF_LOG2_N)
    try:
        assert reopened.paired
        assert len(objects(session, cls=ObjectClass.DATA, application=APP_STATE)) == 1
    finally:
        reopened.close()
