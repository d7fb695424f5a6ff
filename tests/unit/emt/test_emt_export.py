"""`imsys emt export`: the MSB processing over what the receiver stored."""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from imsys.core.clock import SimulatedClock
from imsys.core.reading import Reading
from imsys.crypto import SoftwareKey
from imsys.emt.cli import emt_app
from imsys.emt.export import (
    AssignmentReason,
    AssignmentRejected,
    StorageSource,
    export_day,
    parse_assignments,
)
from imsys.emt.msb import DataKind, DataScope, MeteringPointAssignment, Recipient, Role
from imsys.emt.msb._calendar import day_end, day_start
from imsys.emt.receiver import EmtIdentity, Receiver
from imsys.emt.storage import EmtStorage
from imsys.pki import PkiDirectory
from imsys.wire.ar2418 import document_from_readings, encode_document
from imsys.wire.delivery import Delivery, seal_delivery

pydifact = pytest.importorskip("pydifact")
from pydifact.segmentcollection import Interchange  # noqa: E402

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
EMT = "9900000000001"
GATEWAY = "EABC0077000001"
METER = "1EMH0077000001"
OBIS = "1-0:1.8.0*255"
DAY = date(2025, 3, 10)  # dispatches due on this day cover 2025-03-09 (local)
GAP = 40  # the value at this quarter hour never arrived


def assignment_file() -> dict[str, object]:
    return {"format": "imsys-msb-assignments", "version": 1, "metering_points": [
        {"metering_point_id": "DE00770000000000000000000000000001", "meter_id": METER,
         "obis": OBIS, "scope": "register-series", "pseudonym": None,
         "recipients": [{"role": "dso", "id": "9900000000002"},
                        {"role": "supplier", "id": "9900000000003"}]}]}


@pytest.fixture
def stored(tmp_path: Path, pki: PkiDirectory, issue: Issue) -> EmtStorage:
    """One gateway delivered 2025-03-09 (local) as quarter-hour register values, but one."""
    start = day_start(DAY - timedelta(days=1))
    stamps = [start + timedelta(minutes=15 * i) for i in range(97)]
    values = [Reading(METER, OBIS, 10_000 + 25 * i, -1, 30, when)
              for i, when in enumerate(stamps) if i != GAP]
    document = encode_document(document_from_readings(
        values, usage_point_id="DE0077", smgw_id=GATEWAY, tariff_name="TAF7",
        measurement_period=900))
    created = day_end(DAY - timedelta(days=1)) + timedelta(minutes=5)
    item = Delivery.new(gateway_id=GATEWAY, meter=METER, profile_id="taf7-1", created=created,
                        billing_relevant=True, document=document)
    key, cert = issue("gateway-sig", GATEWAY, ca="sub-ca")
    enc_key, enc = issue("emt-enc", EMT, ca="emt-ca")
    sig_key, sig = issue("emt-sig", EMT, ca="emt-ca")
    storage = EmtStorage(f"sqlite:///{tmp_path / 'emt.db'}")
    receiver = Receiver(EmtIdentity(EMT, enc_key, enc, sig_key, sig), pki.validator(), storage,
                        SimulatedClock(created + timedelta(minutes=1)))
    receiver.receive(seal_delivery(item, key, cert, enc), tls_peer=GATEWAY)
    yield storage  # type: ignore[misc]
    storage.dispose()


def test_storage_source_substitutes_the_gap_without_touching_the_originals(
        stored: EmtStorage) -> None:
    point = parse_assignments(json.dumps(assignment_file()).encode())[0]
    start, end = day_start(DAY - timedelta(days=1)), day_end(DAY - timedelta(days=1))
    series = StorageSource(stored).validated(point, start, end)
    effective = series.effective()
    assert len(effective) == 97 and not series.missing()
    gap = start + timedelta(minutes=15 * GAP)
    substitute = next(r for r in effective if r.timestamp == gap)
    assert substitute.value == 10_000 + 25 * GAP  # linear interpolation between neighbours
    assert series.method_at(gap) is not None
    before = stored.counts()
    assert before["emt_readings"] == 96  # the substitute is not written back
    assert all(row["timestamp"] != gap.replace(tzinfo=None) for row in stored.readings())


