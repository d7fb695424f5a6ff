"""``imsys gwa init|serve|gateways|command|wakeup`` as an operator uses them: a served GWA in a
subprocess, a gateway commissioned against it over TLS, the fleet table and a command batch
through the operator API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "gwa"))
sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "gateway"))

from gwa_helpers import gateway_at_personalisation, initial_configuration

from imsys.gateway.commissioning import Phase
from imsys.gateway.initial_config import GwaAddress
from imsys.gwa.cli import gwa_app
from imsys.gwa.keys import GwaKeys
from imsys.pki import PkiDirectory
from imsys.secmod import SoftwareSecurityModule

PASSPHRASE = "cli integration passphrase"
GATEWAY = "EIMS0000000601"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_api(api: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode() if process.stderr else "died")
        try:
            with urllib.request.urlopen(f"{api}/openapi.json", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the operator API did not come up")


def test_operator_cli_against_a_served_gwa(pki: PkiDirectory, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMSYS_GWA_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("COLUMNS", "200")
    folder = tmp_path / "gwa"
    admin_port, api_port = free_port(), free_port()
    runner = CliRunner()
    init = runner.invoke(gwa_app, ["init", str(folder), "--pki", str(pki.path), "--id",
                                   "GWA-Cli-2", "--admin-port", str(admin_port),
                                   "--api-port", str(api_port)])
    assert init.exit_code == 0, init.output
    with SoftwareSecurityModule(folder / "secmod", PASSPHRASE.encode()) as module:
        # the GWA signs the gateway's initial configuration before it serves (§2.3.1.3)
        document = initial_configuration(GwaKeys.load(module), GATEWAY,
                                         GwaAddress("127.0.0.1", admin_port))
    api = f"http://127.0.0.1:{api_port}"
    server = subprocess.Popen(
        [sys.executable, "-c", "from imsys.gwa.cli import gwa_app; gwa_app()", "serve",
         str(folder)], env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_api(api, server)
        gateway = gateway_at_personalisation(tmp_path / "gw", GATEWAY, pki, None,
                                             GwaAddress("127.0.0.1", admin_port),
                                             document=document)
        asyncio.run(gateway.client().run())
        assert gateway.commissioning.phase is Phase.OPERATION

        table = runner.invoke(gwa_app, ["gateways", "--api", api])
        assert table.exit_code == 0, table.output
        line = next(x for x in table.output.splitlines() if GATEWAY in x)
        assert "operation" in line and "operational" in line

        queued = runner.invoke(gwa_app, ["command", "profile.evaluation.activate", "--gateway",
                                         GATEWAY, "--parameters", '{"profile_id": "TP-9"}',
                                         "--api", api])
        assert queued.exit_code == 0, queued.output
        assert "1 command(s) queued" in queued.output
        report = asyncio.run(gateway.client().run_once())
        assert (report.executed, report.failed) == (1, 1)  # no such profile: a signed "failed"
        with urllib.request.urlopen(f"{api}/api/v1/gateways/{GATEWAY}") as response:
            detail = json.loads(response.read())
        assert detail["commands"][-1]["status"] == "failed"
        assert detail["commands"][-1]["result"]["reason"] == "unknown-item"

        refused = runner.invoke(gwa_app, ["wakeup", GATEWAY, "--api", api])
        assert refused.exit_code == 2 and "409" in refused.output  # no wake-up address yet
        gateway.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert server.returncode == 0, server.stderr.read().decode() if server.stderr else ""
