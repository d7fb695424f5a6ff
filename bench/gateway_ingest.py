"""Readings/s from an LMN frame to a committed record through the measurement core, against
plain SQLite appends of equally sized rows.

Run from the repository root: ``python bench/gateway_ingest.py [--dir DIR] [--seconds S]
[--meters N]``. SML push frames are produced beforehand by ``SmlPushEncoder`` (household
electricity meters, 18 values per frame, one frame per meter and 15 minutes). Measured:

* ``ingest``: ``Measurement.ingest`` per frame – seed 003 table 1 steps 2.1–5.2 without the LMN
  cryptography (the frame arrives as if from the TLS channel, with the peer identity): size
  bound and digest, profile lookup, certificate pin, SML decode with CRCs, channel and replay
  checks, gateway time stamp, validity, one transaction with the hash-chained readings, the
  replay state and the consumer-log entry; durable commit (WAL, ``synchronous=FULL``);
* ``store``: for attribution only, ``ReadingStore.append_readings`` of the same readings (built
  beforehand from the frames), one frame per commit – the evidence store alone, without the
  core's decoding, checks, replay state and log entry;
* ``sqlite``: ``BEGIN; executemany(INSERT …); COMMIT`` of the same number of rows per commit
  (one frame's values), each row as large as a stored reading (meter id, OBIS, 7 integers,
  source, 32-byte digest, two 32-byte hashes), same durability, in a table with only its rowid.

Both run in interleaved slices in the same process. The last line is ``ingest_vs_sqlite <x>``
with x = ingest readings/s ÷ plain readings/s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

try:
    import imsys  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from imsys.core.clock import SimulatedClock
from imsys.core.reading import Reading
from imsys.gateway.measurement import LmnFrame, Measurement, PeerIdentity, Transport
from imsys.gateway.meter_profile import MeterProfile, MeterProtocol
from imsys.gateway.store import (
    Database,
    Durability,
    ReadingRecord,
    ReadingSource,
    ReadingStore,
)
from imsys.lmn.sml import decode_frame
from imsys.meters.lmn_payload import SmlPushEncoder
from imsys.meters.settings import MeterSettings
from imsys.meters.simulator import MeterKind, MeterSimulator, ModelKind

T0 = datetime(2025, 1, 1, tzinfo=UTC)
Q = timedelta(minutes=15)
ROUNDS = 20
FP = bytes(range(32))


def records(frames: list[LmnFrame]) -> list[list[ReadingRecord]]:
    """The readings of each frame as the store gets them (for the ``store`` figure)."""
    out = []
    for frame in frames:
        file = decode_frame(frame.data)
        digest = hashlib.sha256(frame.data).digest()
        meter_id = frame.peer.meter_id if frame.peer else ""
        out.append([ReadingRecord(Reading(meter_id, str(e.obis), int(e.value),  # type: ignore[arg-type]
                                          e.scaler or 0, int(e.unit), frame.received_at,
                                          status_word=0x0000000500000000 | (e.status or 0)),
                                  frame.received_at, ReadingSource.LMN_SML, digest)
                    for e in file.list_entries() if e.unit is not None])
    return out


def prepare(meters: int, count: int) -> tuple[list[MeterProfile], list[LmnFrame], int]:
    """``count`` push frames (round-robin over ``meters`` meters) and the values per frame."""
    clock = SimulatedClock(T0)
    profiles, sims, encoders = [], [], []
    for m in range(meters):
        meter_id = f"1EMH00{12345600 + m:08d}"
        sim = MeterSimulator(meter_id, MeterKind.ELECTRICITY, ModelKind.HOUSEHOLD_H0,
                             MeterSettings(seed=m), clock)
        channels = tuple(r.obis for r in sim.snapshot_at(T0).readings)
        profiles.append(MeterProfile(meter_id=meter_id, protocol=MeterProtocol.SML_TLS_PUSH,
                                     tls_fingerprint=FP, channels=channels,
                                     consumer_id=f"consumer-{m}"))
        sims.append(sim)
        encoders.append(SmlPushEncoder(meter_id))
    frames = []
    for k in range(count):
        m = k % meters
        when = T0 + Q * (k // meters)
        data = encoders[m].frame(sims[m].snapshot_at(when))
        frames.append(LmnFrame(Transport.SML, data, when,
                               PeerIdentity(profiles[m].meter_id, FP)))
    return profiles, frames, len(profiles[0].channels)


class Plain:
    """The anchor: equally sized rows, plain INSERT, same durability and batch size."""

    def __init__(self, path: Path, batch: int) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE readings (seq INTEGER PRIMARY KEY, meter_id TEXT, "
                          "obis TEXT, value INTEGER, scaler INTEGER, unit INTEGER, "
                          "timestamp INTEGER, flags INTEGER, status_word INTEGER, "
                          "received_at INTEGER, source TEXT, frame_digest BLOB, "
                          "prev_hash BLOB, hash BLOB)")
        self.sql = "INSERT INTO readings VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        self.batch = batch
        self.n = 0

    def rows(self) -> list[tuple[object, ...]]:
        out = []
        for _ in range(self.batch):
            self.n += 1
            n = self.n
            out.append(("1EMH0012345600", "1-0:81.7.15*255", 1_000_000 + n, -1, 30,
                        1_735_689_600_000_000 + n, 0, 0x0000000500100504,
                        1_735_689_600_000_000 + n, "lmn-sml", os.urandom(32), os.urandom(32),
                        os.urandom(32)))
        return out

    def append(self, rows: list[tuple[object, ...]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(self.sql, rows)
        self.conn.execute("COMMIT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="where the database files go")
    parser.add_argument("--seconds", type=float, default=6.0, help="time per side")
    parser.add_argument("--meters", type=int, default=4, help="meters pushing frames")
    parser.add_argument("--frames", type=int, default=12000, help="frames prepared beforehand")
    args = parser.parse_args()
    profiles, frames, per_frame = prepare(args.meters, args.frames)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        clock = SimulatedClock(T0)
        db = Database(directory / "gateway.db", durability=Durability.FULL)
        core = Measurement(db, clock, profiles)
        plain = Plain(directory / "plain.db", per_frame)
        store_db = Database(directory / "store.db", durability=Durability.FULL)
        store = ReadingStore(store_db)
        store_pool = records(frames)
        store_pool.reverse()
        print(f"# SQLite {sqlite3.sqlite_version}, WAL, synchronous=FULL, files in {directory}")
        print(f"# {args.meters} meters, {per_frame} values per frame = per commit on both sides")
        share = args.seconds / ROUNDS
        done = {"ingest": [0, 0.0], "store": [0, 0.0], "sqlite": [0, 0.0]}
        next_frame = 0
        for _ in range(ROUNDS):
            # ingest slice
            count = 0
            start = time.perf_counter()
            while next_frame < len(frames):
                frame = frames[next_frame]
                next_frame += 1
                clock.set(frame.received_at)
                count += len(core.ingest(frame).readings)
                if time.perf_counter() - start >= share:
                    break
            done["ingest"][0] += count
            done["ingest"][1] += time.perf_counter() - start
            # store-only slice (attribution), records prepared outside the timed part
            count = 0
            start = time.perf_counter()
            while store_pool:
                count += len(store.append_readings(store_pool.pop()))
                if time.perf_counter() - start >= share:
                    break
            done["store"][0] += count
            done["store"][1] += time.perf_counter() - start
            # plain slice, rows prepared outside the timed part
            pool = [plain.rows() for _ in range(max(50, count // per_frame * 2))]
            count = 0
            start = time.perf_counter()
            while pool:
                plain.append(pool.pop())
                count += per_frame
                if time.perf_counter() - start >= share:
                    break
            done["sqlite"][0] += count
            done["sqlite"][1] += time.perf_counter() - start
        if next_frame >= len(frames):
            print("# note: all prepared frames used; raise --frames for longer runs")
        rates = {name: n / s for name, (n, s) in done.items()}
        for name, rate in rates.items():
            print(f"{name:8s} {rate:12.0f} readings/s  ({rate / per_frame:8.0f} frames/s)")
        core.store.verify_chain()
        print(f"# stored {core.store.count()} readings, chain verified")
        print(f"# store_vs_sqlite {rates['store'] / rates['sqlite']:.2f}, "
              f"ingest_vs_store {rates['ingest'] / rates['store']:.2f}")
        db.close()
        store_db.close()
        plain.conn.close()
        print(f"ingest_vs_sqlite {rates['ingest'] / rates['sqlite']:.2f}")


if __name__ == "__main__":
    main()
