"""Seed 003 steps 3.3.1/3.3.2 from the gateway process: its EMT endpoint is a relay (another
market participant's TLS endpoint), the content is encrypted for the final recipient; the relay
checks, keeps and forwards it; the final recipient stores billing data with the gateway's
signature and the pseudonymised status data without it (step 3.3.3)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from test_gateway_process import START, electricity, eventually, push_meter, state_dir

from imsys.core.clock import SimulatedClock
from imsys.crypto import SoftwareKey
from imsys.emt.server import EmtServer, ForwardTarget, ServerConfig, write_key_pair
from imsys.emt.storage import EmtStorage
from imsys.gateway.process import CONFIG_FILE, GatewayProcess
from imsys.gateway.store import Durability
from imsys.gateway.taf import EvaluationProfile, Taf
from imsys.pki import PkiDirectory
from imsys.wire.delivery import RELAY_PATH

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
RELAY, FINAL = "9900000000043", "9900000000044"
Q = timedelta(minutes=15)


def _keys(folder: Path, emt_id: str, issue: Issue) -> Path:
    for purpose in ("tls", "sig", "enc"):
        write_key_pair(folder, purpose, *issue(f"emt-{purpose}", emt_id, ca="emt-ca"))
    return folder


def test_table2_step_3_3_1_and_3_3_2_gateway_sends_through_a_relay(
        pki: PkiDirectory, issue: Issue, tmp_path: Path) -> None:
    final_keys, relay_keys = _keys(tmp_path / "final", FINAL, issue), _keys(
        tmp_path / "relay", RELAY, issue)
    final_db, relay_db = f"sqlite:///{tmp_path / 'f.db'}", f"sqlite:///{tmp_path / 'r.db'}"
    final = EmtServer(ServerConfig(pki.path, FINAL, final_db, keys_dir=final_keys,
                                   trusted_relays=(RELAY,), threads=2))
    final_port = final.start()
    relay = EmtServer(ServerConfig(
        pki.path, RELAY, relay_db, keys_dir=relay_keys, threads=2, forward_interval=0.2,
        forward_to=(ForwardTarget(FINAL, "127.0.0.1", final_port, final_keys / "sig.pem"),)))
    try:
        relay_port = relay.start()
        clock = SimulatedClock(START)
        sim, channels = electricity(clock)
        state = state_dir(tmp_path, pki, issue, relay_port, channels)
        config = json.loads((state / CONFIG_FILE).read_text())
        (state / "emt" / "final-enc.pem").write_bytes((final_keys / "enc.pem").read_bytes())
        (state / "emt" / "sig.pem").write_bytes((relay_keys / "sig.pem").read_bytes())
        config["emt"] = {"id": RELAY, "url": f"https://127.0.0.1:{relay_port}{RELAY_PATH}",
                         "enc_certificate": "emt/enc.pem", "sig_certificate": "emt/sig.pem",
                         "final_recipient": {"id": FINAL,
                                             "enc_certificate": "emt/final-enc.pem"}}
        billing = EvaluationProfile.from_dict(config["evaluation_profiles"][0])
        status = EvaluationProfile(
            profile_id="TAF7-STATUS", taf=Taf.TAF7, meter_id=billing.meter_id,
            registers=("1-0:16.7.0*255",), billing_period=None, registration_period=Q,
            tariff_stages=(), tariff_calendar=None, recipients=(FINAL,), pseudonym="PSN-43",
            valid_from=START)
        config["evaluation_profiles"] = [
            {**config["evaluation_profiles"][0], "recipients": [FINAL]}, status.to_dict()]
        (state / CONFIG_FILE).write_text(json.dumps(config))

        async def scenario() -> GatewayProcess:
            gateway = GatewayProcess(state, clock, poll=0.01, durability=Durability.NORMAL)
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            await asyncio.wait_for(gateway.ready.wait(), 15)
            assert gateway.lmn_server is not None
            meter = push_meter(pki, issue, sim, gateway.lmn_server.port, clock)
            meter_task = asyncio.create_task(meter.run())
            try:
                await eventually(lambda: gateway.lmn_server.stats.frames == 1)  # type: ignore[union-attr]
                clock.advance(timedelta(seconds=10))
                await eventually(lambda: gateway.stats.acknowledged == 2)  # the relay's receipts
            finally:
                meter.stop()
                stop.set()
                await asyncio.wait_for(meter_task, 15)
                await asyncio.wait_for(task, 15)
            return gateway

        gateway = asyncio.run(asyncio.wait_for(scenario(), 60))
        assert gateway.stats.failed == 0
        store = EmtStorage(final_db, create=False)
        try:
            deadline = time.monotonic() + 60
            while store.counts()["emt_deliveries"] < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            rows = {r["profile_id"]: r for r in store.deliveries()}
        finally:
            store.dispose()
        assert set(rows) == {"TAF7-0001", "TAF7-STATUS"}
        assert rows["TAF7-STATUS"]["meter"] == "PSN-43" and rows["TAF7-STATUS"]["pseudonymised"]
        assert rows["TAF7-0001"]["meter"] == billing.meter_id
    finally:
        relay.stop()
        final.stop()
