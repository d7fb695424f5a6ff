"""The OMS example telegrams of tests/data/lmn/wmbus_oms_examples.txt (shared by several tests)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from imsys.lmn.wmbus import FrameFormat

DATA = Path(__file__).parents[2] / "data" / "lmn" / "wmbus_oms_examples.txt"


class Vector(NamedTuple):
    fmt: FrameFormat
    key: bytes | None
    wire: bytes


def load() -> dict[str, Vector]:
    out = {}
    for line in DATA.read_text().splitlines():
        if line and not line.startswith("#"):
            ident, fmt, key, hexdata = line.split()
            out[ident] = Vector(FrameFormat(fmt), None if key == "-" else bytes.fromhex(key),
                                bytes.fromhex(hexdata))
    return out


VECTORS = load()
