"""With ``trust.crls`` in gateway.json the gateway refuses a revoked EMT (WAN-TLS peer check
with the SM-PKI's CRLs); without CRLs the same EMT would be accepted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from test_gateway_process import START, electricity, state_dir

from imsys.core.clock import SimulatedClock
from imsys.core.errors import Reason, TlsRejected
from imsys.crypto import SoftwareKey
from imsys.emt.server import EmtServer, ServerConfig, write_key_pair
from imsys.gateway.process import CONFIG_FILE, GatewayProcess
from imsys.pki import PkiDirectory

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
EMT = "9900000000001"


def test_gateway_refuses_a_revoked_emt_when_it_has_crls(pki: PkiDirectory, issue: Issue,
                                                        tmp_path: Path) -> None:
    keys = tmp_path / "emt-keys"
    key, cert = pki.issue_with_new_key("emt-tls", EMT, ca="emt-ca")  # its own, to revoke
    write_key_pair(keys, "tls", key, cert)
    for purpose in ("sig", "enc"):
        write_key_pair(keys, purpose, *issue(f"emt-{purpose}", EMT, ca="emt-ca"))
    server = EmtServer(ServerConfig(pki.path, EMT, f"sqlite:///{tmp_path / 'emt.db'}",
                                    keys_dir=keys, threads=2))
    port = server.start()
    try:
        clock = SimulatedClock(START)
        _, channels = electricity(clock)
        state = state_dir(tmp_path, pki, issue, port, channels)

        async def connect() -> None:
            connection = await GatewayProcess(state, clock)._connect()
            await connection.close()

        asyncio.run(connect())  # without CRLs: accepted
        pki.revoke(cert.serial_number, "key_compromise")
        config = json.loads((state / CONFIG_FILE).read_text())
        config["trust"]["crls"] = []
        for name in ("root", "sub-ca", "emt-ca"):
            path = state / "trust" / f"{name}.crl"
            path.write_bytes(pki.crl(name).public_bytes(serialization.Encoding.DER))
            config["trust"]["crls"].append(f"trust/{name}.crl")
        (state / CONFIG_FILE).write_text(json.dumps(config))
        with pytest.raises(TlsRejected) as refused:
            asyncio.run(connect())
        assert refused.value.context["cause"] == Reason.REVOKED.value
    finally:
        server.stop()
