"""imsys.crypto.cms against the ``openssl cms`` command line tool, in both directions.

The PKI is made by OpenSSL as well (``openssl req`` / ``openssl x509``), so imsys also reads
certificates and keys it did not write. Every message crosses as DER through files in a
temporary directory.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asn1crypto import cms as asn1
from cryptography import x509

from imsys.crypto import cms
from imsys.crypto.primitives import CURVES, SoftwareKey

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not on PATH"),
]

DOCUMENT = b"<MeterReading obis='1-0:1.8.0*255'>4711.0815</MeterReading>\n" * 16
CURVE_HASH = {"brainpoolP256r1": "sha256", "brainpoolP384r1": "sha384",
              "brainpoolP512r1": "sha512"}
_SIG_EXTENSIONS = """basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
subjectKeyIdentifier=hash
"""
_ENC_EXTENSIONS = """basicConstraints=critical,CA:FALSE
keyUsage=critical,keyAgreement
subjectKeyIdentifier=hash
"""


def openssl(*args: str | Path, stdin: bytes | None = None) -> bytes:
    """Run ``openssl`` and return its stdout; a failure shows OpenSSL's stderr."""
    result = subprocess.run(["openssl", *map(str, args)], input=stdin, capture_output=True,
                            check=False)
    if result.returncode != 0:
        pytest.fail(f"openssl {' '.join(map(str, args))} failed:\n"
                    f"{result.stderr.decode(errors='replace')}")
    return result.stdout


class Party:
    """A key and certificate made by OpenSSL, as files and as imsys objects."""

    def __init__(self, directory: Path, name: str) -> None:
        self.key_file = directory / f"{name}.key"
        self.certificate_file = directory / f"{name}.pem"
        self.key = SoftwareKey.from_pem(self.key_file.read_bytes())
        self.certificate = x509.load_pem_x509_certificate(self.certificate_file.read_bytes())


