"""The one injectable clock. Domain code never calls ``time.time()`` itself."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
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


def next_boundary(when: datetime, interval: timedelta) -> datetime:
    """The first multiple of ``interval`` (counted from 1970-01-01 UTC) strictly after ``when``."""
    step = interval.total_seconds()
    if step <= 0:
        raise UsageError("interval must be positive")
    k = int((when - _EPOCH).total_seconds() // step) + 1
    return _EPOCH + timedelta(seconds=k * step)
