"""A/B firmware slots in the gateway's state directory, crash-safe.

Layout (``<state_dir>/firmware/``)::

    slot-a/package.imfw    the package installed in slot A (manifest + image, as downloaded)
    slot-b/package.imfw
    active                 "a" or "b"  – which slot the gateway runs
    trial                  JSON {"slot", "previous", "version"} while a freshly activated
                           slot has not passed its self-test
    download.part          a download in progress

Every file is replaced atomically (temporary file, fsync, ``rename``, fsync of the folder), so
a process kill at any moment leaves either the old or the new file. The rules that make an
interrupted update harmless:

1. a package is written into the **inactive** slot only;
2. the ``trial`` marker is written **before** ``active`` is switched and removed only after the
   self-test passed (confirmation);
3. at start-up (:meth:`Slots.recover`), a ``trial`` marker means the new slot never confirmed:
   ``active`` goes back to ``previous`` and the marker is removed (rollback). Left-over
   ``*.tmp`` and ``download.part`` files are deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from imsys.core.errors import UsageError

__all__ = ["PACKAGE_NAME", "Recovery", "Slot", "Slots", "Trial", "atomic_write"]

PACKAGE_NAME = "package.imfw"


class Slot(StrEnum):
    A = "a"
    B = "b"

    @property
    def other(self) -> Slot:
        return Slot.B if self is Slot.A else Slot.A


@dataclass(frozen=True)
class Trial:
    slot: Slot
    previous: Slot
    version: str


@dataclass(frozen=True)
class Recovery:
    """What :meth:`Slots.recover` did at start-up."""

    rolled_back: Trial | None
    removed: tuple[str, ...]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data``: after a crash either the old or the new content."""
    tmp = path.with_name(f"{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Slots:
    """The two slots, the ``active`` pointer and the ``trial`` marker."""

    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir) / "firmware"
        for slot in Slot:
            (self.root / f"slot-{slot.value}").mkdir(parents=True, exist_ok=True)

    # -- reading

    def package_path(self, slot: Slot) -> Path:
        return self.root / f"slot-{slot.value}" / PACKAGE_NAME

    def package(self, slot: Slot) -> bytes | None:
        path = self.package_path(slot)
        return path.read_bytes() if path.exists() else None

    @property
    def active(self) -> Slot:
        """The running slot (A before the first update)."""
        path = self.root / "active"
        if not path.exists():
            return Slot.A
        return Slot(path.read_text().strip())

    @property
    def inactive(self) -> Slot:
        return self.active.other

    @property
    def trial(self) -> Trial | None:
        path = self.root / "trial"
        if not path.exists():
            return None
        doc = json.loads(path.read_text())
        return Trial(Slot(doc["slot"]), Slot(doc["previous"]), str(doc["version"]))

    @property
    def download_path(self) -> Path:
        return self.root / "download.part"

    # -- writing (each step atomic)

    def install(self, slot: Slot, package: bytes) -> None:
        """Write a package into ``slot``, which must not be the active one."""
        if slot is self.active:
            raise UsageError("a package is never written into the active slot")
        atomic_write(self.package_path(slot), package)

    def begin_trial(self, slot: Slot, version: str) -> None:
        """Mark ``slot`` as on trial, then make it active (in this order)."""
        previous = self.active
        if slot is previous:
            raise UsageError("the slot on trial must not be the active one")
        if not self.package_path(slot).exists():
            raise UsageError(f"slot {slot.value} holds no package")
        atomic_write(self.root / "trial", json.dumps(
            {"slot": slot.value, "previous": previous.value, "version": version}).encode())
        atomic_write(self.root / "active", slot.value.encode())

    def confirm(self) -> Trial:
        """The slot on trial passed its self-test: it stays active."""
        trial = self.trial
        if trial is None:
            raise UsageError("no slot is on trial")
        (self.root / "trial").unlink()
        _fsync_dir(self.root)
        return trial

    def roll_back(self) -> Trial | None:
        """Return to the previous slot (pointer first, marker last); None without a trial."""
        trial = self.trial
        if trial is None:
            return None
        if self.active is not trial.previous:
            atomic_write(self.root / "active", trial.previous.value.encode())
        (self.root / "trial").unlink()
        _fsync_dir(self.root)
        return trial

    def recover(self) -> Recovery:
        """Start-up: roll back an unconfirmed trial, remove half-written files."""
        removed = []
        for path in [*self.root.rglob("*.tmp"), self.download_path]:
            if path.exists():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                removed.append(str(path.relative_to(self.root)))
        return Recovery(self.roll_back(), tuple(sorted(removed)))
