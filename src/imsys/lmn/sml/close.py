"""``SML_PublicClose.Req`` / ``.Res`` (tags 0x0200 / 0x0201): an optional global signature."""

from __future__ import annotations

from dataclasses import dataclass

from imsys.lmn.sml import _codec as c
from imsys.lmn.sml.model import fast_init


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseRequest:
    TAG = 0x0200

    global_signature: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseResponse:
    TAG = 0x0201

    global_signature: bytes | None = None


_new_close_response = fast_init(CloseResponse)


def decode_close_request(buf: bytes, i: int) -> tuple[CloseRequest, int]:
    i = c.read_list(buf, i, 1, "SML_PublicClose.Req")
    sig, i = c.read_octets_opt(buf, i)
    return CloseRequest(global_signature=sig), i


def decode_close_response(buf: bytes, i: int) -> tuple[CloseResponse, int]:
    if buf[i] == 0x71 and buf[i + 1] == 0x01:
        return _new_close_response(None), i + 2
    i = c.read_list(buf, i, 1, "SML_PublicClose.Res")
    sig, i = c.read_octets_opt(buf, i)
    return _new_close_response(sig), i


def encode_close(out: c.Out, m: CloseRequest | CloseResponse) -> None:
    c.w_list(out, 1)
    c.w_octets_opt(out, m.global_signature)
