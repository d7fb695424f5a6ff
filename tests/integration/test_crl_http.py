"""CRLs published over HTTP on loopback and fetched from the distribution points."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from cryptography import x509

from imsys.core.errors import CertificateRejected, Reason
from imsys.pki import HttpCrlSource, PathValidator, PkiDirectory
from imsys.pki.crl_server import CrlServer


@pytest.fixture()
def served_pki(tmp_path):
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    pki = PkiDirectory.init(tmp_path / "pki", crl_base_url=f"http://127.0.0.1:{port}")
    server = CrlServer(pki, "127.0.0.1", port)
    server.start()
    yield pki, server
    server.shutdown()
    server.server_close()


def test_crl_endpoint_serves_der_crls(served_pki) -> None:
    pki, server = served_pki
    with urllib.request.urlopen(f"{server.url}/sub-ca.crl", timeout=5) as response:
        assert response.headers["Content-Type"] == "application/pkix-crl"
        crl = x509.load_der_x509_crl(response.read())
    assert crl.issuer == pki.ca().certificate.subject
    with urllib.request.urlopen(f"{server.url}/", timeout=5) as response:
        assert b"root.crl" in response.read()
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{server.url}/nope.crl", timeout=5)
    assert exc.value.code == 404


def test_validator_fetches_crls_and_sees_revocation(served_pki) -> None:
    pki, _ = served_pki
    _, cert = pki.issue_with_new_key("gateway-tls", "EHTTP000000001")
    validator = PathValidator([pki.root.certificate], [pki.ca().certificate], HttpCrlSource())
    validator.validate(cert, profile="gateway-tls")
    pki.revoke(cert.serial_number, "key_compromise")
    fresh = PathValidator([pki.root.certificate], [pki.ca().certificate], HttpCrlSource())
    with pytest.raises(CertificateRejected) as exc:
        fresh.validate(cert)
    assert exc.value.reason is Reason.REVOKED


def test_unreachable_crl_endpoint_means_crl_unavailable(tmp_path) -> None:
    pki = PkiDirectory.init(tmp_path / "pki", crl_base_url="http://127.0.0.1:9")
    _, cert = pki.issue_with_new_key("gateway-tls", "EHTTP000000002")
    validator = PathValidator([pki.root.certificate], [pki.ca().certificate],
                              HttpCrlSource(timeout=1))
    with pytest.raises(CertificateRejected) as exc:
        validator.validate(cert)
    assert exc.value.reason is Reason.CRL_UNAVAILABLE
