"""SML 1.04 codec (TR-03109-1 Anlage IV Teil b): sans-io encoder and decoder.

Decoding: :func:`decode_frame` (one transport frame → :class:`SmlFile`),
:class:`SmlStreamDecoder` (arbitrary chunks → frames or typed errors),
:func:`decode_messages` (an unframed SML file). Encoding: :func:`encode_frame`,
:func:`encode_message`. Errors: :class:`imsys.lmn.errors.SmlRejected`.
"""

from imsys.lmn.sml.attention import AttentionNumber, AttentionResponse
from imsys.lmn.sml.close import CloseRequest, CloseResponse
from imsys.lmn.sml.crc import CrcKind, crc16_kermit, crc16_x25, sml_crc
from imsys.lmn.sml.get_list import GetListRequest, GetListResponse
from imsys.lmn.sml.get_profile import (
    GetProfileListRequest,
    GetProfileListResponse,
    GetProfilePackRequest,
    GetProfilePackResponse,
)
from imsys.lmn.sml.message import (
    MESSAGE_TYPES,
    MessageBody,
    SmlMessage,
    decode_messages,
    encode_message,
    encode_messages,
)
from imsys.lmn.sml.model import (
    ListEntry,
    LocalTimestamp,
    PeriodEntry,
    ProcParKind,
    ProcParValue,
    ProfileHeaderEntry,
    ProfilePeriodEntry,
    SecIndex,
    SmlTime,
    SmlValue,
    Timestamp,
    Tree,
    TreePath,
    TupelEntry,
    ValueEntry,
)
from imsys.lmn.sml.obis import OBIS_NAMES, Obis
from imsys.lmn.sml.open import OpenRequest, OpenResponse
from imsys.lmn.sml.proc_parameter import (
    GetProcParameterRequest,
    GetProcParameterResponse,
    SetProcParameterRequest,
)
from imsys.lmn.sml.stream import SmlStreamDecoder
from imsys.lmn.sml.transport import SmlFile, decode_frame, encode_frame
from imsys.lmn.sml.units import Unit

__all__ = [
    "MESSAGE_TYPES",
    "OBIS_NAMES",
    "AttentionNumber",
    "AttentionResponse",
    "CloseRequest",
    "CloseResponse",
    "CrcKind",
    "GetListRequest",
    "GetListResponse",
    "GetProcParameterRequest",
    "GetProcParameterResponse",
    "GetProfileListRequest",
    "GetProfileListResponse",
    "GetProfilePackRequest",
    "GetProfilePackResponse",
    "ListEntry",
    "LocalTimestamp",
    "MessageBody",
    "Obis",
    "OpenRequest",
    "OpenResponse",
    "PeriodEntry",
    "ProcParKind",
    "ProcParValue",
    "ProfileHeaderEntry",
    "ProfilePeriodEntry",
    "SecIndex",
    "SetProcParameterRequest",
    "SmlFile",
    "SmlMessage",
    "SmlStreamDecoder",
    "SmlTime",
    "SmlValue",
    "Timestamp",
    "Tree",
    "TreePath",
    "TupelEntry",
    "Unit",
    "ValueEntry",
    "crc16_kermit",
    "crc16_x25",
    "decode_frame",
    "decode_messages",
    "encode_frame",
    "encode_message",
    "encode_messages",
    "sml_crc",
]
