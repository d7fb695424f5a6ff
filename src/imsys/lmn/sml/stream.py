"""Streaming SML decoder: arbitrary chunks in, frames or typed errors out (sans-io).

In the style of h11 and SmlLib's ``SmlStreamReader``: :meth:`SmlStreamDecoder.feed` takes bytes as
they arrive from the serial line or TLS channel (``feed(b"")`` means end of stream) and
:meth:`SmlStreamDecoder.next_frame` returns the next decoded :class:`SmlFile`, an
:class:`SmlRejected` describing a frame that was refused, or ``None`` when more data is needed.

Guarantees:

* Resynchronisation: bytes before a start sequence are skipped (counted in ``garbage_bytes``); a
  frame cut short by a new start sequence, an unknown escape, a bad CRC or a frame longer than
  ``max_frame_size`` yields one error and decoding continues with the next start sequence.
* Bounded memory: the internal buffer never holds more than ``max_frame_size + 8`` bytes, however
  large the chunks fed (``peak_buffered`` records the high-water mark). Complete frames wait in
  the output queue as raw bytes (each ≤ ``max_frame_size``) until ``next_frame`` decodes them.
* Progress: every loop consumes input or returns; nothing blocks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from imsys.core.errors import UsageError
from imsys.lmn.errors import LmnReason, SmlRejected
from imsys.lmn.sml.crc import CrcKind
from imsys.lmn.sml.transport import ESC, START, V1, SmlFile, decode_frame

#: bytes the buffer may hold beyond ``max_frame_size`` (room for one partial start sequence)
SLACK = 8


class SmlStreamDecoder:
    """Split a byte stream into SML transport frames and decode them."""

    def __init__(self, max_frame_size: int = 64 * 1024, crc: CrcKind | None = None, *,
                 verify_message_crc: bool = True) -> None:
        if max_frame_size < 16:
            raise UsageError("max_frame_size must be at least 16 bytes")
        self.max_frame_size = max_frame_size
        self.crc = crc
        self.verify_message_crc = verify_message_crc
        self._buf = bytearray()
        self._in_frame = False
        self._scan = 8
        self._eof = False
        self._out: deque[bytes | SmlRejected] = deque()
        #: bytes skipped while looking for a start sequence
        self.garbage_bytes = 0
        #: the largest the internal buffer has been
        self.peak_buffered = 0

    @property
    def buffered(self) -> int:
        """Bytes held for a frame that is not complete yet."""
        return len(self._buf)

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes; ``b""`` marks the end of the stream."""
        if self._eof:
            if data:
                raise UsageError("feed() after end of stream")
            return
        if not self._buf and not self._in_frame and type(data) is bytes:
            # the common case: one whole frame per chunk, no escapes inside, nothing around it.
            # It is exactly what _process would cut out (the first aligned escape is the end).
            n = len(data)
            if (n <= self.max_frame_size and not n & 3 and data.startswith(START)
                    and data.find(ESC, 8) == n - 8 and data[n - 4] == 0x1A):
                if n > self.peak_buffered:
                    self.peak_buffered = n
                self._out.append(data)
                return
        if not data:
            self._eof = True
            if self._in_frame:
                self._out.append(SmlRejected(LmnReason.TRUNCATED, "stream ended inside a frame",
                                             length=len(self._buf)))
            self._buf.clear()
            self._in_frame = False
            return
        limit = self.max_frame_size + SLACK
        if len(data) + len(self._buf) <= limit:  # the common case: one chunk, no slicing
            self._buf += data
            if len(self._buf) > self.peak_buffered:
                self.peak_buffered = len(self._buf)
            self._process()
            return
        view = memoryview(data).cast("B")
        while view:
            room = limit - len(self._buf)
            take = view[:room]
            view = view[room:]
            self._buf += take
            if len(self._buf) > self.peak_buffered:
                self.peak_buffered = len(self._buf)
            self._process()

    # ------------------------------------------------------------------ output

    def next_frame(self) -> SmlFile | SmlRejected | None:
        """The next frame or rejection, or ``None`` if more data is needed."""
        out = self._out
        if not out:
            return None
        item = out.popleft()
        if type(item) is not bytes:  # queued frames are bytes, everything else a rejection
            return item
        try:
            return decode_frame(item, self.crc, verify_message_crc=self.verify_message_crc)
        except SmlRejected as exc:
            return exc

    def frames(self) -> Iterator[SmlFile | SmlRejected]:
        """Every frame and rejection available now."""
        while (item := self.next_frame()) is not None:
            yield item

    def raw_frames(self) -> Iterator[bytes | SmlRejected]:
        """Every complete transport frame as received (escapes, padding, CRC and all), or the
        rejection of a frame that could not be cut out – for callers that keep or digest the
        exact bytes (the gateway's evidence) and decode them themselves. The CRCs are checked
        by that decoding (:func:`~imsys.lmn.sml.decode_frame`), not here."""
        while self._out:
            yield self._out.popleft()

    # ------------------------------------------------------------------ scanning

    def _reject(self, reason: LmnReason, message: str, **context: object) -> None:
        self._out.append(SmlRejected(reason, message, **context))

    def _process(self) -> None:
        buf = self._buf
        while True:
            if not self._in_frame:
                k = buf.find(START)
                if k < 0:
                    keep = min(len(buf), 7)
                    self.garbage_bytes += len(buf) - keep
                    del buf[: len(buf) - keep]
                    return
                self.garbage_bytes += k
                del buf[:k]
                self._in_frame = True
                self._scan = 8
            if not self._scan_frame():
                return

    def _scan_frame(self) -> bool:
        """Advance through the frame at ``buf[0]``; True if the state changed (loop again)."""
        buf = self._buf
        i = self._scan
        while True:
            k = buf.find(ESC, i)
            if k < 0 or k + 8 > len(buf):
                # wait for more data; resume at the first byte that may begin an escape – never
                # before i: the bytes before it are scanned, and a doubled escape must not be
                # read again from its second word
                self._scan = max(i, len(buf) - 7) if k < 0 else k
                if len(buf) > self.max_frame_size:
                    self._overflow()
                    return True
                return False
            if k % 4:
                if buf[k + 4 : k + 8] == V1:  # a start sequence out of step: lost bytes
                    self._reject(LmnReason.TRUNCATED, "frame interrupted by a new start sequence",
                                 length=k)
                    del buf[:k]
                    self._scan = 8
                    return True
                i = k + 1
                continue
            word = buf[k + 4 : k + 8]
            if word[0] == 0x1A:
                frame = bytes(buf[: k + 8])
                del buf[: k + 8]
                self._in_frame = False
                if len(frame) > self.max_frame_size:
                    self._reject(LmnReason.TOO_LARGE, "frame exceeds max_frame_size",
                                 length=len(frame), limit=self.max_frame_size)
                else:
                    self._out.append(frame)
                return True
            if word == ESC:
                i = k + 8
                continue
            if word == V1:
                self._reject(LmnReason.TRUNCATED, "frame interrupted by a new start sequence",
                             length=k)
                del buf[:k]
                self._scan = 8
                return True
            self._reject(LmnReason.BAD_ESCAPE, f"unknown escape sequence 1b1b1b1b {word.hex()}",
                         offset=k)
            del buf[: k + 4]
            self._in_frame = False
            return True

    def _overflow(self) -> None:
        """The frame in progress is too long: report it and resynchronise after its start."""
        buf = self._buf
        self._reject(LmnReason.TOO_LARGE, "no end sequence within max_frame_size",
                     length=len(buf), limit=self.max_frame_size)
        k = buf.find(START, 1)
        if k > 0:
            self.garbage_bytes += k
            del buf[:k]
            self._scan = 8
        else:
            keep = 7
            self.garbage_bytes += len(buf) - keep
            del buf[: len(buf) - keep]
            self._in_frame = False


__all__ = ["SmlStreamDecoder"]
