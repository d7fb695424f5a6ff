"""The EMT server on 127.0.0.1: real TLS (WAN policy, brainpool), real HTTP, real processes.

A simulated gateway opens a mutually authenticated TLS connection, POSTs sealed deliveries to
``/deliveries/v1`` and verifies the signed receipts. Named after seed 003, table 2 (process
"Datenübertragung"): step 2.2.6 (gateway opens mutually authenticated TLS to the EMT),
step 3.1.4 (sends at once over an existing connection), step 3.2.7 (EMT decrypts).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from imsys.core.reading import Reading
from imsys.crypto import SoftwareKey
from imsys.crypto.tls import Interface, TlsIdentity, client_context
from imsys.emt.server import EmtServer, ServerConfig, write_key_pair
from imsys.emt.storage import EmtStorage
from imsys.pki import IssuanceRequest, PkiDirectory, profile
from imsys.pki.validation import PathValidator
from imsys.wire.ar2418 import document_from_readings, encode_document
from imsys.wire.delivery import Delivery, seal_delivery
from imsys.wire.receipt import ReceiptStatus, verify_receipt

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
EMT = "9900000000001"
NOW = datetime.now(UTC).replace(microsecond=0)
SERVED = ("EABC0012345678", "EABC0000000111", "EABC0000000112", "EABC0000000113")


@dataclass(frozen=True)
class Gateway:
    gateway_id: str
    tls: tuple[SoftwareKey, x509.Certificate]
    sig: tuple[SoftwareKey, x509.Certificate]


def new_gateway(pki: PkiDirectory, gateway_id: str) -> Gateway:
    """A gateway identity certified by the Sub-CA without touching the PKI index (fast)."""
    ca = pki.ca("sub-ca")
    pairs = []
    for name in ("gateway-tls", "gateway-sig"):
        key = SoftwareKey.generate()
        pairs.append((key, ca.issue_for_key(key.public_key(),
                                            IssuanceRequest(profile(name), gateway_id))))
    return Gateway(gateway_id, pairs[0], pairs[1])


def sealed_delivery(gateway: Gateway, emt_enc: x509.Certificate, index: int = 0,
                    signer: Gateway | None = None,
                    signing_time: datetime | None = None) -> tuple[Delivery, bytes]:
    meter = f"1EMH00{index % 10**8:08d}"
    readings = [Reading(meter, "1-0:1.8.0*255", 1000 + i, -1, 30,
                        NOW - timedelta(days=1) + timedelta(minutes=15 * i)) for i in range(4)]
    document = encode_document(document_from_readings(
        readings, usage_point_id="DE0001", smgw_id=gateway.gateway_id, tariff_name="TAF7",
        measurement_period=900))
    item = Delivery.new(gateway_id=gateway.gateway_id, meter=meter, profile_id="taf7-1",
                        created=NOW, billing_relevant=True, document=document)
    key, cert = (signer or gateway).sig
    return item, seal_delivery(item, key, cert, emt_enc, signing_time=signing_time)


def client_ssl(pki: PkiDirectory, gateway: Gateway,
               validator: PathValidator | None = None) -> ssl.SSLContext:
    validator = validator or pki.validator()
    key, cert = gateway.tls
    chain = [c for c in validator.intermediates if c.subject == cert.issuer]
    return client_context(Interface.WAN, TlsIdentity((cert, *chain), key),
                          [pki.root.certificate], intermediates=validator.intermediates)


class Connection:
    """A minimal HTTP/1.1 keep-alive client over asyncio TLS (what a gateway would send)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        return cls(reader, writer)

    async def request(self, method: str, target: str, body: bytes = b"",
                      content_type: str = "application/cms",
                      extra: str = "") -> tuple[int, dict[str, str], bytes]:
        head = (f"{method} {target} HTTP/1.1\r\nHost: emt\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n{extra}\r\n")
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        return await self.response()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


@dataclass
class Running:
    port: int
    storage: EmtStorage
    enc: x509.Certificate
    sig: x509.Certificate


