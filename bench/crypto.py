"""How fast imsys opens a sealed CMS message, against the cost of its cryptography.

Run from the repository root: ``python bench/crypto.py``. On brainpoolP256r1 it prints the
rates of ECDSA sign/verify and ECDH through ``imsys.crypto.primitives``, the same from
``openssl speed`` for reference, the CMS ``seal`` and ``open_sealed`` rates for a 1 KiB
document (one recipient, AES-128-GCM), and the crypto bound of opening: one ECDH plus one ECDSA
verification per message, measured in this run. The last line is ``cms_open_ratio <x>`` with
x = open_sealed rate / bound (1.00 would mean parsing, KDF, AES and hashing cost nothing).

The bound is measured as what it is: a loop doing, per message, one ECDH with a fresh peer key
and one ECDSA verification – the cryptography an open cannot avoid, with the cache behaviour of
doing both in turn. The bound derived from separate ECDH and verify loops (each alone keeps its
tables hot, which no message stream does) is printed too, with the ratio against it.

``python bench/crypto.py --profile`` instead runs ``open_sealed`` under cProfile, with the ECDH
and the verification left in, and prints where its time goes (a diagnostic; no ratio).

The Python figures are measured in 32 rounds; each round runs every operation for 0.05 s in
turn (1.6 s in total for each), and every operation cycles through distinct inputs (keys,
signatures, messages) as a stream of real messages would. The rates printed are medians over
the rounds; the ratio is the median of the rounds' own ratios, each taken from slices a
fraction of a second apart, so a machine shared with other work shifts numerator and bound
together.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

try:
    import imsys  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from imsys.crypto import cms
from imsys.crypto.primitives import SoftwareKey, ecdsa_verify, generate_private_key

CURVE = "brainpoolP256r1"
SLICE_SECONDS = 0.05
ROUNDS = 32  # 32 x 0.05 s = 1.6 s per figure
POOL = 32


def _certificate(key: ec.EllipticCurvePublicKey, issuer: ec.EllipticCurvePrivateKey,
                 name: str) -> x509.Certificate:
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(issuer, hashes.SHA256()))


def _run_slice(operation: Callable[[], object], seconds: float) -> tuple[int, float]:
    """Run ``operation`` for about ``seconds``: (count, elapsed)."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(10):
            operation()
        count += 10
        now = time.perf_counter()
        if now >= deadline:
            return count, now - start


def measure(operations: dict[str, Callable[[], object]]) -> list[dict[str, float]]:
    """Operations per second of each, one dict per round of interleaved slices."""
    rounds = []
    for _ in range(ROUNDS):
        rates = {}
        for name, operation in operations.items():
            count, elapsed = _run_slice(operation, SLICE_SECONDS)
            rates[name] = count / elapsed
        rounds.append(rates)
    return rounds


def _separate_bound(rates: dict[str, float]) -> float:
    """One ECDH and one verification per message, from their separate tight loops."""
    return 1 / (1 / rates["ECDH"] + 1 / rates["ECDSA verify"])


def openssl_speed() -> dict[str, float] | None:
    """ECDSA sign/verify and ECDH rates from ``openssl speed``, or None without openssl."""
    if shutil.which("openssl") is None:
        return None
    output = subprocess.run(
        ["openssl", "speed", "-seconds", "2", "ecdsabrp256r1", "ecdhbrp256r1"],
        capture_output=True, text=True, check=True).stdout
    ecdsa = re.search(r"ecdsa \(brainpoolP256r1\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", output)
    ecdh = re.search(r"ecdh \(brainpoolP256r1\)\s+\S+s\s+([\d.]+)", output)
    if ecdsa is None or ecdh is None:
        raise RuntimeError(f"cannot read openssl speed output:\n{output}")
    return {"ECDSA sign": float(ecdsa[1]), "ECDSA verify": float(ecdsa[2]),
            "ECDH": float(ecdh[1])}


def profile_open(opened: Callable[[], object], count: int = 3000) -> None:
    """cProfile of ``count`` calls of ``opened``, the 25 entries with the most own time."""
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [opened() for _ in range(count)])
    print(f"open_sealed x {count} under cProfile (times inflated by the profiler)")
    pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true",
                        help="profile open_sealed instead of measuring the rates")
    args = parser.parse_args()
    sender, recipient = SoftwareKey.generate(CURVE), SoftwareKey.generate(CURVE)
    issuer = generate_private_key(CURVE)
    sender_certificate = _certificate(sender.public_key(), issuer, "gateway SIG")
    recipient_certificate = _certificate(recipient.public_key(), issuer, "EMT ENC")
    verification_key = sender.public_key()
    document = os.urandom(1024)
    # every operation cycles through distinct inputs, as a stream of real messages would
    peers = itertools.cycle([SoftwareKey.generate(CURVE).public_key() for _ in range(POOL)])
    signed = [os.urandom(230) for _ in range(POOL)]  # about the size of signed attributes
    signatures = itertools.cycle([(data, sender.sign(data)) for data in signed])
    messages = [cms.seal(os.urandom(len(document)), sender, sender_certificate,
                         [recipient_certificate], signing_time=datetime.now(UTC))
                for _ in range(POOL)]
    sealed = itertools.cycle(messages)
    opened = cms.open_sealed(messages[0], recipient, recipient_certificate,
                             signer_certificate=sender_certificate)
    assert opened.signer_certificate == sender_certificate
    if args.profile:
        profile_open(lambda: cms.open_sealed(next(sealed), recipient, recipient_certificate))
        return

    def verify() -> None:
        data, signature = next(signatures)
        ecdsa_verify(verification_key, signature, data)

    def crypto_of_one_message() -> None:
        recipient.exchange(next(peers))
        verify()

    rounds = measure({
        "ECDSA sign": lambda: sender.sign(document),
        "ECDSA verify": verify,
        "ECDH": lambda: recipient.exchange(next(peers)),
        "bound": crypto_of_one_message,
        "seal": lambda: cms.seal(document, sender, sender_certificate,
                                 [recipient_certificate]),
        # the signer certificate is taken from the message, as without prior knowledge
        "open_sealed": lambda: cms.open_sealed(next(sealed), recipient, recipient_certificate),
    })
    reference = openssl_speed()

    rates = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    ratio = statistics.median(r["open_sealed"] / r["bound"] for r in rounds)
    separate = statistics.median(r["open_sealed"] / _separate_bound(r) for r in rounds)
    print(f"{CURVE} through imsys.crypto.primitives")
    for name in ("ECDSA sign", "ECDSA verify", "ECDH"):
        print(f"  {name:<14}{rates[name]:10.1f} /s")
    if reference is None:
        print("openssl: n/a")
    else:
        print("openssl speed -seconds 2 ecdsabrp256r1 ecdhbrp256r1")
        for name, rate in reference.items():
            print(f"  {name:<14}{rate:10.1f} /s")
    print(f"CMS, {len(document)} B document, one recipient, AES-128-GCM")
    print(f"  {'seal':<14}{rates['seal']:10.1f} msgs/s")
    print(f"  {'open_sealed':<14}{rates['open_sealed']:10.1f} msgs/s")
    print(f"crypto bound of open_sealed (1 ECDH + 1 ECDSA verify per message): "
          f"{rates['bound']:.1f} msgs/s")
    print(f"  from separate ECDH and verify loops: {_separate_bound(rates):.1f} msgs/s "
          f"(open_sealed / that = {separate:.2f})")
    print(f"cms_open_ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
