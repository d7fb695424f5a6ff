"""The stream decoder hands out the exact bytes of each frame when asked for raw frames."""

from __future__ import annotations

from imsys.lmn.errors import SmlRejected
from imsys.lmn.sml import (
    CloseResponse,
    SmlFile,
    SmlMessage,
    SmlStreamDecoder,
    decode_frame,
    encode_frame,
)


def _frame(n: int) -> bytes:
    return encode_frame(SmlFile((SmlMessage(transaction_id=bytes([n]), group_no=0,
                                            abort_on_error=0, body=CloseResponse()),)))


def test_raw_frames_are_the_received_bytes_and_broken_ones_are_rejections() -> None:
    first, second, third = _frame(1), _frame(2), _frame(3)
    decoder = SmlStreamDecoder()
    out: list[bytes | SmlRejected] = []
    # the second frame loses its end sequence: cut out as a rejection, the third survives
    for chunk in (b"garbage" + first, second[:-9], third):
        decoder.feed(chunk)
        out += decoder.raw_frames()
    assert out[0] == first and out[-1] == third
    assert len(out) == 3 and isinstance(out[1], SmlRejected)
    assert decode_frame(out[0]).messages[0].transaction_id == b"\x01"
