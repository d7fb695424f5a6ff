"""``SML_GetList.Req`` / ``.Res`` (tags 0x0700 / 0x0701): the meter's current register values."""

from __future__ import annotations

from dataclasses import dataclass

from imsys.lmn.sml import _codec as c
from imsys.lmn.sml.model import ListEntry, SmlTime, fast_init


@dataclass(frozen=True, slots=True, kw_only=True)
class GetListRequest:
    TAG = 0x0700

    client_id: bytes
    server_id: bytes | None = None
    username: bytes | None = None
    password: bytes | None = None
    list_name: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetListResponse:
    """The list of values (``valList``); this is what a meter pushes every second or so."""

    TAG = 0x0701

    client_id: bytes | None = None
    server_id: bytes
    list_name: bytes | None = None
    act_sensor_time: SmlTime | None = None
    val_list: tuple[ListEntry, ...] = ()
    list_signature: bytes | None = None
    act_gateway_time: SmlTime | None = None


_new_get_list_response = fast_init(GetListResponse)


def decode_get_list_request(buf: bytes, i: int) -> tuple[GetListRequest, int]:
    i = c.read_list(buf, i, 5, "SML_GetList.Req")
    client_id, i = c.read_octets(buf, i)
    server_id, i = c.read_octets_opt(buf, i)
    username, i = c.read_octets_opt(buf, i)
    password, i = c.read_octets_opt(buf, i)
    list_name, i = c.read_octets_opt(buf, i)
    return GetListRequest(client_id=client_id, server_id=server_id, username=username,
                          password=password, list_name=list_name), i


def encode_get_list_request(out: c.Out, m: GetListRequest) -> None:
    c.w_list(out, 5)
    c.w_octets(out, m.client_id)
    c.w_octets_opt(out, m.server_id)
    c.w_octets_opt(out, m.username)
    c.w_octets_opt(out, m.password)
    c.w_octets_opt(out, m.list_name)


def decode_get_list_response(buf: bytes, i: int) -> tuple[GetListResponse, int]:
    i = c.read_list(buf, i, 7, "SML_GetList.Res")
    client_id, i = c.read_octets_opt(buf, i)
    server_id, i = c.read_octets(buf, i)
    list_name, i = c.read_octets_opt(buf, i)
    act_sensor_time, i = c.read_time_opt(buf, i)
    val_list, i = c.read_list_entries(buf, i)
    if buf[i] == 0x01 and buf[i + 1] == 0x01:  # no listSignature, no actGatewayTime
        list_signature = act_gateway_time = None
        i += 2
    else:
        list_signature, i = c.read_octets_opt(buf, i)
        act_gateway_time, i = c.read_time_opt(buf, i)
    return _new_get_list_response(client_id, server_id, list_name, act_sensor_time, val_list,
                                  list_signature, act_gateway_time), i


def encode_get_list_response(out: c.Out, m: GetListResponse) -> None:
    c.w_list(out, 7)
    c.w_octets_opt(out, m.client_id)
    c.w_octets(out, m.server_id)
    c.w_octets_opt(out, m.list_name)
    c.w_time_opt(out, m.act_sensor_time)
    c.w_list(out, len(m.val_list))
    c.w_list_entries(out, m.val_list)
    c.w_octets_opt(out, m.list_signature)
    c.w_time_opt(out, m.act_gateway_time)
