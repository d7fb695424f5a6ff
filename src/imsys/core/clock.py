"""The one injectable clock. Domain code never calls ``time.time()`` itself."""

from __future__ import annotations

import mmap
import os
import struct
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from imsys.core.errors import UsageError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Clock(Protocol):
    """Source of the current time (always timezone-aware UTC)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulatedClock:
    """A clock that moves only when told to: a simulated year runs in seconds."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("SimulatedClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("a clock does not run backwards; use set() for corrections")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("SimulatedClock.set needs a timezone-aware time")
        with self._lock:
            self._now = when.astimezone(UTC)


class ScaledClock:
    """A clock running ``speed`` times faster than ``base`` (default: the system clock).

    It shows ``start`` (default: the base clock's time) when it is created; network runs of
    simulated meters and gateways use it to compress days into minutes.
    """

    def __init__(self, speed: float = 1.0, start: datetime | None = None,
                 base: Clock | None = None) -> None:
        if not speed > 0:
            raise UsageError("speed must be positive")
        self.speed = float(speed)
        self._base = base or SystemClock()
        self._real0 = self._base.now()
        start = start or self._real0
        if start.tzinfo is None:
            raise UsageError("ScaledClock needs a timezone-aware start time")
        self._start = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._start + (self._base.now() - self._real0) * self.speed


_SHARED = struct.Struct("<qq")  # micros since the epoch, and its bitwise complement
_SHARED_MAGIC = b"imsys-clock/1\n\0\0"


class SharedClock:
    """A simulated clock shared by several processes through a small file.

    One process (the orchestrator of ``imsys demo``) creates it and moves it with
    :meth:`advance`/:meth:`set`; every other process opens the same file and reads it. Between
    two moves time stands still, so a meter's send instant, the gateway's time stamp and the
    TAF boundaries all see the same instant however slow the machine is – the stepped
    simulation a multi-process demo needs (a ``ScaledClock`` per process would drift apart by
    the start-up delays times the speed).

    Layout: 16 magic octets, then the time as signed 64-bit microseconds since 1970 and its
    bitwise complement (little-endian). A reader retries until both agree, so it never sees a
    half-written value.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        fd = os.open(self.path, os.O_RDWR)
        try:
            if os.fstat(fd).st_size != len(_SHARED_MAGIC) + _SHARED.size:
                raise UsageError(f"{self.path} is not a shared clock file")
            self._map = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        if self._map[:len(_SHARED_MAGIC)] != _SHARED_MAGIC:
            raise UsageError(f"{self.path} is not a shared clock file")

    @classmethod
    def create(cls, path: Path | str, start: datetime) -> SharedClock:
        """Write a new clock file showing ``start`` (replacing any file there)."""
        if start.tzinfo is None:
            raise UsageError("SharedClock needs a timezone-aware start time")
        micros = _micros(start)
        tmp = Path(f"{path}.tmp")
        tmp.write_bytes(_SHARED_MAGIC + _SHARED.pack(micros, ~micros))
        os.replace(tmp, path)
        return cls(path)

    def now(self) -> datetime:
        offset = len(_SHARED_MAGIC)
        while True:
            micros, check = _SHARED.unpack_from(self._map, offset)
            if check == ~micros:
                return _EPOCH + timedelta(microseconds=micros)

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise UsageError("SharedClock.set needs a timezone-aware time")
        micros = _micros(when)
        offset = len(_SHARED_MAGIC)
        _SHARED.pack_into(self._map, offset, micros, 0)  # inconsistent while writing
        _SHARED.pack_into(self._map, offset, micros, ~micros)

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise UsageError("a clock does not run backwards; use set() for corrections")
        when = self.now() + delta
        self.set(when)
        return when

    def close(self) -> None:
        self._map.close()


def _micros(when: datetime) -> int:
    delta = when.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def next_boundary(when: datetime, interval: timedelta) -> datetime:
    """The first multiple of ``interval`` (counted from 1970-01-01 UTC) strictly after ``when``."""
    step = interval.total_seconds()
    if step <= 0:
        raise UsageError("interval must be positive")
    k = int((when - _EPOCH).total_seconds() // step) + 1
    return _EPOCH + timedelta(seconds=k * step)
