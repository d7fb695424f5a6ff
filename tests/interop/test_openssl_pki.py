"""The SM-PKI as OpenSSL sees it: chains and CRLs verify, requests cross both ways."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from imsys.crypto import SoftwareKey
from imsys.pki import PkiDirectory, SubjectName, build_csr, pem

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed"),
]


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)


def _write_trust(pki: PkiDirectory, folder: Path) -> None:
    (folder / "root.pem").write_bytes(pem(pki.root.certificate))
    (folder / "subs.pem").write_bytes(b"".join(pem(pki.ca(n).certificate)
                                               for n in pki.settings["sub_cas"]))
    (folder / "crls.pem").write_bytes(b"".join(pem(pki.crl(n)) for n in pki.ca_names))


def test_openssl_verifies_chain_with_crls_and_sees_revocation(pki: PkiDirectory,
                                                              tmp_path: Path) -> None:
    _, good = pki.issue_with_new_key("gwa-sig", "GWA-OSSL-1")
    _, bad = pki.issue_with_new_key("gwa-sig", "GWA-OSSL-2")
    pki.revoke(bad.serial_number, "key_compromise")
    _write_trust(pki, tmp_path)
    (tmp_path / "good.pem").write_bytes(pem(good))
    (tmp_path / "bad.pem").write_bytes(pem(bad))
    common = ["verify", "-x509_strict", "-crl_check_all", "-CAfile", str(tmp_path / "root.pem"),
              "-untrusted", str(tmp_path / "subs.pem"), "-CRLfile", str(tmp_path / "crls.pem")]
    ok = _openssl(*common, str(tmp_path / "good.pem"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    revoked = _openssl(*common, str(tmp_path / "bad.pem"))
    assert revoked.returncode != 0 and "certificate revoked" in revoked.stdout + revoked.stderr


def test_openssl_accepts_imsys_request(tmp_path: Path) -> None:
    csr = build_csr(SoftwareKey.generate("brainpoolP384r1"), SubjectName("EABC0012345678"))
    (tmp_path / "req.pem").write_bytes(pem(csr))
    result = _openssl("req", "-in", str(tmp_path / "req.pem"), "-verify", "-noout")
    assert result.returncode == 0
    assert "verify OK" in result.stdout + result.stderr


def test_imsys_certifies_openssl_request(pki: PkiDirectory, tmp_path: Path) -> None:
    key, req = tmp_path / "k.pem", tmp_path / "r.pem"
    assert _openssl("ecparam", "-name", "brainpoolP256r1", "-genkey", "-noout",
                    "-out", str(key)).returncode == 0
    assert _openssl("req", "-new", "-key", str(key), "-subj", "/CN=9900000000002",
                    "-sha256", "-out", str(req)).returncode == 0
    cert = pki.issue("emt-tls", "9900000000002", csr=req.read_bytes(), ca="emt-ca")
    pki.validator().validate(cert, profile="emt-tls")
    (tmp_path / "c.pem").write_bytes(pem(cert))
    pub_cert = _openssl("x509", "-in", str(tmp_path / "c.pem"), "-noout", "-pubkey").stdout
    pub_key = _openssl("pkey", "-in", str(key), "-pubout").stdout
    assert pub_cert == pub_key


def test_openssl_refuses_nist_request_at_imsys(pki: PkiDirectory, tmp_path: Path) -> None:
    from imsys.core.errors import CertificateRejected, Reason

    key, req = tmp_path / "k.pem", tmp_path / "r.pem"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    _openssl("req", "-new", "-key", str(key), "-subj", "/CN=x", "-out", str(req))
    with pytest.raises(CertificateRejected) as exc:
        pki.issue("emt-tls", "x", csr=req.read_bytes(), ca="emt-ca")
    assert exc.value.reason is Reason.WRONG_CURVE
