"""``SecurityModule.tls_private_key``: the one way a TLS key reaches OpenSSL (both backends)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from secmod_helpers import ModuleOpener

from imsys.core.errors import Reason, SecmodRejected
from imsys.crypto.primitives import ecdsa_verify
from imsys.secmod.base import TlsKeyReason, TlsKeyRejected, is_tls_label


@pytest.mark.parametrize(("label", "tls"), [
    ("GW_WAN_TLS_PRE", True), ("GW_WAN_TLS", True), ("GWADM_TLS", True),
    ("GW_WAN_SIG_PRE", False), ("GWADM_AUT", False), ("TLS_KEY", False), ("MYTLS", False)])
def test_tls_labels(label: str, tls: bool) -> None:
    assert is_tls_label(label) is tls


def test_software_module_hands_out_only_tls_keys(opener: ModuleOpener) -> None:
    module = opener.open()
    handle = module.generate_key_pair("GW_WAN_TLS_PRE")
    module.generate_key_pair("GW_WAN_SIG_PRE")
    if opener.backend != "software":
        with pytest.raises(TlsKeyRejected) as refused:
            module.tls_private_key("GW_WAN_TLS_PRE")
        assert refused.value.reason is TlsKeyReason.BACKEND_UNSUPPORTED
        return
    key = module.tls_private_key("GW_WAN_TLS_PRE")
    assert key.public_key() == handle.public_key()
    ecdsa_verify(handle.public_key(), key.sign(b"probe"), b"probe")
    for label in ("GW_WAN_SIG_PRE", "GW_WAN_ENC_PRE"):
        with pytest.raises(TlsKeyRejected) as refused:
            module.tls_private_key(label)
        assert refused.value.reason is TlsKeyReason.NOT_A_TLS_KEY
        assert isinstance(refused.value, SecmodRejected)


def test_tls_key_needs_the_system_pin(opener: ModuleOpener) -> None:
    module = opener.open()
    module.generate_key_pair("GWADM_TLS")
    module.set_system_pin("123456-pin")
    module = opener.reopen(module)
    with pytest.raises(SecmodRejected) as refused:
        module.tls_private_key("GWADM_TLS")
    assert refused.value.reason is Reason.NOT_AUTHENTICATED
    module.check_system_pin("123456-pin")
    if opener.backend == "software":
        assert isinstance(module.tls_private_key("GWADM_TLS").public_key(),
                          ec.EllipticCurvePublicKey)
