"""``imsys demo --db postgresql://…``: the EMT and the GWA on PostgreSQL (a throwaway cluster,
as the storage tests make it), the same path as test_demo_path.py, one hour."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "gwa"))
from gwa_helpers import db_url  # noqa: F401 - fixture

from imsys.emt.storage import EmtStorage
from imsys.gwa.db import GwaDatabase
from imsys.system.demo import DemoOptions, run_demo

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_demo_on_postgresql(db_url: str, tmp_path: Path) -> None:  # noqa: F811 - fixture
    run = run_demo(DemoOptions(households=1, hours=1, out=tmp_path / "out", emt_db=db_url))
    storage = EmtStorage(db_url, create=False)
    try:
        counts = storage.counts()
    finally:
        storage.dispose()
    assert counts["emt_deliveries"] > 0 and counts["emt_rejections"] == 0
    gwa = GwaDatabase(db_url, create=False)
    try:
        (gateway,) = [g for g in gwa.gateways()]
        assert gateway.gateway_id == run.households[0].gateway_id
        assert gateway.commissioning.value == "operational"
    finally:
        gwa.dispose()
    assert not (run.out / "emt" / "emt.db").exists() and not (run.gwa_dir / "gwa.db").exists()
