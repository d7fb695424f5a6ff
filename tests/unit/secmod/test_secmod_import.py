"""Import keys and the wrapping profile imsys-secmod-import/1 (seed 003 §2.3.1 note)."""

from __future__ import annotations

import pytest
from asn1crypto import core
from cryptography.hazmat.primitives.asymmetric import ec
from secmod_helpers import SYSTEM_PIN, ModuleOpener

from imsys.core.errors import KeyRejected, Reason, SecmodRejected
from imsys.crypto.primitives import CURVES, ecdsa_verify, public_key_bytes
from imsys.secmod import IMPORT_PROFILE, ObjectKind, Phase, SecurityModule, wrap_key_for_import

IMPORT = "GW_IMPORT_1"


def rejected(call: object, *args: object) -> SecmodRejected:
    with pytest.raises(SecmodRejected) as excinfo:
        call(*args)  # type: ignore[operator]
    return excinfo.value


@pytest.mark.parametrize(("import_curve", "key_curve"), [
    ("brainpoolP256r1", "brainpoolP256r1"),
    ("brainpoolP384r1", "brainpoolP512r1"),
    ("brainpoolP512r1", "brainpoolP256r1"),
])
def test_a_wrapped_key_is_imported_and_signs(module: SecurityModule, import_curve: str,
                                             key_curve: str) -> None:
    import_public = module.generate_import_key(IMPORT, import_curve)
    assert import_public.curve.name == import_curve
    private = ec.generate_private_key(CURVES[key_curve].curve())
    handle = module.import_wrapped_key("GW_WAN_SIG_PRE",
                                       wrap_key_for_import(private, import_public), IMPORT)
    assert handle.public_key() == private.public_key()
    assert module.public_key("GW_WAN_SIG_PRE") == private.public_key()
    ecdsa_verify(private.public_key(), handle.sign(b"imported"), b"imported")
    peer = ec.generate_private_key(CURVES[key_curve].curve())
    assert handle.exchange(peer.public_key()) == private.exchange(ec.ECDH(), peer.public_key())
    listing = {info.label: info for info in module.objects()}
    assert listing[IMPORT].import_key and listing[IMPORT].kind is ObjectKind.KEY_PAIR
    assert not listing["GW_WAN_SIG_PRE"].import_key
    assert listing["GW_WAN_SIG_PRE"].curve == key_curve


def test_import_keys_only_unwrap(module: SecurityModule) -> None:
    module.generate_import_key(IMPORT)
    assert rejected(module.key, IMPORT).reason is Reason.ACCESS_DENIED
    module.generate_key_pair("GW_WAN_TLS_PRE")
    private = ec.generate_private_key(ec.BrainpoolP256R1())
    wrapped = wrap_key_for_import(private, module.public_key("GW_WAN_TLS_PRE"))
    assert rejected(module.import_wrapped_key, "X", wrapped, "GW_WAN_TLS_PRE").reason is \
        Reason.ACCESS_DENIED  # an ordinary key pair is no import key


def test_delete_import_keys_removes_them_and_ends_importing(opener: ModuleOpener) -> None:
    module = opener.open()
    first = module.generate_import_key(IMPORT)
    module.generate_import_key("GW_IMPORT_2", "brainpoolP384r1")
    module.generate_key_pair("GW_WAN_TLS_PRE")
    wrapped = wrap_key_for_import(ec.generate_private_key(ec.BrainpoolP256R1()), first)
    assert module.delete_import_keys() == [IMPORT, "GW_IMPORT_2"]
    assert [info.label for info in module.objects()] == ["GW_WAN_TLS_PRE"]
    assert module.phase is Phase.OPERATION
    assert rejected(module.import_wrapped_key, "GW_WAN_SIG_PRE", wrapped, IMPORT).reason is \
        Reason.ACCESS_DENIED
    assert rejected(module.generate_import_key, "GW_IMPORT_3").reason is Reason.ACCESS_DENIED
    module = opener.reopen(module)
    assert rejected(module.import_wrapped_key, "GW_WAN_SIG_PRE", wrapped, IMPORT).reason is \
        Reason.ACCESS_DENIED
    assert not module.has(IMPORT)


def test_a_key_wrapped_for_another_import_key_is_refused(module: SecurityModule) -> None:
    module.generate_import_key(IMPORT)
    other = ec.generate_private_key(ec.BrainpoolP256R1()).public_key()
    wrapped = wrap_key_for_import(ec.generate_private_key(ec.BrainpoolP256R1()), other)
    assert rejected(module.import_wrapped_key, "GW_WAN_SIG_PRE", wrapped, IMPORT).reason is \
        Reason.TAMPERED
    assert not module.has("GW_WAN_SIG_PRE")


def _fields(wrapped: bytes) -> list[bytes]:
    sequence = core.Sequence.load(wrapped)
    return [sequence[i].dump() for i in range(len(sequence))]


def _rebuild(fields: list[bytes]) -> bytes:
    """A DER SEQUENCE of already encoded fields (to build altered wraps)."""
    body = b"".join(fields)
    return b"\x30" + _der_length(len(body)) + body


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def test_altered_wraps_are_refused(module: SecurityModule) -> None:
    import_public = module.generate_import_key(IMPORT)
    private = ec.generate_private_key(ec.BrainpoolP256R1())
    wrapped = wrap_key_for_import(private, import_public)
    fields = _fields(wrapped)
    # another public key claimed for the wrapped key changes the KEK: the unwrap fails
    other = ec.generate_private_key(ec.BrainpoolP256R1()).public_key()
    fake_point = core.OctetString(public_key_bytes(other)).dump()
    swapped = _rebuild([*fields[:3], fake_point, fields[4]])
    assert rejected(module.import_wrapped_key, "K1", swapped, IMPORT).reason is Reason.TAMPERED
    flipped = bytearray(wrapped)
    flipped[-3] ^= 0x40
    assert rejected(module.import_wrapped_key, "K2", bytes(flipped), IMPORT).reason is \
        Reason.TAMPERED
    assert [info.label for info in module.objects()] == [IMPORT]


