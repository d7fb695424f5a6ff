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
from imsys.lmn.sml._layout import Layout, apply_layout, compile_layout
from imsys.lmn.sml.attention import (
    AttentionResponse,
    decode_attention_response,
    encode_attention_response,
)
from imsys.lmn.sml.close import (
    CloseRequest,
    CloseResponse,
    _new_close_response,
    decode_close_request,
    decode_close_response,
    encode_close,
)
from imsys.lmn.sml.crc import _REV, CrcKind, sml_crc_reflected
from imsys.lmn.sml.get_list import (
    GetListRequest,
    GetListResponse,
    _new_get_list_response,
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
    _new_open_response,
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
#: ``72`` (messageBody) and the encoded tag of every message type
_TAG_BYTES = {t: b"\x72" + c._uint_bytes(t, 32) for t in MESSAGE_TYPES}


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


#: learned layouts of whole files (see _layout.py) by file length, newest first
_LAYOUTS: dict[int, tuple[Layout, ...]] = {}
#: bounds: lengths with layouts (the oldest length goes first), layouts per length. A layout of
#: a typical push (300–500 bytes) takes a few KB, one of MAX_LAYOUT_BYTES at most ~30 KB.
MAX_LAYOUTS = 64
LAYOUTS_PER_LENGTH = 2
#: a layout is learned from every LEARN_EVERY-th file decoded without one
LEARN_EVERY = 16
#: False: learn no more layouts (clear _LAYOUTS as well to decode without any)
LEARN_LAYOUTS = True
_misses = 0

#: groupNo 0, abortOnError 0, messageBody list, two-byte tag TL: how nearly every message goes on
_ENVELOPE = b"\x62\x00\x62\x00\x72\x63"


class _Slow(Exception):
    """The fast path met an encoding it leaves to the general decoder."""


def _decode_messages(buf: bytes, crc: CrcKind | None, verify: bool,
                     rev: bytes | None = None) -> tuple[SmlMessage, ...]:
    """Decode with :func:`_decode_fast`; anything it does not take, and every error, goes to
    :func:`_decode_general`, which alone decides what is rejected and how.

    ``rev``: ``buf`` with every byte bit-reversed, if the caller has it already.
    """
    global _misses
    n = len(buf)
    layouts = _LAYOUTS.get(n)
    if layouts:
        for layout in layouts:
            r = apply_layout(buf, layout, rev, verify, _new_message)
            if r is not None:
                return r
    try:
        r = _decode_fast(buf, crc, verify, rev)
    except (_Slow, SmlRejected, IndexError):
        return _decode_general(buf, crc, verify)
    # learn this file's layout – at most once per LEARN_EVERY files decoded without one, so
    # streams of ever-new layouts cost little; one meter's stream is learned within that many
    _misses += 1
    if _misses >= LEARN_EVERY and LEARN_LAYOUTS:
        _misses = 0
        layout = compile_layout(buf)
        if layout is not None and apply_layout(buf, layout, rev, verify, _new_message) == r:
            if layouts is None and len(_LAYOUTS) >= MAX_LAYOUTS:
                for oldest in list(_LAYOUTS)[:1]:  # list(): one step, safe beside other threads
                    _LAYOUTS.pop(oldest, None)
            _LAYOUTS[n] = (layout, *(layouts or ()))[:LAYOUTS_PER_LENGTH]
    return r


def _decode_fast(buf: bytes, crc: CrcKind | None, verify: bool,
                 rev: bytes | None) -> tuple[SmlMessage, ...]:
    """The messages of a meter push (Open.Res, GetList.Res, Close.Res) in their usual encodings,
    with no helper calls on the common path; other bodies through :data:`MESSAGE_TYPES`.

    Validates as much as the general decoder (raising anything on a problem: IndexError for
    reads past the end, :class:`_Slow` or :class:`SmlRejected`), but leaves the exact error to
    it: on any exception the caller decodes the whole file again with :func:`_decode_general`.
    """
    out: list[SmlMessage] = []
    append = out.append
    n = len(buf)
    i = 0
    new_message = _new_message
    while i < n:
        if buf[i] != 0x76:
            if buf[i]:
                raise _Slow
            i += 1
            continue
        start = i
        # envelope: 76, transactionId (short octet string), groupNo, abortOnError (62 xx | 01)
        b = buf[i + 1]
        if b > 0x0F or not b:
            raise _Slow
        i += 1 + b
        tx = buf[start + 2 : i]
        if buf.startswith(_ENVELOPE, i):  # groupNo 0, abortOnError 0, 72 63 tttt
            group = abort = 0
            tag = buf[i + 6] << 8 | buf[i + 7]
            i += 8
        else:
            b = buf[i]
            if b == 0x62:
                group = buf[i + 1]
                i += 2
            elif b == 0x01:
                group = 0
                i += 1
            else:
                raise _Slow
            b = buf[i]
            if b == 0x62:
                abort = buf[i + 1]
                i += 2
            elif b == 0x01:
                abort = 0
                i += 1
            else:
                raise _Slow
            # messageBody: 72, tag (Unsigned 1..4 bytes), body
            b = buf[i + 1]
            if buf[i] != 0x72 or not 0x62 <= b <= 0x65:
                raise _Slow
            j = i + 1 + (b & 0x0F)
            tag = int.from_bytes(buf[i + 2 : j], "big")
            i = j
        if tag == 0x0701:
            body, i = _get_list_response(buf, i)
        elif tag == 0x0101:
            body, i = _open_response(buf, i)
        elif tag == 0x0201 and buf[i] == 0x71 and buf[i + 1] == 0x01:
            body = _new_close_response(None)
            i += 2
        else:
            kind = MESSAGE_TYPES.get(tag)
            if kind is None:
                raise _Slow
            body, i = kind.decode(buf, i)
        # crc16 (63 hh ll) and endOfSmlMsg (00)
        if buf[i] != 0x63 or buf[i + 3] != 0:
            raise _Slow
        if verify:
            if rev is None:
                rev = buf.translate(_REV)
            # X-25 as SML carries it (see crc.py), compared in the bit-reversed domain
            if crc_hqx(rev[start:i], 0xFFFF) != (rev[i + 1] << 8 | rev[i + 2]) ^ 0xFFFF and (
                    crc is CrcKind.X25 or buf[i + 1] << 8 | buf[i + 2]
                    != sml_crc_reflected(rev[start:i], CrcKind.KERMIT)):
                raise _Slow
        i += 4
        append(new_message(tx, group, abort, body))
    if i > n:
        raise _Slow
    return tuple(out)


def _open_response(buf: bytes, i: int) -> tuple[OpenResponse, int]:
    """``SML_PublicOpen.Res`` without codepage and clientId (what meters send), else general."""
    if buf[i] != 0x76 or buf[i + 1] != 0x01 or buf[i + 2] != 0x01:
        return decode_open_response(buf, i)
    b = buf[i + 3]
    if not 0 < b < 0x10:
        raise _Slow
    i += 3 + b
    req_file_id = buf[i - b + 1 : i]
    b = buf[i]
    if not 0 < b < 0x10:
        raise _Slow
    i += b
    server_id = buf[i - b + 1 : i]
    if buf[i] == 0x01:
        ref_time = None
        i += 1
    else:
        ref_time, i = c.read_time(buf, i)
    b = buf[i]
    if b == 0x01:
        version = None
        i += 1
    elif b == 0x62:
        version = buf[i + 1]
        i += 2
    else:
        version, i = c.read_uint_opt(buf, i)
    return _new_open_response(None, None, req_file_id, server_id, ref_time, version), i


def _get_list_response(buf: bytes, i: int) -> tuple[GetListResponse, int]:
    """``SML_GetList.Res`` with short octet strings and the usual times, else general."""
    if buf[i] != 0x77:
        raise _Slow
    b = buf[i + 1]
    if b == 0x01:
        client_id = None
        i += 2
    elif 1 < b < 0x10:
        i += 1 + b
        client_id = buf[i - b + 1 : i]
    else:
        raise _Slow
    b = buf[i]
    if not 0 < b < 0x10:
        raise _Slow
    i += b
    server_id = buf[i - b + 1 : i]
    b = buf[i]
    if b == 0x01:
        list_name = None
        i += 1
    elif 1 < b < 0x10:
        i += b
        list_name = buf[i - b + 1 : i]
    else:
        raise _Slow
    if buf[i] == 0x01:
        act_sensor_time = None
        i += 1
    else:
        act_sensor_time, i = c.read_time(buf, i)
    val_list, i = c.read_list_entries(buf, i)
    if buf[i] == 0x01 and buf[i + 1] == 0x01:
        list_signature = act_gateway_time = None
        i += 2
    else:
        list_signature, i = c.read_octets_opt(buf, i)
        act_gateway_time, i = c.read_time_opt(buf, i)
    return _new_get_list_response(client_id, server_id, list_name, act_sensor_time, val_list,
                                  list_signature, act_gateway_time), i


def _decode_general(buf: bytes, crc: CrcKind | None,
                    verify: bool) -> tuple[SmlMessage, ...]:
    """Any SML file: every encoding the grammar allows, every check with its exact error."""
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
    out += (c._uint_bytes(message.group_no, 8), c._uint_bytes(message.abort_on_error, 8),
            _TAG_BYTES[tag])
    kind.encode(out, message.body)
    data = b"".join(out)
    if crc is CrcKind.X25:
        h = crc_hqx(data.translate(_REV), 0xFFFF) ^ 0xFFFF
        return data + bytes((0x63, _REV[h >> 8], _REV[h & 0xFF], 0))
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