def start(tmp_path: Path, pki: PkiDirectory, issue: Issue, workers: int,
          served: tuple[str, ...] | None = SERVED) -> tuple[EmtServer, Running]:
    keys = tmp_path / "keys"
    for purpose in ("tls", "sig", "enc"):
        write_key_pair(keys, purpose, *issue(f"emt-{purpose}", EMT, ca="emt-ca"))
    url = f"sqlite:///{tmp_path / 'emt.db'}"
    server = EmtServer(ServerConfig(pki.path, EMT, url, workers=workers, keys_dir=keys,
                                    served_gateways=served, max_body=256 * 1024,
                                    crl_refresh=0.2, idle_timeout=60))
    port = server.start()
    return server, Running(port, EmtStorage(url, create=False),
                           issue("emt-enc", EMT, ca="emt-ca")[1],
                           issue("emt-sig", EMT, ca="emt-ca")[1])


@pytest.fixture(scope="module")
def emt(tmp_path_factory: pytest.TempPathFactory, pki: PkiDirectory,
        issue: Issue) -> Iterator[Running]:
    server, running = start(tmp_path_factory.mktemp("emt"), pki, issue, workers=2)
    try:
        yield running
    finally:
        running.storage.dispose()
        server.stop()


@pytest.fixture(scope="module")
def gateway(pki: PkiDirectory) -> Gateway:
    return new_gateway(pki, SERVED[0])


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_step_3_1_4_delivery_gets_a_verifiable_receipt(emt: Running, gateway: Gateway,
                                                       pki: PkiDirectory) -> None:
    item, data = sealed_delivery(gateway, emt.enc, 1)

    async def scenario() -> tuple[int, dict[str, str], bytes]:
        conn = await Connection.open(emt.port, client_ssl(pki, gateway))
        try:
            return await conn.request("POST", "/deliveries/v1", data)
        finally:
            await conn.close()

    status, headers, body = run(scenario())
    assert status == 200 and headers["content-type"] == "application/cms"
    receipt = verify_receipt(body, emt.sig, delivery_id=item.delivery_id,
                             digest=hashlib.sha256(data).digest(), validator=pki.validator())
    assert receipt.status is ReceiptStatus.STORED
    assert len(emt.storage.readings(meter=item.meter)) == 4


def test_duplicate_is_acknowledged_again_and_stored_once_over_keep_alive(
        emt: Running, gateway: Gateway, pki: PkiDirectory) -> None:
    item, data = sealed_delivery(gateway, emt.enc, 2)

    async def scenario() -> list[tuple[int, dict[str, str], bytes]]:
        conn = await Connection.open(emt.port, client_ssl(pki, gateway))
        try:
            return [await conn.request("POST", "/deliveries/v1", data) for _ in range(3)]
        finally:
            await conn.close()

    results = run(scenario())
    digest = hashlib.sha256(data).digest()
    statuses = [verify_receipt(body, emt.sig, delivery_id=item.delivery_id, digest=digest).status
                for _, _, body in results]
    assert statuses == [ReceiptStatus.STORED, ReceiptStatus.DUPLICATE, ReceiptStatus.DUPLICATE]
    assert len([d for d in emt.storage.deliveries() if d["delivery_id"] == str(item.delivery_id)]
               ) == 1
    assert len(emt.storage.readings(meter=item.meter)) == 4


def post_once(port: int, context: ssl.SSLContext, body: bytes, **kw: str
              ) -> tuple[int, dict[str, str], bytes]:
    async def scenario() -> tuple[int, dict[str, str], bytes]:
        conn = await Connection.open(port, context)
        try:
            return await conn.request("POST", kw.pop("target", "/deliveries/v1"), body, **kw)
        finally:
            await conn.close()

    return run(scenario())


