"""How fast the evidence store appends readings, against plain SQLite appends of equal rows.

Run from the repository root: ``python bench/store_append.py [--dir DIR] [--seconds S]``.
Both sides use one SQLite file each in DIR (default: a temporary directory), WAL mode and
``synchronous=FULL`` – every commit is durable, as an acknowledged reading must be. Measured:

* ``store batch 1``: ``ReadingStore.append_readings([one record])`` – one transaction per
  reading, with duplicate check, hash chain, chain-link trigger and two indexes;
* ``sqlite batch 1``: ``BEGIN; INSERT …; COMMIT`` of a row of the same columns and sizes
  (meter id, OBIS, 7 integers, source, 32-byte digest, two 32-byte hashes) into a table with
  only its rowid key;
* the same with batches of 100 readings per transaction (``executemany`` on the plain side).

Figures are measured in interleaved slices, so a change in machine or disk load affects both
sides alike. The last line is ``store_vs_sqlite <x>`` with x = store rate / plain rate at
batch size 1 (1.00 would mean the chain costs nothing).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

try:
    import imsys  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from imsys.core.reading import Reading
from imsys.gateway.store import Database, Durability, ReadingRecord, ReadingSource, ReadingStore

ROUNDS = 5
START = datetime(2025, 1, 1, tzinfo=UTC)


class Source:
    """Distinct readings of a few meters, 15-minute values, one frame per reading."""

    def __init__(self) -> None:
        self.n = 0

    def records(self, count: int) -> list[ReadingRecord]:
        out = []
        for _ in range(count):
            self.n += 1
            n = self.n
            when = START + timedelta(minutes=15 * (n // 8))
            reading = Reading(f"1EMH00{n % 8:08d}", "1-0:1.8.0*255", 1_000_000 + n, -1, 30,
                              when, status_word=0x0000010500100504)
            out.append(ReadingRecord(reading, when, ReadingSource.LMN_SML,
                                     hashlib.sha256(n.to_bytes(8, "big")).digest()))
        return out


class PlainTable:
    """The anchor: equally sized rows, plain INSERT, same durability."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE readings (seq INTEGER PRIMARY KEY, meter_id TEXT, "
                          "obis TEXT, value INTEGER, scaler INTEGER, unit INTEGER, "
                          "timestamp INTEGER, flags INTEGER, status_word INTEGER, "
                          "received_at INTEGER, source TEXT, frame_digest BLOB, "
                          "prev_hash BLOB, hash BLOB)")
        self.sql = "INSERT INTO readings VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        self.filler = os.urandom(32)

    def rows(self, records: list[ReadingRecord]) -> list[tuple[object, ...]]:
        out = []
        for rec in records:
            r = rec.reading
            micros = int(r.timestamp.timestamp() * 1_000_000)
            out.append((r.meter_id, r.obis, r.value, r.scaler, r.unit, micros, int(r.flags),
                        r.status_word, micros, rec.source.value, rec.frame_digest, self.filler,
                        self.filler))
        return out

    def append(self, rows: list[tuple[object, ...]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(self.sql, rows)
        self.conn.execute("COMMIT")


class Case:
    """One figure: an append function and a pool of prepared batches, refilled between
    slices (outside the timed part) so input preparation is not measured on either side."""

    def __init__(self, batch: int, prepare: Callable[[int], object],
                 append: Callable[[object], None]) -> None:
        self.batch = batch
        self.prepare = prepare
        self.append = append
        self.pool: list[object] = []
        self.estimate = 50
        self.readings = 0
        self.seconds = 0.0

    def refill(self) -> None:
        while len(self.pool) < self.estimate:
            self.pool.append(self.prepare(self.batch))

    def operation(self) -> None:
        self.append(self.pool.pop() if self.pool else self.prepare(self.batch))

    def run(self, seconds: float) -> None:
        self.refill()
        count, elapsed = _slice(self.operation, seconds)
        self.estimate = int(count * 1.5) + 10
        self.readings += count * self.batch
        self.seconds += elapsed


def _slice(operation: Callable[[], None], seconds: float) -> tuple[int, float]:
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        operation()
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count, now - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="where the two database files go")
    parser.add_argument("--seconds", type=float, default=1.5, help="time per figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        db = Database(directory / "store.db", durability=Durability.FULL)
        store = ReadingStore(db)
        plain = PlainTable(directory / "plain.db")
        source = Source()
        print(f"# SQLite {sqlite3.sqlite_version}, WAL, synchronous=FULL, files in {directory}")
        cases = {}
        for batch in (1, 100):
            cases[f"store batch {batch}"] = Case(batch, source.records,
                                                 store.append_readings)  # type: ignore[arg-type]
            cases[f"sqlite batch {batch}"] = Case(
                batch, lambda b: plain.rows(source.records(b)), plain.append)  # type: ignore[arg-type]
        share = args.seconds / ROUNDS
        for _ in range(ROUNDS):
            for case in cases.values():
                case.run(share)
        rates = {name: case.readings / case.seconds for name, case in cases.items()}
        for name, rate in rates.items():
            print(f"{name:16s} {rate:12.0f} readings/s")
        store.verify_chain()
        ratio_100 = rates["store batch 100"] / rates["sqlite batch 100"]
        print(f"store_vs_sqlite_batch100 {ratio_100:.2f}")
        db.close()
        plain.conn.close()
        print(f"store_vs_sqlite {rates['store batch 1'] / rates['sqlite batch 1']:.2f}")


if __name__ == "__main__":
    main()
