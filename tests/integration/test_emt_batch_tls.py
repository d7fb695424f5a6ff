"""``POST /deliveries/v1/batch`` on a real EMT server (TLS on 127.0.0.1, one worker)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from test_emt_server import (
    Connection,
    client_ssl,
    new_gateway,
    run,
    sealed_delivery,
    start,
)

from imsys.crypto import SoftwareKey
from imsys.pki import PkiDirectory
from imsys.wire.delivery import BATCH_MEDIA_TYPE, BATCH_PATH, encode_batch
from imsys.wire.receipt import ReceiptStatus, verify_batch_receipt, verify_receipt

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]


def test_batch_over_tls_and_single_path_side_by_side(tmp_path: Path, pki: PkiDirectory,
                                                     issue: Issue) -> None:
    server, emt = start(tmp_path, pki, issue, workers=1, served=None)
    try:
        gateway = new_gateway(pki, "EABC0055000001")
        items = [sealed_delivery(gateway, emt.enc, 5500 + n) for n in range(4)]
        bodies = [data for _, data in items]

        async def scenario() -> list[tuple[int, bytes]]:
            conn = await Connection.open(emt.port, client_ssl(pki, gateway))
            try:
                single = await conn.request("POST", "/deliveries/v1", bodies[0])
                batch = await conn.request("POST", BATCH_PATH, encode_batch(bodies),
                                           content_type=BATCH_MEDIA_TYPE)
                wrong_type = await conn.request("POST", BATCH_PATH, encode_batch(bodies))
                garbage = await conn.request("POST", BATCH_PATH, b"\x30\x03abc",
                                             content_type=BATCH_MEDIA_TYPE)
                return [(r[0], r[2]) for r in (single, batch, wrong_type, garbage)]
            finally:
                await conn.close()

        (s_status, s_body), (b_status, b_body), (w_status, _), (g_status, _) = run(scenario())
        assert s_status == 200 and b_status == 200
        assert (w_status, g_status) == (415, 400)
        first = verify_receipt(s_body, emt.sig, delivery_id=items[0][0].delivery_id,
                               digest=hashlib.sha256(bodies[0]).digest())
        listed = verify_batch_receipt(b_body, emt.sig,
                                      digests=[hashlib.sha256(b).digest() for b in bodies])
        assert [i.receipt.status for i in listed if i.receipt] == [
            ReceiptStatus.DUPLICATE, ReceiptStatus.STORED, ReceiptStatus.STORED,
            ReceiptStatus.STORED]
        assert [i.receipt.delivery_id for i in listed if i.receipt] == [
            item.delivery_id for item, _ in items]
        assert listed[0].receipt is not None
        assert listed[0].receipt.received_at == first.received_at  # the first arrival
        assert emt.storage.counts()["emt_deliveries"] == 4
    finally:
        emt.storage.dispose()
        server.stop()
