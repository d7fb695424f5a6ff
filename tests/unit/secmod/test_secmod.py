"""The SecurityModule contract: keys, objects, certificates, secrets – on both backends."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from secmod_helpers import ModuleOpener, make_certificate, make_root

from imsys.core.errors import KeyRejected, Reason, SecmodRejected, UsageError
from imsys.crypto.primitives import CURVES, KeyHandle, SoftwareKey, ecdsa_verify
from imsys.secmod import (
    STORAGE_KEY_LABEL,
    ModuleKey,
    ObjectKind,
    SecurityModule,
)

CURVE_NAMES = sorted(CURVES)


def reason(excinfo: pytest.ExceptionInfo[SecmodRejected]) -> Reason:
    return excinfo.value.reason


# --------------------------------------------------------------------------- key pairs


@pytest.mark.parametrize("curve", CURVE_NAMES)
def test_generated_key_signs_and_the_exported_public_key_verifies(module: SecurityModule,
                                                                  curve: str) -> None:
    handle = module.generate_key_pair("GW_WAN_SIG_PRE", curve)
    assert isinstance(handle, KeyHandle)
    assert handle.curve_name == curve
    exported = module.public_key("GW_WAN_SIG_PRE")
    assert exported == handle.public_key()
    signature = handle.sign(b"Zaehlerstand 1.8.0")
    # cryptography verifies with the hash matched to the curve (SHA-256/384/512)
    exported.verify(signature, b"Zaehlerstand 1.8.0", ec.ECDSA(CURVES[curve].hash()))
    with pytest.raises(KeyRejected):
        ecdsa_verify(exported, signature, b"another reading")


@pytest.mark.parametrize("curve", CURVE_NAMES)
def test_exchange_matches_ecdh_computed_with_the_peer_private_key(module: SecurityModule,
                                                                  curve: str) -> None:
    handle = module.generate_key_pair("GW_WAN_ENC_PRE", curve)
    peer = ec.generate_private_key(CURVES[curve].curve())
    z = handle.exchange(peer.public_key())
    assert z == peer.exchange(ec.ECDH(), handle.public_key())
    assert len(z) == (CURVES[curve].key_bits + 7) // 8


def test_exchange_with_a_peer_on_another_curve_is_wrong_curve(module: SecurityModule) -> None:
    handle = module.generate_key_pair("GW_WAN_ENC_PRE")
    for peer in (ec.generate_private_key(ec.BrainpoolP384R1()),
                 ec.generate_private_key(ec.SECP256R1())):
        with pytest.raises(KeyRejected) as excinfo:
            handle.exchange(peer.public_key())
        assert excinfo.value.reason is Reason.WRONG_CURVE


def test_sign_prehashed_matches_the_software_key_shape(module: SecurityModule) -> None:
    handle = module.generate_key_pair("GW_WAN_SIG_PRE")
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"data")
    signature = handle.sign_prehashed(digest.finalize(), hashes.SHA256())
    handle.public_key().verify(signature, b"data", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(UsageError):
        handle.sign_prehashed(b"short", hashes.SHA256())


def test_generate_on_a_curve_that_is_not_permitted_is_wrong_curve(module: SecurityModule
                                                                  ) -> None:
    with pytest.raises(SecmodRejected) as excinfo:
        module.generate_key_pair("GW_WAN_SIG_PRE", "secp256r1")
    assert reason(excinfo) is Reason.WRONG_CURVE
    assert not module.has("GW_WAN_SIG_PRE")


def test_generate_under_a_taken_label_is_object_exists(module: SecurityModule) -> None:
    first = module.generate_key_pair("GW_WAN_TLS_PRE")
    with pytest.raises(SecmodRejected) as excinfo:
        module.generate_key_pair("GW_WAN_TLS_PRE")
    assert reason(excinfo) is Reason.OBJECT_EXISTS
    assert excinfo.value.context["label"] == "GW_WAN_TLS_PRE"
    assert module.public_key("GW_WAN_TLS_PRE") == first.public_key()  # untouched


def test_unknown_labels_are_unknown_object(module: SecurityModule) -> None:
    for call in (lambda: module.key("NOPE"), lambda: module.public_key("NOPE"),
                 lambda: module.certificate("NOPE"), lambda: module.delete("NOPE"),
                 lambda: module.encrypt_with("NOPE", b"x")):
        with pytest.raises(SecmodRejected) as excinfo:
            call()
        assert reason(excinfo) is Reason.UNKNOWN_OBJECT
    assert not module.has("NOPE")


def test_asking_for_the_wrong_kind_is_unknown_object(module: SecurityModule) -> None:
    module.generate_secret(STORAGE_KEY_LABEL)
    module.generate_key_pair("GW_WAN_SIG_PRE")
    for call in (lambda: module.key(STORAGE_KEY_LABEL),
                 lambda: module.public_key(STORAGE_KEY_LABEL),
                 lambda: module.certificate("GW_WAN_SIG_PRE"),
                 lambda: module.encrypt_with("GW_WAN_SIG_PRE", b"x")):
        with pytest.raises(SecmodRejected) as excinfo:
            call()
        assert reason(excinfo) is Reason.UNKNOWN_OBJECT


def test_bad_labels_are_usage_errors(module: SecurityModule) -> None:
    for label in ("", "with space", "x" * 65, "ÄÖÜ"):
        with pytest.raises(UsageError):
            module.generate_key_pair(label)
    with pytest.raises(UsageError):
        module.generate_key_pair("GW_SYSTEM_PIN")  # reserved for the PIN reference


def test_delete_removes_the_object_and_stale_handles_are_refused(module: SecurityModule
                                                                 ) -> None:
    handle = module.generate_key_pair("GW_WAN_SIG_PRE")
    module.delete("GW_WAN_SIG_PRE")
    assert not module.has("GW_WAN_SIG_PRE")
    assert module.objects() == []
    with pytest.raises(SecmodRejected) as excinfo:
        handle.sign(b"x")
    assert reason(excinfo) is Reason.UNKNOWN_OBJECT
    # a new key under the same label does not revive the old handle
    module.generate_key_pair("GW_WAN_SIG_PRE")
    with pytest.raises(SecmodRejected):
        handle.sign(b"x")
    assert module.key("GW_WAN_SIG_PRE").sign(b"x")


def test_objects_lists_every_kind_with_curve_subject_and_time(module: SecurityModule) -> None:
    root, _ = make_root("SM-Test-Root")
    module.import_certificate("ROOT_WAN_SIG_CRT", root)
    module.generate_key_pair("GW_WAN_TLS_PRE", "brainpoolP384r1")
    module.import_public_key("GWADM_SIG_PUB", SoftwareKey.generate().public_key())
    module.generate_secret(STORAGE_KEY_LABEL)
    module.set_system_pin("483920-system")
    listing = {info.label: info for info in module.objects()}
    assert [info.label for info in module.objects()] == sorted(listing)
    assert {label: info.kind for label, info in listing.items()} == {
        "ROOT_WAN_SIG_CRT": ObjectKind.CERTIFICATE,
        "GW_WAN_TLS_PRE": ObjectKind.KEY_PAIR,
        "GWADM_SIG_PUB": ObjectKind.PUBLIC_KEY,
        STORAGE_KEY_LABEL: ObjectKind.SECRET,
        "GW_SYSTEM_PIN": ObjectKind.PIN_REFERENCE,
    }
    assert listing["GW_WAN_TLS_PRE"].curve == "brainpoolP384r1"
    assert listing["ROOT_WAN_SIG_CRT"].subject == "CN=SM-Test-Root"
    assert listing[STORAGE_KEY_LABEL].curve is None
    assert all(info.created.tzinfo is not None for info in listing.values())
    assert not any(info.import_key for info in listing.values())
    with pytest.raises(AttributeError):
        listing["GW_WAN_TLS_PRE"].label = "x"  # type: ignore[misc]  # frozen


def test_handles_from_key_and_from_generation_are_interchangeable(module: SecurityModule
                                                                 ) -> None:
    generated = module.generate_key_pair("GW_WAN_SIG_PRE")
    looked_up = module.key("GW_WAN_SIG_PRE")
    ecdsa_verify(generated.public_key(), looked_up.sign(b"m"), b"m")


# --------------------------------------------------------------------------- public keys, certs


def test_public_keys_are_imported_and_exported(module: SecurityModule) -> None:
    admin_sig = SoftwareKey.generate("brainpoolP512r1")
    module.import_public_key("GWADM_SIG_PUB", admin_sig.public_key())
    assert module.public_key("GWADM_SIG_PUB") == admin_sig.public_key()
    [info] = module.objects()
    assert (info.kind, info.curve) == (ObjectKind.PUBLIC_KEY, "brainpoolP512r1")
    with pytest.raises(SecmodRejected) as excinfo:
        module.key("GWADM_SIG_PUB")  # a public key has no private part to use
    assert reason(excinfo) is Reason.UNKNOWN_OBJECT
    with pytest.raises(SecmodRejected) as excinfo:
        module.import_public_key("GWADM_SIG_PUB", admin_sig.public_key())
    assert reason(excinfo) is Reason.OBJECT_EXISTS


def test_public_keys_off_the_permitted_curves_are_wrong_curve(module: SecurityModule) -> None:
    nist = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(SecmodRejected) as excinfo:
        module.import_public_key("GWADM_TLS_PUB", nist)
    assert reason(excinfo) is Reason.WRONG_CURVE
    with pytest.raises(SecmodRejected) as excinfo:
        module.import_public_key("GWADM_TLS_PUB", object())  # type: ignore[arg-type]
    assert reason(excinfo) is Reason.WRONG_CURVE
    assert not module.has("GWADM_TLS_PUB")


def test_certificates_are_imported_and_read_back(module: SecurityModule) -> None:
    root = make_root("SM-Test-Root")
    gw_key = module.generate_key_pair("GW_WAN_TLS_PRE")
    pre_cert = make_certificate("GW-TLS-PRE", gw_key.public_key(), root)
    module.import_certificate("ROOT_WAN_SIG_CRT", root[0])
    module.import_certificate("GW_WAN_TLS_CRT_PRE", pre_cert)
    assert module.certificate("ROOT_WAN_SIG_CRT") == root[0]
    assert module.certificate("GW_WAN_TLS_CRT_PRE") == pre_cert
    assert module.certificate("GW_WAN_TLS_CRT_PRE").public_key() == gw_key.public_key()
    with pytest.raises(SecmodRejected) as excinfo:
        module.import_certificate("ROOT_WAN_SIG_CRT", root[0])
    assert reason(excinfo) is Reason.OBJECT_EXISTS
    with pytest.raises(UsageError):
        module.import_certificate("X_CRT", b"not a certificate")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- storage secret


def test_storage_secret_encrypts_and_decrypts(module: SecurityModule) -> None:
    module.generate_secret(STORAGE_KEY_LABEL)
    sealed = module.encrypt_with(STORAGE_KEY_LABEL, b"readings 2025-01", aad=b"table=readings")
    assert b"readings" not in sealed
    assert module.decrypt_with(STORAGE_KEY_LABEL, sealed, aad=b"table=readings") == \
        b"readings 2025-01"
    assert module.encrypt_with(STORAGE_KEY_LABEL, b"same") != \
        module.encrypt_with(STORAGE_KEY_LABEL, b"same")  # fresh nonce every time
    empty = module.encrypt_with(STORAGE_KEY_LABEL, b"")
    assert module.decrypt_with(STORAGE_KEY_LABEL, empty) == b""


@pytest.mark.parametrize("bits", [128, 256])
def test_storage_secret_detects_tampering(module: SecurityModule, bits: int) -> None:
    module.generate_secret(STORAGE_KEY_LABEL, bits=bits)
    sealed = module.encrypt_with(STORAGE_KEY_LABEL, b"consumer log", aad=b"v1")
    flipped = bytearray(sealed)
    flipped[15] ^= 1
    for data, aad in ((bytes(flipped), b"v1"), (sealed, b"v2"), (sealed[:-1], b"v1")):
        with pytest.raises(SecmodRejected) as excinfo:
            module.decrypt_with(STORAGE_KEY_LABEL, data, aad=aad)
        assert reason(excinfo) is Reason.TAMPERED
    with pytest.raises(SecmodRejected) as excinfo:
        module.decrypt_with(STORAGE_KEY_LABEL, b"short")
    assert reason(excinfo) is Reason.MALFORMED


def test_storage_secret_sizes_are_aes_only(module: SecurityModule) -> None:
    with pytest.raises(UsageError):
        module.generate_secret(STORAGE_KEY_LABEL, bits=192)


def test_secret_of_another_label_cannot_decrypt(module: SecurityModule) -> None:
    module.generate_secret("A_KEY")
    module.generate_secret("B_KEY")
    with pytest.raises(SecmodRejected) as excinfo:
        module.decrypt_with("B_KEY", module.encrypt_with("A_KEY", b"x"))
    assert reason(excinfo) is Reason.TAMPERED


# --------------------------------------------------------------------------- random, lifecycle


def test_random_returns_fresh_bytes_of_the_asked_length(module: SecurityModule) -> None:
    assert len(module.random(32)) == 32
    assert module.random(16) != module.random(16)
    for n in (0, 1025, -1):
        with pytest.raises(UsageError):
            module.random(n)


def test_objects_and_keys_persist_across_reopen(opener: ModuleOpener) -> None:
    module = opener.open()
    handle = module.generate_key_pair("GW_WAN_SIG_PRE", "brainpoolP384r1")
    module.generate_secret(STORAGE_KEY_LABEL)
    sealed = module.encrypt_with(STORAGE_KEY_LABEL, b"kept")
    root, _ = make_root()
    module.import_certificate("ROOT_WAN_SIG_CRT", root)
    before = module.objects()
    public = handle.public_key()

    module = opener.reopen(module)
    assert module.objects() == before
    ecdsa_verify(public, module.key("GW_WAN_SIG_PRE").sign(b"after reopen"), b"after reopen")
    assert module.decrypt_with(STORAGE_KEY_LABEL, sealed) == b"kept"
    assert module.certificate("ROOT_WAN_SIG_CRT") == root


def test_a_closed_module_refuses_use(opener: ModuleOpener) -> None:
    module = opener.open()
    handle = module.generate_key_pair("GW_WAN_SIG_PRE")
    module.close()
    module.close()  # idempotent
    with pytest.raises(UsageError):
        handle.sign(b"x")
    with pytest.raises(UsageError):
        module.objects()


def test_context_manager_closes(opener: ModuleOpener) -> None:
    with opener.open() as module:
        module.generate_key_pair("GW_WAN_SIG_PRE")
    with pytest.raises(UsageError):
        module.has("GW_WAN_SIG_PRE")


# --------------------------------------------------------------------------- no private bytes


def test_no_api_returns_private_key_bytes(module: SecurityModule) -> None:
    handle = module.generate_key_pair("GW_WAN_SIG_PRE")
    assert isinstance(handle, ModuleKey)
    for name in ("private_bytes", "private_key", "private_key_pem", "private_numbers", "_key",
                 "__dict__"):
        assert not hasattr(handle, name), name
    assert repr(handle) == "ModuleKey('GW_WAN_SIG_PRE', brainpoolP256r1)"
    public_names = {name for name in dir(module) if not name.startswith("_")}
    # the one documented exception: the TLS key handed to OpenSSL (TLS labels only, software
    # module only; test_secmod_tls_key.py)
    assert {name for name in public_names if "private" in name or "export_key" in name} == {
        "tls_private_key"}
    assert "passphrase" not in repr(module).lower()
    assert isinstance(module.public_key("GW_WAN_SIG_PRE"), ec.EllipticCurvePublicKey)
