"""``imsys emt show`` over a database the receiver wrote (the lead mounts ``emt_app``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from imsys.emt.cli import emt_app
from imsys.emt.storage import DeliveryRow, EmtStorage, ReadingRow

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def test_show_lists_deliveries_readings_and_filters(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'emt.db'}"
    storage = EmtStorage(url)
    for n, gateway in enumerate(("EABC0000000001", "EABC0000000002")):
        row = DeliveryRow(str(uuid.uuid4()), bytes([n]) * 32, gateway, f"1EMH000000000{n}",
                          False, True, "taf7-1", "text/plain", NOW, NOW, NOW, b"d", b"s")
        storage.store(row, [ReadingRow(f"1EMH000000000{n}", "1-0:1.8.0*255", NOW, 42 + n, -1,
                                       72, 0x105, 0)])
    storage.record_rejection(NOW, "revoked", b"\x09" * 32, "EABC0000000009", "revoked")
    storage.dispose()
    runner = CliRunner()
    result = runner.invoke(emt_app, ["show", "--db", url, "--gateway", "EABC0000000002",
                                     "--readings", "--rejections", "--day", "2025-05-01"])
    assert result.exit_code == 0, result.output
    assert "2 deliveries, 2 readings, 1 rejections" in result.output
    assert "EABC0000000002" in result.output and "43" in result.output
    assert "EABC0000000001" not in result.output.split("rejections")[1].split("reason")[0]
    assert "revoked" in result.output
    bad = runner.invoke(emt_app, ["show", "--db", url, "--day", "May 1st"])
    assert bad.exit_code == 2