def test_rejections_are_opaque_to_the_peer_and_recorded(emt: Running, gateway: Gateway,
                                                         pki: PkiDirectory, issue: Issue) -> None:
    context = client_ssl(pki, gateway)
    _, good = sealed_delivery(gateway, emt.enc, 3)
    tampered = bytearray(good)
    tampered[-20] ^= 1
    other_emt = issue("emt-enc", "9900000000002", ca="emt-ca")[1]
    _, wrong_recipient = sealed_delivery(gateway, other_emt, 4)
    _, old = sealed_delivery(gateway, emt.enc, 5, signing_time=NOW - timedelta(days=90))
    impostor = new_gateway(pki, "EABC0000000111")
    _, signed_by_other = sealed_delivery(gateway, emt.enc, 6, signer=impostor)
    for body in (bytes(tampered), wrong_recipient, old, signed_by_other):
        status, _, text = post_once(emt.port, context, body)
        assert status == 403 and text == b"refused\n"
    assert post_once(emt.port, context, b"not cms")[:1] == (400,)
    assert post_once(emt.port, context, good, content_type="text/plain")[0] == 415
    assert post_once(emt.port, context, good, target="/other")[0] == 404
    reasons = {r["reason"] for r in emt.storage.rejections()}
    assert {"wrong-recipient", "outside-window", "signer-mismatch", "malformed"} <= reasons
    assert reasons & {"tampered"} or "malformed" in reasons  # GCM tag or DER framing hit


def test_replay_with_other_content_is_a_conflict(emt: Running, gateway: Gateway,
                                                 pki: PkiDirectory) -> None:
    context = client_ssl(pki, gateway)
    item, data = sealed_delivery(gateway, emt.enc, 7)
    assert post_once(emt.port, context, data)[0] == 200
    key, cert = gateway.sig
    again = seal_delivery(item, key, cert, emt.enc)  # same id, new bytes
    assert post_once(emt.port, context, again)[:1] == (409,)


def test_unknown_gateway_is_refused(emt: Running, pki: PkiDirectory) -> None:
    stranger = new_gateway(pki, "EABC0000000999")
    _, data = sealed_delivery(stranger, emt.enc, 8)
    assert post_once(emt.port, client_ssl(pki, stranger), data)[:1] == (403,)
    assert "unknown-gateway" in {r["reason"] for r in emt.storage.rejections()}


def test_revoked_gateway_cannot_even_connect(emt: Running, pki: PkiDirectory) -> None:
    gateway_id = "EABC0000000112"
    tls_key, tls_cert = pki.issue_with_new_key("gateway-tls", gateway_id, ca="sub-ca")
    sig = pki.issue_with_new_key("gateway-sig", gateway_id, ca="sub-ca")
    revoked = Gateway(gateway_id, (tls_key, tls_cert), sig)
    _, data = sealed_delivery(revoked, emt.enc, 9)
    pki.revoke(tls_cert.serial_number, "key_compromise")
    time.sleep(0.3)  # the workers re-read the CRL every 0.2 s
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError, ssl.SSLError)):
        post_once(emt.port, client_ssl(pki, revoked), data)


def test_revoked_signer_is_refused(emt: Running, pki: PkiDirectory) -> None:
    gateway_id = "EABC0000000113"
    tls = pki.issue_with_new_key("gateway-tls", gateway_id, ca="sub-ca")
    sig_key, sig_cert = pki.issue_with_new_key("gateway-sig", gateway_id, ca="sub-ca")
    signer = Gateway(gateway_id, tls, (sig_key, sig_cert))
    _, data = sealed_delivery(signer, emt.enc, 10)
    pki.revoke(sig_cert.serial_number, "key_compromise")
    time.sleep(0.3)
    assert post_once(emt.port, client_ssl(pki, signer), data)[:1] == (403,)
    assert "revoked" in {r["reason"] for r in emt.storage.rejections()}


def test_oversized_body_is_refused_before_reading(emt: Running, gateway: Gateway,
                                                  pki: PkiDirectory) -> None:
    assert post_once(emt.port, client_ssl(pki, gateway), b"\x30" * (300 * 1024))[:1] == (413,)


def test_client_without_gateway_certificate_is_refused(emt: Running, pki: PkiDirectory,
                                                       issue: Issue) -> None:
    key, cert = issue("emt-tls", "9900000000002", ca="emt-ca")
    validator = pki.validator()
    context = client_context(Interface.WAN, TlsIdentity(
        (cert, *[c for c in validator.intermediates if c.subject == cert.issuer]), key),
        [pki.root.certificate], intermediates=validator.intermediates)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError, ssl.SSLError)):
        post_once(emt.port, context, b"x")


