"""Delivery envelope: seal for the EMT, open and check signer, gateway and revocation."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from imsys.core.errors import UsageError
from imsys.crypto import SoftwareKey, cms
from imsys.pki import PkiDirectory
from imsys.wire.delivery import (
    Delivery,
    DeliveryReason,
    DeliveryRejected,
    PeerCode,
    digest,
    open_delivery,
    peer_response,
    seal_delivery,
)

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
GATEWAY = "EABC0012345678"
EMT = "9900000000001"
NOW = datetime.now(UTC).replace(microsecond=0)


def delivery(gateway: str = GATEWAY) -> Delivery:
    return Delivery.new(gateway_id=gateway, meter="1EMH0012345678", profile_id="taf7-1",
                        created=NOW, billing_relevant=True, document=b"<doc/>")


def sealed_by(issue: Issue, gateway: str = GATEWAY, emt: str = EMT,
              item: Delivery | None = None) -> tuple[Delivery, bytes]:
    key, cert = issue("gateway-sig", gateway, ca="sub-ca")
    _, enc = issue("emt-enc", emt, ca="emt-ca")
    item = item or delivery(gateway)
    return item, seal_delivery(item, key, cert, enc)


def open_as_emt(issue: Issue, pki: PkiDirectory, data: bytes, emt: str = EMT):  # type: ignore[no-untyped-def]
    key, cert = issue("emt-enc", emt, ca="emt-ca")
    return open_delivery(data, key, cert, pki.validator())


def test_metadata_round_trips_through_der() -> None:
    item = delivery()
    assert Delivery.decode(item.encode()) == item


def test_seal_and_open(issue: Issue, pki: PkiDirectory) -> None:
    item, data = sealed_by(issue)
    opened = open_as_emt(issue, pki, data)
    assert opened.delivery == item
    assert opened.digest == digest(data)
    assert opened.signer.identifier == GATEWAY
    assert opened.signing_time == NOW


def test_tampered_ciphertext_is_refused(issue: Issue, pki: PkiDirectory) -> None:
    _, data = sealed_by(issue)
    broken = bytearray(data)
    broken[-40] ^= 1
    with pytest.raises(DeliveryRejected) as info:
        open_as_emt(issue, pki, bytes(broken))
    assert info.value.reason in (DeliveryReason.TAMPERED, DeliveryReason.MALFORMED)


def test_wrong_recipient_is_refused(issue: Issue, pki: PkiDirectory) -> None:
    _, data = sealed_by(issue, emt="9900000000002")
    with pytest.raises(DeliveryRejected) as info:
        open_as_emt(issue, pki, data)
    assert info.value.reason is DeliveryReason.WRONG_RECIPIENT


def test_signer_must_be_the_named_gateway(issue: Issue, pki: PkiDirectory) -> None:
    key, cert = issue("gateway-sig", "EABC0000000666", ca="sub-ca")
    _, enc = issue("emt-enc", EMT, ca="emt-ca")
    data = seal_delivery(delivery(GATEWAY), key, cert, enc)
    with pytest.raises(DeliveryRejected) as info:
        open_as_emt(issue, pki, data)
    assert info.value.reason is DeliveryReason.SIGNER_MISMATCH


def test_signer_must_be_a_gateway_sig_certificate(issue: Issue, pki: PkiDirectory) -> None:
    key, cert = issue("emt-sig", GATEWAY, ca="emt-ca")
    _, enc = issue("emt-enc", EMT, ca="emt-ca")
    with pytest.raises(DeliveryRejected) as info:
        open_as_emt(issue, pki, seal_delivery(delivery(), key, cert, enc))
    assert info.value.reason is DeliveryReason.UNTRUSTED_SIGNER


def test_revoked_gateway_is_refused(pki: PkiDirectory, issue: Issue) -> None:
    key, cert = pki.issue_with_new_key("gateway-sig", "EABC0000000777", ca="sub-ca")
    _, enc = issue("emt-enc", EMT, ca="emt-ca")
    data = seal_delivery(delivery("EABC0000000777"), key, cert, enc)
    pki.revoke(cert.serial_number, "key_compromise")
    with pytest.raises(DeliveryRejected) as info:
        open_as_emt(issue, pki, data)
    assert info.value.reason is DeliveryReason.REVOKED


def test_signed_but_not_a_delivery_is_malformed(issue: Issue, pki: PkiDirectory) -> None:
    key, cert = issue("gateway-sig", GATEWAY, ca="sub-ca")
    _, enc = issue("emt-enc", EMT, ca="emt-ca")
    data = cms.seal(b"hello", key, cert, [enc], signing_time=NOW)
    with pytest.raises(DeliveryRejected) as info:
        open_as_emt(issue, pki, data)
    assert info.value.reason is DeliveryReason.MALFORMED


def test_missing_signing_time_is_malformed(issue: Issue, pki: PkiDirectory) -> None:
    key, cert = issue("gateway-sig", GATEWAY, ca="sub-ca")
    _, enc = issue("emt-enc", EMT, ca="emt-ca")
    data = cms.seal(delivery().encode(), key, cert, [enc])
    with pytest.raises(DeliveryRejected) as info:
        open_as_emt(issue, pki, data)
    assert info.value.reason is DeliveryReason.MALFORMED


def test_size_bound(issue: Issue, pki: PkiDirectory) -> None:
    key, cert = issue("emt-enc", EMT, ca="emt-ca")
    with pytest.raises(DeliveryRejected) as info:
        open_delivery(b"\x30" * 2000, key, cert, pki.validator(), max_size=1000)
    assert info.value.reason is DeliveryReason.TOO_LARGE


def test_billing_data_is_never_pseudonymised() -> None:
    with pytest.raises(UsageError):
        Delivery(uuid.uuid4(), GATEWAY, "PSEUDO-1", "p", NOW, True, b"", pseudonymised=True)


def test_peer_sees_only_coarse_codes() -> None:
    for reason in (DeliveryReason.TAMPERED, DeliveryReason.REVOKED,
                   DeliveryReason.WRONG_RECIPIENT, DeliveryReason.UNKNOWN_GATEWAY,
                   DeliveryReason.SIGNER_MISMATCH, DeliveryReason.OUTSIDE_WINDOW):
        assert peer_response(reason) == (403, PeerCode.REFUSED)
    assert peer_response(DeliveryReason.REPLAY) == (409, PeerCode.CONFLICT)
    assert peer_response(DeliveryReason.MALFORMED) == (400, PeerCode.BAD_REQUEST)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_metadata_fails_only_with_delivery_rejected(data: bytes) -> None:
    with contextlib.suppress(DeliveryRejected):
        Delivery.decode(data)
