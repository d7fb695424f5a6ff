"""CSV and JSON exports (imsys.emt.msb.export)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from imsys.core.reading import Reading, ReadingFlag
from imsys.emt.msb import (
    DataScope,
    InMemorySource,
    MeteringPointAssignment,
    MsbReason,
    MsbRejected,
    Recipient,
    Role,
    plan,
    to_csv,
    to_json,
    to_json_document,
)
from imsys.emt.msb._calendar import boundaries, day_end, day_start
from imsys.emt.msb.export import CSV_COLUMNS, JSON_FORMAT

OBIS = "1-0:1.8.0*255"
MSB, DSO = "9900000000099", "9900000000001"
DAY = date(2026, 11, 24)
YESTERDAY = DAY - timedelta(days=1)
CREATED = datetime(2026, 11, 24, 5, 30, tzinfo=UTC)


@pytest.fixture
def dispatches():
    grid = boundaries(day_start(YESTERDAY), day_end(YESTERDAY))
    readings = [Reading("M1", OBIS, 10_000 + 13 * i, -2, 30, b) for i, b in enumerate(grid)]
    readings[5] = Reading("M1", OBIS, 0, -2, 30, grid[5], ReadingFlag.CLOCK_INVALID)
    mp = MeteringPointAssignment(
        "DE000222", "M1", OBIS, DataScope.REGISTER_SERIES, (Recipient(Role.DSO, DSO),)
    )
    return plan(DAY, [mp], InMemorySource(readings))


def test_csv_has_one_row_per_value_and_round_trips(dispatches) -> None:
    (d,) = dispatches
    rows = list(csv.DictReader(io.StringIO(to_csv(dispatches))))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == len(d.readings) == 97
    for row, reading in zip(rows, d.readings, strict=True):
        assert row["recipient_id"] == DSO and row["role"] == "dso"
        assert row["metering_point_id"] == "DE000222" and row["obis"] == OBIS
        assert datetime.fromisoformat(row["interval_end"]) == reading.timestamp
        assert (int(row["value"]), int(row["scaler"]), int(row["unit"])) == (
            reading.value,
            reading.scaler,
            reading.unit,
        )
        assert Decimal(row["quantity"]) == reading.quantity
        is_sub = reading.flags == ReadingFlag.SUBSTITUTE
        assert row["substitute"] == ("true" if is_sub else "false")
        assert row["method"] == ("linear-interpolation" if is_sub else "")
    assert sum(r["substitute"] == "true" for r in rows) == 1


def test_json_document_carries_the_rule_and_the_values(dispatches) -> None:
    text = to_json(dispatches, sender_id=MSB, created=CREATED)
    doc = json.loads(text)
    assert doc == to_json_document(dispatches, sender_id=MSB, created=CREATED)
    assert (doc["format"], doc["version"], doc["sender_id"]) == (JSON_FORMAT, 1, MSB)
    assert doc["created"] == "2026-11-24T05:30:00Z"
    (d,) = doc["dispatches"]
    assert d["legal_basis"] == "§ 60 Abs. 3 Nr. 2 MsbG" and d["taf"] == "TAF 7"
    assert d["period"] == {"start": "2026-11-22T23:00:00Z", "end": "2026-11-23T23:00:00Z"}
    assert d["missing"] == []
    values = d["values"]
    assert len(values) == 97
    sub = [v for v in values if v["substitute"]]
    assert [v["method"] for v in sub] == ["linear-interpolation"]
    assert sub[0]["value"] == 10_000 + 13 * 5 and sub[0]["quantity"] == "100.65"
    assert all(v["method"] is None for v in values if not v["substitute"])


def test_nothing_to_export_is_refused() -> None:
    with pytest.raises(MsbRejected) as info:
        to_csv([])
    assert info.value.reason is MsbReason.EMPTY
    with pytest.raises(MsbRejected):
        to_json([], sender_id=MSB, created=CREATED)