async def _gateway_session(port: int, context: ssl.SSLContext, bodies: list[bytes],
                           start: asyncio.Event) -> list[tuple[int, bytes]]:
    await start.wait()
    for attempt in range(5):
        try:
            conn = await Connection.open(port, context)
            break
        except (ConnectionError, ssl.SSLError, TimeoutError):
            await asyncio.sleep(0.1 * (attempt + 1))
    else:  # pragma: no cover
        raise ConnectionError("could not connect")
    try:
        results = []
        for body in bodies:
            status, _, receipt = await conn.request("POST", "/deliveries/v1", body)
            results.append((status, receipt))
        return results
    finally:
        await conn.close()


def load(tmp_path: Path, pki: PkiDirectory, issue: Issue, gateways: int,
         per_gateway: int, workers: int) -> None:
    server, emt = start(tmp_path, pki, issue, workers=workers, served=None)
    try:
        prepared = time.perf_counter()
        ids = [f"EABC{9_000_000_000 + i:010d}" for i in range(gateways)]
        identities = [new_gateway(pki, gid) for gid in ids]
        # each simulated gateway sends its deliveries, one of them twice (a lost receipt)
        plans = []
        for n, gw in enumerate(identities):
            sealed = [sealed_delivery(gw, emt.enc, n * 10 + k) for k in range(per_gateway)]
            plans.append((gw, sealed, [s[1] for s in sealed] + [sealed[0][1]]))
        validator = pki.validator()
        contexts = [client_ssl(pki, gw, validator) for gw in identities]
        prepared = time.perf_counter() - prepared

        async def scenario() -> list[list[tuple[int, bytes]]]:
            go = asyncio.Event()
            tasks = [asyncio.create_task(_gateway_session(emt.port, ctx, bodies, go))
                     for ctx, (_, _, bodies) in zip(contexts, plans, strict=True)]
            await asyncio.sleep(0)
            go.set()
            return await asyncio.gather(*tasks)

        started = time.perf_counter()
        outcomes = run(scenario())
        elapsed = time.perf_counter() - started
        for (_, sealed, bodies), results in zip(plans, outcomes, strict=True):
            assert [status for status, _ in results] == [200] * len(bodies)
            for (item, data), (_, receipt) in zip(sealed, results[:len(sealed)], strict=True):
                verify_receipt(receipt, emt.sig, delivery_id=item.delivery_id,
                               digest=hashlib.sha256(data).digest())
            first = sealed[0][0]
            last_receipt = results[-1][1]
            assert verify_receipt(last_receipt, emt.sig, delivery_id=first.delivery_id,
                                  digest=hashlib.sha256(sealed[0][1]).digest()
                                  ).status is ReceiptStatus.DUPLICATE
        counts = emt.storage.counts()
        assert counts["emt_deliveries"] == gateways * per_gateway  # none lost, none twice
        assert counts["emt_readings"] == gateways * per_gateway * 4
        print(f"\n{gateways} gateways x {per_gateway + 1} requests, {workers} workers: "
              f"{elapsed:.1f} s (preparing identities and deliveries: {prepared:.1f} s)")
    finally:
        emt.storage.dispose()
        server.stop()


def test_many_gateways_at_once_small(tmp_path: Path, pki: PkiDirectory, issue: Issue) -> None:
    load(tmp_path, pki, issue, gateways=60, per_gateway=2, workers=2)


def test_500_concurrent_gateways_none_lost_none_twice(tmp_path: Path, pki: PkiDirectory,
                                                      issue: Issue) -> None:
    """500 gateways connect at once, each sends a delivery and then repeats it (a lost
    receipt): 500 TLS sessions and 1000 requests through two worker processes."""
    count = int(os.environ.get("IMSYS_EMT_LOAD_GATEWAYS", "500"))
    load(tmp_path, pki, issue, gateways=count, per_gateway=1, workers=2)