def test_export_writes_mscons_csv_json_per_recipient(stored: EmtStorage, tmp_path: Path) -> None:
    points = parse_assignments(json.dumps(assignment_file()).encode())
    created = datetime(2025, 3, 10, 6, 0, tzinfo=UTC)
    files = export_day(stored, points, DAY, sender_id="9900000000001", out_dir=tmp_path / "out",
                       created=created)
    assert sorted((f.recipient_id, f.format) for f in files) == [
        ("9900000000002", "csv"), ("9900000000002", "json"), ("9900000000002", "mscons"),
        ("9900000000003", "csv"), ("9900000000003", "json"), ("9900000000003", "mscons")]
    assert {f.kind for f in files} == {DataKind.REGISTER_SERIES}
    edi = next(f.path for f in files if f.format == "mscons" and f.recipient_id.endswith("2"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydifact has no segment directories for D.04B
        interchange = Interchange.from_str(edi.read_text())
    tags = [segment.tag for segment in interchange.segments]
    assert tags.count("QTY") == 97  # the register at every quarter hour, 00:00–24:00
    assert tags.count("STS") == 1  # exactly the gap is marked as a substitute
    assert interchange.recipient[0] == "9900000000002"
    document = json.loads(next(f.path for f in files if f.format == "json"
                               and f.recipient_id.endswith("3")).read_text())
    (dispatch,) = document["dispatches"]
    assert dispatch["role"] == "supplier" and dispatch["missing"] == []
    assert sum(v["substitute"] for v in dispatch["values"]) >= 1
    csv_path = next(f.path for f in files if f.format == "csv")
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert [r["substitute"] for r in rows].count("true") == 1 and len(rows) == 97


def test_export_cli(stored: EmtStorage, tmp_path: Path) -> None:
    path = tmp_path / "assignments.json"
    path.write_text(json.dumps(assignment_file()))
    result = CliRunner().invoke(emt_app, ["export", "--db", stored.url, "--assignments",
                                      str(path), "--day", DAY.isoformat(), "--sender",
                                      "9900000000001", "--out", str(tmp_path / "cli"),
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "2 files written" in result.output
    assert len(list((tmp_path / "cli").glob("*.json"))) == 2


def test_a_point_without_values_is_left_out_and_logged(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    storage = EmtStorage(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        point = MeteringPointAssignment("DE01", METER, OBIS, DataScope.REGISTER_SERIES,
                                        (Recipient(Role.DSO, "9900000000002"),))
        with caplog.at_level("WARNING", logger="imsys.emt.export"):
            files = export_day(storage, [point], DAY, sender_id="9900000000001",
                               out_dir=tmp_path / "o", formats=["json"])
        assert files == []
        assert "97 boundaries missing" in caplog.text  # nothing silently left out
    finally:
        storage.dispose()


@pytest.mark.parametrize(("data", "reason"), [
    (b"\xff", AssignmentReason.NOT_JSON),
    (b'{"format": "other", "version": 1, "metering_points": []}', AssignmentReason.WRONG_FORMAT),
    (json.dumps({"format": "imsys-msb-assignments", "version": 1, "metering_points": [
        {"metering_point_id": "DE01", "meter_id": METER, "obis": OBIS, "scope": "weekly",
         "recipients": []}]}).encode(), AssignmentReason.BAD_ENTRY),
    (json.dumps({"format": "imsys-msb-assignments", "version": 1, "metering_points": [
        {"metering_point_id": "DE01", "meter_id": METER, "obis": OBIS,
         "scope": "register-series", "recipients": [{"role": "king", "id": "1"}]}]}).encode(),
     AssignmentReason.BAD_ENTRY),
])
def test_bad_assignment_files_are_refused(data: bytes, reason: AssignmentReason) -> None:
    with pytest.raises(AssignmentRejected) as info:
        parse_assignments(data)
    assert info.value.reason is reason
