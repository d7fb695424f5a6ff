"""``SML_PublicOpen.Req`` / ``.Res`` (message tags 0x0100 / 0x0101; libsml ``sml_open_*.h``)."""

from __future__ import annotations

from dataclasses import dataclass

from imsys.lmn.sml import _codec as c
from imsys.lmn.sml.model import SmlTime, fast_init


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenRequest:
    """Opens an SML file; fields in wire order."""

    TAG = 0x0100

    codepage: bytes | None = None
    client_id: bytes
    req_file_id: bytes
    server_id: bytes | None = None
    username: bytes | None = None
    password: bytes | None = None
    sml_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenResponse:
    """Answer to an OpenRequest (every meter push starts with one)."""

    TAG = 0x0101

    codepage: bytes | None = None
    client_id: bytes | None = None
    req_file_id: bytes
    server_id: bytes
    ref_time: SmlTime | None = None
    sml_version: int | None = None


_new_open_response = fast_init(OpenResponse)


def decode_open_request(buf: bytes, i: int) -> tuple[OpenRequest, int]:
    i = c.read_list(buf, i, 7, "SML_PublicOpen.Req")
    codepage, i = c.read_octets_opt(buf, i)
    client_id, i = c.read_octets(buf, i)
    req_file_id, i = c.read_octets(buf, i)
    server_id, i = c.read_octets_opt(buf, i)
    username, i = c.read_octets_opt(buf, i)
    password, i = c.read_octets_opt(buf, i)
    version, i = c.read_uint_opt(buf, i)
    return OpenRequest(codepage=codepage, client_id=client_id, req_file_id=req_file_id,
                       server_id=server_id, username=username, password=password,
                       sml_version=version), i


def encode_open_request(out: c.Out, m: OpenRequest) -> None:
    c.w_list(out, 7)
    c.w_octets_opt(out, m.codepage)
    c.w_octets(out, m.client_id)
    c.w_octets(out, m.req_file_id)
    c.w_octets_opt(out, m.server_id)
    c.w_octets_opt(out, m.username)
    c.w_octets_opt(out, m.password)
    c.w_uint_opt(out, m.sml_version, 8)


def decode_open_response(buf: bytes, i: int) -> tuple[OpenResponse, int]:
    if buf[i] == 0x76 and buf[i + 1] == 0x01 and buf[i + 2] == 0x01:  # no codepage, clientId
        i += 3
        codepage = client_id = None
    else:
        i = c.read_list(buf, i, 6, "SML_PublicOpen.Res")
        codepage, i = c.read_octets_opt(buf, i)
        client_id, i = c.read_octets_opt(buf, i)
    req_file_id, i = c.read_octets(buf, i)
    server_id, i = c.read_octets(buf, i)
    ref_time, i = c.read_time_opt(buf, i)
    version, i = c.read_uint_opt(buf, i)
    return _new_open_response(codepage, client_id, req_file_id, server_id, ref_time, version), i


def encode_open_response(out: c.Out, m: OpenResponse) -> None:
    c.w_list(out, 6)
    c.w_octets_opt(out, m.codepage)
    c.w_octets_opt(out, m.client_id)
    c.w_octets(out, m.req_file_id)
    c.w_octets(out, m.server_id)
    c.w_time_opt(out, m.ref_time)
    c.w_uint_opt(out, m.sml_version, 8)
