"""imsys.crypto.cms: round trips, the emitted structure (read back with asn1crypto as an
independent decoder), messages from an independent encoder, and every rejection reason."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from typing import ClassVar

import pytest
from asn1crypto import algos, core, keys
from asn1crypto import cms as asn1
from asn1crypto import parser as asn1_parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from imsys.core.errors import CmsRejected, KeyRejected, Reason, Rejected, UsageError
from imsys.crypto import cms
from imsys.crypto.primitives import CURVES, SoftwareKey, public_key_bytes

Identity = tuple[SoftwareKey, x509.Certificate]

DOCUMENT = b"<MeterReading>1.8.0=4711.0815 kWh</MeterReading>" * 20
SIGNING_TIME = datetime(2025, 3, 14, 15, 9, 26, tzinfo=UTC)
CURVE_HASH = {"brainpoolP256r1": "sha256", "brainpoolP384r1": "sha384",
              "brainpoolP512r1": "sha512"}
KDF_SCHEME = {"brainpoolP256r1": "1.3.132.1.11.1", "brainpoolP384r1": "1.3.132.1.11.2",
              "brainpoolP512r1": "1.3.132.1.11.3"}


def flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes((data[offset] ^ 0x01,)) + data[offset + 1:]


def flip_inside(data: bytes, part: bytes) -> bytes:
    """Flip a bit in the middle of ``part``, which occurs exactly once in ``data``."""
    assert data.count(part) == 1
    return flip(data, data.index(part) + len(part) // 2)


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1 and len(old) == len(new)
    return data.replace(old, new)


def oid(dotted: str) -> bytes:
    return core.ObjectIdentifier(dotted).dump()


def rejected(reason: Reason,
             kind: type[Rejected] = CmsRejected) -> pytest.RaisesExc[Rejected]:
    return pytest.raises(kind, check=lambda exc: exc.reason is reason)


# --------------------------------------------------------------------------- SignedData


@pytest.mark.parametrize("curve", list(CURVES))
def test_sign_then_verify_attached_on_each_curve(signers: dict[str, Identity],
                                                 curve: str) -> None:
    key, certificate = signers[curve]
    message = cms.sign(DOCUMENT, key, certificate, signing_time=SIGNING_TIME)

    verified = cms.verify(message)

    assert verified == cms.Verified(DOCUMENT, cms.DATA, certificate, SIGNING_TIME)
    signed = asn1.ContentInfo.load(message)["content"]
    info = signed["signer_infos"][0]
    assert signed["version"].native == "v1"
    assert signed["encap_content_info"]["content"].native == DOCUMENT
    assert info["version"].native == "v1"
    assert info["sid"].name == "issuer_and_serial_number"
    assert info["sid"].chosen["serial_number"].native == certificate.serial_number
    assert info["digest_algorithm"]["algorithm"].native == CURVE_HASH[curve]
    assert info["signature_algorithm"]["algorithm"].native == f"{CURVE_HASH[curve]}_ecdsa"
    assert [a["type"].native for a in info["signed_attrs"]] == [
        "content_type", "signing_time", "message_digest"]  # DER order of the SET OF
    assert [c.chosen.dump() for c in signed["certificates"]] == [
        certificate.public_bytes(serialization.Encoding.DER)]


def test_digest_algorithm_parameters_are_absent(gateway_sig: Identity) -> None:
    message = cms.sign(DOCUMENT, *gateway_sig)
    sha256 = oid("2.16.840.1.101.3.4.2.1")
    assert message.count(b"\x30\x0b" + sha256) == 2  # digestAlgorithms and the SignerInfo
    assert sha256 + b"\x05\x00" not in message


@pytest.mark.parametrize("curve", list(CURVES))
def test_sign_then_verify_detached_on_each_curve(signers: dict[str, Identity],
                                                 curve: str) -> None:
    key, certificate = signers[curve]
    message = cms.sign(DOCUMENT, key, certificate, detached=True)

    assert DOCUMENT not in message
    verified = cms.verify(message, detached_content=DOCUMENT)
    assert verified.content == DOCUMENT
    assert verified.signing_time is None
    with rejected(Reason.TAMPERED):
        cms.verify(message, detached_content=DOCUMENT + b" ")
    with rejected(Reason.MALFORMED):
        cms.verify(message)


def test_attached_message_refuses_detached_content(gateway_sig: Identity) -> None:
    with rejected(Reason.MALFORMED):
        cms.verify(cms.sign(DOCUMENT, *gateway_sig), detached_content=DOCUMENT)


def test_other_content_type_is_signed_and_reported(gateway_sig: Identity) -> None:
    message = cms.sign(DOCUMENT, *gateway_sig, content_type="1.2.276.0.76.4.1.9")

    assert cms.verify(message).content_type == "1.2.276.0.76.4.1.9"
    assert asn1.ContentInfo.load(message)["content"]["version"].native == "v3"


def test_signing_time_after_2049_uses_generalized_time(gateway_sig: Identity) -> None:
    when = datetime(2051, 6, 1, 12, 0, 0, 999_999, tzinfo=UTC)
    message = cms.sign(DOCUMENT, *gateway_sig, signing_time=when)

    assert b"\x18\x0f20510601120000Z" in message
    assert cms.verify(message).signing_time == when.replace(microsecond=0)


def test_verify_against_the_given_signer_certificate(gateway_sig: Identity,
                                                     other_sig: Identity) -> None:
    message = cms.sign(DOCUMENT, *gateway_sig)

    assert cms.verify(message, signer_certificate=gateway_sig[1]).content == DOCUMENT
    with rejected(Reason.SIGNER_MISMATCH):
        cms.verify(message, signer_certificate=other_sig[1])


def test_signer_certificate_must_be_given_if_the_message_lacks_it(gateway_sig: Identity) -> None:
    info = asn1.ContentInfo.load(cms.sign(DOCUMENT, *gateway_sig))
    info["content"]["certificates"] = None
    message = info.dump(force=True)

    with rejected(Reason.SIGNER_MISMATCH):
        cms.verify(message)
    assert cms.verify(message, signer_certificate=gateway_sig[1]).content == DOCUMENT


def test_tampered_content_is_rejected(gateway_sig: Identity) -> None:
    message = cms.sign(DOCUMENT, *gateway_sig)
    with rejected(Reason.TAMPERED):
        cms.verify(flip_inside(message, DOCUMENT))


def test_tampered_message_digest_attribute_is_rejected(gateway_sig: Identity) -> None:
    message = cms.sign(DOCUMENT, *gateway_sig)
    with rejected(Reason.TAMPERED):
        cms.verify(flip_inside(message, hashlib.sha256(DOCUMENT).digest()))


def test_tampered_signing_time_attribute_breaks_the_signature(gateway_sig: Identity) -> None:
    message = cms.sign(DOCUMENT, *gateway_sig, signing_time=SIGNING_TIME)
    tampered = replace_once(message, b"250314150926Z", b"250314150927Z")

    with rejected(Reason.BAD_SIGNATURE, KeyRejected):
        cms.verify(tampered)


def test_malformed_signing_time_is_rejected(gateway_sig: Identity) -> None:
    message = cms.sign(DOCUMENT, *gateway_sig, signing_time=SIGNING_TIME)
    with rejected(Reason.MALFORMED):
        cms.verify(replace_once(message, b"250314150926Z", b"250314150926X"))


def test_tampered_content_type_attribute_is_rejected(gateway_sig: Identity) -> None:
    message = cms.sign(DOCUMENT, *gateway_sig)
    data, other = oid(cms.DATA), oid("1.2.840.113549.1.7.6")  # id-encryptedData
    econtent_at = message.index(data)
    tampered = message[:econtent_at] + other + message[econtent_at + len(other):]

    with rejected(Reason.TAMPERED):
        cms.verify(tampered)


def test_tampered_signature_is_rejected(gateway_sig: Identity) -> None:
    message = cms.sign(DOCUMENT, *gateway_sig)
    with rejected(Reason.BAD_SIGNATURE, KeyRejected):
        cms.verify(flip(message, len(message) - 3))


def test_digest_not_matched_to_the_curve_is_unsupported(gateway_sig: Identity) -> None:
    message = cms.sign(DOCUMENT, *gateway_sig)
    info = asn1.ContentInfo.load(message)["content"]["signer_infos"][0]
    sha256_alg = info["digest_algorithm"].dump()
    sha224_alg = sha256_alg[:-1] + b"\x04"
    tampered = message.replace(sha256_alg, sha224_alg)

    with rejected(Reason.UNSUPPORTED_ALGORITHM):
        cms.verify(tampered)


@pytest.mark.parametrize("cut", [1, 2, 100, 500])
def test_truncated_message_is_rejected_as_truncated(gateway_sig: Identity, cut: int) -> None:
    message = cms.sign(DOCUMENT, *gateway_sig)
    with rejected(Reason.TRUNCATED):
        cms.verify(message[:-cut])


@pytest.mark.parametrize("garbage", [b"", b"\x00", b"hello world", b"\x30\x03\x02\x01\x01"])
def test_garbage_is_rejected(garbage: bytes) -> None:
    with pytest.raises(CmsRejected, check=lambda e: e.reason in (Reason.MALFORMED,
                                                                 Reason.TRUNCATED)):
        cms.verify(garbage)


def test_trailing_data_is_rejected(gateway_sig: Identity) -> None:
    with rejected(Reason.MALFORMED):
        cms.verify(cms.sign(DOCUMENT, *gateway_sig) + b"\x00")


def test_message_above_max_size_is_rejected(gateway_sig: Identity, emt_enc: Identity) -> None:
    signed = cms.sign(DOCUMENT, *gateway_sig)
    sealed = cms.seal(DOCUMENT, *gateway_sig, [emt_enc[1]])

    assert cms.verify(signed, max_size=len(signed)).content == DOCUMENT
    with rejected(Reason.MALFORMED):
        cms.verify(signed, max_size=len(signed) - 1)
    with rejected(Reason.MALFORMED):
        cms.decrypt(sealed, *emt_enc, max_size=len(sealed) - 1)
    with rejected(Reason.MALFORMED):
        cms.open_sealed(sealed, *emt_enc, max_size=len(sealed) - 1)


def test_sign_refuses_a_certificate_of_another_key(gateway_sig: Identity,
                                                   other_sig: Identity) -> None:
    with pytest.raises(UsageError):
        cms.sign(DOCUMENT, gateway_sig[0], other_sig[1])


def test_sign_refuses_naive_signing_time(gateway_sig: Identity) -> None:
    with pytest.raises(UsageError):
        cms.sign(DOCUMENT, *gateway_sig, signing_time=datetime(2025, 1, 1))


def test_sign_refuses_a_certificate_off_the_permitted_curves(
        gateway_sig: Identity, nist_certificate: x509.Certificate) -> None:
    with rejected(Reason.WRONG_CURVE, KeyRejected):
        cms.sign(DOCUMENT, gateway_sig[0], nist_certificate)


# --------------------------------------------------------------------------- enveloping


@pytest.mark.parametrize("authenticated", [True, False], ids=["gcm", "cbc"])
@pytest.mark.parametrize("key_bits", [128, 256])
def test_encrypt_then_decrypt(emt_enc: Identity, authenticated: bool, key_bits: int) -> None:
    key, certificate = emt_enc
    message = cms.encrypt(DOCUMENT, [certificate], authenticated=authenticated,
                          key_bits=key_bits)

    assert cms.decrypt(message, key, certificate) == cms.Decrypted(DOCUMENT, cms.DATA)
    assert DOCUMENT not in message


@pytest.mark.parametrize("authenticated", [True, False], ids=["gcm", "cbc"])
def test_each_of_three_recipients_on_different_curves_can_decrypt(
        recipients: dict[str, Identity], authenticated: bool) -> None:
    message = cms.encrypt(DOCUMENT, [c for _, c in recipients.values()],
                          authenticated=authenticated)

    for key, certificate in recipients.values():
        assert cms.decrypt(message, key, certificate).content == DOCUMENT


def test_auth_enveloped_data_structure(recipients: dict[str, Identity]) -> None:
    certificates = [c for _, c in recipients.values()]
    info = asn1.ContentInfo.load(cms.encrypt(DOCUMENT, certificates, key_bits=256))

    assert info["content_type"].native == "authenticated_enveloped_data"
    envelope = info["content"]
    assert envelope["version"].native == "v0"
    encrypted = envelope["auth_encrypted_content_info"]
    assert encrypted["content_type"].native == "data"
    assert encrypted["content_encryption_algorithm"]["algorithm"].native == "aes256_gcm"
    parameters = encrypted["content_encryption_algorithm"]["parameters"].parse()
    assert len(parameters[0].native) == 12 and parameters[1].native == 16
    assert len(envelope["mac"].native) == 16
    by_serial = {}
    for recipient_info in envelope["recipient_infos"]:
        assert recipient_info.name == "kari"
        kari = recipient_info.chosen
        assert kari["version"].native == "v3"
        assert kari["ukm"].native is None
        originator = kari["originator"].chosen
        assert originator["algorithm"]["algorithm"].native == "ec"
        assert originator["algorithm"]["parameters"].native is None
        (entry,) = kari["recipient_encrypted_keys"]
        serial = entry["rid"].chosen["serial_number"].native
        by_serial[serial] = kari["key_encryption_algorithm"]
    for curve, (_, certificate) in recipients.items():
        algorithm = by_serial[certificate.serial_number]
        assert algorithm["algorithm"].dotted == KDF_SCHEME[curve]
        assert algorithm["parameters"].dump() == asn1.KeyEncryptionAlgorithm(
            {"algorithm": "aes256_wrap"}).dump()


def test_enveloped_data_structure(emt_enc: Identity) -> None:
    info = asn1.ContentInfo.load(cms.encrypt(DOCUMENT, [emt_enc[1]], authenticated=False))

    assert info["content_type"].native == "enveloped_data"
    assert info["content"]["version"].native == "v2"
    algorithm = info["content"]["encrypted_content_info"]["content_encryption_algorithm"]
    assert algorithm["algorithm"].native == "aes128_cbc"
    assert len(algorithm["parameters"].native) == 16


def test_message_for_someone_else_is_not_ours(emt_enc: Identity,
                                              stranger_enc: Identity) -> None:
    message = cms.encrypt(DOCUMENT, [emt_enc[1]])
    with rejected(Reason.WRONG_RECIPIENT):
        cms.decrypt(message, *stranger_enc)


def test_wrong_key_for_an_addressed_certificate_is_refused(emt_enc: Identity,
                                                           stranger_enc: Identity) -> None:
    message = cms.encrypt(DOCUMENT, [emt_enc[1]])
    with rejected(Reason.WRONG_RECIPIENT):
        cms.decrypt(message, stranger_enc[0], emt_enc[1])


def test_tampered_gcm_ciphertext_and_tag_are_rejected(emt_enc: Identity) -> None:
    message = cms.encrypt(DOCUMENT, [emt_enc[1]])
    envelope = asn1.ContentInfo.load(message)["content"]
    ciphertext = envelope["auth_encrypted_content_info"]["encrypted_content"].native
    tag = envelope["mac"].native

    with rejected(Reason.TAMPERED):
        cms.decrypt(flip_inside(message, ciphertext), *emt_enc)
    with rejected(Reason.TAMPERED):
        cms.decrypt(flip_inside(message, tag), *emt_enc)


def test_tampered_cbc_padding_is_rejected(emt_enc: Identity) -> None:
    message = cms.encrypt(DOCUMENT, [emt_enc[1]], authenticated=False)
    # flipping the last byte of the penultimate block flips the last padding byte
    with rejected(Reason.TAMPERED):
        cms.decrypt(flip(message, len(message) - 17), *emt_enc)


def test_tampered_encrypted_key_is_refused(emt_enc: Identity) -> None:
    message = cms.encrypt(DOCUMENT, [emt_enc[1]])
    kari = asn1.ContentInfo.load(message)["content"]["recipient_infos"][0].chosen
    encrypted_key = kari["recipient_encrypted_keys"][0]["encrypted_key"].native
    with rejected(Reason.WRONG_RECIPIENT):
        cms.decrypt(flip_inside(message, encrypted_key), *emt_enc)


@pytest.mark.parametrize(("known", "unknown"), [
    ("1.3.132.1.11.1", "1.3.132.1.14.1"),  # dhSinglePass-cofactorDH-sha256kdf-scheme
    ("2.16.840.1.101.3.4.1.5", "2.16.840.1.101.3.4.1.8"),  # id-aes128-wrap-pad
], ids=["kdf-scheme", "key-wrap"])
def test_unknown_key_encryption_is_unsupported(emt_enc: Identity, known: str,
                                               unknown: str) -> None:
    message = cms.encrypt(DOCUMENT, [emt_enc[1]])
    with rejected(Reason.UNSUPPORTED_ALGORITHM):
        cms.decrypt(replace_once(message, oid(known), oid(unknown)), *emt_enc)


def test_signed_data_is_the_wrong_content_type_for_decrypt(gateway_sig: Identity,
                                                           emt_enc: Identity) -> None:
    with rejected(Reason.WRONG_CONTENT_TYPE):
        cms.decrypt(cms.sign(DOCUMENT, *gateway_sig), *emt_enc)


def test_enveloped_data_is_the_wrong_content_type_for_verify(emt_enc: Identity) -> None:
    with rejected(Reason.WRONG_CONTENT_TYPE):
        cms.verify(cms.encrypt(DOCUMENT, [emt_enc[1]]))


def test_truncated_envelope_is_rejected_as_truncated(emt_enc: Identity) -> None:
    with rejected(Reason.TRUNCATED):
        cms.decrypt(cms.encrypt(DOCUMENT, [emt_enc[1]])[:-20], *emt_enc)


def test_recipient_off_the_permitted_curves_is_refused(
        nist_certificate: x509.Certificate, rsa_certificate: x509.Certificate) -> None:
    for certificate in (nist_certificate, rsa_certificate):
        with rejected(Reason.WRONG_CURVE, KeyRejected):
            cms.encrypt(DOCUMENT, [certificate])


def test_encrypt_usage_errors(emt_enc: Identity) -> None:
    with pytest.raises(UsageError):
        cms.encrypt(DOCUMENT, [emt_enc[1]], key_bits=192)
    with pytest.raises(UsageError):
        cms.encrypt(DOCUMENT, [])
    with pytest.raises(UsageError):
        cms.encrypt(DOCUMENT, [emt_enc[1]], content_type="no such type")


def to_ber(data: bytes, depth: int = 0) -> bytes:
    """Re-encode like a streaming encoder (``openssl cms -stream``): indefinite lengths for
    ContentInfo, its content, the envelope and the EncryptedContentInfo, the encrypted
    content in 100-octet chunks; everything else stays DER."""
    out = []
    while data:
        class_, method, tag, header, contents, trailer = asn1_parser.parse(data)
        data = data[len(header) + len(contents) + len(trailer):]
        if method and (depth < 3 or (depth == 3 and header[0] == 0x30)):
            out.append(header[:1] + b"\x80" + to_ber(contents, depth + 1) + b"\x00\x00")
        elif class_ == 2 and tag == 0 and not method:  # [0] IMPLICIT encryptedContent
            chunks = b"".join(core.OctetString(contents[i:i + 100]).dump()
                              for i in range(0, len(contents), 100))
            out.append(b"\xa0\x80" + chunks + b"\x00\x00")
        else:
            out.append(header + contents + trailer)
    return b"".join(out)


@pytest.mark.parametrize("authenticated", [True, False], ids=["gcm", "cbc"])
def test_ber_with_indefinite_lengths_and_chunked_content_decrypts(
        emt_enc: Identity, authenticated: bool) -> None:
    message = cms.encrypt(DOCUMENT, [emt_enc[1]], authenticated=authenticated)
    ber = to_ber(message)
    assert b"\x30\x80" in ber and len(ber) > len(message)

    assert cms.decrypt(ber, *emt_enc).content == DOCUMENT


class GcmParameters(core.Sequence):
    """RFC 5084 GCMParameters (asn1crypto has no class for it)."""

    _fields: ClassVar = [("aes_nonce", core.OctetString), ("aes_icvlen", core.Integer)]


class EccCmsSharedInfo(core.Sequence):
    """RFC 5753 §7.2, written out independently of imsys."""

    _fields: ClassVar = [
        ("key_info", algos.AlgorithmIdentifier),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


def independent_envelope(content: bytes, certificate: x509.Certificate, *, kdf: str,
                         kdf_hash: hashes.HashAlgorithm, wrap: str, ukm: bytes | None,
                         by_key_id: bool, cipher: str = "aes128_gcm",
                         named_curve: str | None = None) -> bytes:
    """An AuthEnvelopedData built with asn1crypto and cryptography only (no imsys code)."""
    recipient_key = certificate.public_key()
    assert isinstance(recipient_key, ec.EllipticCurvePublicKey)
    ephemeral = ec.generate_private_key(recipient_key.curve)
    kek_length = {"aes128_wrap": 16, "aes192_wrap": 24, "aes256_wrap": 32}[wrap]
    shared_info = EccCmsSharedInfo({
        "key_info": {"algorithm": asn1.KeyEncryptionAlgorithmId(wrap).dotted},
        "entity_u_info": ukm,
        "supp_pub_info": (kek_length * 8).to_bytes(4, "big"),
    })
    kek = X963KDF(kdf_hash, kek_length, shared_info.dump()).derive(
        ephemeral.exchange(ec.ECDH(), recipient_key))
    cek = os.urandom({"aes128_gcm": 16, "aes192_gcm": 24, "aes256_gcm": 32}[cipher])
    nonce = os.urandom(12)
    sealed = AESGCM(cek).encrypt(nonce, content, None)
    if by_key_id:
        ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        rid = asn1.KeyAgreementRecipientIdentifier(
            {"r_key_id": {"subject_key_identifier": ski.value.digest}})
    else:
        issuer_and_serial = asn1.IssuerAndSerialNumber({
            "issuer": asn1_x509.Certificate.load(certificate.public_bytes(
                serialization.Encoding.DER))["tbs_certificate"]["issuer"],
            "serial_number": certificate.serial_number})
        rid = asn1.KeyAgreementRecipientIdentifier(
            {"issuer_and_serial_number": issuer_and_serial})
    kari = asn1.KeyAgreeRecipientInfo({
        "version": "v3",
        "originator": asn1.OriginatorIdentifierOrKey({"originator_key": keys.PublicKeyInfo({
            "algorithm": {"algorithm": "ec", "parameters": (
                None if named_curve is None else {"named": named_curve})},
            "public_key": public_key_bytes(ephemeral.public_key())})}),
        "ukm": ukm,
        "key_encryption_algorithm": {
            "algorithm": kdf,
            "parameters": asn1.KeyEncryptionAlgorithm({"algorithm": wrap})},
        "recipient_encrypted_keys": [{
            "rid": rid, "encrypted_key": keywrap.aes_key_wrap(kek, cek)}],
    })
    gcm_parameters = GcmParameters({"aes_nonce": nonce, "aes_icvlen": 16})
    return asn1.ContentInfo({
        "content_type": "authenticated_enveloped_data",
        "content": asn1.AuthEnvelopedData({
            "version": "v0",
            "recipient_infos": [asn1.RecipientInfo({"kari": kari})],
            "auth_encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": {"algorithm": cipher,
                                                 "parameters": gcm_parameters},
                "encrypted_content": sealed[:-16],
            },
            "mac": sealed[-16:],
        }),
    }).dump()


@pytest.mark.parametrize(("kdf", "kdf_hash", "wrap", "ukm", "by_key_id"), [
    ("1.3.133.16.840.63.0.2", hashes.SHA1(), "aes128_wrap", None, False),
    ("1.3.132.1.11.0", hashes.SHA224(), "aes192_wrap", b"user keying material", True),
    ("1.3.132.1.11.2", hashes.SHA384(), "aes256_wrap", os.urandom(64), False),
    ("1.3.132.1.11.3", hashes.SHA512(), "aes128_wrap", None, True),
], ids=["sha1-aes128", "sha224-aes192-ukm-keyid", "sha384-aes256-ukm", "sha512-keyid"])
def test_decrypts_messages_from_an_independent_encoder(
        emt_enc: Identity, kdf: str, kdf_hash: hashes.HashAlgorithm, wrap: str,
        ukm: bytes | None, by_key_id: bool) -> None:
    message = independent_envelope(DOCUMENT, emt_enc[1], kdf=kdf, kdf_hash=kdf_hash,
                                   wrap=wrap, ukm=ukm, by_key_id=by_key_id)
    assert cms.decrypt(message, *emt_enc).content == DOCUMENT


@pytest.mark.parametrize(("named_curve", "reason"), [
    ("brainpoolp256r1", None),
    ("brainpoolp384r1", Reason.WRONG_CURVE),
    ("secp256r1", Reason.WRONG_CURVE),
])
def test_curve_named_by_the_originator_key_must_be_the_recipients(
        emt_enc: Identity, named_curve: str, reason: Reason | None) -> None:
    message = independent_envelope(DOCUMENT, emt_enc[1], kdf="1.3.132.1.11.1",
                                   kdf_hash=hashes.SHA256(), wrap="aes128_wrap", ukm=None,
                                   by_key_id=False, named_curve=named_curve)
    if reason is None:
        assert cms.decrypt(message, *emt_enc).content == DOCUMENT
    else:
        with rejected(reason):
            cms.decrypt(message, *emt_enc)


def test_aes_192_content_encryption_is_unsupported(emt_enc: Identity) -> None:
    message = independent_envelope(DOCUMENT, emt_enc[1], kdf="1.3.132.1.11.1",
                                   kdf_hash=hashes.SHA256(), wrap="aes192_wrap", ukm=None,
                                   by_key_id=False, cipher="aes192_gcm")
    with rejected(Reason.UNSUPPORTED_ALGORITHM):
        cms.decrypt(message, *emt_enc)


# --------------------------------------------------------------------------- sealing


def test_seal_then_open(gateway_sig: Identity, emt_enc: Identity) -> None:
    message = cms.seal(DOCUMENT, *gateway_sig, [emt_enc[1]], signing_time=SIGNING_TIME)

    opened = cms.open_sealed(message, *emt_enc, signer_certificate=gateway_sig[1])

    assert opened == cms.Opened(DOCUMENT, cms.DATA, gateway_sig[1], SIGNING_TIME)
    encrypted = asn1.ContentInfo.load(message)["content"]["auth_encrypted_content_info"]
    assert encrypted["content_type"].native == "signed_data"
    inner = cms.decrypt(message, *emt_enc)
    assert inner.content_type == cms.SIGNED_DATA
    assert asn1.SignedData.load(inner.content)["encap_content_info"]["content"].native == DOCUMENT


def test_seal_with_cbc_makes_enveloped_data(gateway_sig: Identity, emt_enc: Identity) -> None:
    message = cms.seal(DOCUMENT, *gateway_sig, [emt_enc[1]], authenticated=False)

    assert asn1.ContentInfo.load(message)["content_type"].native == "enveloped_data"
    assert cms.open_sealed(message, *emt_enc).content == DOCUMENT


def test_seal_for_three_recipients_and_a_custom_content_type(
        signers: dict[str, Identity], recipients: dict[str, Identity]) -> None:
    key, certificate = signers["brainpoolP384r1"]
    message = cms.seal(DOCUMENT, key, certificate, [c for _, c in recipients.values()],
                       content_type="1.2.276.0.76.4.1.9", key_bits=256)

    for recipient in recipients.values():
        opened = cms.open_sealed(message, *recipient)
        assert (opened.content, opened.content_type) == (DOCUMENT, "1.2.276.0.76.4.1.9")
        assert opened.signer_certificate == certificate


def test_open_accepts_a_signed_content_info_inside_id_data(gateway_sig: Identity,
                                                           emt_enc: Identity) -> None:
    message = cms.encrypt(cms.sign(DOCUMENT, *gateway_sig), [emt_enc[1]])
    assert cms.open_sealed(message, *emt_enc).content == DOCUMENT


def test_open_refuses_unsigned_content(emt_enc: Identity) -> None:
    with rejected(Reason.WRONG_CONTENT_TYPE):
        cms.open_sealed(cms.encrypt(DOCUMENT, [emt_enc[1]]), *emt_enc)
    with rejected(Reason.WRONG_CONTENT_TYPE):
        cms.open_sealed(cms.encrypt(DOCUMENT, [emt_enc[1]], content_type="1.2.3.4"), *emt_enc)


def test_open_refuses_an_encrypted_envelope_inside_id_data(emt_enc: Identity) -> None:
    inner = cms.encrypt(DOCUMENT, [emt_enc[1]])
    with rejected(Reason.WRONG_CONTENT_TYPE):
        cms.open_sealed(cms.encrypt(inner, [emt_enc[1]]), *emt_enc)


def test_open_refuses_a_plain_signed_message(gateway_sig: Identity, emt_enc: Identity) -> None:
    with rejected(Reason.WRONG_CONTENT_TYPE):
        cms.open_sealed(cms.sign(DOCUMENT, *gateway_sig), *emt_enc)


def test_open_rejects_the_wrong_signer_recipient_and_tampering(
        gateway_sig: Identity, other_sig: Identity, emt_enc: Identity,
        stranger_enc: Identity) -> None:
    message = cms.seal(DOCUMENT, *gateway_sig, [emt_enc[1]])
    tag = asn1.ContentInfo.load(message)["content"]["mac"].native

    with rejected(Reason.SIGNER_MISMATCH):
        cms.open_sealed(message, *emt_enc, signer_certificate=other_sig[1])
    with rejected(Reason.WRONG_RECIPIENT):
        cms.open_sealed(message, *stranger_enc)
    with rejected(Reason.TAMPERED):
        cms.open_sealed(flip_inside(message, tag), *emt_enc)
    with rejected(Reason.TRUNCATED):
        cms.open_sealed(message[:-1], *emt_enc)


# --------------------------------------------------------------------------- caches


def _twins(ca_key: ec.EllipticCurvePrivateKey,
           ca_certificate: x509.Certificate) -> tuple[Identity, Identity]:
    """Two identities whose certificates name the same issuer, subject and serial number and
    encode to the same length (as a misissued or forged pair would): only the keys differ."""
    def identity() -> Identity:
        key = SoftwareKey.generate("brainpoolP256r1")
        certificate = (x509.CertificateBuilder()
                       .subject_name(ca_certificate.subject).issuer_name(ca_certificate.subject)
                       .public_key(key.public_key()).serial_number(0x7417)
                       .not_valid_before(SIGNING_TIME).not_valid_after(SIGNING_TIME)
                       .sign(ca_key, hashes.SHA256()))
        return key, certificate

    first = identity()
    size = len(first[1].public_bytes(serialization.Encoding.DER))
    for _ in range(100):
        second = identity()
        if len(second[1].public_bytes(serialization.Encoding.DER)) == size:
            return first, second
    raise AssertionError("no pair of certificates of equal length")


def test_per_certificate_caches_do_not_confuse_certificates(
        ca_key: ec.EllipticCurvePrivateKey, ca_certificate: x509.Certificate,
        emt_enc: Identity) -> None:
    (key_a, certificate_a), (key_b, certificate_b) = _twins(ca_key, ca_certificate)
    der_a, der_b = (c.public_bytes(serialization.Encoding.DER)
                    for c in (certificate_a, certificate_b))
    signed_a = cms.sign(DOCUMENT, key_a, certificate_a)
    signed_b = cms.sign(DOCUMENT, key_b, certificate_b)

    for _ in range(2):  # the second round meets every cache filled
        assert cms.verify(signed_a).signer_certificate == certificate_a
        assert cms.verify(signed_b).signer_certificate == certificate_b
        assert cms.verify(signed_b, signer_certificate=certificate_b).content == DOCUMENT
        # the SignerInfo names both (same issuer and serial); only B's key verifies B's signature
        with rejected(Reason.BAD_SIGNATURE, KeyRejected):
            cms.verify(signed_b, signer_certificate=certificate_a)
        with rejected(Reason.BAD_SIGNATURE, KeyRejected):
            cms.verify(replace_once(signed_b, der_b, der_a))
        sealed = cms.seal(DOCUMENT, key_b, certificate_b, [emt_enc[1]])
        assert cms.open_sealed(sealed, *emt_enc).signer_certificate == certificate_b
        with rejected(Reason.BAD_SIGNATURE, KeyRejected):
            cms.open_sealed(sealed, *emt_enc, signer_certificate=certificate_a)

    # recipients: the entry names both; B's key cannot unwrap what was wrapped for A
    message = cms.encrypt(DOCUMENT, [certificate_a])
    assert cms.decrypt(message, key_a, certificate_a).content == DOCUMENT
    with rejected(Reason.WRONG_RECIPIENT):
        cms.decrypt(message, key_b, certificate_b)
