"""Commission and configure a fleet of gateways through the real GWA endpoints.

    python bench/gwa_fleet.py [--gateways 200] [--concurrency 8] [--db sqlite:///…]

One process: the GWA (its software security module, database, admin-session TLS endpoint on
127.0.0.1) runs on its own event loop in a thread; the gateways run on the main loop, each
with its own software security module and SQLite database. Every gateway is first brought to
the end of the installation phase by the local steps (seed 003 §2.3.1–§2.3.2, *not* timed in
the headline figure), then – timed – it calls its GWA: personalisation (6 commands over the
``*_PRE`` keys), a new session with the operational keys (time synchronisation, self-test),
and a third session that installs a meter profile (sealed: it carries the AES key), a
communication profile and an evaluation profile and activates both (5 commands). That is 13
signed commands, 13 signed results and 3 TLS handshakes per gateway.

Printed: local set-up time, the timed phase, the share of the process's CPU time spent in
the measured cryptography (CMS sign/verify/seal/open, ECDSA in the security modules, CSRs,
certificate issuance, path validation; CPU time of the calling thread, outermost call only;
the TLS handshakes' own cryptography runs inside OpenSSL and is not in the figure), and last
``gateways_per_minute <x>``. The security modules use a cheap scrypt cost (2^4) for their
store and PIN reference, as the tests do: a real module's PIN cost is not the GWA's business.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit" / "gwa"))

from gwa_helpers import (
    BackgroundEndpoint,
    communication_document,
    evaluation_document,
    gateway_at_personalisation,
    gwa_keys,
    meter_document,
    new_service,
)

import imsys.crypto.cms as cms_module
import imsys.gateway.commissioning as commissioning_module
import imsys.secmod.base as secmod_base
from imsys.crypto.primitives import SoftwareKey
from imsys.gateway.commissioning import Phase
from imsys.gateway.initial_config import GwaAddress
from imsys.gwa.db import CommandStatus, Commissioning
from imsys.pki import PkiDirectory
from imsys.pki.validation import PathValidator
from imsys.secmod._handle import ModuleKey


class CryptoClock:
    """CPU seconds (``time.thread_time``) inside wrapped cryptographic calls, outermost call
    per thread only: waiting for the GIL while the other thread works is not counted."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._lock = threading.Lock()
        self._depth = threading.local()

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(self._depth, "n", 0)
            self._depth.n = depth + 1
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self._depth.n = depth
                if depth == 0:
                    elapsed = time.thread_time() - start
                    with self._lock:
                        self.seconds += elapsed
                        self.calls += 1
        return timed

    def install(self) -> None:
        for name in ("sign", "verify", "seal", "open_sealed", "encrypt", "decrypt"):
            setattr(cms_module, name, self.wrap(getattr(cms_module, name)))
        commissioning_module.build_csr = self.wrap(commissioning_module.build_csr)
        secmod_base.ecdsa_verify = self.wrap(secmod_base.ecdsa_verify)
        for cls, names in ((ModuleKey, ("sign", "exchange")), (SoftwareKey, ("sign", "exchange")),
                           (PathValidator, ("validate",)), (PkiDirectory, ("issue",)),
                           (secmod_base.SecurityModule, ("generate_key_pair",))):
            for name in names:
                setattr(cls, name, self.wrap(getattr(cls, name)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--db", default=None, help="GWA database URL [SQLite in a temp dir]")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="imsys-gwa-fleet-"))
    pki = PkiDirectory.init(work / "pki", sub_cas=("sub-ca", "emt-ca"))
    keys = gwa_keys(pki, work / "gwa-secmod")
    service = new_service(pki, keys, args.db or f"sqlite:///{work / 'gwa.db'}")
    communication = communication_document(pki)
    meter, evaluation = meter_document(), evaluation_document()
    crypto = CryptoClock()

    with BackgroundEndpoint(service, pki) as endpoint:
        address = GwaAddress("127.0.0.1", endpoint.port)
        start = time.perf_counter()
        gateways = [gateway_at_personalisation(work / f"gw{n}", f"EIMS{n:010d}", pki, keys,
                                               address) for n in range(args.gateways)]
        setup = time.perf_counter() - start
        print(f"local set-up (§2.3.1-§2.3.2) of {args.gateways} gateways: {setup:.1f} s")
        crypto.install()
        limit = asyncio.Semaphore(args.concurrency)

        async def administer(gateway: Any) -> None:
            async with limit:
                reports = await gateway.client().run()
                assert gateway.commissioning.phase is Phase.OPERATION, reports
                gid = gateway.gateway_id
                service.enqueue([gid], "device.meter.register", {"profile": meter})
                service.enqueue([gid], "profile.communication.install",
                                {"profile": communication})
                service.enqueue([gid], "profile.communication.activate", {"profile_id": "CP-1"})
                service.enqueue([gid], "profile.evaluation.install", {"profile": evaluation})
                service.enqueue([gid], "profile.evaluation.activate", {"profile_id": "TP-7"})
                report = await gateway.client().run_once()
                assert (report.executed, report.failed, report.refused) == (5, 0, []), report

        start, cpu_start = time.perf_counter(), time.process_time()
        await asyncio.gather(*(administer(g) for g in gateways))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start

    rows = service.db.gateways()
    operational = sum(r.commissioning is Commissioning.OPERATIONAL for r in rows)
    commands = service.db.commands(limit=10 * 13 * args.gateways)
    ok = sum(c.status is CommandStatus.OK for c in commands)
    for gateway in gateways:
        gateway.close()
    print(f"administered {operational}/{args.gateways} gateways to normal operation, "
          f"{ok}/{len(commands)} commands ok, in {elapsed:.1f} s "
          f"(concurrency {args.concurrency})")
    print(f"cryptography: {crypto.seconds:.1f} s CPU in {crypto.calls} calls = "
          f"{100 * crypto.seconds / cpu:.0f} % of the process's {cpu:.1f} s CPU time in the "
          f"timed phase (TLS handshakes not included)")
    if operational != args.gateways or ok != len(commands):
        raise SystemExit("not every gateway or command succeeded")
    print(f"gateways_per_minute {args.gateways / elapsed * 60:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
