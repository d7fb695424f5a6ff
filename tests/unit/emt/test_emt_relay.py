"""Relay (Durchleitung, seed 003 step 3.3): check and forward, with or without the signature."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from imsys.core.clock import SimulatedClock
from imsys.core.errors import UsageError
from imsys.core.reading import Reading
from imsys.crypto import SoftwareKey
from imsys.emt.receiver import EmtIdentity, Receiver, ReceiverPolicy
from imsys.emt.relay import Relay, RelayPolicy, forward
from imsys.emt.storage import EmtStorage
from imsys.pki import PkiDirectory
from imsys.wire.ar2418 import document_from_readings, encode_document, pseudonymise
from imsys.wire.delivery import (
    Delivery,
    DeliveryReason,
    DeliveryRejected,
    decode_batch,
    seal_for_relay,
)
from imsys.wire.receipt import ReceiptRejected, ReceiptStatus, verify_receipt

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
GATEWAY = "EABC0044000001"
RELAY = "9900000000044"
FINAL = "9900000000045"
METER = "1EMH0044000001"
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class World:
    relay: Relay
    relay_store: EmtStorage
    final: Receiver
    final_store: EmtStorage
    final_identity: EmtIdentity
    relay_identity: EmtIdentity
    gateway_sig: tuple[SoftwareKey, x509.Certificate]

    def post(self, peer: str = RELAY) -> Callable[[bytes], bytes]:
        return lambda body: self.final.receive_batch(decode_batch(body), tls_peer=peer).receipt


def identity(issue: Issue, emt_id: str) -> EmtIdentity:
    enc_key, enc = issue("emt-enc", emt_id, ca="emt-ca")
    sig_key, sig = issue("emt-sig", emt_id, ca="emt-ca")
    return EmtIdentity(emt_id, enc_key, enc, sig_key, sig)


@pytest.fixture
def world(tmp_path: Path, pki: PkiDirectory, issue: Issue) -> Iterator[World]:
    relay_identity, final_identity = identity(issue, RELAY), identity(issue, FINAL)
    relay_store = EmtStorage(f"sqlite:///{tmp_path / 'relay.db'}")
    final_store = EmtStorage(f"sqlite:///{tmp_path / 'final.db'}")
    clock = SimulatedClock(NOW)
    relay = Relay(relay_identity, pki.validator(), relay_store, clock,
                  RelayPolicy(frozenset({FINAL})))
    final = Receiver(final_identity, pki.validator(), final_store, clock,
                     ReceiverPolicy(trusted_relays=frozenset({RELAY})))
    yield World(relay, relay_store, final, final_store, final_identity, relay_identity,
                issue("gateway-sig", GATEWAY, ca="sub-ca"))
    relay_store.dispose()
    final_store.dispose()


def delivery(*, pseudonym: str | None = None, start: datetime = NOW) -> Delivery:
    values = [Reading(METER, "1-0:16.7.0*255", 230 + i, 0, 27,
                      start - timedelta(minutes=15 * i)) for i in range(3)]
    document = document_from_readings(values, usage_point_id="DE0044", smgw_id=GATEWAY,
                                      tariff_name="TAF9", measurement_period=900)
    if pseudonym is not None:
        document = pseudonymise(document, pseudonym)
    return Delivery.new(gateway_id=GATEWAY, meter=pseudonym or METER, profile_id="taf9-1",
                        created=NOW, billing_relevant=pseudonym is None,
                        document=encode_document(document), pseudonymised=pseudonym is not None)


def sealed(world: World, item: Delivery, *, remove: bool = False, final: str = FINAL) -> bytes:
    key, cert = world.gateway_sig
    return seal_for_relay(item, key, cert, world.final_identity.enc_certificate, final,
                          remove_signature=remove)


@pytest.mark.parametrize("remove", [False, True])
def test_step_3_3_relay_checks_keeps_forwards_and_deletes(world: World, remove: bool) -> None:
    item = delivery(pseudonym="PSN-44" if remove else None)
    data = sealed(world, item, remove=remove)
    accepted = world.relay.accept(data, tls_peer=GATEWAY)
    receipt = verify_receipt(accepted.receipt, world.relay_identity.sig_certificate,
                             delivery_id=item.delivery_id, digest=hashlib.sha256(data).digest())
    assert receipt.status is ReceiptStatus.STORED and receipt.emt_id == RELAY
    again = world.relay.accept(data, tls_peer=GATEWAY)  # lost receipt: acknowledged again
    assert again.status is ReceiptStatus.DUPLICATE
    assert world.relay_store.relay_counts() == {"waiting": 1, "refused": 0}
    result = forward(world.relay_store, FINAL, world.post(),
                     world.final_identity.sig_certificate)
    assert (result.sent, result.acknowledged) == (1, 1)
    assert world.relay_store.relay_counts() == {"waiting": 0, "refused": 0}  # deleted
    stored = world.final_store.deliveries()
    assert [(r["delivery_id"], r["gateway_id"], r["pseudonymised"]) for r in stored] == [
        (str(item.delivery_id), GATEWAY, remove)]
    assert len(world.final_store.readings(meter=item.meter)) == 3
    sealed_at_final = world.final_store.counts()
    assert sealed_at_final["emt_rejections"] == 0
    # the relay's outer gateway signature never reaches the final recipient
    assert forward(world.relay_store, FINAL, world.post(),
                   world.final_identity.sig_certificate).sent == 0


def test_unsigned_content_only_from_a_trusted_relay(world: World, pki: PkiDirectory,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    item = delivery(pseudonym="PSN-45")
    world.relay.accept(sealed(world, item, remove=True), tls_peer=GATEWAY)
    with caplog.at_level(logging.WARNING):
        result = forward(world.relay_store, FINAL, world.post(peer="9900000000099"),
                         world.final_identity.sig_certificate)
    assert (result.acknowledged, result.refused) == (0, 1)
    assert world.relay_store.relay_counts() == {"waiting": 0, "refused": 1}
    assert world.final_store.rejections()[0]["reason"] == DeliveryReason.UNSIGNED.value
    assert "unsigned" in caplog.text


def test_signature_removal_is_only_for_pseudonymised_data(world: World) -> None:
    with pytest.raises(UsageError):
        sealed(world, delivery(), remove=True)


def test_relay_refusals_are_recorded(world: World, pki: PkiDirectory, issue: Issue) -> None:
    item = delivery()
    data = sealed(world, item)
    cases: list[tuple[bytes, str | None, DeliveryReason]] = []
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 1
    cases.append((bytes(tampered), GATEWAY, DeliveryReason.BAD_SIGNATURE))
    cases.append((data, "EABC0044000002", DeliveryReason.TLS_PEER_MISMATCH))
    cases.append((sealed(world, delivery(), final="9900000000077"), GATEWAY,
                  DeliveryReason.UNKNOWN_RECIPIENT))
    cases.append((b"\x30\x03abc", GATEWAY, DeliveryReason.MALFORMED))
    seen = []
    for body, peer, expected in cases:
        with pytest.raises(DeliveryRejected) as info:
            world.relay.accept(body, tls_peer=peer)
        seen.append(info.value.reason)
        assert info.value.reason in (expected, DeliveryReason.TAMPERED, DeliveryReason.MALFORMED)
    assert seen[1:] == [c[2] for c in cases[1:]]
    # same delivery id, other bytes: a replay
    world.relay.accept(data, tls_peer=GATEWAY)
    with pytest.raises(DeliveryRejected) as info:
        world.relay.accept(sealed(world, item), tls_peer=GATEWAY)
    assert info.value.reason is DeliveryReason.REPLAY
    # a revoked gateway (its own certificate: the session's PKI is shared)
    revoked = "EABC0044000009"
    key, cert = pki.issue_with_new_key("gateway-sig", revoked, ca="sub-ca")
    pki.revoke(cert.serial_number, "key_compromise")
    world.relay.validator = pki.validator()
    body = seal_for_relay(Delivery.new(gateway_id=revoked, meter=METER, profile_id="taf9-1",
                                       created=NOW, billing_relevant=True, document=b"<x/>"),
                          key, cert, world.final_identity.enc_certificate, FINAL)
    with pytest.raises(DeliveryRejected) as info:
        world.relay.accept(body, tls_peer=revoked)
    assert info.value.reason is DeliveryReason.REVOKED
    assert [r["reason"] for r in world.relay_store.rejections()][::-1] == [
        *(r.value for r in seen), DeliveryReason.REPLAY.value, DeliveryReason.REVOKED.value]


def test_a_batch_receipt_that_does_not_verify_keeps_everything(world: World) -> None:
    world.relay.accept(sealed(world, delivery()), tls_peer=GATEWAY)
    with pytest.raises(ReceiptRejected):
        forward(world.relay_store, FINAL, world.post(),
                world.relay_identity.sig_certificate)  # not the final recipient's certificate
    assert world.relay_store.relay_counts() == {"waiting": 1, "refused": 0}


def test_forward_target_option() -> None:
    from imsys.emt.cli import parse_forward_target

    target = parse_forward_target("9900000000045,127.0.0.1:8443,/keys/final-sig.pem")
    assert (target.emt_id, target.host, target.port, str(target.sig_certificate)) == (
        FINAL, "127.0.0.1", 8443, "/keys/final-sig.pem")
    for bad in ("9900000000045,127.0.0.1,/x.pem", "9900000000045", ",h:1,/x.pem"):
        with pytest.raises(UsageError):
            parse_forward_target(bad)
