"""SharedClock: one simulated time for several processes, moved only by its owner."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imsys.core.clock import SharedClock
from imsys.core.errors import UsageError

T0 = datetime(2026, 3, 29, 0, 45, tzinfo=UTC)


def test_readers_see_what_the_owner_sets(tmp_path: Path) -> None:
    owner = SharedClock.create(tmp_path / "clock", T0)
    reader = SharedClock(tmp_path / "clock")
    assert reader.now() == T0
    assert owner.advance(timedelta(minutes=15, microseconds=7)) == reader.now()
    assert reader.now() == T0 + timedelta(minutes=15, microseconds=7)
    owner.set(datetime(1969, 12, 31, 23, 0, tzinfo=UTC))  # before the epoch works too
    assert reader.now() == datetime(1969, 12, 31, 23, 0, tzinfo=UTC)


def test_another_process_reads_the_same_instant(tmp_path: Path) -> None:
    owner = SharedClock.create(tmp_path / "clock", T0)
    owner.advance(timedelta(hours=1))
    code = ("import sys; from imsys.core.clock import SharedClock; "
            "print(SharedClock(sys.argv[1]).now().isoformat())")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "clock")],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert datetime.fromisoformat(out) == T0 + timedelta(hours=1)


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        SharedClock.create(tmp_path / "clock", datetime(2026, 1, 1))  # naive
    owner = SharedClock.create(tmp_path / "clock", T0)
    with pytest.raises(UsageError):
        owner.advance(timedelta(seconds=-1))
    (tmp_path / "other").write_bytes(b"x" * 32)
    with pytest.raises(UsageError, match="not a shared clock"):
        SharedClock(tmp_path / "other")
    (tmp_path / "short").write_bytes(b"x")
    with pytest.raises(UsageError, match="not a shared clock"):
        SharedClock(tmp_path / "short")
