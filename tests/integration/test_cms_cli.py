"""`imsys cms seal/open` on PEM files, also against messages made by `openssl cms`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imsys.cli.main import app
from imsys.pki import PkiDirectory, pem

runner = CliRunner()
CONTENT = b'<?xml version="1.0"?><UsagePoints xmlns="http://vde.de/AR_2418-6.xsd"/>\n' * 20


@pytest.fixture(scope="module")
def parties(tmp_path_factory: pytest.TempPathFactory, pki: PkiDirectory, issue) -> Path:
    folder = tmp_path_factory.mktemp("cms-cli")
    for name, (profile, ident, ca) in {
        "gw": ("gateway-sig", "EABC0012345678", "sub-ca"),
        "emt": ("emt-enc", "9900000000001", "emt-ca"),
        "other": ("emt-enc", "9900000000002", "emt-ca"),
    }.items():
        key, cert = issue(profile, ident, ca=ca)
        (folder / f"{name}.key").write_bytes(key.private_key_pem())
        (folder / f"{name}.pem").write_bytes(pem(cert))
    (folder / "ca.pem").write_bytes(b"".join(pem(pki.ca(n).certificate)
                                             for n in pki.ca_names))
    (folder / "doc.xml").write_bytes(CONTENT)
    return folder


def _run(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def test_seal_then_open_with_expected_signer_and_pki(parties: Path, pki: PkiDirectory) -> None:
    p = parties
    code, out = _run("cms", "seal", "--key", p / "gw.key", "--cert", p / "gw.pem",
                     "--recipient", p / "emt.pem", p / "doc.xml", p / "doc.cms")
    assert code == 0, out
    code, out = _run("cms", "open", "--key", p / "emt.key", "--cert", p / "emt.pem",
                     "--signer", p / "gw.pem", "--pki", pki.path, p / "doc.cms", p / "out.xml")
    assert code == 0, out
    assert (p / "out.xml").read_bytes() == CONTENT


def test_open_refuses_wrong_recipient_and_wrong_signer(parties: Path) -> None:
    p = parties
    _run("cms", "seal", "--key", p / "gw.key", "--cert", p / "gw.pem", "--recipient",
         p / "emt.pem", p / "doc.xml", p / "doc2.cms")
    code, out = _run("cms", "open", "--key", p / "other.key", "--cert", p / "other.pem",
                     p / "doc2.cms", p / "nope.xml")
    assert code == 1 and "wrong-recipient" in out
    assert not (p / "nope.xml").exists()
    code, out = _run("cms", "open", "--key", p / "emt.key", "--cert", p / "emt.pem",
                     "--signer", p / "other.pem", p / "doc2.cms", p / "nope.xml")
    assert code == 1 and "signer-mismatch" in out
    assert not (p / "nope.xml").exists()


def test_open_refuses_tampered_message_and_writes_nothing(parties: Path) -> None:
    p = parties
    _run("cms", "seal", "--key", p / "gw.key", "--cert", p / "gw.pem", "--recipient",
         p / "emt.pem", p / "doc.xml", p / "doc3.cms")
    data = bytearray((p / "doc3.cms").read_bytes())
    data[-40] ^= 0xFF
    (p / "bad.cms").write_bytes(bytes(data))
    code, out = _run("cms", "open", "--key", p / "emt.key", "--cert", p / "emt.pem",
                     p / "bad.cms", p / "bad.xml")
    assert code == 1 and "tampered" in out
    assert not (p / "bad.xml").exists()
    (p / "short.cms").write_bytes(bytes(data[:100]))
    code, out = _run("cms", "open", "--key", p / "emt.key", "--cert", p / "emt.pem",
                     p / "short.cms", p / "bad.xml")
    assert code == 1 and "truncated" in out


def test_help_documents_every_argument() -> None:
    for command in ("seal", "open"):
        result = runner.invoke(app, ["cms", command, "--help"])
        text = " ".join(result.output.split())
        assert result.exit_code == 0
        for option in ("--key", "--cert", "IN", "OUT"):
            assert option in text
    assert "--recipient" in " ".join(runner.invoke(app, ["cms", "seal", "--help"]).output.split())
    assert "--signer" in " ".join(runner.invoke(app, ["cms", "open", "--help"]).output.split())


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_open_accepts_openssl_sign_then_encrypt(parties: Path) -> None:
    """`openssl cms -sign | openssl cms -encrypt` nests SignedData inside id-data."""
    p = parties
    signed = subprocess.run(
        ["openssl", "cms", "-sign", "-binary", "-nodetach", "-md", "sha256", "-outform", "DER",
         "-signer", p / "gw.pem", "-inkey", p / "gw.key", "-in", p / "doc.xml"],
        capture_output=True, check=True).stdout
    (p / "ossl-signed.der").write_bytes(signed)
    subprocess.run(
        ["openssl", "cms", "-encrypt", "-binary", "-aes-128-gcm", "-recip", p / "emt.pem",
         "-keyopt", "ecdh_kdf_md:sha256", "-inform", "DER", "-outform", "DER",
         "-in", p / "ossl-signed.der", "-out", p / "ossl.cms"], check=True, capture_output=True)
    code, out = _run("cms", "open", "--key", p / "emt.key", "--cert", p / "emt.pem",
                     "--signer", p / "gw.pem", p / "ossl.cms", p / "ossl.xml")
    assert code == 0, out
    assert (p / "ossl.xml").read_bytes() == CONTENT


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_openssl_opens_what_imsys_sealed(parties: Path) -> None:
    p = parties
    _run("cms", "seal", "--key", p / "gw.key", "--cert", p / "gw.pem", "--recipient",
         p / "emt.pem", p / "doc.xml", p / "for-openssl.cms")
    inner = subprocess.run(
        ["openssl", "cms", "-decrypt", "-inform", "DER", "-in", p / "for-openssl.cms",
         "-recip", p / "emt.pem", "-inkey", p / "emt.key", "-binary"],
        capture_output=True, check=True).stdout
    # the decrypted content of an id-signedData envelope is the bare SignedData; openssl cms
    # -verify reads a ContentInfo, so wrap it as RFC 5652 §3 does
    from asn1crypto import cms as a_cms

    content_info = a_cms.ContentInfo({"content_type": "signed_data",
                                      "content": a_cms.SignedData.load(inner)})
    (p / "inner.der").write_bytes(content_info.dump())
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-inform", "DER", "-in", p / "inner.der",
         "-CAfile", p / "ca.pem", "-binary"], capture_output=True)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout == CONTENT
