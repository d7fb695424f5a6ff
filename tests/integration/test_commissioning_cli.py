"""The production line from the command line: a GWA signs a gateway's initial configuration,
the integrator manufactures and configures the gateway, the installer installs it (seed 003
§2.3.1–§2.3.2) – and the local interface is gone afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imsys.cli.main import build_app
from imsys.pki import PkiDirectory

GATEWAY = "EIMS0000000888"


def test_gateway_production_line_from_the_cli(pki: PkiDirectory, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMSYS_GWA_PASSPHRASE", "gwa passphrase for the test")
    runner = CliRunner()
    gwa, state, doc = tmp_path / "gwa", tmp_path / "gateway", tmp_path / "initial.cms"

    def imsys(*args: str, **env: str) -> str:
        result = runner.invoke(build_app(), list(args), env=env or None)
        assert result.exit_code == 0, result.output
        return result.output

    imsys("gwa", "init", str(gwa), "--pki", str(pki.path), "--id", "GWA-CLI-1",
          "--admin-port", "4443", "--ca", "sub-ca")
    imsys("gwa", "initial-config", str(gwa), GATEWAY, "--out", str(doc))
    out = imsys("gateway", "manufacture", "--state", str(state), "--id", GATEWAY,
                "--pki", str(pki.path), "--integrator-pin", "integrator-888",
                "--installer-pin", "installer-888", "--wakeup", "127.0.0.1:4888")
    assert "phase pre_personalisation_2" in out
    # the installer's PIN does not open the integrator's step
    refused = runner.invoke(build_app(), ["gateway", "load-config", "--state", str(state),
                                          str(doc)], env={"IMSYS_LOCAL_PIN": "installer-888"})
    assert refused.exit_code != 0 and "wrong-pin" in refused.output
    assert "phase installation" in imsys("gateway", "load-config", "--state", str(state),
                                         str(doc), IMSYS_LOCAL_PIN="integrator-888")
    assert "phase personalisation" in imsys("gateway", "install", "--state", str(state),
                                            "--gwa", "127.0.0.1:4443",
                                            IMSYS_LOCAL_PIN="installer-888")
    assert json.loads((state / "commissioning.json").read_text())["phase"] == \
        "personalisation"
    again = runner.invoke(build_app(), ["gateway", "install", "--state", str(state)],
                          env={"IMSYS_LOCAL_PIN": "installer-888"})
    assert again.exit_code != 0 and "local-interface" in again.output  # disabled for good
    assert "personalisation" in imsys("gateway", "status", "--state", str(state))
