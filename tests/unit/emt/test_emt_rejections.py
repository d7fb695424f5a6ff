"""Issue #6 "must hold": tampered, wrong recipient, revoked, replay, unknown gateway – each
rejected with its reason, logged and recorded; a duplicate is acknowledged and stored once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from imsys.core.clock import SimulatedClock
from imsys.core.reading import Reading
from imsys.crypto import SoftwareKey
from imsys.emt.receiver import EmtIdentity, Receiver, ReceiverPolicy
from imsys.emt.storage import EmtStorage
from imsys.pki import PkiDirectory
from imsys.wire.ar2418 import document_from_readings, encode_document
from imsys.wire.delivery import Delivery, DeliveryReason, DeliveryRejected, seal_delivery
from imsys.wire.receipt import ReceiptStatus

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
EMT = "9900000000001"
SERVED = ("EABC0088000001", "EABC0088000002")
NOW = datetime.now(UTC).replace(microsecond=0)


def item(gateway: str, n: int) -> Delivery:
    meter = f"1EMH00880000{n:02d}"
    values = [Reading(meter, "1-0:1.8.0*255", 10 + i, -1, 30, NOW - timedelta(minutes=15 * i))
              for i in range(2)]
    return Delivery.new(gateway_id=gateway, meter=meter, profile_id="taf7-1", created=NOW,
                        billing_relevant=True, document=encode_document(document_from_readings(
                            values, usage_point_id="DE0088", smgw_id=gateway,
                            tariff_name="TAF7", measurement_period=900)))


def test_each_refusal_has_its_reason_is_logged_and_recorded(
        tmp_path: Path, pki: PkiDirectory, issue: Issue,
        caplog: pytest.LogCaptureFixture) -> None:
    enc_key, enc = issue("emt-enc", EMT, ca="emt-ca")
    sig_key, sig = issue("emt-sig", EMT, ca="emt-ca")
    _, other_enc = issue("emt-enc", "9900000000002", ca="emt-ca")
    storage = EmtStorage(f"sqlite:///{tmp_path / 'emt.db'}")
    receiver = Receiver(EmtIdentity(EMT, enc_key, enc, sig_key, sig), pki.validator, storage,
                        SimulatedClock(NOW), ReceiverPolicy(served_gateways=frozenset(SERVED)))
    key, cert = issue("gateway-sig", SERVED[0], ca="sub-ca")
    revoked_key, revoked_cert = pki.issue_with_new_key("gateway-sig", SERVED[1], ca="sub-ca")
    stranger_key, stranger_cert = issue("gateway-sig", "EABC0088000009", ca="sub-ca")

    first = item(SERVED[0], 1)
    stored = seal_delivery(first, key, cert, enc)
    tampered = bytearray(seal_delivery(item(SERVED[0], 2), key, cert, enc))
    tampered[-30] ^= 0x40
    revoked = seal_delivery(item(SERVED[1], 3), revoked_key, revoked_cert, enc)
    pki.revoke(revoked_cert.serial_number, "key_compromise")
    cases = [
        (bytes(tampered), SERVED[0], {DeliveryReason.TAMPERED, DeliveryReason.MALFORMED}),
        (seal_delivery(item(SERVED[0], 4), key, cert, other_enc), SERVED[0],
         {DeliveryReason.WRONG_RECIPIENT}),
        (revoked, SERVED[1], {DeliveryReason.REVOKED}),
        (seal_delivery(first, key, cert, enc), SERVED[0], {DeliveryReason.REPLAY}),  # resealed
        (seal_delivery(item("EABC0088000009", 5), stranger_key, stranger_cert, enc),
         "EABC0088000009", {DeliveryReason.UNKNOWN_GATEWAY}),
    ]
    try:
        assert receiver.receive(stored, tls_peer=SERVED[0]).status is ReceiptStatus.STORED
        seen = []
        for data, peer, expected in cases:
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="imsys.emt.receiver"), \
                    pytest.raises(DeliveryRejected) as info:
                receiver.receive(data, tls_peer=peer)
            assert info.value.reason in expected
            assert f"delivery refused ({info.value.reason.value})" in caplog.text
            seen.append(info.value.reason.value)
        assert [r["reason"] for r in storage.rejections()][::-1] == seen
        # the duplicate: acknowledged again, stored once
        assert receiver.receive(stored, tls_peer=SERVED[0]).status is ReceiptStatus.DUPLICATE
        assert storage.counts()["emt_deliveries"] == 1
        assert storage.counts()["emt_readings"] == 2
    finally:
        storage.dispose()