def test_malformed_wraps_are_refused(module: SecurityModule) -> None:
    import_public = module.generate_import_key(IMPORT)
    wrapped = wrap_key_for_import(ec.generate_private_key(ec.BrainpoolP256R1()), import_public)
    fields = _fields(wrapped)
    nist_oid = core.ObjectIdentifier("1.2.840.10045.3.1.7").dump()
    cases = {
        b"garbage": Reason.MALFORMED,
        wrapped[:-5]: Reason.MALFORMED,
        _rebuild([core.Integer(2).dump(), *fields[1:]]): Reason.MALFORMED,
        _rebuild([fields[0], core.OctetString(b"\x04" + b"\x01" * 64).dump(), *fields[2:]]):
            Reason.MALFORMED,
        _rebuild([*fields[:2], nist_oid, *fields[3:]]): Reason.WRONG_CURVE,
    }
    for data, expected in cases.items():
        assert rejected(module.import_wrapped_key, "K", data, IMPORT).reason is expected
    assert not module.has("K")


def test_wrapping_for_a_curve_that_is_not_permitted_is_refused() -> None:
    nist = ec.generate_private_key(ec.SECP256R1())
    brainpool = ec.generate_private_key(ec.BrainpoolP256R1())
    with pytest.raises(KeyRejected):
        wrap_key_for_import(nist, brainpool.public_key())
    with pytest.raises(KeyRejected):
        wrap_key_for_import(brainpool, nist.public_key())


def test_import_follows_the_access_rules(opener: ModuleOpener) -> None:
    module = opener.open()
    import_public = module.generate_import_key(IMPORT)
    module.set_system_pin(SYSTEM_PIN)
    module = opener.reopen(module)
    wrapped = wrap_key_for_import(ec.generate_private_key(ec.BrainpoolP256R1()), import_public)
    assert rejected(module.import_wrapped_key, "GW_WAN_SIG_PRE", wrapped, IMPORT).reason is \
        Reason.NOT_AUTHENTICATED
    assert rejected(module.delete_import_keys).reason is Reason.NOT_AUTHENTICATED
    module.check_system_pin(SYSTEM_PIN)
    module.import_wrapped_key("GW_WAN_SIG_PRE", wrapped, IMPORT)
    with pytest.raises(SecmodRejected) as excinfo:
        module.import_wrapped_key("GW_WAN_SIG_PRE", wrapped, IMPORT)
    assert excinfo.value.reason is Reason.OBJECT_EXISTS


def test_the_profile_name_is_versioned() -> None:
    assert IMPORT_PROFILE == "imsys-secmod-import/1"


def _wrap_by_the_document(private: ec.EllipticCurvePrivateKey,
                          import_public: ec.EllipticCurvePublicKey,
                          claimed_public: ec.EllipticCurvePublicKey) -> bytes:
    """The profile as docs/secmod.md states it, written out independently of the module."""
    from cryptography.hazmat.primitives import hashes, keywrap, serialization
    from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

    ephemeral = ec.generate_private_key(import_public.curve)
    z = ephemeral.exchange(ec.ECDH(), import_public)
    oid = CURVES[private.curve.name].oid
    shared_info = (b"imsys-secmod-import/1" + core.ObjectIdentifier(oid).dump()
                   + public_key_bytes(claimed_public))
    kek = X963KDF(hashes.SHA256(), 32, shared_info).derive(z)
    pkcs8 = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    return _rebuild([
        core.Integer(1).dump(),
        core.OctetString(public_key_bytes(ephemeral.public_key())).dump(),
        core.ObjectIdentifier(oid).dump(),
        core.OctetString(public_key_bytes(claimed_public)).dump(),
        core.OctetString(keywrap.aes_key_wrap_with_padding(kek, pkcs8)).dump(),
    ])


def test_the_documented_profile_is_what_the_module_reads(module: SecurityModule) -> None:
    import_public = module.generate_import_key(IMPORT, "brainpoolP384r1")
    private = ec.generate_private_key(ec.BrainpoolP256R1())
    wrapped = _wrap_by_the_document(private, import_public, private.public_key())
    handle = module.import_wrapped_key("GW_WAN_ENC_PRE", wrapped, IMPORT)
    assert handle.public_key() == private.public_key()


def test_a_wrap_whose_public_key_does_not_match_its_private_key_is_refused(
        module: SecurityModule) -> None:
    import_public = module.generate_import_key(IMPORT)
    private = ec.generate_private_key(ec.BrainpoolP256R1())
    liar = ec.generate_private_key(ec.BrainpoolP256R1()).public_key()
    wrapped = _wrap_by_the_document(private, import_public, liar)
    assert rejected(module.import_wrapped_key, "GW_WAN_ENC_PRE", wrapped, IMPORT).reason is \
        Reason.MALFORMED
    assert not module.has("GW_WAN_ENC_PRE")
    assert [info.label for info in module.objects()] == [IMPORT]
