"""The initial configuration file, profile ``imsys-initial-config/1`` (seed 003 §2.3.1.3)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from commissioning_helpers import GATEWAY_ID, GWA_ADDRESS, GWA_ID, Gwa, IssueFn
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from imsys.crypto import cms
from imsys.crypto.primitives import ecdsa_verify
from imsys.gateway.commissioning import CommissioningReason, CommissioningRejected, SmPkiTrust
from imsys.gateway.initial_config import (
    CERTIFICATE_PROFILES,
    PROFILE,
    CertifiedKey,
    GwaAddress,
    InitialConfiguration,
    public_key_label,
    verify_initial_configuration,
)
from imsys.gwa import answer_admin_challenge, sign_initial_configuration
from imsys.pki import PkiDirectory

R = CommissioningReason


@pytest.fixture(scope="session")
def gwa(pki: PkiDirectory, issue: IssueFn) -> Gwa:
    return Gwa(pki, issue)


def check(document: bytes, pki: PkiDirectory, trust: SmPkiTrust | None = None,
          **kw: object):  # type: ignore[no-untyped-def]
    return verify_initial_configuration(document, anchor=pki.root.certificate,
                                        trust=trust or SmPkiTrust(), gateway_id=GATEWAY_ID,
                                        **kw)  # type: ignore[arg-type]


@contextmanager
def rejected(reason: CommissioningReason
             ) -> Iterator[pytest.ExceptionInfo[CommissioningRejected]]:
    """Expect a :class:`CommissioningRejected` with exactly ``reason``."""
    with pytest.raises(CommissioningRejected) as info:
        yield info
    assert info.value.reason is reason, info.value


def resign(gwa: Gwa, content: dict[str, object]) -> bytes:
    return cms.sign(json.dumps(content).encode(), gwa.keys["sig"], gwa.certificates["sig"])


def test_the_content_is_canonical_json_of_profile_v1(gwa: Gwa) -> None:
    configuration = gwa.configuration()
    data = json.loads(configuration.encode())
    assert data["profile"] == PROFILE == "imsys-initial-config/1"
    assert data["gateway_id"] == GATEWAY_ID
    assert data["administrator"] == {"id": GWA_ID,
                                     "address": {"host": "gwa.example.test", "port": 4443}}
    assert list(data["certificates"]) == sorted(CERTIFICATE_PROFILES)
    tls = data["certificates"]["GWADM_TLS_CRT"]
    assert base64.b64decode(tls["certificate"]) == gwa.certificates["tls"].public_bytes(
        serialization.Encoding.DER)
    assert len(tls["chain"]) == 1  # the Sub-CA; the root is excluded
    assert InitialConfiguration.decode(configuration.encode()) == configuration
    assert configuration.encode() == json.dumps(data, sort_keys=True,
                                                separators=(",", ":")).encode()
    assert [public_key_label(n) for n in CERTIFICATE_PROFILES] == [
        "GWADM_TLS_PUB", "GWADM_SIG_PUB", "GWADM_ENC_PUB", "GWADM_AUT_PUB"]


def test_a_signed_file_of_the_gwa_verifies(gwa: Gwa, pki: PkiDirectory) -> None:
    when = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
    document = sign_initial_configuration(gwa.configuration(), gwa.keys["sig"],
                                          signing_time=when)
    verified = check(document, pki)
    assert verified.configuration == gwa.configuration()
    assert verified.signing_time == when


def test_a_file_signed_with_another_gwa_key_is_refused(gwa: Gwa, pki: PkiDirectory) -> None:
    # the TLS key and certificate make a valid CMS signature – but not by GWADM_SIG_CRT
    document = sign_initial_configuration(gwa.configuration(), gwa.keys["tls"],
                                          certificate=gwa.certificates["tls"])
    with rejected(R.SIGNATURE_INVALID) as info:
        check(document, pki)
    assert info.value.context["cms_reason"] == "signer-mismatch"


def test_a_revoked_gwa_certificate_is_refused_when_crls_are_required(
        gwa: Gwa, pki: PkiDirectory) -> None:
    _, aut = pki.issue_with_new_key("gwa-aut", GWA_ID)
    document = sign_initial_configuration(gwa.configuration(aut=aut), gwa.keys["sig"])
    strict = SmPkiTrust(crls=[pki.crl(name) for name in pki.ca_names], require_crl=True)
    assert check(document, pki, strict).configuration.aut.certificate == aut
    pki.revoke(aut.serial_number, "key_compromise")
    strict = SmPkiTrust(crls=[pki.crl(name) for name in pki.ca_names], require_crl=True)
    with rejected(R.CERTIFICATE_INVALID) as info:
        check(document, pki, strict)
    assert info.value.context == {"certificate": "GWADM_AUT_CRT", "pki_reason": "revoked"}


@pytest.mark.parametrize("change", [
    "profile", "extra-field", "missing-certificate", "pem", "base64", "root-in-chain",
    "long-chain", "port", "host", "administrator-id", "not-an-object",
])
def test_malformed_content_is_refused(change: str, gwa: Gwa, pki: PkiDirectory) -> None:
    data = gwa.configuration().to_json()
    certs = data["certificates"]
    root_b64 = base64.b64encode(pki.root.certificate.public_bytes(
        serialization.Encoding.DER)).decode()
    content: object = data
    if change == "profile":
        data["profile"] = "imsys-initial-config/2"
    elif change == "extra-field":
        data["firmware"] = "1.0"
    elif change == "missing-certificate":
        del certs["GWADM_AUT_CRT"]
    elif change == "pem":
        certs["GWADM_TLS_CRT"]["certificate"] = base64.b64encode(
            gwa.certificates["tls"].public_bytes(serialization.Encoding.PEM)).decode()
    elif change == "base64":
        certs["GWADM_TLS_CRT"]["certificate"] = "***"
    elif change == "root-in-chain":
        certs["GWADM_ENC_CRT"]["chain"].append(root_b64)
    elif change == "long-chain":
        certs["GWADM_ENC_CRT"]["chain"] = certs["GWADM_ENC_CRT"]["chain"] * 5
    elif change == "port":
        data["administrator"]["address"]["port"] = 70000
    elif change == "host":
        data["administrator"]["address"]["host"] = "gwa example"
    elif change == "administrator-id":
        data["administrator"]["id"] = ""
    elif change == "not-an-object":
        content = [data]
    with rejected(R.MALFORMED):
        check(resign(gwa, content), pki)  # type: ignore[arg-type]


def test_oversized_or_unreadable_files_are_malformed(gwa: Gwa, pki: PkiDirectory) -> None:
    document = gwa.document()
    with rejected(R.MALFORMED):
        check(document, pki, max_size=len(document) - 1)
    with rejected(R.MALFORMED):
        check(b"\x30\x03\x02\x01", pki)
    with rejected(R.MALFORMED):
        check(cms.sign(b"{}", gwa.keys["sig"], gwa.certificates["sig"],
                       content_type="1.2.3.4"), pki)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_fail_only_with_commissioning_rejected(data: bytes,
                                                               pki: PkiDirectory) -> None:
    with pytest.raises(CommissioningRejected):
        check(data, pki)


def test_address_and_chain_are_validated_on_construction(gwa: Gwa, pki: PkiDirectory) -> None:
    with rejected(R.MALFORMED):
        GwaAddress("gwa.example.test", 0)
    with rejected(R.MALFORMED):
        GwaAddress("", 443)
    with rejected(R.MALFORMED):
        CertifiedKey(gwa.certificates["tls"], (pki.root.certificate,))
    assert GWA_ADDRESS.to_json() == {"host": "gwa.example.test", "port": 4443}


def test_the_gwa_answers_the_challenge_with_gwadm_aut(gwa: Gwa) -> None:
    challenge = bytes(range(32))
    signature = answer_admin_challenge(challenge, gwa.keys["aut"])
    ecdsa_verify(gwa.keys["aut"].public_key(), signature, challenge)
