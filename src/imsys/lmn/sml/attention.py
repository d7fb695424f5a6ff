"""``SML_Attention.Res`` (tag 0xFF01): an answer with an attention number (facts.md §6)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from imsys.lmn.sml import _codec as c
from imsys.lmn.sml.model import Tree


class AttentionNumber(bytes, Enum):
    """The attention numbers of SML 1.04 (6-byte, OBIS-like)."""

    OK = bytes.fromhex("8181C7C7FD00")
    JOB_RUNNING = bytes.fromhex("8181C7C7FD01")
    UNKNOWN_ERROR = bytes.fromhex("8181C7C7FE00")
    UNKNOWN_SML_ID = bytes.fromhex("8181C7C7FE01")
    NOT_AUTHORISED = bytes.fromhex("8181C7C7FE02")
    RECIPIENT_NOT_FOUND = bytes.fromhex("8181C7C7FE03")
    NO_REQUEST_FIELD = bytes.fromhex("8181C7C7FE04")
    CANNOT_WRITE = bytes.fromhex("8181C7C7FE05")
    CANNOT_READ = bytes.fromhex("8181C7C7FE06")
    COMMUNICATION_ERROR = bytes.fromhex("8181C7C7FE07")
    UNPARSEABLE = bytes.fromhex("8181C7C7FE08")


@dataclass(frozen=True, slots=True, kw_only=True)
class AttentionResponse:
    TAG = 0xFF01

    server_id: bytes
    attention_number: bytes
    attention_message: bytes | None = None
    attention_details: Tree | None = None


def decode_attention_response(buf: bytes, i: int) -> tuple[AttentionResponse, int]:
    i = c.read_list(buf, i, 4, "SML_Attention.Res")
    server_id, i = c.read_octets(buf, i)
    number, i = c.read_octets(buf, i)
    message, i = c.read_octets_opt(buf, i)
    details, i = c.read_tree_opt(buf, i)
    return AttentionResponse(server_id=server_id, attention_number=number,
                             attention_message=message, attention_details=details), i


def encode_attention_response(out: c.Out, m: AttentionResponse) -> None:
    c.w_list(out, 4)
    c.w_octets(out, m.server_id)
    c.w_octets(out, bytes(m.attention_number))
    c.w_octets_opt(out, m.attention_message)
    c.w_tree_opt(out, m.attention_details)
