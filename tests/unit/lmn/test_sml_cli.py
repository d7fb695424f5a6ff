"""``imsys sml decode`` (the Typer sub-app ``sml_app``)."""

from __future__ import annotations

import json
from pathlib import Path

from test_sml_frames import FRAMES
from typer.testing import CliRunner

from imsys.lmn.cli import sml_app

runner = CliRunner()


def test_decode_prints_one_json_object_per_message(tmp_path: Path) -> None:
    capture = tmp_path / "serial.bin"
    capture.write_bytes(b"\x00\x42noise" + FRAMES["smllib-frame2-hly"]
                        + FRAMES["smllib-frame1-dzg"])
    result = runner.invoke(sml_app, ["decode", str(capture)])
    assert result.exit_code == 0, result.output
    objs = [json.loads(line) for line in result.output.splitlines()]
    assert [o["type"] for o in objs] == ["OpenResponse", "GetListResponse", "CloseResponse"] * 2
    values = {v["obis"]: v for v in objs[1]["values"]}
    assert values["1-0:1.8.0*255"]["value"] == 4499896.2
    assert values["1-0:1.8.0*255"]["unit"] == "Wh"
    assert values["1-0:32.7.0*255"]["value"] == 234.4 and values["1-0:32.7.0*255"]["unit"] == "V"
    assert values["1-0:14.7.0*255"]["unit"] == "Hz"


def test_raw_option_and_hex_capture(tmp_path: Path) -> None:
    capture = tmp_path / "capture.hex"
    capture.write_text(FRAMES["smllib-frame1-dzg"].hex(" "))
    result = runner.invoke(sml_app, ["decode", "--raw", str(capture)])
    assert result.exit_code == 0, result.output
    getlist = json.loads(result.output.splitlines()[1])
    energy = next(v for v in getlist["values"] if v["obis"] == "1-0:1.8.0*255")
    assert energy["raw"] == {"value": 13391, "scaler": 3, "unit_code": 30}
    assert energy["value"] == 13391000


def test_rejected_frames_are_reported_and_set_the_exit_code(tmp_path: Path) -> None:
    capture = tmp_path / "ebz.bin"
    capture.write_bytes(FRAMES["smllib-issue8-ok-ebz"])
    result = runner.invoke(sml_app, ["decode", str(capture)])
    assert result.exit_code == 1
    assert json.loads(result.output.splitlines()[0])["error"] == "bad-crc"
    result = runner.invoke(sml_app, ["decode", "--no-message-crc", str(capture)])
    assert result.exit_code == 0
