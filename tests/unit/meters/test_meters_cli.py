"""``imsys meter record``: the files decode with ``imsys sml decode`` / ``imsys wmbus decode``
(run through Typer's CliRunner on the LMN apps) to the simulator's values."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imsys.core.clock import SimulatedClock
from imsys.lmn import sml
from imsys.lmn.cli import sml_app, wmbus_app
from imsys.lmn.wmbus import read_capture
from imsys.meters import registers as R
from imsys.meters.cli import DEFAULT_IDS, meter_app
from imsys.meters.settings import MeterSettings
from imsys.meters.simulator import MeterKind, MeterSimulator, ModelKind

START = datetime(2024, 12, 31, 23, 0, tzinfo=UTC)  # the default --start, 1 Jan 2025 local
Q = timedelta(minutes=15)
KEY = "00112233445566778899aabbccddeeff"
runner = CliRunner()


def reference(kind: MeterKind, model: ModelKind, seed: int = 0, start: datetime = START
              ) -> MeterSimulator:
    return MeterSimulator(DEFAULT_IDS[kind], kind, model, MeterSettings(seed=seed),
                          SimulatedClock(start))


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_record_electricity_decodes_with_imsys_sml_decode(tmp_path: Path) -> None:
    out = tmp_path / "h25.sml"
    r = runner.invoke(meter_app, ["record", "--kind", "electricity", "--profile", "h25",
                                  "--count", "96", "--out", str(out), "--seed", "3", "-q"])
    assert r.exit_code == 0, r.output
    assert "wrote 96 SML frames" in r.output
    decoded = runner.invoke(sml_app, ["decode", str(out)])
    assert decoded.exit_code == 0, decoded.output
    objs = lines(decoded.output)
    assert len(objs) == 3 * 96
    lists = [o for o in objs if o["type"] == "GetListResponse"]
    assert [o["frame"] for o in lists] == list(range(96))
    ref = reference(MeterKind.ELECTRICITY, ModelKind.HOUSEHOLD_H25, seed=3)
    for k, o in enumerate(lists):
        snap = ref.snapshot_at(START + k * Q)
        assert o["body"]["act_sensor_time"]["timestamp"] == int((START + k * Q).timestamp())
        got = {v["obis"]: v["value"] for v in o["values"] if v["unit"]}
        want = {r.obis: float(Decimal(r.value).scaleb(r.scaler)) if r.scaler else r.value
                for r in snap.readings}
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert {v["status"] for v in o["values"] if v["unit"]} == {snap.status}
    assert lists[0]["values"][2]["value"] == 0  # the register at commissioning


@pytest.mark.parametrize(("flags", "mode", "ci"), [
    (["--mode5"], 5, "0x7a"),
    (["--mode7", "--long-header"], 7, "0x72"),
])
def test_record_gas_decodes_with_imsys_wmbus_decode(tmp_path: Path, flags: list[str], mode: int,
                                                    ci: str) -> None:
    out = tmp_path / "gas.bin"
    r = runner.invoke(meter_app, ["record", "--kind", "gas", "--count", "200", "--out", str(out),
                                  "--key-hex", KEY, "--start", "2025-03-30T00:00", *flags, "-q"])
    assert r.exit_code == 0, r.output
    assert "wrote 200 wM-Bus telegrams" in r.output
    decoded = runner.invoke(wmbus_app, ["decode", str(out), "--key", KEY])
    assert decoded.exit_code == 0, decoded.output
    objs = lines(decoded.output)
    assert len(objs) == 200
    start = datetime(2025, 3, 29, 23, 0, tzinfo=UTC)  # 30 March local: the DST change
    ref = reference(MeterKind.GAS, ModelKind.GAS_HEATING, start=start)
    for k, o in enumerate(objs):
        assert (o["security_mode"], o["ci"], o["access_number"]) == (mode, ci, k % 256)
        assert o["meter"] == {"id": "12345678", "manufacturer": "ELS", "version": 0,
                              "device_type": 3}
        snap = ref.snapshot_at(start + k * Q)
        recs = {(x["quantity"], x["storage"]): x["value"] for x in o["records"]}
        assert recs[("volume", 0)] == pytest.approx(snap.value(R.GAS_VOLUME) / 1000)
        assert recs[("volume", 1)] == pytest.approx(snap.value(R.GAS_VOLUME_HOURLY) / 1000)
        assert recs[("error flags", 0)] == snap.status
    # local time with the DST jump: 01:45 is followed by 03:00
    stamps = [o["records"][0]["value"] for o in objs]
    assert stamps[7:9] == ["2025-03-30T01:45", "2025-03-30T03:00"]
    if mode == 7:
        assert [o["message_counter"] for o in objs] == list(range(1, 201))


def test_record_water_unencrypted_and_heat_decode(tmp_path: Path) -> None:
    for kind, extra in (("water", []), ("heat", ["--key-hex", KEY])):
        out = tmp_path / f"{kind}.bin"
        r = runner.invoke(meter_app, ["record", "--kind", kind, "--count", "10", "--out",
                                      str(out), *extra, "-q"])
        assert r.exit_code == 0, r.output
        decoded = runner.invoke(wmbus_app, ["decode", str(out), "--key", KEY])
        assert decoded.exit_code == 0, decoded.output
        objs = lines(decoded.output)
        assert len(objs) == 10
        assert objs[0]["security_mode"] == (0 if kind == "water" else 5)


def test_record_a_year_of_quarter_hours(tmp_path: Path) -> None:
    out = tmp_path / "year.sml"
    r = runner.invoke(meter_app, ["record", "--kind", "electricity", "--profile", "h0",
                                  "--count", "35040", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "35040/35040" in r.output  # the progress bar finished
    dec = sml.SmlStreamDecoder()
    data = out.read_bytes()
    for i in range(0, len(data), 1 << 20):
        dec.feed(data[i : i + (1 << 20)])
    dec.feed(b"")
    files = list(dec.frames())
    assert len(files) == 35040
    assert all(isinstance(f, sml.SmlFile) for f in files)
    ref = reference(MeterKind.ELECTRICITY, ModelKind.HOUSEHOLD_H0)
    series = ref.series(START, START + 35039 * Q, Q)
    obis = str(sml.Obis.parse(R.IMPORT_ENERGY))
    for k in (0, 1, 17_000, 35_039):
        f = files[k]
        assert isinstance(f, sml.SmlFile)
        entry = next(e for e in f.list_entries() if str(e.obis) == obis)
        assert entry.value == int(series.registers[R.IMPORT_ENERGY][k])
    last = next(e for e in files[-1].list_entries() if str(e.obis) == obis)  # type: ignore[union-attr]
    assert 3400 < last.value / 10_000 < 3600  # about the configured 3500 kWh


def test_captures_use_the_codec_capture_format(tmp_path: Path) -> None:
    out = tmp_path / "w.bin"
    assert runner.invoke(meter_app, ["record", "--kind", "water", "--count", "3", "--out",
                                     str(out), "-q"]).exit_code == 0
    telegrams = list(read_capture(out.read_bytes()))
    assert len(telegrams) == 3 and all(isinstance(t, bytes) for t in telegrams)
    assert out.read_bytes()[:2] == len(telegrams[0]).to_bytes(2, "big")


@pytest.mark.parametrize(("args", "needle"), [
    (["--profile", "h7"], "unknown profile"),
    (["--kind", "gas", "--mode5"], "need --key-hex"),
    (["--kind", "gas", "--key-hex", KEY, "--mode5", "--mode7"], "not both"),
    (["--kind", "gas", "--key-hex", "00"], "32 hex digits"),
    (["--key-hex", KEY], "wireless kinds"),
    (["--start", "yesterday"], "ISO 8601"),
])
def test_record_refuses_bad_options(tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "x.bin"
    r = runner.invoke(meter_app, ["record", "--count", "2", "--out", str(out), *args])
    assert r.exit_code == 2
    assert needle in " ".join(r.output.split())
    assert not out.exists()


def test_record_refuses_a_malformed_meter_id(tmp_path: Path) -> None:
    r = runner.invoke(meter_app, ["record", "--count", "2", "--out", str(tmp_path / "x"),
                                  "--id", "1EMH12"])
    assert r.exit_code == 1 and "malformed" in r.output
