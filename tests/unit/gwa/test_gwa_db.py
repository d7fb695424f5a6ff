"""The GWA database on SQLite and PostgreSQL: inventory, queue, sequence numbers, history."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from imsys.gwa.db import CommandRow, CommandStatus, Commissioning, GwaDatabase, NotIssued

NOW = datetime(2025, 4, 1, 12, 0, tzinfo=UTC)
GW = "EIMS0012345678"


def _sign(row: CommandRow, sequence: int) -> bytes:
    return f"{row.command_id}:{sequence}".encode()


def test_queue_hands_out_in_order_with_increasing_sequence_numbers(db_url: str) -> None:
    db = GwaDatabase(db_url)
    ids = [db.enqueue([GW], "monitoring.status", {"n": n}, NOW)[0] for n in range(3)]
    assert db.pending(GW) == 3
    handed = []
    while (issued := db.issue_next(GW, NOW, ["operator"], _sign)) is not None:
        handed.append(issued)
    assert [row.command_id for row, _ in handed] == ids
    assert [blob for _, blob in handed] == [f"{i}:{n}".encode() for n, i in enumerate(ids, 1)]
    assert [db.command(i).sequence for i in ids] == [1, 2, 3]  # type: ignore[union-attr]
    assert db.gateway(GW).next_sequence == 4  # type: ignore[union-attr]
    assert db.pending(GW) == 0


def test_origins_filter_and_not_issued(db_url: str) -> None:
    db = GwaDatabase(db_url)
    operator = db.enqueue([GW], "device.meter.register", {}, NOW)[0]
    driver = db.enqueue([GW], "commissioning.self-test", {}, NOW, origin="commissioning")[0]
    issued = db.issue_next(GW, NOW, ["commissioning"], _sign)
    assert issued is not None and issued[0].command_id == driver

    def refuse(row: CommandRow, sequence: int) -> bytes:
        raise NotIssued("no ENC certificate")

    assert db.issue_next(GW, NOW, ["operator"], refuse) is None
    row = db.command(operator)
    assert row is not None and row.status is CommandStatus.NOT_ISSUED
    assert row.sequence is None and row.detail == "no ENC certificate"
    assert db.gateway(GW).next_sequence == 2  # type: ignore[union-attr]  # not consumed


def test_contact_records_alarms_and_orphans_unanswered_commands(db_url: str) -> None:
    db = GwaDatabase(db_url)
    command = db.enqueue([GW], "monitoring.status", {}, NOW)[0]
    db.issue_next(GW, NOW, ["operator"], _sign)
    later = NOW + timedelta(days=3, hours=1)
    row = db.record_contact(GW, later, phase="operation", firmware_version="fw-2", errors=2,
                            warnings=1, last_error_at=NOW)
    assert (row.phase, row.firmware_version, row.contacts) == ("operation", "fw-2", 1)
    assert (row.alarm_errors, row.alarm_warnings, row.last_error_at) == (2, 1, NOW)
    assert row.last_contact == later and row.first_contact == later
    assert db.command(command).status is CommandStatus.UNANSWERED  # type: ignore[union-attr]
    assert db.alarms(GW) == [(later, 2, 1)]
    assert row.missed_intervals(later + timedelta(days=2, hours=1)) == 2
    db.update_gateway(GW, commissioning=Commissioning.OPERATIONAL, wakeup_host="127.0.0.1",
                      wakeup_port=4059)
    row2 = db.gateway(GW)
    assert row2 is not None and row2.commissioning is Commissioning.OPERATIONAL
    assert (row2.wakeup_host, row2.wakeup_port) == ("127.0.0.1", 4059)


def test_results_are_kept_with_the_evidence(db_url: str) -> None:
    db = GwaDatabase(db_url)
    batch = str(uuid.uuid4())
    ids = db.enqueue(["GW-A", "GW-B"], "monitoring.status", {}, NOW, batch=batch)
    db.issue_next("GW-A", NOW, ["operator"], _sign)
    db.complete(ids[0], CommandStatus.OK, NOW, result={"ok": True}, result_cms=b"\x30\x01")
    rows = db.commands(batch=batch)
    assert [(r.gateway_id, r.status) for r in rows] == [("GW-A", CommandStatus.OK),
                                                          ("GW-B", CommandStatus.QUEUED)]
    assert rows[0].result == {"ok": True} and db.result_cms(ids[0]) == b"\x30\x01"
    assert [g.gateway_id for g in db.gateways()] == ["GW-A", "GW-B"]


def test_sequence_numbers_stay_unique_under_concurrent_sessions(db_url: str) -> None:
    db = GwaDatabase(db_url)
    db.enqueue([GW] * 40, "monitoring.status", {}, NOW)
    sequences: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while (issued := db.issue_next(GW, NOW, ["operator"], _sign)) is not None:
            with lock:
                sequences.append(int(issued[1].split(b":")[1]))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(sequences) == list(range(1, 41))


@pytest.mark.parametrize("bad", [datetime(2025, 4, 1)])
def test_naive_times_are_refused(db_url: str, bad: datetime) -> None:
    from imsys.core.errors import UsageError

    with pytest.raises(UsageError):
        GwaDatabase(db_url).enqueue([GW], "monitoring.status", {}, bad)