class Pki:
    """A CA on brainpoolP256r1 with SIG and ENC end entities on every permitted curve."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca_file = directory / "ca.pem"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:brainpoolP256r1", "-nodes", "-keyout", directory / "ca.key",
                "-out", self.ca_file, "-subj", "/O=imsys interop/CN=Interop Sub-CA",
                "-days", "30", "-sha256",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.sig: dict[str, Party] = {}
        self.enc: dict[str, Party] = {}
        serial = 100
        for curve in CURVES:
            for role, extensions, parties in (("sig", _SIG_EXTENSIONS, self.sig),
                                              ("enc", _ENC_EXTENSIONS, self.enc)):
                serial += 1
                name = f"{role}-{curve}"
                (directory / f"{name}.ext").write_text(extensions)
                openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
                        f"ec_paramgen_curve:{curve}", "-nodes",
                        "-keyout", directory / f"{name}.key", "-out", directory / f"{name}.csr",
                        "-subj", f"/O=imsys interop/CN={role.upper()} {curve}")
                openssl("x509", "-req", "-in", directory / f"{name}.csr", "-CA", self.ca_file,
                        "-CAkey", directory / "ca.key", "-set_serial", str(serial),
                        "-days", "30", "-sha256", "-extfile", directory / f"{name}.ext",
                        "-out", directory / f"{name}.pem")
                parties[curve] = Party(directory, name)

    def file(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("openssl-pki"))


@pytest.fixture(scope="module")
def document(pki: Pki) -> Path:
    return pki.file("document.xml", DOCUMENT)


# --------------------------------------------------------------------------- imsys → openssl


@pytest.mark.parametrize("curve", list(CURVES))
def test_openssl_verifies_imsys_signed_data(pki: Pki, curve: str) -> None:
    signer = pki.sig[curve]
    message = pki.file("signed.der", cms.sign(DOCUMENT, signer.key, signer.certificate,
                                              signing_time=datetime.now(UTC)))

    assert openssl("cms", "-verify", "-CAfile", pki.ca_file, "-inform", "DER",
                   "-in", message) == DOCUMENT


def test_openssl_verifies_imsys_detached_signature(pki: Pki, document: Path) -> None:
    signer = pki.sig["brainpoolP256r1"]
    message = pki.file("detached.der", cms.sign(DOCUMENT, signer.key, signer.certificate,
                                                detached=True))

    assert openssl("cms", "-verify", "-CAfile", pki.ca_file, "-inform", "DER", "-in", message,
                   "-content", document, "-binary") == DOCUMENT


@pytest.mark.parametrize("authenticated", [True, False], ids=["gcm", "cbc"])
@pytest.mark.parametrize("key_bits", [128, 256])
def test_openssl_decrypts_imsys_envelope_for_each_of_three_recipients(
        pki: Pki, authenticated: bool, key_bits: int) -> None:
    message = pki.file("enveloped.der", cms.encrypt(
        DOCUMENT, [p.certificate for p in pki.enc.values()], authenticated=authenticated,
        key_bits=key_bits))

    for recipient in pki.enc.values():
        assert openssl("cms", "-decrypt", "-inform", "DER", "-in", message,
                       "-inkey", recipient.key_file, "-recip",
                       recipient.certificate_file) == DOCUMENT


@pytest.mark.parametrize("authenticated", [True, False], ids=["gcm", "cbc"])
def test_openssl_decrypts_then_verifies_imsys_sealed_message(pki: Pki,
                                                             authenticated: bool) -> None:
    signer, recipient = pki.sig["brainpoolP256r1"], pki.enc["brainpoolP256r1"]
    message = pki.file("sealed.der", cms.seal(DOCUMENT, signer.key, signer.certificate,
                                              [recipient.certificate],
                                              authenticated=authenticated))

    signed_data = openssl("cms", "-decrypt", "-inform", "DER", "-in", message,
                          "-inkey", recipient.key_file, "-recip", recipient.certificate_file)
    # the inner content type is id-signedData, so OpenSSL writes out the bare SignedData;
    # its verifier reads a ContentInfo, so wrap it in one
    content_info = asn1.ContentInfo({"content_type": "signed_data",
                                     "content": asn1.SignedData.load(signed_data)}).dump()
    assert openssl("cms", "-verify", "-CAfile", pki.ca_file, "-inform", "DER",
                   "-in", pki.file("inner.der", content_info)) == DOCUMENT


# --------------------------------------------------------------------------- openssl → imsys


@pytest.mark.parametrize("curve", list(CURVES))
@pytest.mark.parametrize("options", [["-binary"], ["-binary", "-stream"],
                                     ["-binary", "-keyid"]], ids=["der", "ber", "keyid"])
def test_imsys_verifies_openssl_signed_data(pki: Pki, document: Path, curve: str,
                                            options: list[str]) -> None:
    signer = pki.sig[curve]
    message = openssl("cms", "-sign", "-md", CURVE_HASH[curve], "-nodetach", *options,
                      "-in", document, "-signer", signer.certificate_file,
                      "-inkey", signer.key_file, "-outform", "DER")

    verified = cms.verify(message)

    assert verified.content == DOCUMENT
    assert verified.signer_certificate == signer.certificate
    assert verified.signing_time is not None
    assert cms.verify(message, signer_certificate=signer.certificate).content == DOCUMENT


def test_imsys_verifies_openssl_text_mode_signature(pki: Pki, document: Path) -> None:
    """Without -binary OpenSSL signs the canonical (CRLF) form of the text."""
    signer = pki.sig["brainpoolP256r1"]
    message = openssl("cms", "-sign", "-md", "sha256", "-nodetach", "-in", document,
                      "-signer", signer.certificate_file, "-inkey", signer.key_file,
                      "-outform", "DER")
    assert cms.verify(message).content == DOCUMENT.replace(b"\n", b"\r\n")


@pytest.mark.parametrize("options", [[], ["-noattr"]], ids=["attrs", "noattr"])
def test_imsys_verifies_openssl_detached_signature(pki: Pki, document: Path,
                                                   options: list[str]) -> None:
    signer = pki.sig["brainpoolP256r1"]
    message = openssl("cms", "-sign", "-md", "sha256", "-binary", *options, "-in", document,
                      "-signer", signer.certificate_file, "-inkey", signer.key_file,
                      "-outform", "DER")
    assert cms.verify(message, detached_content=DOCUMENT).content == DOCUMENT


@pytest.mark.parametrize(("curve", "options", "kdf"), [
    ("brainpoolP256r1", ["-aes-128-gcm"], "sha256"),
    ("brainpoolP256r1", ["-aes-128-gcm"], None),  # OpenSSL's default KDF hash: SHA-1
    ("brainpoolP256r1", ["-aes-256-cbc"], None),
    ("brainpoolP256r1", ["-aes-128-cbc"], "sha256"),
    ("brainpoolP256r1", ["-aes-128-gcm", "-aes192-wrap"], "sha224"),
    ("brainpoolP256r1", ["-aes-128-gcm", "-keyid"], "sha256"),
    ("brainpoolP256r1", ["-aes-128-gcm", "-stream"], "sha256"),
    ("brainpoolP384r1", ["-aes-256-gcm"], "sha384"),
    ("brainpoolP512r1", ["-aes-256-gcm"], "sha512"),
], ids=["gcm128-sha256", "gcm128-sha1", "cbc256-sha1", "cbc128-sha256", "wrap192-sha224",
        "keyid", "ber", "p384-gcm256-sha384", "p512-gcm256-sha512"])
def test_imsys_decrypts_openssl_envelope(pki: Pki, document: Path, curve: str,
                                         options: list[str], kdf: str | None) -> None:
    recipient = pki.enc[curve]
    # -keyopt applies to the -recip before it
    keyopt = [] if kdf is None else ["-keyopt", f"ecdh_kdf_md:{kdf}"]
    message = openssl("cms", "-encrypt", *options, "-binary", "-in", document,
                      "-outform", "DER", "-recip", recipient.certificate_file, *keyopt)

    assert cms.decrypt(message, recipient.key, recipient.certificate) == cms.Decrypted(
        DOCUMENT, cms.DATA)


def test_imsys_decrypts_openssl_envelope_for_three_recipients(pki: Pki, document: Path) -> None:
    message = openssl("cms", "-encrypt", "-aes-256-gcm", "-binary", "-in", document,
                      "-outform", "DER", *(p.certificate_file for p in pki.enc.values()))

    for recipient in pki.enc.values():
        assert cms.decrypt(message, recipient.key, recipient.certificate).content == DOCUMENT


@pytest.mark.parametrize("kdf", ["sha256", "sha1"])
def test_imsys_opens_openssl_sign_then_encrypt(pki: Pki, document: Path, kdf: str) -> None:
    """``openssl cms -sign | openssl cms -encrypt``: id-data holding ContentInfo(SignedData)."""
    signer, recipient = pki.sig["brainpoolP256r1"], pki.enc["brainpoolP256r1"]
    signed = openssl("cms", "-sign", "-md", "sha256", "-nodetach", "-binary", "-in", document,
                     "-signer", signer.certificate_file, "-inkey", signer.key_file,
                     "-outform", "DER")
    message = openssl("cms", "-encrypt", "-aes-128-gcm", "-binary", "-outform", "DER",
                      "-recip", recipient.certificate_file, "-keyopt", f"ecdh_kdf_md:{kdf}",
                      stdin=signed)

    opened = cms.open_sealed(message, recipient.key, recipient.certificate,
                             signer_certificate=signer.certificate)

    assert (opened.content, opened.content_type) == (DOCUMENT, cms.DATA)
    assert opened.signing_time is not None
