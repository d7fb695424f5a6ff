"""TR-03116-3 TLS contexts against the ``openssl s_server`` / ``s_client`` peers on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imsys.core.errors import Reason, TlsRejected
from imsys.crypto.tls import (
    POLICIES,
    Interface,
    TlsIdentity,
    check_peer,
    check_session_age,
    client_context,
    server_context,
)
from imsys.pki import PkiDirectory, pem

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed"),
]

ALL_GROUPS = "brainpoolP256r1:brainpoolP384r1:brainpoolP512r1:P-256:P-384"
OPENSSL_GROUP_NAMES = {"P-256": "secp256r1", "P-384": "secp384r1"}
SUITES = {
    "ECDHE-ECDSA-AES128-SHA256": 0xC023,
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
}


@dataclass
class Files:
    folder: Path
    paths: dict[str, Path] = field(default_factory=dict)

    def write(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        self.paths[name] = path
        return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, pki: PkiDirectory, issue) -> Files:
    f = Files(tmp_path_factory.mktemp("tls"))
    for name, (profile, ident, ca) in {
        "gw": ("gateway-tls", "EABC0012345678", "sub-ca"),
        "emt": ("emt-tls", "9900000000001", "emt-ca"),
    }.items():
        key, cert = issue(profile, ident, ca=ca)
        f.write(f"{name}.pem", pem(cert))
        f.write(f"{name}.key", key.private_key_pem())
        f.write(f"{name}-chain.pem", b"".join(pem(c) for c in pki.chain(ca)))
    f.write("root.pem", pem(pki.root.certificate))
    foreign = PkiDirectory.init(f.folder / "foreign-pki")
    key, cert = foreign.issue_with_new_key("gateway-tls", "EABC0012345678")
    f.write("foreign.pem", pem(cert))
    f.write("foreign.key", key.private_key_pem())
    f.write("foreign-chain.pem", b"".join(pem(c) for c in foreign.chain()))
    return f


def _identity(pki: PkiDirectory, issue, profile: str, ident: str, ca: str) -> TlsIdentity:
    key, cert = issue(profile, ident, ca=ca)
    return TlsIdentity((cert, *pki.chain(ca)), key)


def _anchors(pki: PkiDirectory):
    return [pki.root.certificate]


def _intermediates(pki: PkiDirectory):
    return [pki.ca(n).certificate for n in pki.settings["sub_cas"]]


class OneShotServer:
    """An imsys TLS server that takes one connection and records what happened."""

    def __init__(self, context: ssl.SSLContext, pki: PkiDirectory, profile: str) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.context, self.pki, self.profile = context, pki, profile
        self.result: dict[str, object] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.sock.accept()
        conn.settimeout(10)
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                self.result["cipher"] = tls.cipher()
                self.result["path"] = check_peer(tls, self.pki.validator(), self.profile)
                tls.sendall(b"imsys says hello\n")
        except (ssl.SSLError, OSError, TlsRejected) as exc:
            self.result["error"] = exc
        finally:
            self.sock.close()

    def join(self) -> dict[str, object]:
        self.thread.join(15)
        return self.result


def _s_client(port: int, files: Files, *extra: str, cert: str | None = "gw"
              ) -> subprocess.CompletedProcess[str]:
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
            "-CAfile", str(files.paths["root.pem"]), "-verify_return_error", "-ign_eof"]
    if cert:
        args += ["-cert", str(files.paths[f"{cert}.pem"]), "-key", str(files.paths[f"{cert}.key"]),
                 "-cert_chain", str(files.paths[f"{cert}-chain.pem"])]
    if "-groups" not in extra:
        # a TLS 1.2 client must list the server certificate's curve among its groups
        args += ["-groups", ALL_GROUPS]
    return subprocess.run([*args, *extra], input="", capture_output=True, text=True, timeout=30)


def test_wan_server_accepts_openssl_client_with_gateway_certificate(pki, issue, files) -> None:
    ctx = server_context(Interface.WAN, _identity(pki, issue, "emt-tls", "9900000000001", "emt-ca"),
                         _anchors(pki), intermediates=_intermediates(pki))
    server = OneShotServer(ctx, pki, "gateway-tls")
    out = _s_client(server.port, files, "-tls1_2")
    result = server.join()
    assert "error" not in result, result
    assert result["cipher"][0] in SUITES  # type: ignore[index]
    assert result["path"].identifier == "EABC0012345678"  # type: ignore[union-attr]
    assert "imsys says hello" in out.stdout
    assert "Verify return code: 0 (ok)" in out.stdout


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_each_required_suite_negotiates(pki, issue, files, suite: str) -> None:
    ctx = server_context(Interface.HAN, _identity(pki, issue, "emt-tls", "9900000000001", "emt-ca"),
                         _anchors(pki), intermediates=_intermediates(pki))
    server = OneShotServer(ctx, pki, "gateway-tls")
    _s_client(server.port, files, "-tls1_2", "-cipher", suite)
    result = server.join()
    assert result.get("cipher", ("",))[0] == suite, result  # type: ignore[index]


def _get_page(tls: ssl.SSLSocket) -> str:
    tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
    page = b""
    while chunk := tls.recv(65536):
        page += chunk
    return page.decode(errors="replace")


@pytest.mark.parametrize("group", ["brainpoolP256r1", "brainpoolP384r1", "brainpoolP512r1",
                                   "P-256", "P-384"])
def test_each_policy_group_negotiates(pki, issue, files, group: str) -> None:
    """s_server prefers ``group`` (and knows brainpoolP256r1 for the certificates)."""
    groups = ":".join(dict.fromkeys((group, "brainpoolP256r1")))
    proc, port = _s_server(files, "-serverpref", "-groups", groups)
    try:
        ctx = client_context(Interface.WAN,
                             _identity(pki, issue, "gateway-tls", "EABC0012345678", "sub-ca"),
                             _anchors(pki), intermediates=_intermediates(pki))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw) as tls:
            page = _get_page(tls)
    finally:
        proc.kill()
        proc.wait()
    name = OPENSSL_GROUP_NAMES.get(group, group)
    assert ("Supported groups: brainpoolP256r1:brainpoolP384r1:brainpoolP512r1:secp256r1:"
            "secp384r1") in page
    assert f"Shared groups: {name}" in page


def test_server_prefers_brainpool_for_key_exchange(pki, issue, files) -> None:
    ctx = server_context(Interface.WAN, _identity(pki, issue, "emt-tls", "9900000000001", "emt-ca"),
                         _anchors(pki), intermediates=_intermediates(pki))
    server = OneShotServer(ctx, pki, "gateway-tls")
    out = _s_client(server.port, files, "-tls1_2", "-groups", "P-256:brainpoolP256r1")
    assert "error" not in server.join()
    assert "brainpoolP256r1" in out.stdout


@pytest.mark.parametrize("args", [
    ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA384"),  # 0xC024: not in the profile
    ("-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ("-tls1_2", "-groups", "X25519"),
    ("-tls1_2", "-sigalgs", "ECDSA+SHA1"),
    ("-tls1_3",),
    ("-tls1_1",),
], ids=["c024", "chacha", "x25519", "sha1-sigalg", "tls13-only", "tls11"])
def test_server_refuses_what_the_policy_forbids(pki, issue, files, args) -> None:
    ctx = server_context(Interface.WAN, _identity(pki, issue, "emt-tls", "9900000000001", "emt-ca"),
                         _anchors(pki), intermediates=_intermediates(pki))
    server = OneShotServer(ctx, pki, "gateway-tls")
    out = _s_client(server.port, files, *args)
    result = server.join()
    assert "error" in result
    assert "imsys says hello" not in out.stdout


def test_server_refuses_client_without_certificate(pki, issue, files) -> None:
    ctx = server_context(Interface.WAN, _identity(pki, issue, "emt-tls", "9900000000001", "emt-ca"),
                         _anchors(pki), intermediates=_intermediates(pki))
    server = OneShotServer(ctx, pki, "gateway-tls")
    _s_client(server.port, files, "-tls1_2", cert=None)
    assert isinstance(server.join().get("error"), ssl.SSLError)


def test_server_refuses_certificate_of_a_foreign_pki(pki, issue, files) -> None:
    ctx = server_context(Interface.WAN, _identity(pki, issue, "emt-tls", "9900000000001", "emt-ca"),
                         _anchors(pki), intermediates=_intermediates(pki))
    server = OneShotServer(ctx, pki, "gateway-tls")
    _s_client(server.port, files, "-tls1_2", cert="foreign")
    error = server.join().get("error")
    assert isinstance(error, ssl.SSLCertVerificationError)


def test_sm_pki_check_refuses_wrong_role_after_handshake(pki, issue, files) -> None:
    """OpenSSL accepts the chain, the SM-PKI check refuses an EMT where a gateway is expected."""
    ctx = server_context(Interface.WAN, _identity(pki, issue, "emt-tls", "9900000000001", "emt-ca"),
                         _anchors(pki), intermediates=_intermediates(pki))
    server = OneShotServer(ctx, pki, "gateway-tls")
    _s_client(server.port, files, "-tls1_2", cert="emt")
    error = server.join().get("error")
    assert isinstance(error, TlsRejected) and error.reason is Reason.WRONG_ROLE


def test_sm_pki_check_refuses_revoked_peer(pki: PkiDirectory, issue, tmp_path) -> None:
    key, cert = pki.issue_with_new_key("gateway-tls", "EREV0000000099")
    (tmp_path / "c.pem").write_bytes(pem(cert))
    (tmp_path / "c.key").write_bytes(key.private_key_pem())
    (tmp_path / "chain.pem").write_bytes(b"".join(pem(c) for c in pki.chain()))
    (tmp_path / "root.pem").write_bytes(pem(pki.root.certificate))
    pki.revoke(cert.serial_number, "key_compromise")
    ctx = server_context(Interface.WAN, _identity(pki, issue, "emt-tls", "9900000000001", "emt-ca"),
                         _anchors(pki), intermediates=_intermediates(pki))
    server = OneShotServer(ctx, pki, "gateway-tls")
    subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-tls1_2",
                    "-cert", str(tmp_path / "c.pem"), "-key", str(tmp_path / "c.key"),
                    "-cert_chain", str(tmp_path / "chain.pem"),
                    "-CAfile", str(tmp_path / "root.pem"), "-groups", "brainpoolP256r1"],
                   input="", capture_output=True, text=True, timeout=30)
    error = server.join().get("error")
    assert isinstance(error, TlsRejected) and error.reason is Reason.REVOKED


def _s_server(files: Files, *extra: str) -> tuple[subprocess.Popen[str], int]:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1",
         "-cert", str(files.paths["emt.pem"]), "-key", str(files.paths["emt.key"]),
         "-cert_chain", str(files.paths["emt-chain.pem"]),
         "-CAfile", str(files.paths["root.pem"]), "-Verify", "3", "-verify_return_error",
         "-www", *extra,
         # the server checks the client certificate's curve against its own groups (TLS 1.2)
         *(() if "-groups" in extra else ("-groups", ALL_GROUPS))],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    # s_server prints ACCEPT once it listens (a probe connection would use up -naccept 1)
    for line in proc.stdout:
        if line.startswith("ACCEPT"):
            break
    return proc, port


def test_wan_client_talks_to_openssl_server(pki, issue, files) -> None:
    proc, port = _s_server(files)
    try:
        ctx = client_context(Interface.WAN,
                             _identity(pki, issue, "gateway-tls", "EABC0012345678", "sub-ca"),
                             _anchors(pki), intermediates=_intermediates(pki))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw) as tls:
            path = check_peer(tls, pki.validator(), "emt-tls")
            assert path.identifier == "9900000000001"
            assert tls.version() == "TLSv1.2"
            assert tls.cipher()[0] in SUITES
            page = _get_page(tls)
        assert "200 ok" in page.lower()
    finally:
        proc.kill()
        proc.wait()


def test_client_refuses_server_outside_the_policy(pki, issue, files) -> None:
    proc, port = _s_server(files, "-cipher", "ECDHE-ECDSA-AES256-SHA384")
    try:
        ctx = client_context(Interface.WAN,
                             _identity(pki, issue, "gateway-tls", "EABC0012345678", "sub-ca"),
                             _anchors(pki), intermediates=_intermediates(pki))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw)
    finally:
        proc.kill()
        proc.wait()


def test_client_never_uses_the_system_trust_store(pki, issue) -> None:
    ctx = client_context(Interface.LMN,
                         _identity(pki, issue, "gateway-tls", "EABC0012345678", "sub-ca"),
                         _anchors(pki), intermediates=_intermediates(pki))
    subjects = {dict(x[0] for x in c["subject"]).get("commonName")
                for c in ctx.get_ca_certs()}
    assert subjects == {"imsys SM-PKI Root", "imsys Sub-CA sub-ca", "imsys Sub-CA emt-ca"}


def test_session_lifetime_per_interface() -> None:
    opened = datetime(2026, 1, 1, tzinfo=UTC)
    assert POLICIES[Interface.WAN].max_session_lifetime == timedelta(hours=48)
    assert POLICIES[Interface.LMN].max_session_lifetime == timedelta(hours=744)
    check_session_age(opened, opened + timedelta(hours=47), Interface.WAN)
    with pytest.raises(TlsRejected) as exc:
        check_session_age(opened, opened + timedelta(hours=49), Interface.HAN)
    assert exc.value.reason is Reason.SESSION_EXPIRED
    check_session_age(opened, opened + timedelta(days=30), Interface.LMN)
