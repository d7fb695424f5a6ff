"""``SML_Message`` and the message-body dispatch table (SML 1.04 §6.4, libsml ``sml_message.h``).

``SML_Message ::= SEQUENCE { transactionId Octet String, groupNo Unsigned8, abortOnError
Unsigned8, messageBody SML_MessageBody, crc16 Unsigned16, endOfSmlMsg EndOfSmlMsg }``. The CRC
covers the message from its first TL byte up to (not including) the ``crc16`` field; decoding
checks it.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from imsys.core.errors import UsageError
from imsys.lmn.errors import LmnReason, SmlRejected
from imsys.lmn.sml import _codec as c
from imsys.lmn.sml.attention import (
    AttentionResponse,
    decode_attention_response,
    encode_attention_response,
)
from imsys.lmn.sml.close import (
    CloseRequest,
    CloseResponse,
    decode_close_request,
    decode_close_response,
    encode_close,
)
from imsys.lmn.sml.crc import _REV, CrcKind, sml_crc_reflected
from imsys.lmn.sml.get_list import (
    GetListRequest,
    GetListResponse,
    decode_get_list_request,
    decode_get_list_response,
    encode_get_list_request,
    encode_get_list_response,
)
from imsys.lmn.sml.get_profile import (
    GetProfileListRequest,
    GetProfileListResponse,
    GetProfilePackRequest,
    GetProfilePackResponse,
    decode_get_profile_list_request,
    decode_get_profile_list_response,
    decode_get_profile_pack_request,
    decode_get_profile_pack_response,
    encode_get_profile_list_response,
    encode_get_profile_pack_response,
    encode_profile_request,
)
from imsys.lmn.sml.model import fast_init
from imsys.lmn.sml.open import (
    OpenRequest,
    OpenResponse,
    decode_open_request,
    decode_open_response,
    encode_open_request,
    encode_open_response,
)
from imsys.lmn.sml.proc_parameter import (
    GetProcParameterRequest,
    GetProcParameterResponse,
    SetProcParameterRequest,
    decode_get_proc_parameter_request,
    decode_get_proc_parameter_response,
    decode_set_proc_parameter_request,
    encode_get_proc_parameter_request,
    encode_get_proc_parameter_response,
    encode_set_proc_parameter_request,
)

MessageBody = (
    OpenRequest | OpenResponse | CloseRequest | CloseResponse
    | GetProfilePackRequest | GetProfilePackResponse
    | GetProfileListRequest | GetProfileListResponse
    | GetProcParameterRequest | GetProcParameterResponse | SetProcParameterRequest
    | GetListRequest | GetListResponse | AttentionResponse
)


class MessageKind(NamedTuple):
    """One row of the dispatch table: the body class and its codec."""

    cls: type
    decode: Callable[[bytes, int], tuple[Any, int]]
    encode: Callable[[c.Out, Any], None]


#: Message body tag → kind. Every SML 1.04 message is here; the one tag libsml knows that the
#: spec does not define stays out on purpose:
#:   0x0601 SetProcParameter.Res – "not in the spec" (libsml ``sml_message.h``); decoding it is
#:   UNSUPPORTED, a SetProcParameter.Req is answered with an AttentionResponse.
MESSAGE_TYPES: dict[int, MessageKind] = {
    0x0100: MessageKind(OpenRequest, decode_open_request, encode_open_request),
    0x0101: MessageKind(OpenResponse, decode_open_response, encode_open_response),
    0x0200: MessageKind(CloseRequest, decode_close_request, encode_close),
    0x0201: MessageKind(CloseResponse, decode_close_response, encode_close),
    0x0300: MessageKind(GetProfilePackRequest, decode_get_profile_pack_request,
                        encode_profile_request),
    0x0301: MessageKind(GetProfilePackResponse, decode_get_profile_pack_response,
                        encode_get_profile_pack_response),
    0x0400: MessageKind(GetProfileListRequest, decode_get_profile_list_request,
                        encode_profile_request),
    0x0401: MessageKind(GetProfileListResponse, decode_get_profile_list_response,
                        encode_get_profile_list_response),
    0x0500: MessageKind(GetProcParameterRequest, decode_get_proc_parameter_request,
                        encode_get_proc_parameter_request),
    0x0501: MessageKind(GetProcParameterResponse, decode_get_proc_parameter_response,
                        encode_get_proc_parameter_response),
    0x0600: MessageKind(SetProcParameterRequest, decode_set_proc_parameter_request,
                        encode_set_proc_parameter_request),
    # 0x0601: SetProcParameter.Res – not defined by SML 1.04
    0x0700: MessageKind(GetListRequest, decode_get_list_request, encode_get_list_request),
    0x0701: MessageKind(GetListResponse, decode_get_list_response, encode_get_list_response),
    0xFF01: MessageKind(AttentionResponse, decode_attention_response,
                        encode_attention_response),
}
_BY_CLASS: dict[type, tuple[int, MessageKind]] = {k.cls: (t, k) for t, k in MESSAGE_TYPES.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class SmlMessage:
    """One SML message: envelope fields plus a body from :data:`MESSAGE_TYPES`.

    ``abort_on_error``: 0x00 continue, 0x01 continue with the next group, 0x02 finish the group
    then abort, 0xFF abort at once.
    """

    transaction_id: bytes
    group_no: int = 0
    abort_on_error: int = 0
    body: MessageBody

    @property
    def tag(self) -> int:
        """The message body tag (``0x0701`` for a GetList.Res …)."""
        return _BY_CLASS[type(self.body)][0]


_new_message = fast_init(SmlMessage)


def decode_messages(payload: bytes, crc: CrcKind | None = None, *,
                    verify_crc: bool = True) -> tuple[SmlMessage, ...]:
    """Decode the messages of an SML file (the unescaped transport payload).

    ``crc`` selects the per-message CRC convention; ``None`` accepts X-25 and Kermit.
    ``verify_crc=False`` skips the message CRCs (only for captures known to be edited, such as
    anonymised public dumps; the transport CRC still protects live data). Zero bytes between and
    after messages (transport padding) are skipped as libsml does.
    """
    buf = bytes(payload)
    try:
        return _decode_messages(buf, crc, verify_crc)
    except IndexError:
        raise SmlRejected(LmnReason.TRUNCATED, "SML data ends inside a message",
                          length=len(buf)) from None


def _decode_messages(buf: bytes, crc: CrcKind | None, verify: bool) -> tuple[SmlMessage, ...]:
    out: list[SmlMessage] = []
    n = len(buf)
    rev: bytes | None = None
    i = 0
    while i < n:
        if buf[i] == 0:
            i += 1
            continue
        start = i
        # the common encodings inline (76 / 62 xx / 72 / 63 tttt / 63 cccc), the rest generic
        if buf[i] == 0x76:
            i += 1
        else:
            i = c.read_list(buf, i, 6, "SML_Message")
        b = buf[i]
        if 0 < b < 0x10:
            tx = buf[i + 1 : i + b]
            i += b
        else:
            tx, i = c.read_octets(buf, i)
        if buf[i] == 0x62:
            group = buf[i + 1]
            i += 2
        elif buf[i] == 0x01:  # absent: libsml writes this when the field is unset
            group = 0
            i += 1
        else:
            group, i = c.read_u8(buf, i, "groupNo")
        if buf[i] == 0x62:
            abort = buf[i + 1]
            i += 2
        elif buf[i] == 0x01:  # absent: libsml writes this when the field is unset
            abort = 0
            i += 1
        else:
            abort, i = c.read_u8(buf, i, "abortOnError")
        if buf[i] == 0x72:
            i += 1
        else:
            i = c.read_list(buf, i, 2, "SML_MessageBody")
        b = buf[i]
        if 0x62 <= b <= 0x65:
            j = i + (b & 0x0F)
            tag = int.from_bytes(buf[i + 1 : j], "big")
            i = j
        else:
            tag, i = c.read_uint(buf, i)
        kind = MESSAGE_TYPES.get(tag)
        if kind is None:
            raise SmlRejected(LmnReason.UNSUPPORTED, f"SML message body tag 0x{tag:04x}",
                              tag=tag, message_index=len(out))
        body, i = kind.decode(buf, i)
        crc_end = i
        if buf[i] == 0x63:
            got = buf[i + 1] << 8 | buf[i + 2]
            i += 3
        else:
            got, i = c.read_uint(buf, i)
        if buf[i] != 0x00:
            c.malformed("SML message does not end with endOfSmlMsg (0x00)",
                        offset=i, message_index=len(out))
        i += 1
        if i > n:
            c.truncated(i, n)
        if verify:
            if rev is None:
                rev = buf.translate(_REV)
            h = crc_hqx(rev[start:crc_end], 0xFFFF) ^ 0xFFFF
            ok = got == (_REV[h >> 8] << 8 | _REV[h & 0xFF])  # X-25, as SML carries it
            if not ok and crc is not CrcKind.X25:
                ok = got == sml_crc_reflected(rev[start:crc_end], CrcKind.KERMIT)
        if verify and not ok:
            raise SmlRejected(LmnReason.BAD_CRC, "SML message CRC does not match",
                              message_index=len(out), tag=tag, crc=got)
        out.append(_new_message(tx, group, abort, body))
    return tuple(out)


def encode_message(message: SmlMessage, crc: CrcKind = CrcKind.X25) -> bytes:
    """One ``SML_Message`` with its CRC16 and end marker."""
    try:
        tag, kind = _BY_CLASS[type(message.body)]
    except KeyError:
        raise UsageError(f"not an SML message body: {type(message.body).__name__}") from None
    out: c.Out = [b"\x76"]
    c.w_octets(out, message.transaction_id)
    c.w_uint(out, message.group_no, 8)
    c.w_uint(out, message.abort_on_error, 8)
    out.append(b"\x72")
    c.w_uint(out, tag, 32)
    kind.encode(out, message.body)
    data = b"".join(out)
    value = sml_crc_reflected(data.translate(_REV), crc)
    return data + b"\x63" + value.to_bytes(2, "big") + b"\x00"


def encode_messages(messages: tuple[SmlMessage, ...] | list[SmlMessage],
                    crc: CrcKind = CrcKind.X25) -> bytes:
    """The SML file body: the messages back to back."""
    return b"".join(encode_message(m, crc) for m in messages)


__all__ = [
    "MESSAGE_TYPES",
    "MessageBody",
    "MessageKind",
    "SmlMessage",
    "decode_messages",
    "encode_message",
    "encode_messages",
]