def test_gateway_queue_delivers_through_imsys_emt_serve(tmp_path: Path, pki: PkiDirectory) -> None:
    """Steps 3.1.3–3.1.5 end to end: the gateway's queue keeps a delivery while the EMT is
    down, sends it once ``imsys emt serve`` runs, and stores the receipt."""
    import random
    import signal
    import subprocess
    import sys

    from imsys.core.clock import SimulatedClock
    from imsys.gateway.delivery import DeliveryQueue, DeliveryState, Transmission, deliver_due
    from imsys.gateway.store import Database, Durability
    from imsys.pki import load_certificate

    emt_id, gateway = "9900000000003", new_gateway(pki, "EABC0000000200")
    db_url = f"sqlite:///{tmp_path / 'cli-emt.db'}"
    keys = tmp_path / "cli-keys"
    command = [sys.executable, "-c", "from imsys.emt.cli import emt_app; emt_app()", "serve",
               "--pki", str(pki.path), "--id", emt_id, "--db", db_url, "--port", "0",
               "--workers", "2", "--keys", str(keys)]
    clock = SimulatedClock(NOW)
    queue = DeliveryQueue(Database(tmp_path / "gw.db", durability=Durability.OFF), clock,
                          gateway.gateway_id, rng=random.Random(3))

    def send(port: int) -> Callable[[Transmission], bytes]:
        def transmit(transmission: Transmission) -> bytes:
            status, _, body = post_once(port, client_ssl(pki, gateway), transmission.sealed)
            if status != 200:
                raise ConnectionError(f"HTTP {status}")
            return body
        return transmit

    env = {**os.environ, "COLUMNS": "200"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on https://127.0.0.1:" in line, process.stderr.read() if \
            process.poll() is not None else line
        port = int(line.split("https://127.0.0.1:")[1].split("/")[0])
        emt_enc = load_certificate((keys / "enc.pem").read_bytes())
        emt_sig = load_certificate((keys / "sig.pem").read_bytes())
        item, sealed = sealed_delivery(gateway, emt_enc, 42)
        queue.enqueue(item, sealed, emt_id=emt_id, consumer_id="consumer-7")
        # the EMT is unreachable at first: the delivery is kept and retried later
        states = deliver_due(queue, send(1), {emt_id: emt_sig})
        assert states == {item.delivery_id: DeliveryState.RETRY_WAIT}
        clock.advance(timedelta(hours=2))
        states = deliver_due(queue, send(port), {emt_id: emt_sig}, validator=pki.validator())
        assert states == {item.delivery_id: DeliveryState.ACKNOWLEDGED}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    show = subprocess.run([sys.executable, "-c", "from imsys.emt.cli import emt_app; emt_app()",
                           "show", "--db", db_url, "--readings"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert show.returncode == 0, show.stderr
    assert "1 deliveries, 4 readings, 0 rejections" in show.stdout
    assert str(item.delivery_id) in show.stdout


def test_http_details_expect_continue_health_and_close(emt: Running, gateway: Gateway,
                                                       pki: PkiDirectory) -> None:
    item, data = sealed_delivery(gateway, emt.enc, 11)

    async def scenario() -> tuple[bytes, tuple[int, dict[str, str], bytes], int, bytes]:
        conn = await Connection.open(emt.port, client_ssl(pki, gateway))
        try:
            conn.writer.write(f"POST /deliveries/v1 HTTP/1.1\r\nHost: emt\r\nContent-Type: "
                              f"application/cms\r\nContent-Length: {len(data)}\r\n"
                              "Expect: 100-continue\r\n\r\n".encode())
            await conn.writer.drain()
            interim = await conn.reader.readuntil(b"\r\n\r\n")
            conn.writer.write(data)
            final = await conn.response()
            health = await conn.request("GET", "/health")
            conn.writer.write(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
            await conn.writer.drain()
            closing = await conn.response()
            rest = await conn.reader.read()
            return interim, final, health[0], closing[1].get("connection", "").encode() + rest
        finally:
            await conn.close()

    interim, final, health, closing = run(scenario())
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final[0] == 200
    verify_receipt(final[2], emt.sig, delivery_id=item.delivery_id,
                   digest=hashlib.sha256(data).digest())
    assert health == 200
    assert closing == b"close"  # and the server closed the connection (nothing more to read)
