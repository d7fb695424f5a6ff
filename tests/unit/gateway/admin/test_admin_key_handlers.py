"""Key and certificate management commands (seed 003 §5; TR-03109-1 key management)."""

from __future__ import annotations

import base64

from admin_handler_helpers import Gateway
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from imsys.gateway.admin import ConfigKind, ItemState
from imsys.gateway.admin.key_handlers import active_certificate, installed_key
from imsys.wire.command import CommandType as T
from imsys.wire.command import ResultStatus

OK = ResultStatus.OK


def der64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def test_symmetric_key_is_kept_encrypted_and_managed(gateway: Gateway) -> None:
    gw = gateway
    secret = bytes(range(16))
    result = gw.run(T.KEY_INSTALL, {"key_id": "MK-1EMH01", "purpose": "meter",
                                    "key": base64.b64encode(secret).decode()})
    assert result.status is OK and result.details == {"key_id": "MK-1EMH01", "bits": 128}
    document = gw.ctx.config.require(ConfigKind.KEY, "MK-1EMH01").document
    assert secret.hex() not in str(document) and base64.b64encode(secret).decode() \
        not in str(document)
    assert installed_key(gw.ctx, "MK-1EMH01") == secret
    assert gw.run(T.KEY_ACTIVATE, {"key_id": "MK-1EMH01"}).status is OK
    assert gw.run(T.KEY_ACTIVATE, {"key_id": "MK-1EMH01"}).details["reason"] == "wrong-state"
    assert gw.run(T.KEY_DELETE, {"key_id": "MK-1EMH01"}).details["reason"] == "in-use"
    assert gw.run(T.KEY_DEACTIVATE, {"key_id": "MK-1EMH01"}).status is OK
    assert gw.run(T.KEY_DELETE, {"key_id": "MK-1EMH01"}).status is OK
    assert gw.ctx.config.get(ConfigKind.KEY, "MK-1EMH01") is None


def test_bad_key_parameters_are_refused(gateway: Gateway) -> None:
    gw = gateway
    assert gw.run(T.KEY_INSTALL, {"key_id": "K1", "purpose": "meter",
                                  "key": base64.b64encode(b"12345").decode()}
                  ).details["reason"] == "bad-parameter"
    assert gw.run(T.KEY_INSTALL, {"key_id": "K1", "purpose": "meter", "key": "not base64!"}
                  ).details["reason"] == "bad-parameter"
    assert gw.run(T.KEY_INSTALL, {"key_id": "K1", "purpose": "rocket",
                                  "key": base64.b64encode(bytes(16)).decode()}
                  ).details["reason"] == "bad-parameter"
    assert gw.run(T.KEY_ACTIVATE, {"key_id": "K404"}).details["reason"] == "unknown-item"


