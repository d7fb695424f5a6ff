"""Parameter access: ``SML_GetProcParameter.Req/.Res`` (0x0500/0x0501) and
``SML_SetProcParameter.Req`` (0x0600). The spec defines no SetProcParameter.Res (libsml's 0x0601
is not in SML 1.04); a set is answered with an AttentionResponse."""

from __future__ import annotations

from dataclasses import dataclass

from imsys.lmn.sml import _codec as c
from imsys.lmn.sml.model import Tree, TreePath


@dataclass(frozen=True, slots=True, kw_only=True)
class GetProcParameterRequest:
    TAG = 0x0500

    server_id: bytes | None = None
    username: bytes | None = None
    password: bytes | None = None
    parameter_tree_path: TreePath
    attribute: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetProcParameterResponse:
    TAG = 0x0501

    server_id: bytes
    parameter_tree_path: TreePath
    parameter_tree: Tree


@dataclass(frozen=True, slots=True, kw_only=True)
class SetProcParameterRequest:
    TAG = 0x0600

    server_id: bytes | None = None
    username: bytes | None = None
    password: bytes | None = None
    parameter_tree_path: TreePath
    parameter_tree: Tree


def decode_get_proc_parameter_request(buf: bytes, i: int) -> tuple[GetProcParameterRequest, int]:
    i = c.read_list(buf, i, 5, "SML_GetProcParameter.Req")
    server_id, i = c.read_octets_opt(buf, i)
    username, i = c.read_octets_opt(buf, i)
    password, i = c.read_octets_opt(buf, i)
    path, i = c.read_tree_path(buf, i)
    attribute, i = c.read_octets_opt(buf, i)
    return GetProcParameterRequest(server_id=server_id, username=username, password=password,
                                   parameter_tree_path=path, attribute=attribute), i


def encode_get_proc_parameter_request(out: c.Out, m: GetProcParameterRequest) -> None:
    c.w_list(out, 5)
    c.w_octets_opt(out, m.server_id)
    c.w_octets_opt(out, m.username)
    c.w_octets_opt(out, m.password)
    c.w_tree_path(out, m.parameter_tree_path)
    c.w_octets_opt(out, m.attribute)


def decode_get_proc_parameter_response(buf: bytes, i: int
                                       ) -> tuple[GetProcParameterResponse, int]:
    i = c.read_list(buf, i, 3, "SML_GetProcParameter.Res")
    server_id, i = c.read_octets(buf, i)
    path, i = c.read_tree_path(buf, i)
    tree, i = c.read_tree(buf, i)
    return GetProcParameterResponse(server_id=server_id, parameter_tree_path=path,
                                    parameter_tree=tree), i


def encode_get_proc_parameter_response(out: c.Out, m: GetProcParameterResponse) -> None:
    c.w_list(out, 3)
    c.w_octets(out, m.server_id)
    c.w_tree_path(out, m.parameter_tree_path)
    c.w_tree(out, m.parameter_tree)


def decode_set_proc_parameter_request(buf: bytes, i: int) -> tuple[SetProcParameterRequest, int]:
    i = c.read_list(buf, i, 5, "SML_SetProcParameter.Req")
    server_id, i = c.read_octets_opt(buf, i)
    username, i = c.read_octets_opt(buf, i)
    password, i = c.read_octets_opt(buf, i)
    path, i = c.read_tree_path(buf, i)
    tree, i = c.read_tree(buf, i)
    return SetProcParameterRequest(server_id=server_id, username=username, password=password,
                                   parameter_tree_path=path, parameter_tree=tree), i


def encode_set_proc_parameter_request(out: c.Out, m: SetProcParameterRequest) -> None:
    c.w_list(out, 5)
    c.w_octets_opt(out, m.server_id)
    c.w_octets_opt(out, m.username)
    c.w_octets_opt(out, m.password)
    c.w_tree_path(out, m.parameter_tree_path)
    c.w_tree(out, m.parameter_tree)
