"""Relay (Durchleitung, seed 003 table 2 step 3.3) between two EMT servers on 127.0.0.1.

Step 3.3.1/3.3.2: the gateway encrypts for the final recipient, signs, and sends to the relay
(another EMT's TLS endpoint). 3.3.3: the relay checks the gateway's signature and keeps the
still-encrypted content. 3.3.4: it forwards over TLS with its own identity to the final
recipient, which decrypts (and, where the signature was removed, trusts the relay's check).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from test_emt_server import Connection, client_ssl, new_gateway, run

from imsys.core.reading import Reading
from imsys.crypto import SoftwareKey
from imsys.emt.server import EmtServer, ForwardTarget, ServerConfig, write_key_pair
from imsys.emt.storage import EmtStorage
from imsys.pki import PkiDirectory
from imsys.wire.ar2418 import document_from_readings, encode_document, pseudonymise
from imsys.wire.delivery import RELAY_PATH, Delivery, seal_for_relay
from imsys.wire.receipt import ReceiptStatus, verify_receipt

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
RELAY = "9900000000033"
FINAL = "9900000000034"
GATEWAY = "EABC0033000001"
NOW = datetime.now(UTC).replace(microsecond=0)


def keys(folder: Path, emt_id: str, issue: Issue) -> Path:
    for purpose in ("tls", "sig", "enc"):
        write_key_pair(folder, purpose, *issue(f"emt-{purpose}", emt_id, ca="emt-ca"))
    return folder


def delivery(index: int, pseudonym: str | None) -> Delivery:
    meter = f"1EMH00330000{index:02d}"
    values = [Reading(meter, "1-0:1.8.0*255", 100 + i, -1, 30,
                      NOW - timedelta(minutes=15 * i)) for i in range(2)]
    document = document_from_readings(values, usage_point_id="DE0033", smgw_id=GATEWAY,
                                      tariff_name="TAF7", measurement_period=900)
    if pseudonym is not None:
        document = pseudonymise(document, pseudonym)
    return Delivery.new(gateway_id=GATEWAY, meter=pseudonym or meter, profile_id="taf7-1",
                        created=NOW, billing_relevant=pseudonym is None,
                        document=encode_document(document), pseudonymised=pseudonym is not None)


def test_step_3_3_gateway_relay_final_recipient(tmp_path: Path, pki: PkiDirectory,
                                                issue: Issue) -> None:
    final_keys = keys(tmp_path / "final-keys", FINAL, issue)
    relay_keys = keys(tmp_path / "relay-keys", RELAY, issue)
    final_db, relay_db = f"sqlite:///{tmp_path / 'final.db'}", f"sqlite:///{tmp_path / 'relay.db'}"
    final = EmtServer(ServerConfig(pki.path, FINAL, final_db, keys_dir=final_keys,
                                   trusted_relays=(RELAY,), threads=2))
    final_port = final.start()
    relay = EmtServer(ServerConfig(
        pki.path, RELAY, relay_db, keys_dir=relay_keys, threads=2, forward_interval=0.2,
        forward_to=(ForwardTarget(FINAL, "127.0.0.1", final_port, final_keys / "sig.pem"),)))
    try:
        relay_port = relay.start()
        gateway = new_gateway(pki, GATEWAY)
        final_enc = x509.load_pem_x509_certificate((final_keys / "enc.pem").read_bytes())
        relay_sig = x509.load_pem_x509_certificate((relay_keys / "sig.pem").read_bytes())
        items = [(delivery(0, None), False), (delivery(1, "PSN-33"), True)]
        bodies = [seal_for_relay(item, *gateway.sig, final_enc, FINAL, remove_signature=remove)
                  for item, remove in items]

        async def send() -> list[tuple[int, bytes]]:
            conn = await Connection.open(relay_port, client_ssl(pki, gateway))
            try:
                answers = [await conn.request("POST", RELAY_PATH, body) for body in bodies]
                answers.append(await conn.request("POST", RELAY_PATH, bodies[0]))  # repeated
                direct = await conn.request("POST", "/deliveries/v1", bodies[0])
                return [(a[0], a[2]) for a in (*answers, direct)]
            finally:
                await conn.close()

        answers = run(send())
        assert [status for status, _ in answers[:3]] == [200, 200, 200]
        for (item, _), body, (_, receipt) in zip(items, bodies, answers, strict=False):
            assert verify_receipt(receipt, relay_sig, delivery_id=item.delivery_id,
                                  digest=hashlib.sha256(body).digest()
                                  ).status is ReceiptStatus.STORED
        assert verify_receipt(answers[2][1], relay_sig, delivery_id=items[0][0].delivery_id,
                              digest=hashlib.sha256(bodies[0]).digest()
                              ).status is ReceiptStatus.DUPLICATE
        assert answers[3][0] == 403  # the relay is no final recipient for it

        final_store, relay_store = EmtStorage(final_db, create=False), EmtStorage(relay_db,
                                                                                  create=False)
        try:
            deadline = time.monotonic() + 60
            while final_store.counts()["emt_deliveries"] < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            stored = {r["delivery_id"]: r for r in final_store.deliveries()}
            assert set(stored) == {str(item.delivery_id) for item, _ in items}
            assert stored[str(items[1][0].delivery_id)]["meter"] == "PSN-33"
            assert final_store.counts()["emt_readings"] == 4
            deadline = time.monotonic() + 10
            while relay_store.relay_counts()["waiting"] and time.monotonic() < deadline:
                time.sleep(0.1)
            assert relay_store.relay_counts() == {"waiting": 0, "refused": 0}  # deleted
            assert relay_store.counts()["emt_deliveries"] == 0  # the relay never opened them
        finally:
            final_store.dispose()
            relay_store.dispose()
    finally:
        relay.stop()
        final.stop()
