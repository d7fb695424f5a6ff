"""`imsys pki …` on a fresh directory: init, request, issue, verify, revoke, crl, show."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from imsys.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "pki"
    result = runner.invoke(app, ["pki", "init", str(path), "--sub-ca", "sub-ca",
                                 "--sub-ca", "emt-ca"])
    assert result.exit_code == 0, result.output
    assert "Sub-CA 'emt-ca'" in result.output
    return path


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())  # Rich wraps long lines


def test_request_issue_verify_revoke_cycle(pki_dir: Path, tmp_path: Path) -> None:
    code, out = _run("pki", "request", "--id", "EABC0012345678", "--key-out",
                     str(tmp_path / "gw.key"), "--out", str(tmp_path / "gw.csr"))
    assert code == 0, out
    code, out = _run("pki", "issue", "--pki", str(pki_dir), "--profile", "gateway-sig",
                     "--id", "EABC0012345678", "--csr", str(tmp_path / "gw.csr"),
                     "--out", str(tmp_path / "gw.pem"), "--chain")
    assert code == 0, out
    assert (tmp_path / "gw.pem").read_bytes().count(b"BEGIN CERTIFICATE") == 3
    code, out = _run("pki", "verify", str(tmp_path / "gw.pem"), "--pki", str(pki_dir),
                     "--profile", "gateway-sig")
    assert code == 0 and "valid" in out and "EABC0012345678" in out
    code, out = _run("pki", "verify", str(tmp_path / "gw.pem"), "--pki", str(pki_dir),
                     "--profile", "gateway-enc")
    assert code == 1 and "wrong-key-usage" in out
    code, out = _run("pki", "revoke", str(tmp_path / "gw.pem"), "--pki", str(pki_dir),
                     "--reason", "key_compromise")
    assert code == 0, out
    code, out = _run("pki", "verify", str(tmp_path / "gw.pem"), "--pki", str(pki_dir))
    assert code == 1 and "revoked" in out


def test_issue_with_generated_key_and_show(pki_dir: Path, tmp_path: Path) -> None:
    code, out = _run("pki", "issue", "--pki", str(pki_dir), "--profile", "emt-enc",
                     "--id", "9900000000001", "--ca", "emt-ca", "--key-out",
                     str(tmp_path / "emt.key"), "--out", str(tmp_path / "emt.pem"))
    assert code == 0, out
    assert (tmp_path / "emt.key").stat().st_mode & 0o777 == 0o600
    code, out = _run("pki", "show", "--pki", str(pki_dir))
    assert code == 0 and "emt-enc" in out and "9900000000001" in out
    code, out = _run("pki", "show", str(tmp_path / "emt.pem"))
    assert code == 0 and "key_agreement" in out and "brainpoolP256r1" in out


def test_crl_command_and_chain_export(pki_dir: Path, tmp_path: Path) -> None:
    code, out = _run("pki", "crl", "--pki", str(pki_dir))
    assert code == 0 and "root: CRL #" in out and "emt-ca: CRL #" in out
    code, out = _run("pki", "crl", "--pki", str(pki_dir), "--ca", "sub-ca", "--out",
                     str(tmp_path / "sub.crl"))
    assert code == 0 and b"BEGIN X509 CRL" in (tmp_path / "sub.crl").read_bytes()
    code, out = _run("pki", "chain", "--pki", str(pki_dir), "--root")
    assert code == 0 and out.count("BEGIN CERTIFICATE") == 1


def test_renew(pki_dir: Path, tmp_path: Path) -> None:
    _run("pki", "issue", "--pki", str(pki_dir), "--profile", "gwa-aut", "--id", "GWA-1",
         "--key-out", str(tmp_path / "a.key"), "--out", str(tmp_path / "a.pem"))
    code, out = _run("pki", "renew", str(tmp_path / "a.pem"), "--pki", str(pki_dir),
                     "--out", str(tmp_path / "a2.pem"), "--revoke-old")
    assert code == 0 and "renewed" in out
    code, _ = _run("pki", "verify", str(tmp_path / "a2.pem"), "--pki", str(pki_dir),
                   "--profile", "gwa-aut")
    assert code == 0


def test_wrong_use_is_a_clear_error(pki_dir: Path, tmp_path: Path) -> None:
    code, out = _run("pki", "issue", "--pki", str(pki_dir), "--profile", "gateway-tls",
                     "--id", "x", "--out", str(tmp_path / "x.pem"))
    assert code == 2 and "exactly one of --csr or --key-out" in out
    code, out = _run("pki", "issue", "--pki", str(pki_dir), "--profile", "nonsense",
                     "--id", "x", "--key-out", str(tmp_path / "k"), "--out", str(tmp_path / "x"))
    assert code == 1 and "unknown certificate profile" in out
    assert not (tmp_path / "x").exists()
    (tmp_path / "junk.pem").write_bytes(b"not a certificate")
    code, out = _run("pki", "verify", str(tmp_path / "junk.pem"), "--pki", str(pki_dir))
    assert code == 1 and "malformed" in out
    code, out = _run("pki", "show", "--pki", str(tmp_path / "nope"))
    assert code == 2 and "holds no PKI" in out
