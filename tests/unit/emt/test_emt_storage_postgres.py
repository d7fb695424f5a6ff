"""EMT storage on PostgreSQL: the same idempotency guarantees as on SQLite, under concurrency.

The server comes from ``IMSYS_POSTGRES_URL`` (a database is created and dropped per session),
else a throwaway cluster is started with ``initdb``/``pg_ctl`` if they are installed (as
``nobody`` when running as root). Without either the tests skip – unless
``IMSYS_REQUIRE_POSTGRES=1``, then they fail.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from imsys.emt.storage import DeliveryRow, EmtStorage, ReadingRow, StoreResult

NOW = datetime(2025, 4, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def url(postgres_database: str) -> str:
    """A fresh database per test (tests/conftest.py)."""
    return postgres_database


def row(digest: bytes = b"\x01" * 32, delivery_id: str | None = None) -> DeliveryRow:
    return DeliveryRow(delivery_id or str(uuid.uuid4()), digest, "EABC0012345678",
                       "1EMH0012345678", False, True, "taf7-1",
                       "application/vnd.imsys.ar2418-6+xml", NOW, NOW, NOW, b"<doc/>", b"sealed")


def values(count: int = 4) -> list[ReadingRow]:
    return [ReadingRow("1EMH0012345678", "1-0:1.8.0*255", NOW + timedelta(minutes=15 * i),
                       1000 + i, -1, 72, 2**64 - 1, 0) for i in range(count)]


def test_store_duplicate_conflict_on_postgres(url: str) -> None:
    storage = EmtStorage(url)
    try:
        assert storage.dialect == "postgresql"
        first = row()
        assert storage.store(first, values())[0] is StoreResult.STORED
        assert storage.store(first, values())[0] is StoreResult.DUPLICATE
        assert storage.store(replace(first, digest=b"\x02" * 32), [])[0] is StoreResult.CONFLICT
        assert storage.counts() == {"emt_deliveries": 1, "emt_readings": 4,
                                    "emt_rejections": 0}
        stored = storage.readings()
        assert stored[0]["status_fnn"] == "F" * 16 and stored[0]["timestamp"] == \
            NOW.replace(tzinfo=None)
        assert storage.find_by_digest(first.digest) is not None
        storage.record_rejection(NOW, "revoked", b"\x03" * 32, None, "revoked")
        assert storage.rejections()[0]["reason"] == "revoked"
    finally:
        storage.dispose()


def test_concurrent_connections_store_a_delivery_once(url: str) -> None:
    EmtStorage(url).dispose()
    same = row()
    results: list[StoreResult] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        storage = EmtStorage(url, create=False)
        try:
            barrier.wait()
            results.append(storage.store(same, values(8))[0])
        finally:
            storage.dispose()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [StoreResult.DUPLICATE] * 7 + [StoreResult.STORED]
    storage = EmtStorage(url, create=False)
    try:
        assert storage.counts()["emt_readings"] == 8
    finally:
        storage.dispose()


def test_store_many_in_one_transaction_on_postgres(url: str) -> None:
    """A batch: a delivery twice, a conflicting one and another, in one transaction; the
    series of values is also readable by register (what the export reads)."""
    storage = EmtStorage(url)
    try:
        first, other = row(), row(b"\x04" * 32)
        outcomes = storage.store_many([(first, values()), (first, values()),
                                       (replace(first, digest=b"\x05" * 32), []),
                                       (other, [])])
        results = [o[0] if isinstance(o, tuple) else o for o in outcomes]
        assert results == [StoreResult.STORED, StoreResult.DUPLICATE, StoreResult.CONFLICT,
                           StoreResult.STORED]
        assert storage.counts()["emt_deliveries"] == 2
        series = storage.series(meter="1EMH0012345678", obis="1-0:1.8.0*255",
                                start=NOW + timedelta(minutes=15), end=NOW + timedelta(hours=1))
        assert [r["value"] for r in series] == [1001, 1002, 1003]
    finally:
        storage.dispose()


def test_relay_outbox_on_postgres(url: str) -> None:
    storage = EmtStorage(url)
    try:
        first = str(uuid.uuid4())
        put = storage.relay_put(first, b"\x06" * 32, "EABC0012345678", "9900000000045", NOW,
                                b"content")
        assert put[0] is StoreResult.STORED
        again = storage.relay_put(first, b"\x06" * 32, "EABC0012345678", "9900000000045", NOW,
                                  b"content")
        assert again[0] is StoreResult.DUPLICATE
        other = storage.relay_put(first, b"\x07" * 32, "EABC0012345678", "9900000000045", NOW,
                                  b"other")
        assert other[0] is StoreResult.CONFLICT
        storage.relay_put(str(uuid.uuid4()), b"\x08" * 32, "EABC0012345678", "9900000000045",
                          NOW, b"second")
        pending = storage.relay_pending("9900000000045")
        assert [content for _, content in pending] == [b"content", b"second"]
        storage.relay_done([pending[0][0]], [(pending[1][0], "refused")])
        assert storage.relay_pending("9900000000045") == []
        assert storage.relay_counts() == {"waiting": 0, "refused": 1}
    finally:
        storage.dispose()
