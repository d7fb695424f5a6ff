"""Load-profile messages (libsml ``sml_get_profile_{pack,list}_{request,response}.h``).

``SML_GetProfilePack.Req`` (0x0300) and ``SML_GetProfileList.Req`` (0x0400) share one structure;
``SML_GetProfilePack.Res`` (0x0301) carries a header list plus periods of value lists,
``SML_GetProfileList.Res`` (0x0401) one period with a list of ``SML_PeriodEntry``.
"""

from __future__ import annotations

from dataclasses import dataclass

from imsys.lmn.sml import _codec as c
from imsys.lmn.sml.model import (
    PeriodEntry,
    ProfileHeaderEntry,
    ProfilePeriodEntry,
    SmlTime,
    Tree,
    TreePath,
    ValueEntry,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _ProfileRequest:
    server_id: bytes | None = None
    username: bytes | None = None
    password: bytes | None = None
    with_rawdata: bool | None = None
    begin_time: SmlTime | None = None
    end_time: SmlTime | None = None
    parameter_tree_path: TreePath
    object_list: tuple[bytes, ...] | None = None
    das_details: Tree | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetProfilePackRequest(_ProfileRequest):
    TAG = 0x0300


@dataclass(frozen=True, slots=True, kw_only=True)
class GetProfileListRequest(_ProfileRequest):
    TAG = 0x0400


@dataclass(frozen=True, slots=True, kw_only=True)
class GetProfilePackResponse:
    TAG = 0x0301

    server_id: bytes
    act_time: SmlTime
    reg_period: int
    parameter_tree_path: TreePath
    header_list: tuple[ProfileHeaderEntry, ...]
    period_list: tuple[ProfilePeriodEntry, ...]
    rawdata: bytes | None = None
    profile_signature: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetProfileListResponse:
    TAG = 0x0401

    server_id: bytes
    act_time: SmlTime
    reg_period: int
    parameter_tree_path: TreePath
    val_time: SmlTime
    status: int
    period_list: tuple[PeriodEntry, ...]
    rawdata: bytes | None = None
    period_signature: bytes | None = None


def _decode_request(buf: bytes, i: int, cls: type[_ProfileRequest], what: str
                    ) -> tuple[_ProfileRequest, int]:
    i = c.read_list(buf, i, 9, what)
    server_id, i = c.read_octets_opt(buf, i)
    username, i = c.read_octets_opt(buf, i)
    password, i = c.read_octets_opt(buf, i)
    with_rawdata, i = c.read_bool_opt(buf, i)
    begin_time, i = c.read_time_opt(buf, i)
    end_time, i = c.read_time_opt(buf, i)
    path, i = c.read_tree_path(buf, i)
    objects: tuple[bytes, ...] | None
    if buf[i] == 0x01:
        objects, i = None, i + 1
    else:
        n, i = c.read_seq(buf, i, "object_List")
        items = []
        for _ in range(n):
            o, i = c.read_octets(buf, i)
            items.append(o)
        objects = tuple(items)
    das, i = c.read_tree_opt(buf, i)
    return cls(server_id=server_id, username=username, password=password,
               with_rawdata=with_rawdata, begin_time=begin_time, end_time=end_time,
               parameter_tree_path=path, object_list=objects, das_details=das), i


def decode_get_profile_pack_request(buf: bytes, i: int) -> tuple[_ProfileRequest, int]:
    return _decode_request(buf, i, GetProfilePackRequest, "SML_GetProfilePack.Req")


def decode_get_profile_list_request(buf: bytes, i: int) -> tuple[_ProfileRequest, int]:
    return _decode_request(buf, i, GetProfileListRequest, "SML_GetProfileList.Req")


def encode_profile_request(out: c.Out, m: _ProfileRequest) -> None:
    c.w_list(out, 9)
    c.w_octets_opt(out, m.server_id)
    c.w_octets_opt(out, m.username)
    c.w_octets_opt(out, m.password)
    c.w_bool_opt(out, m.with_rawdata)
    c.w_time_opt(out, m.begin_time)
    c.w_time_opt(out, m.end_time)
    c.w_tree_path(out, m.parameter_tree_path)
    if m.object_list is None:
        out.append(b"\x01")
    else:
        c.w_list(out, len(m.object_list))
        for o in m.object_list:
            c.w_octets(out, o)
    c.w_tree_opt(out, m.das_details)


def decode_get_profile_pack_response(buf: bytes, i: int) -> tuple[GetProfilePackResponse, int]:
    i = c.read_list(buf, i, 8, "SML_GetProfilePack.Res")
    server_id, i = c.read_octets(buf, i)
    act_time, i = c.read_time(buf, i)
    reg_period, i = c.read_uint(buf, i)
    path, i = c.read_tree_path(buf, i)
    n, i = c.read_seq(buf, i, "header_List")
    headers = []
    for _ in range(n):
        i = c.read_list(buf, i, 3, "SML_ProfObjHeaderEntry")
        obj, i = c.read_octets(buf, i)
        unit, i = c.read_unit(buf, i)
        scaler, i = c.read_scaler(buf, i)
        headers.append(ProfileHeaderEntry(obj, unit, scaler))
    n, i = c.read_seq(buf, i, "period_List")
    periods = []
    for _ in range(n):
        i = c.read_list(buf, i, 4, "SML_ProfObjPeriodEntry")
        val_time, i = c.read_time(buf, i)
        status, i = c.read_uint(buf, i)
        k, i = c.read_seq(buf, i, "value_List")
        values = []
        for _ in range(k):
            i = c.read_list(buf, i, 2, "SML_ValueEntry")
            v, i = c.read_value(buf, i)
            sig, i = c.read_octets_opt(buf, i)
            values.append(ValueEntry(v, sig))
        psig, i = c.read_octets_opt(buf, i)
        periods.append(ProfilePeriodEntry(val_time, status, tuple(values), psig))
    rawdata, i = c.read_octets_opt(buf, i)
    signature, i = c.read_octets_opt(buf, i)
    return GetProfilePackResponse(server_id=server_id, act_time=act_time, reg_period=reg_period,
                                  parameter_tree_path=path, header_list=tuple(headers),
                                  period_list=tuple(periods), rawdata=rawdata,
                                  profile_signature=signature), i


def encode_get_profile_pack_response(out: c.Out, m: GetProfilePackResponse) -> None:
    c.w_list(out, 8)
    c.w_octets(out, m.server_id)
    c.w_time(out, m.act_time)
    c.w_uint(out, m.reg_period, 32)
    c.w_tree_path(out, m.parameter_tree_path)
    c.w_list(out, len(m.header_list))
    for h in m.header_list:
        out.append(b"\x73")
        c.w_octets(out, h.obj_name)
        c.w_unit(out, h.unit)
        c.w_int(out, h.scaler, 8)
    c.w_list(out, len(m.period_list))
    for p in m.period_list:
        out.append(b"\x74")
        c.w_time(out, p.val_time)
        c.w_uint(out, p.status)
        c.w_list(out, len(p.values))
        for v in p.values:
            out.append(b"\x72")
            c.w_value(out, v.value)
            c.w_octets_opt(out, v.value_signature)
        c.w_octets_opt(out, p.period_signature)
    c.w_octets_opt(out, m.rawdata)
    c.w_octets_opt(out, m.profile_signature)


def decode_get_profile_list_response(buf: bytes, i: int) -> tuple[GetProfileListResponse, int]:
    i = c.read_list(buf, i, 9, "SML_GetProfileList.Res")
    server_id, i = c.read_octets(buf, i)
    act_time, i = c.read_time(buf, i)
    reg_period, i = c.read_uint(buf, i)
    path, i = c.read_tree_path(buf, i)
    val_time, i = c.read_time(buf, i)
    status, i = c.read_uint(buf, i)
    n, i = c.read_seq(buf, i, "period_List")
    entries = []
    for _ in range(n):
        e, i = c.read_period_entry(buf, i)
        entries.append(e)
    rawdata, i = c.read_octets_opt(buf, i)
    signature, i = c.read_octets_opt(buf, i)
    return GetProfileListResponse(server_id=server_id, act_time=act_time, reg_period=reg_period,
                                  parameter_tree_path=path, val_time=val_time, status=status,
                                  period_list=tuple(entries), rawdata=rawdata,
                                  period_signature=signature), i


def encode_get_profile_list_response(out: c.Out, m: GetProfileListResponse) -> None:
    c.w_list(out, 9)
    c.w_octets(out, m.server_id)
    c.w_time(out, m.act_time)
    c.w_uint(out, m.reg_period, 32)
    c.w_tree_path(out, m.parameter_tree_path)
    c.w_time(out, m.val_time)
    c.w_uint(out, m.status)
    c.w_list(out, len(m.period_list))
    for e in m.period_list:
        c.w_period_entry(out, e)
    c.w_octets_opt(out, m.rawdata)
    c.w_octets_opt(out, m.period_signature)
