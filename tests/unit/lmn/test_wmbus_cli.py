"""``imsys wmbus decode`` (the Typer sub-app ``wmbus_app``): hex lines and binary captures."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner
from wmbus_vectors import VECTORS

from imsys.lmn.cli import wmbus_app
from imsys.lmn.wmbus.stream import write_capture

runner = CliRunner()
KEY7 = "000102030405060708090A0B0C0D0E0F"
KEY5 = "0102030405060708090A0B0C0D0E0F11"


def test_hex_lines_with_per_meter_keys(tmp_path: Path) -> None:
    f = tmp_path / "telegrams.txt"
    f.write_text("# OMS examples\n"
                 + VECTORS["oms-profile-b-mode7-integrated"].wire.hex() + "\n\n"
                 + VECTORS["oms-frame-format-b"].wire.hex(" ") + "  # format B\n")
    result = runner.invoke(wmbus_app, ["decode", "--key", f"12345678={KEY7}", str(f)])
    assert result.exit_code == 0, result.output
    first, second = (json.loads(x) for x in result.output.splitlines())
    assert first["security_mode"] == 7 and first["message_counter"] == 0x0AB3
    assert first["records"][0] == {"quantity": "volume", "unit": "m³", "value": 28504.27,
                                   "function": "instantaneous", "storage": 0, "tariff": 0,
                                   "subunit": 0}
    assert second["meter"]["manufacturer"] == "CEN" and second["records"][0]["value"] == 876.543


def test_binary_capture_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "capture.bin"
    f.write_bytes(write_capture([VECTORS["oms-profile-a-mode5"].wire,
                                 VECTORS["oms-profile-b-mode7-integrated"].wire]))
    result = runner.invoke(wmbus_app, ["decode", "--key", KEY5, "--raw", str(f)])
    assert result.exit_code == 1
    ok, bad = (json.loads(x) for x in result.output.splitlines())
    assert ok["records"][0]["raw"]["vib"] == "14" and ok["records"][0]["value"] == 28504.27
    assert bad["error"] == "bad-mac"
