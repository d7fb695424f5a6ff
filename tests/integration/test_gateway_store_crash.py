"""A gateway killed mid-write loses nothing it acknowledged and keeps no partial batch.

The test runs this file as a child process: it appends batches of readings to a store on disk
(WAL, ``synchronous=FULL``) and prints ``ack <tag> <first seq> <count>`` after each commit –
the moment a gateway would acknowledge to the meter. The parent SIGKILLs it at random moments,
reopens the store and checks: every acknowledged reading is there with its seq, every batch is
complete or absent, the chain verifies, and the next append continues gap-free. All runs share
one database file, so each run also crashes on top of the previous crashes.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from imsys.core.reading import Reading
from imsys.gateway.store import Database, ReadingRecord, ReadingSource, ReadingStore

T0 = datetime(2025, 1, 1, tzinfo=UTC)
RUNS = 20
EARLY_KILLS = 3  # runs killed at a random moment after the start, ready or not


def batch(tag: int, size: int) -> list[ReadingRecord]:
    """One frame: ``size`` registers, value = tag, status word = batch size."""
    when = T0 + timedelta(seconds=abs(tag))
    digest = hashlib.sha256(str(tag).encode()).digest()
    return [ReadingRecord(Reading("crash-meter", f"1-0:1.8.{i}*255", tag, 0, 30, when,
                                  status_word=size), when, ReadingSource.LMN_SML, digest)
            for i in range(size)]


def child(path: str, run: int, seed: int) -> None:
    rng = random.Random(seed)
    store = ReadingStore(Database(path))
    os.write(1, b"ready\n")
    number = 0
    while True:
        number += 1
        tag = run * 1_000_000 + number
        seqs = store.append_readings(batch(tag, rng.randint(1, 12)))
        # acknowledged only now, after the durable commit; one write() per line is atomic
        os.write(1, f"ack {tag} {seqs[0]} {len(seqs)}\n".encode())


def test_acknowledged_readings_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    rng = random.Random(20250301)
    acknowledged: dict[int, tuple[int, int]] = {}
    for run in range(1, RUNS + 1):
        proc = subprocess.Popen([sys.executable, __file__, str(path), str(run),
                                 str(rng.getrandbits(32))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if run <= EARLY_KILLS:
            time.sleep(rng.uniform(0.0, 0.4))
        else:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line == b"ready\n", proc.communicate()[1].decode()
            time.sleep(rng.uniform(0.0, 0.05))
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err.decode()
        for line in out.decode().splitlines():
            if line.startswith("ack "):
                _, tag, first, count = line.split()
                acknowledged[int(tag)] = (int(first), int(count))

        with Database(path) as db:
            store = ReadingStore(db)
            head = store.verify_chain()
            rows = list(store.iter_readings())
            assert [r.seq for r in rows] == list(range(1, head.seq + 1))
            batches: dict[int, list[int]] = defaultdict(list)
            sizes: dict[int, int] = {}
            for row in rows:
                batches[row.reading.value].append(row.seq)
                sizes[row.reading.value] = row.reading.status_word or 0
            for tag, seqs in batches.items():  # no partial batch
                assert len(seqs) == sizes[tag], f"batch {tag} is partial: {seqs}"
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            for tag, (first, count) in acknowledged.items():  # nothing acknowledged is lost
                assert batches.get(tag) == list(range(first, first + count)), tag
            # the store goes on where it stopped
            assert store.append_readings(batch(-run, 2)) == [head.seq + 1, head.seq + 2]
            store.verify_chain()
    assert acknowledged, "no run acknowledged anything: the kills never hit a working writer"


if __name__ == "__main__":
    child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
