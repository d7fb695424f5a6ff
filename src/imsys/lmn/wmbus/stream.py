"""Reading wM-Bus captures (the input of ``imsys wmbus decode``).

Two file formats:

* **text**: one telegram per line as hex (spaces, ``:`` and ``-`` between bytes are ignored;
  ``#`` starts a comment; empty lines are skipped);
* **binary**: a sequence of records ``length (2 bytes, big endian) ‖ telegram bytes``.

A file whose bytes are all printable ASCII is read as text, anything else as binary.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator

from imsys.lmn.errors import LmnReason, WmbusRejected

_PRINTABLE = set(string.printable.encode())
_SEP = re.compile(r"[\s:\-]")

#: the largest telegram a capture record may hold (L ≤ 255 plus block CRCs)
MAX_TELEGRAM = 300


def read_capture(data: bytes) -> Iterator[bytes | WmbusRejected]:
    """The telegrams of a capture (text or binary), or a rejection per unreadable record."""
    if all(b in _PRINTABLE for b in data):
        for n, line in enumerate(data.decode("ascii").splitlines(), 1):
            text = _SEP.sub("", line.split("#", 1)[0])
            if not text:
                continue
            try:
                yield bytes.fromhex(text)
            except ValueError:
                yield WmbusRejected(LmnReason.MALFORMED, f"line {n} is not hex", line=n)
        return
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            yield WmbusRejected(LmnReason.TRUNCATED, "capture ends inside a length prefix")
            return
        n = int.from_bytes(data[i : i + 2], "big")
        if n > MAX_TELEGRAM:
            yield WmbusRejected(LmnReason.TOO_LARGE, f"record of {n} bytes", offset=i)
            return
        if i + 2 + n > len(data):
            yield WmbusRejected(LmnReason.TRUNCATED, "capture ends inside a telegram", offset=i)
            return
        yield data[i + 2 : i + 2 + n]
        i += 2 + n


def write_capture(telegrams: list[bytes]) -> bytes:
    """The binary capture format for ``telegrams``."""
    return b"".join(len(t).to_bytes(2, "big") + t for t in telegrams)


__all__ = ["MAX_TELEGRAM", "read_capture", "write_capture"]
