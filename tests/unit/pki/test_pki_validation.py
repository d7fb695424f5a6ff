"""Path validation: every rejection carries its reason (wrong curve … bad signature)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imsys.core.errors import CertificateRejected, Reason
from imsys.crypto import SoftwareKey
from imsys.pki import (
    CertificateAuthority,
    IssuanceRequest,
    PathValidator,
    PkiDirectory,
    load_certificate,
    profile,
)
from imsys.pki.builder import CertificateTemplate, SubjectName, build_certificate, build_crl


def _reason(exc: pytest.ExceptionInfo[CertificateRejected]) -> Reason:
    return exc.value.reason


def test_valid_gateway_sig_certificate_validates_to_root(pki: PkiDirectory, issue) -> None:
    _, cert = issue("gateway-sig", "EABC0012345678")
    path = pki.validator().validate(cert, profile="gateway-sig")
    assert path.identifier == "EABC0012345678"
    assert [c.subject for c in path.certificates[1:]] == [
        pki.ca().certificate.subject, pki.root.certificate.subject]
    assert path.profile is not None and path.profile.seed_name == "GW_WAN_SIG_CRT"


def test_any_of_several_profiles_may_be_accepted(pki: PkiDirectory, issue) -> None:
    _, cert = issue("gateway-pre-tls", "EABC0012345678")
    path = pki.validator().validate(cert, profile=("gateway-tls", "gateway-pre-tls"))
    assert path.profile is not None and path.profile.name == "gateway-pre-tls"


def test_rejects_wrong_key_usage(pki: PkiDirectory, issue) -> None:
    _, cert = issue("gateway-sig", "EABC0012345678")
    with pytest.raises(CertificateRejected) as exc:
        pki.validator().validate(cert, profile="gateway-enc")
    assert _reason(exc) is Reason.WRONG_KEY_USAGE


def test_rejects_wrong_role(pki: PkiDirectory, issue) -> None:
    _, cert = issue("emt-enc", "9900000000001", ca="emt-ca")
    with pytest.raises(CertificateRejected) as exc:
        pki.validator().validate(cert, profile="gateway-enc")
    assert _reason(exc) is Reason.WRONG_ROLE


def test_rejects_expired_and_not_yet_valid(pki: PkiDirectory, issue) -> None:
    _, cert = issue("emt-sig", "9900000000001", ca="emt-ca")
    validator = pki.validator(require_crl=False)
    with pytest.raises(CertificateRejected) as exc:
        validator.validate(cert, at=cert.not_valid_after_utc + timedelta(seconds=1))
    assert _reason(exc) is Reason.EXPIRED
    with pytest.raises(CertificateRejected) as exc:
        validator.validate(cert, at=cert.not_valid_before_utc - timedelta(seconds=1))
    assert _reason(exc) is Reason.NOT_YET_VALID


def test_rejects_revoked_certificate_and_names_the_reason(pki: PkiDirectory) -> None:
    _, cert = pki.issue_with_new_key("gateway-tls", "EREV0000000001")
    pki.validator().validate(cert, profile="gateway-tls")
    pki.revoke(cert.serial_number, "key_compromise")
    with pytest.raises(CertificateRejected) as exc:
        pki.validator().validate(cert, profile="gateway-tls")
    assert _reason(exc) is Reason.REVOKED
    assert exc.value.context["revocation_reason"] == "keyCompromise"


def test_revocation_is_not_retroactive(pki: PkiDirectory) -> None:
    _, cert = pki.issue_with_new_key("gateway-enc", "EREV0000000002")
    pki.revoke(cert.serial_number, "superseded")
    crl = pki.crl("sub-ca")
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    before = entry.revocation_date_utc - timedelta(seconds=1)
    pki.validator().validate(cert, at=before)  # no exception: valid before its revocation


def test_rejects_unknown_issuer(tmp_path, pki: PkiDirectory) -> None:
    foreign = PkiDirectory.init(tmp_path / "foreign")
    _, cert = foreign.issue_with_new_key("gateway-sig", "EABC0012345678")
    with pytest.raises(CertificateRejected) as exc:
        pki.validator().validate(cert, chain=foreign.chain()[:1])
    assert _reason(exc) is Reason.UNKNOWN_ISSUER


def test_rejects_bad_signature(pki: PkiDirectory, issue) -> None:
    _, cert = issue("gateway-sig", "EABC0012345678")
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature value
    tampered = load_certificate(bytes(der))
    with pytest.raises(CertificateRejected) as exc:
        pki.validator().validate(tampered)
    assert _reason(exc) in (Reason.BAD_SIGNATURE,)


def test_rejects_tampered_to_be_signed_part(pki: PkiDirectory, issue) -> None:
    _, cert = issue("gateway-sig", "EABC0012345678")
    der = cert.public_bytes(serialization.Encoding.DER)
    tampered = load_certificate(der.replace(b"EABC0012345678", b"EABC0012345679"))
    with pytest.raises(CertificateRejected) as exc:
        pki.validator().validate(tampered)
    assert _reason(exc) is Reason.BAD_SIGNATURE


def test_rejects_wrong_curve(pki: PkiDirectory) -> None:
    sub = pki.ca()
    nist = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    # a Sub-CA key misused by hand to certify a NIST key (the CA itself refuses to)
    ca_key = sub.key._key  # type: ignore[attr-defined]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name.from_rfc4514_string("CN=nist,O=imsys,C=DE"))
            .issuer_name(sub.certificate.subject)
            .public_key(nist.public_key()).serial_number(4242)
            .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(days=1))
            .sign(ca_key, hashes.SHA256()))
    with pytest.raises(CertificateRejected) as exc:
        pki.validator().validate(cert)
    assert _reason(exc) is Reason.WRONG_CURVE


def test_ca_refuses_to_certify_a_nist_key(pki: PkiDirectory) -> None:
    nist = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(Exception) as exc:
        pki.issue("emt-tls", "x", public_key=nist.public_key())
    assert getattr(exc.value, "reason", None) is Reason.WRONG_CURVE


def test_rejects_end_entity_acting_as_ca(pki: PkiDirectory, issue) -> None:
    ee_key, ee_cert = issue("emt-sig", "9900000000001", ca="emt-ca")
    now = datetime.now(UTC).replace(microsecond=0)
    leaf = build_certificate(
        CertificateTemplate(SubjectName("victim"), profile("emt-tls"), 777, now,
                            now + timedelta(days=1)),
        SoftwareKey.generate().public_key(), ee_key, ee_cert)
    with pytest.raises(CertificateRejected) as exc:
        pki.validator(require_crl=False).validate(leaf, chain=[ee_cert])
    assert _reason(exc) is Reason.NOT_A_CA


def test_rejects_path_longer_than_the_sub_ca_allows(pki: PkiDirectory) -> None:
    sub = pki.ca()
    rogue_key = SoftwareKey.generate()
    now = datetime.now(UTC).replace(microsecond=0)
    rogue_cert = build_certificate(
        CertificateTemplate(SubjectName("rogue sub-sub-CA"), profile("sub-ca"), 991, now,
                            now + timedelta(days=30)),
        rogue_key.public_key(), sub.key, sub.certificate)
    rogue = CertificateAuthority("rogue", rogue_key, rogue_cert)
    leaf = rogue.issue_for_key(SoftwareKey.generate().public_key(),
                               IssuanceRequest(profile("gateway-tls"), "EROG0000000001"))
    with pytest.raises(CertificateRejected) as exc:
        pki.validator(require_crl=False).validate(leaf, chain=[rogue_cert])
    assert _reason(exc) is Reason.PATH_LENGTH_EXCEEDED


def test_rejects_broken_name_chaining(pki: PkiDirectory) -> None:
    sub = pki.ca()
    now = datetime.now(UTC).replace(microsecond=0)
    # correct authority key identifier, but an issuer name that no CA has
    impostor_issuer = x509.load_der_x509_certificate(build_certificate(
        CertificateTemplate(SubjectName("not the sub-CA"), profile("sub-ca"), 5, now,
                            now + timedelta(days=1)),
        sub.key.public_key(), sub.key, None).public_bytes(serialization.Encoding.DER))
    leaf = build_certificate(
        CertificateTemplate(SubjectName("EABC0000000009"), profile("gateway-tls"), 6, now,
                            now + timedelta(days=1)),
        SoftwareKey.generate().public_key(), sub.key, impostor_issuer)
    with pytest.raises(CertificateRejected) as exc:
        pki.validator().validate(leaf)
    assert _reason(exc) is Reason.NAME_CHAINING


def test_rejects_missing_crl(pki: PkiDirectory, issue) -> None:
    _, cert = issue("gateway-sig", "EABC0012345678")
    validator = PathValidator([pki.root.certificate], [pki.ca().certificate])
    with pytest.raises(CertificateRejected) as exc:
        validator.validate(cert)
    assert _reason(exc) is Reason.CRL_UNAVAILABLE


def test_rejects_out_of_date_crl(pki: PkiDirectory, issue) -> None:
    _, cert = issue("gateway-sig", "EABC0012345678")
    crl = pki.crl("sub-ca")
    assert crl.next_update_utc is not None
    with pytest.raises(CertificateRejected) as exc:
        pki.validator().validate(cert, at=crl.next_update_utc + timedelta(hours=1))
    assert _reason(exc) is Reason.CRL_UNAVAILABLE


def test_rejects_crl_signed_by_another_key(pki: PkiDirectory, issue) -> None:
    _, cert = issue("gateway-sig", "EABC0012345678")
    sub = pki.ca()
    now = datetime.now(UTC).replace(microsecond=0)
    forged = build_crl(SoftwareKey.generate(), sub.certificate, [], 99, now,
                       now + timedelta(days=1))
    validator = PathValidator([pki.root.certificate], [sub.certificate],
                              [forged, pki.crl("root")])
    with pytest.raises(CertificateRejected) as exc:
        validator.validate(cert)
    assert _reason(exc) is Reason.CRL_INVALID


def test_rejects_self_signed_certificate_that_is_no_anchor(pki: PkiDirectory) -> None:
    key = SoftwareKey.generate()
    other_root = CertificateAuthority.create_root("x", key, "imsys SM-PKI Root")
    with pytest.raises(CertificateRejected) as exc:
        pki.validator().validate(other_root.certificate)
    assert _reason(exc) in (Reason.UNKNOWN_ISSUER, Reason.BAD_SIGNATURE)


@pytest.mark.parametrize("data", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_unparseable_certificate_is_malformed(data: bytes) -> None:
    with pytest.raises(CertificateRejected) as exc:
        load_certificate(data)
    assert _reason(exc) is Reason.MALFORMED


def test_truncated_certificate_is_malformed(issue) -> None:
    _, cert = issue("gateway-sig", "EABC0012345678")
    der = cert.public_bytes(serialization.Encoding.DER)
    with pytest.raises(CertificateRejected) as exc:
        load_certificate(der[: len(der) // 2])
    assert _reason(exc) is Reason.MALFORMED


@pytest.mark.parametrize("curve", ["brainpoolP384r1", "brainpoolP512r1"])
def test_larger_brainpool_curves_validate(pki: PkiDirectory, curve: str) -> None:
    _, cert = pki.issue_with_new_key("emt-enc", f"99000000000{curve[-4:-2]}", ca="emt-ca",
                                     curve=curve)
    assert pki.validator().validate(cert, profile="emt-enc").identifier.startswith("99")
