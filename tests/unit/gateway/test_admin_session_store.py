"""The admin session's persistent stores in the gateway database: command sequence numbers and
wake-up nonces survive a restart (a replay stays a replay)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imsys.core.errors import UsageError
from imsys.gateway.admin.session import DbReplayCache, DbSequenceStore
from imsys.gateway.store import Database
from imsys.wire.wakeup import NonceStatus

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_sequence_store_survives_a_restart(tmp_path: Path) -> None:
    first = uuid.uuid4()
    with Database(tmp_path / "gw.db") as db:
        store = DbSequenceStore(db)
        assert store.last_sequence("GW") == 0 and not store.seen("GW", first)
        store.record("GW", 5, first)
        with pytest.raises(UsageError):
            store.record("GW", 5, uuid.uuid4())
    with Database(tmp_path / "gw.db") as db:
        store = DbSequenceStore(db)
        assert store.last_sequence("GW") == 5 and store.seen("GW", first)
        assert store.last_sequence("OTHER") == 0


def test_sequence_store_keeps_only_the_last_ids(tmp_path: Path) -> None:
    with Database(tmp_path / "gw.db") as db:
        store = DbSequenceStore(db, id_capacity=3)
        ids = [uuid.uuid4() for _ in range(5)]
        for n, command_id in enumerate(ids, 1):
            store.record("GW", n, command_id)
        assert [store.seen("GW", i) for i in ids] == [False, False, True, True, True]
        assert store.last_sequence("GW") == 5  # older ids are below it anyway


def test_replay_cache_survives_a_restart_and_forgets_expired_nonces(tmp_path: Path) -> None:
    nonce = bytes(16)
    with Database(tmp_path / "gw.db") as db:
        cache = DbReplayCache(db, capacity=2)
        assert cache.remember(nonce, NOW + timedelta(minutes=2), NOW) is NonceStatus.FRESH
    with Database(tmp_path / "gw.db") as db:
        cache = DbReplayCache(db, capacity=2)
        assert cache.remember(nonce, NOW + timedelta(minutes=2), NOW) is NonceStatus.REPLAYED
        assert cache.remember(b"\x01" * 16, NOW + timedelta(minutes=2), NOW) is \
            NonceStatus.FRESH
        assert cache.remember(b"\x02" * 16, NOW + timedelta(minutes=2), NOW) is \
            NonceStatus.FULL
        later = NOW + timedelta(minutes=3)
        assert cache.remember(nonce, later + timedelta(minutes=2), later) is NonceStatus.FRESH
