"""imsys up / down: the roles run on the real clock as detached processes until stopped, and
the same folder comes up again with its data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from imsys.core.errors import UsageError
from imsys.gateway.process import DB_FILE
from imsys.gateway.store import Database, ReadingStore
from imsys.system.up import alive, down, running, up

pytestmark = pytest.mark.e2e


def _meters_seen(state: Path) -> set[str]:
    if not (state / DB_FILE).exists():
        return set()
    db = Database(state / DB_FILE)
    try:
        return {s.reading.meter_id for s in ReadingStore(db).iter_readings()}
    finally:
        db.close()


def test_up_runs_every_role_until_down_and_comes_back_with_its_data(tmp_path: Path) -> None:
    folder = tmp_path / "system"
    records = up(folder, 1)
    try:
        assert {r.name.split()[0] for r in records} == {"emt", "gwa", "gateway", "meter"}
        assert len(running(folder)) == len(records) == 6  # EMT, GWA, gateway, 3 meters
        with pytest.raises(UsageError, match="already up"):
            up(folder, 1)
        state = next((folder / "gateways").iterdir())
        deadline = time.monotonic() + 30
        while len(_meters_seen(state)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_meters_seen(state)) == 3  # each meter sends once when it starts
        phase = json.loads((state / "commissioning.json").read_text())["phase"]
        assert phase == "operation"  # commissioned through the GWA
    finally:
        stopped = down(folder)
    assert [how for _, how in stopped] == ["stopped"] * 6
    assert not any(alive(r.pid) for r in records)
    assert running(folder) == []
    with pytest.raises(UsageError, match="not up"):
        down(folder)
    again = up(folder, 1)  # the same plan, ports and keys
    try:
        assert len(again) == 6
    finally:
        down(folder)
