"""The persistent PKI: issuance from requests, renewal, revocation, CRLs, persistence."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imsys.core.clock import SimulatedClock
from imsys.core.errors import CertificateRejected, Reason, Rejected, UsageError
from imsys.crypto import SoftwareKey
from imsys.pki import PROFILES, PkiDirectory, SubjectName, build_csr, load_certificate, profile
from imsys.pki.profiles import KeyUsage, Purpose, Role


def test_every_profile_has_distinct_policy_and_documented_usage() -> None:
    oids = [p.policy_oid for p in PROFILES.values()]
    assert len(set(oids)) == len(oids)
    for p in PROFILES.values():
        if p.purpose is Purpose.ENC:
            assert p.key_usage == {KeyUsage.KEY_AGREEMENT}
        if p.purpose in (Purpose.TLS, Purpose.SIG, Purpose.AUT):
            assert KeyUsage.DIGITAL_SIGNATURE in p.key_usage
            assert KeyUsage.KEY_AGREEMENT not in p.key_usage


def test_seed_003_certificate_names_have_profiles() -> None:
    names = {p.seed_name for p in PROFILES.values()}
    for name in ("ROOT_WAN_SIG_CRT", "GWADM_TLS_CRT", "GWADM_SIG_CRT", "GWADM_ENC_CRT",
                 "GWADM_AUT_CRT", "GW_WAN_TLS_CRT_PRE", "GW_WAN_SIG_CRT_PRE",
                 "GW_WAN_ENC_CRT_PRE", "GW_WAN_TLS_CRT", "GW_WAN_SIG_CRT", "GW_WAN_ENC_CRT"):
        assert name in names


def test_issue_from_request_keeps_the_key_with_the_requester(pki: PkiDirectory) -> None:
    key = SoftwareKey.generate()  # stands in for a key inside the gateway's security module
    csr = build_csr(key, SubjectName("EABC0000000042"))
    cert = pki.issue("gateway-pre-sig", "EABC0000000042", csr=csr)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert cert.subject.rfc4514_string() == "CN=EABC0000000042,OU=SMGW,O=imsys,C=DE"
    assert pki.record(cert.serial_number).profile == "gateway-pre-sig"
    assert pki.validator().validate(cert, profile="gateway-pre-sig")


def test_request_with_broken_proof_of_possession_is_refused(pki: PkiDirectory) -> None:
    key = SoftwareKey.generate()
    csr = build_csr(key, SubjectName("EABC0000000043"))
    from cryptography.hazmat.primitives import serialization

    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-2] ^= 0x01
    with pytest.raises(CertificateRejected) as exc:
        pki.issue("gateway-sig", "EABC0000000043", csr=bytes(der))
    assert exc.value.reason in (Reason.BAD_SIGNATURE, Reason.MALFORMED)


def test_validity_never_exceeds_the_issuing_ca(pki: PkiDirectory) -> None:
    _, cert = pki.issue_with_new_key("meter-tls", "1EMH0000000001",
                                     validity=timedelta(days=365 * 30))
    assert cert.not_valid_after_utc <= pki.ca().certificate.not_valid_after_utc


def test_renewal_issues_successor_and_can_supersede(pki: PkiDirectory) -> None:
    _, old = pki.issue_with_new_key("emt-sig", "9900000000777", ca="emt-ca")
    new_key = SoftwareKey.generate()
    new = pki.renew(old.serial_number, csr=build_csr(new_key, SubjectName("9900000000777")),
                    revoke_old=True)
    assert new.subject == old.subject and new.serial_number != old.serial_number
    assert pki.record(new.serial_number).replaces == old.serial_number
    assert pki.record(old.serial_number).reason == "superseded"
    validator = pki.validator()
    validator.validate(new, profile="emt-sig")
    with pytest.raises(CertificateRejected) as exc:
        validator.validate(old)
    assert exc.value.reason is Reason.REVOKED
    # renewing without a request re-certifies the same key
    again = pki.renew(new.serial_number)
    assert again.public_key().public_numbers() == new_key.public_key().public_numbers()


def test_revoked_certificate_cannot_be_renewed(pki: PkiDirectory) -> None:
    _, cert = pki.issue_with_new_key("technician-tls", "TECH-0001")
    pki.revoke(cert.serial_number, "cessation_of_operation")
    with pytest.raises(CertificateRejected):
        pki.renew(cert.serial_number)


def test_crl_numbers_increase_and_list_revocations(pki: PkiDirectory) -> None:
    before = pki.crl("emt-ca")
    _, cert = pki.issue_with_new_key("emt-tls", "9900000000888", ca="emt-ca")
    pki.revoke(cert.serial_number, "key_compromise")
    after = pki.crl("emt-ca")
    number = lambda c: c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    assert number(after) > number(before)
    assert after.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


def test_state_survives_reopening(pki: PkiDirectory) -> None:
    _, cert = pki.issue_with_new_key("consumer-tls", "consumer-1")
    reopened = PkiDirectory.open(pki.path)
    assert reopened.root.certificate == pki.root.certificate
    assert reopened.certificate(cert.serial_number) == cert
    reopened.validator().validate(cert, profile="consumer-tls")


def test_ca_keys_are_private_files(pki: PkiDirectory) -> None:
    for name in pki.ca_names:
        mode = (pki.path / "ca" / name / "key.pem").stat().st_mode & 0o777
        assert mode == 0o600


def test_passphrase_protects_ca_keys(tmp_path) -> None:
    PkiDirectory.init(tmp_path / "p", passphrase=b"correct horse")
    assert b"ENCRYPTED" in (tmp_path / "p" / "ca" / "root" / "key.pem").read_bytes()
    with pytest.raises(Rejected):
        PkiDirectory.open(tmp_path / "p", passphrase=b"wrong").root  # noqa: B018
    assert PkiDirectory.open(tmp_path / "p", passphrase=b"correct horse").root


def test_init_refuses_an_existing_pki_and_open_refuses_none(tmp_path, pki) -> None:
    with pytest.raises(UsageError):
        PkiDirectory.init(pki.path)
    with pytest.raises(UsageError):
        PkiDirectory.open(tmp_path / "nothing")


def test_root_issues_only_sub_cas(pki: PkiDirectory) -> None:
    with pytest.raises(UsageError):
        pki.issue_with_new_key("gateway-tls", "E1", ca="root")
    with pytest.raises(UsageError):
        pki.issue_with_new_key("sub-ca", "E1")


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(CertificateRejected) as exc:
        profile("gateway-xyz")
    assert exc.value.reason is Reason.WRONG_ROLE


def test_concurrent_issuers_lose_no_record(pki: PkiDirectory) -> None:
    before = len(pki.records())
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            other = PkiDirectory.open(pki.path)  # separate objects, as separate processes
            for i in range(5):
                other.issue_with_new_key("meter-tls", f"1EMH{n:04d}{i:06d}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(pki.records()) == before + 20
    json.loads((pki.path / "index.json").read_text())  # still well-formed


def test_simulated_clock_drives_validity(tmp_path) -> None:
    from datetime import UTC, datetime

    clock = SimulatedClock(datetime(2030, 1, 1, tzinfo=UTC))
    p = PkiDirectory.init(tmp_path / "sim", clock=clock)
    _, cert = p.issue_with_new_key("gateway-tls", "ESIM0000000001")
    assert cert.not_valid_before_utc.year == 2029  # five minutes of slack before 2030-01-01
    clock.advance(timedelta(days=800))
    with pytest.raises(CertificateRejected) as exc:
        p.validator().validate(cert)
    assert exc.value.reason is Reason.EXPIRED


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600))
def test_certificate_parser_rejects_garbage_only_with_typed_errors(pki, data: bytes) -> None:
    try:
        cert = load_certificate(data)
    except Rejected:
        return
    with pytest.raises(Rejected):
        pki.validator().validate(cert)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), value=st.integers(min_value=0, max_value=255))
def test_mutated_certificate_is_rejected_or_unchanged(pki, issue, position: int,
                                                     value: int) -> None:
    from cryptography.hazmat.primitives import serialization

    _, cert = issue("gateway-enc", "EABC0012345678")
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    position %= len(der)
    if der[position] == value:
        return
    der[position] = value
    try:
        mutated = load_certificate(bytes(der))
        pki.validator().validate(mutated, profile="gateway-enc")
    except Rejected:
        return
    # a mutation that still validates may only touch bytes outside the signed part
    assert mutated.tbs_certificate_bytes == cert.tbs_certificate_bytes


def test_role_and_purpose_lookup() -> None:
    from imsys.pki.profiles import profile_for

    assert profile_for(Role.GWA, Purpose.AUT).seed_name == "GWADM_AUT_CRT"


def test_certificate_with_an_invalid_version_is_malformed(issue) -> None:  # type: ignore[no-untyped-def]
    """hypothesis found it: cryptography's InvalidVersion is no ValueError."""
    from cryptography.hazmat.primitives import serialization

    _, cert = issue("gateway-enc", "EABC0012345678")
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    version = der.index(bytes([0xA0, 0x03, 0x02, 0x01, 0x02]))  # [0] INTEGER 2 (v3)
    der[version + 4] = 0x01
    with pytest.raises(CertificateRejected) as refused:
        load_certificate(bytes(der))
    assert refused.value.reason is Reason.MALFORMED
