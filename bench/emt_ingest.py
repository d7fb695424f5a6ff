"""How many deliveries per second the EMT takes in, against its crypto bound.

Run from the repository root: ``python bench/emt_ingest.py [--readings N] [--deliveries M]
[--batch B] [--dir DIR] [--threads T] [--tls]``.

What is measured (all in one run, on one machine):

* **crypto bound** – what opening a delivery cannot avoid: one ECDH (ephemeral-static, the
  key agreement of the AuthEnvelopedData) plus one ECDSA verification (the gateway's
  signature), brainpoolP256r1, through ``imsys.crypto.primitives``. ``1 / (t_ecdh +
  t_verify)`` deliveries/s for one core (and its CPU time).
* **receiver core** – :class:`imsys.emt.receiver.Receiver` with its
  :class:`~imsys.emt.storage.EmtStorage` on one shared SQLite file (WAL, ``synchronous=FULL``:
  every receipt is durable) in 1 and in 2 processes, fed with deliveries sealed beforehand
  (sealing is not measured, so the load generator costs nothing). Per delivery: size bound,
  decrypt, verify, path validation with CRL (cached per signer certificate and CRL snapshot),
  policy, AR 2418-6 parse of the document (``N`` values, default a TAF-7 day of 96), insert of
  delivery and values, duplicate check by the unique delivery id, receipt signed with the EMT
  SIG key. Two paths:

  - *single*: ``Receiver.receive`` per delivery from ``T`` threads (as each server worker has
    a thread pool; the storage group-commits what they hand it) – what a gateway's
    ``POST /deliveries/v1`` costs, one receipt signature per delivery;
  - *batch*: ``Receiver.receive_batch`` on ``B`` deliveries at a time (default 16) from ``T``
    threads (``POST /deliveries/v1/batch``): one receipt signature per batch, the batches of
    concurrent threads group-committed.

  Each line gives deliveries/s (wall clock), the CPU time per delivery and the bound's CPU time
  divided by it; on a shared machine the CPU figures are the steadier ones (the wall-clock
  figures also depend on how many runnable threads compete with other jobs for the cores).
* with ``--tls`` also **end to end over TLS on loopback**: :class:`imsys.emt.server.EmtServer`
  with 1 and 2 worker processes, 40 concurrent keep-alive connections (two per gateway) from an
  asyncio client in this process. On a 2-core machine the client competes with the workers for
  the CPUs, so these figures understate the server.

The last line is ``emt_vs_crypto_bound <x>`` with x = (receiver core, batch path, 1 process) /
crypto bound; the single path's ratio is printed above it.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import ssl
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

try:
    import imsys  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from imsys.core.clock import SystemClock
from imsys.core.reading import Reading
from imsys.crypto.primitives import SoftwareKey
from imsys.crypto.tls import Interface, TlsIdentity, client_context
from imsys.emt.receiver import EmtIdentity, Receiver
from imsys.emt.server import EmtServer, ServerConfig, write_key_pair
from imsys.emt.storage import EmtStorage
from imsys.pki import IssuanceRequest, PkiDirectory, profile
from imsys.wire.ar2418 import document_from_readings, encode_document
from imsys.wire.delivery import Delivery, seal_delivery

EMT = "9900000000001"
GATEWAYS = 20


def crypto_bound(seconds: float = 2.0) -> tuple[float, float, float, float]:
    """(ECDH/s, verify/s, bound deliveries/s, CPU seconds of one ECDH + one verify) for
    brainpoolP256r1, medians of 3 slices."""
    static = SoftwareKey.generate()
    signer = SoftwareKey.generate()
    message = os.urandom(64)
    signature = signer.sign(message)
    verifier = signer.public_key()
    peers = [ec.generate_private_key(ec.BrainpoolP256R1()).public_key() for _ in range(16)]

    def rate(operation, slice_seconds: float) -> float:  # type: ignore[no-untyped-def]
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < slice_seconds:
            for _ in range(20):
                operation()
            count += 20
        return count / (time.perf_counter() - start)

    ecdh_rates, verify_rates = [], []
    for _ in range(3):
        ecdh_rates.append(rate(lambda: static.exchange(peers[0]), seconds / 6))
        verify_rates.append(rate(lambda: verifier.verify(signature, message,
                                                          ec.ECDSA(hashes.SHA256())),
                                 seconds / 6))
    ecdh, verify = statistics.median(ecdh_rates), statistics.median(verify_rates)
    cpu = time.process_time()
    for _ in range(200):
        static.exchange(peers[0])
        verifier.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    return ecdh, verify, 1 / (1 / ecdh + 1 / verify), (time.process_time() - cpu) / 200


def setup(folder: Path, deliveries: int, readings: int) -> tuple[PkiDirectory, list[bytes], Path]:
    pki = PkiDirectory.init(folder / "pki", sub_cas=("sub-ca", "emt-ca"))
    keys = folder / "emt-keys"
    for purpose in ("tls", "sig", "enc"):
        write_key_pair(keys, purpose, *pki.issue_with_new_key(f"emt-{purpose}", EMT,
                                                              ca="emt-ca"))
    enc = (keys / "enc.pem").read_bytes()
    from imsys.pki import load_certificate

    enc_cert = load_certificate(enc)
    ca = pki.ca("sub-ca")
    signers = []
    for n in range(GATEWAYS):
        key = SoftwareKey.generate()
        gateway = f"EABC{n:010d}"
        signers.append((gateway, key, ca.issue_for_key(
            key.public_key(), IssuanceRequest(profile("gateway-sig"), gateway))))
    now = datetime.now(UTC).replace(microsecond=0)
    bodies = []
    for n in range(deliveries):
        gateway, key, cert = signers[n % GATEWAYS]
        meter = f"1EMH{n:010d}"
        values = [Reading(meter, "1-0:1.8.0*255", 1_000_000 + i, -1, 30,
                          now - timedelta(days=1) + timedelta(minutes=15 * i))
                  for i in range(readings)]
        document = encode_document(document_from_readings(
            values, usage_point_id=f"DE{n:08d}", smgw_id=gateway, tariff_name="TAF7",
            measurement_period=900))
        item = Delivery.new(gateway_id=gateway, meter=meter, profile_id="taf7-1", created=now,
                            billing_relevant=True, document=document)
        bodies.append(seal_delivery(item, key, cert, enc_cert))
    return pki, bodies, keys


def _core_process(pki_dir: str, keys_dir: str, url: str, bodies: list[bytes], threads: int,
                  batch: int, start_at: float,
                  results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from imsys.emt.server import load_identity

    material = load_identity(Path(keys_dir))
    storage = EmtStorage(url, create=False)
    receiver = Receiver(EmtIdentity(EMT, *material.enc, *material.sig),
                        PkiDirectory.open(pki_dir).validator(), storage, SystemClock())
    lanes = [bodies[i::threads] for i in range(threads)]
    failures = []

    def lane(items: list[bytes]) -> None:
        if batch > 1:
            for start in range(0, len(items), batch):
                try:
                    answer = receiver.receive_batch(items[start:start + batch])
                    failures.extend(i for i in answer.items if i.refused is not None)
                except Exception as exc:  # counted, reported
                    failures.append(exc)
            return
        for body in items:
            try:
                receiver.receive(body)
            except Exception as exc:  # counted, reported
                failures.append(exc)

    workers = [threading.Thread(target=lane, args=(items,)) for items in lanes]
    while time.time() < start_at:
        time.sleep(0.001)
    started, cpu = time.perf_counter(), time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put((time.perf_counter() - started, len(bodies), len(failures),
                 time.process_time() - cpu))
    storage.dispose()


def core_rate(pki: PkiDirectory, keys: Path, bodies: list[bytes], processes: int, threads: int,
              folder: Path, batch: int = 1) -> tuple[float, float]:
    """(deliveries/s over all processes, CPU seconds per delivery)."""
    url = f"sqlite:///{folder / f'core-{processes}-{batch}.db'}"
    EmtStorage(url).dispose()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 4.0  # after every process has imported and loaded its keys
    procs = [context.Process(target=_core_process, args=(
        str(pki.path), str(keys), url, bodies[i::processes], threads, batch, start_at, results))
        for i in range(processes)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    failures = sum(o[2] for o in outcomes)
    if failures:
        raise SystemExit(f"{failures} deliveries failed")
    stored = EmtStorage(url, create=False).counts()["emt_deliveries"]
    if stored != len(bodies):
        raise SystemExit(f"stored {stored} of {len(bodies)}")
    return len(bodies) / max(o[0] for o in outcomes), sum(o[3] for o in outcomes) / len(bodies)


async def _client(port: int, context: ssl.SSLContext, bodies: list[bytes]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    ok = 0
    for body in bodies:
        writer.write(f"POST /deliveries/v1 HTTP/1.1\r\nHost: emt\r\nContent-Type: "
                     f"application/cms\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        ok += head.startswith(b"HTTP/1.1 200")
    writer.close()
    return ok


def tls_rate(pki: PkiDirectory, keys: Path, bodies: list[bytes], workers: int,
             folder: Path) -> float:
    url = f"sqlite:///{folder / f'tls-{workers}.db'}"
    server = EmtServer(ServerConfig(pki.path, EMT, url, workers=workers, keys_dir=keys,
                                    threads=8))
    port = server.start()
    try:
        ca = pki.ca("sub-ca")
        validator = pki.validator()
        lanes = []
        for n in range(GATEWAYS):  # two connections per gateway, each with its own TLS identity
            key = SoftwareKey.generate()
            cert = ca.issue_for_key(key.public_key(),
                                    IssuanceRequest(profile("gateway-tls"), f"EABC{n:010d}"))
            context = client_context(Interface.WAN, TlsIdentity((cert, ca.certificate), key),
                                     [pki.root.certificate],
                                     intermediates=validator.intermediates)
            mine = bodies[n::GATEWAYS]
            lanes += [(context, mine[0::2]), (context, mine[1::2])]

        async def run() -> int:
            return sum(await asyncio.gather(*(_client(port, ctx, lane) for ctx, lane in lanes)))

        started = time.perf_counter()
        ok = asyncio.run(run())
        elapsed = time.perf_counter() - started
        if ok != len(bodies):
            raise SystemExit(f"only {ok} of {len(bodies)} deliveries acknowledged")
        return ok / elapsed
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=96)
    parser.add_argument("--deliveries", type=int, default=600)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16,
                        help="deliveries per batch request (POST /deliveries/v1/batch)")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="imsys-emt-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        measure(args, folder)
    finally:
        if args.dir is None:  # about 150 MB of databases
            shutil.rmtree(folder, ignore_errors=True)


def measure(args: argparse.Namespace, folder: Path) -> None:
    print(f"setting up: {args.deliveries} sealed deliveries of {args.readings} values "
          f"in {folder} ...", flush=True)
    pki, bodies, keys = setup(folder, args.deliveries, args.readings)
    print(f"delivery size {len(bodies[0])} B; database SQLite WAL synchronous=FULL; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    ecdh, verify, bound, bound_cpu = crypto_bound()
    print(f"crypto bound (brainpoolP256r1): ECDH {ecdh:.0f}/s, ECDSA verify {verify:.0f}/s "
          f"-> {bound:.0f} deliveries/s per core ({bound_cpu * 1e3:.2f} ms CPU)", flush=True)

    def run(label: str, processes: int, threads: int, batch: int) -> float:
        rate, cpu = core_rate(pki, keys, bodies, processes, threads, folder, batch)
        print(f"{label}, {processes} process{'es' if processes > 1 else ''} x {threads} "
              f"threads: {rate:.0f} deliveries/s ({cpu * 1e3:.2f} ms CPU per delivery, "
              f"bound/CPU {bound_cpu / cpu:.2f})", flush=True)
        return rate

    single = run("single deliveries (POST /deliveries/v1)", 1, args.threads, 1)
    single2 = run("single deliveries (POST /deliveries/v1)", 2, args.threads, 1)
    print(f"  2 processes = {single2 / single:.2f} x one; single path / bound = "
          f"{single / bound:.2f}")
    one = run(f"batches of {args.batch} (POST /deliveries/v1/batch)", 1, args.threads,
              args.batch)
    two = run(f"batches of {args.batch} (POST /deliveries/v1/batch)", 2, args.threads,
              args.batch)
    print(f"  2 processes = {two / one:.2f} x one")
    if args.tls:
        print("end to end over TLS (40 keep-alive connections from a client in this process):")
        for workers in (1, 2):
            rate = tls_rate(pki, keys, bodies, workers, folder)
            print(f"  {workers} worker(s): {rate:.0f} deliveries/s", flush=True)
    print(f"deliveries/s, 1 worker: {one:.0f}; 2 workers: {two:.0f} (batch path)")
    print(f"emt_vs_crypto_bound {one / bound:.2f}")


if __name__ == "__main__":
    main()