def test_renew_generates_key_in_module_and_installs_validated_certificate(
        gateway: Gateway) -> None:
    gw = gateway
    renew = gw.run(T.CERTIFICATE_RENEW, {"key": "GW_WAN_TLS"})
    assert renew.status is OK
    label = renew.details["key_label"]
    assert label == "GW_WAN_TLS_R1" and gw.secmod.has(label)
    csr = x509.load_pem_x509_csr(renew.details["csr"].encode())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string().endswith(f"CN={gw.ctx.gateway_id}") or \
        f"CN={gw.ctx.gateway_id}" in csr.subject.rfc4514_string()
    # the Sub-CA certifies the request; the GWA installs and activates the certificate
    certificate = gw.pki.issue("gateway-tls", gw.ctx.gateway_id, csr=csr)
    wrong_profile = gw.run(T.CERTIFICATE_INSTALL, {"label": "GW_WAN_TLS_CRT_R1",
                                                   "profile": "gateway-sig",
                                                   "certificate": der64(certificate),
                                                   "key_label": label})
    assert wrong_profile.status is ResultStatus.FAILED
    assert not gw.secmod.has("GW_WAN_TLS_CRT_R1")
    installed = gw.run(T.CERTIFICATE_INSTALL, {"label": "GW_WAN_TLS_CRT_R1",
                                               "profile": "gateway-tls",
                                               "certificate": der64(certificate),
                                               "key_label": label})
    assert installed.status is OK, installed.details
    assert gw.secmod.certificate("GW_WAN_TLS_CRT_R1") == certificate
    assert gw.run(T.CERTIFICATE_ACTIVATE, {"label": "GW_WAN_TLS_CRT_R1"}).status is OK
    assert active_certificate(gw.ctx, "gateway-tls") == "GW_WAN_TLS_CRT_R1"
    assert gw.ctx.config.require(ConfigKind.KEY, label).state is ItemState.ACTIVE
    assert gw.run(T.CERTIFICATE_DELETE, {"label": "GW_WAN_TLS_CRT_R1"}
                  ).details["reason"] == "in-use"
    # a second renewal: the new certificate replaces the first as the active one
    second = gw.run(T.CERTIFICATE_RENEW, {"key": "GW_WAN_TLS"})
    assert second.details["key_label"] == "GW_WAN_TLS_R2"
    csr2 = x509.load_pem_x509_csr(second.details["csr"].encode())
    cert2 = gw.pki.issue("gateway-tls", gw.ctx.gateway_id, csr=csr2)
    gw.run(T.CERTIFICATE_INSTALL, {"label": "GW_WAN_TLS_CRT_R2", "profile": "gateway-tls",
                                   "certificate": der64(cert2), "key_label": "GW_WAN_TLS_R2"})
    activated = gw.run(T.CERTIFICATE_ACTIVATE, {"label": "GW_WAN_TLS_CRT_R2"})
    assert activated.details["deactivated"] == "GW_WAN_TLS_CRT_R1"
    assert gw.run(T.CERTIFICATE_DELETE, {"label": "GW_WAN_TLS_CRT_R1"}).status is OK
    assert not gw.secmod.has("GW_WAN_TLS_CRT_R1")
    assert gw.run(T.KEY_DELETE, {"key_id": "GW_WAN_TLS_R1"}).status is OK
    assert not gw.secmod.has("GW_WAN_TLS_R1")


def test_certificate_for_another_key_is_refused(gateway: Gateway, issue) -> None:  # type: ignore[no-untyped-def]
    gw = gateway
    renew = gw.run(T.CERTIFICATE_RENEW, {"key": "GW_WAN_SIG"})
    _, foreign = issue("gateway-sig", gw.ctx.gateway_id)
    result = gw.run(T.CERTIFICATE_INSTALL, {"label": "GW_WAN_SIG_CRT_R1",
                                            "profile": "gateway-sig",
                                            "certificate": der64(foreign),
                                            "key_label": renew.details["key_label"]})
    assert result.details["reason"] == "key-mismatch"
    assert not gw.secmod.has("GW_WAN_SIG_CRT_R1")


def test_certificate_not_from_the_sm_pki_is_refused(gateway: Gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from imsys.pki import PkiDirectory

    other = PkiDirectory.init(tmp_path / "foreign-pki")
    _, foreign = other.issue_with_new_key("emt-tls", "EMT-X")
    result = gateway.run(T.CERTIFICATE_INSTALL, {"label": "EMT_X_TLS", "profile": "emt-tls",
                                                 "certificate": der64(foreign)})
    assert result.status is ResultStatus.FAILED
    assert result.details["reason"] in ("unknown-issuer", "name-chaining", "bad-signature")
    assert not gateway.secmod.has("EMT_X_TLS")


def test_root_certificate_cannot_be_managed(gateway: Gateway) -> None:
    result = gateway.run(T.CERTIFICATE_DELETE, {"label": "ROOT_WAN_SIG_CRT"})
    assert result.details["reason"] == "unknown-item"
    assert gateway.secmod.has("ROOT_WAN_SIG_CRT")


def test_algorithm_switch_sets_curve_of_future_renewals(gateway: Gateway) -> None:
    gw = gateway
    assert gw.run(T.CRYPTO_ALGORITHM_SWITCH, {"curve": "secp256r1"}
                  ).details["reason"] == "bad-parameter"
    assert gw.run(T.CRYPTO_ALGORITHM_SWITCH, {"curve": "brainpoolP384r1"}).status is OK
    renew = gw.run(T.CERTIFICATE_RENEW, {"key": "GW_WAN_ENC"})
    assert renew.details["curve"] == "brainpoolP384r1"
    assert gw.secmod.public_key(renew.details["key_label"]).curve.name == "brainpoolP384r1"
