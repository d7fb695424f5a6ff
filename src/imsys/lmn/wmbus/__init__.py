"""Wireless M-Bus (EN 13757-4 link layer, EN 13757-3 records, OMS Vol. 2 / EN 13757-7 security).

Sans-io: :func:`decode_telegram` (bytes → :class:`Telegram` or
:class:`~imsys.lmn.errors.WmbusRejected`) and :func:`encode_telegram`. Keys and message-counter
state come in as arguments (:data:`KeySource`, :class:`CounterTracker`).
"""

from imsys.lmn.wmbus.link import (
    Address,
    FrameFormat,
    LinkHeader,
    crc16_en13757,
    manufacturer_code,
    manufacturer_text,
)
from imsys.lmn.wmbus.records import (
    Coding,
    DataRecord,
    DateG,
    DateTimeF,
    Function,
    VifInfo,
    decode_records,
    describe,
    encode_records,
)
from imsys.lmn.wmbus.security import (
    CounterTracker,
    Direction,
    KeySource,
    MemoryCounterTracker,
    SecurityMode,
    derive_keys,
)
from imsys.lmn.wmbus.stream import read_capture
from imsys.lmn.wmbus.telegram import (
    RSP_UD,
    SND_IR,
    SND_NR,
    Telegram,
    decode_telegram,
    encode_telegram,
)
from imsys.lmn.wmbus.transport import CI_FIELDS, Afl, ExtendedLinkLayer, TransportHeader

__all__ = [
    "CI_FIELDS",
    "RSP_UD",
    "SND_IR",
    "SND_NR",
    "Address",
    "Afl",
    "Coding",
    "CounterTracker",
    "DataRecord",
    "DateG",
    "DateTimeF",
    "Direction",
    "ExtendedLinkLayer",
    "FrameFormat",
    "Function",
    "KeySource",
    "LinkHeader",
    "MemoryCounterTracker",
    "SecurityMode",
    "Telegram",
    "TransportHeader",
    "VifInfo",
    "crc16_en13757",
    "decode_records",
    "decode_telegram",
    "derive_keys",
    "describe",
    "encode_records",
    "encode_telegram",
    "manufacturer_code",
    "manufacturer_text",
    "read_capture",
]
