"""Rejections raised by the LMN codecs (SML, wireless M-Bus).

Every problem with bytes that came from a meter is a :class:`FrameRejected` (a
:class:`imsys.core.errors.Rejected`) with an :class:`LmnReason`; a caller that misuses an encoder
gets :class:`imsys.core.errors.UsageError`. Nothing else escapes the decoders (see the property
tests in ``tests/unit/lmn``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, cast

from imsys.core.errors import Rejected


class LmnReason(StrEnum):
    """Why LMN input was refused."""

    #: a transport CRC, block CRC or SML message CRC does not match
    BAD_CRC = "bad-crc"
    #: an SML escape sequence other than start, end or a doubled escape
    BAD_ESCAPE = "bad-escape"
    #: the input ended inside a frame or a structure
    TRUNCATED = "truncated"
    #: the bytes do not follow the grammar (wrong type, wrong element count, bad length)
    MALFORMED = "malformed"
    #: a valid but unsupported feature (message type, CI field, security mode, transport v2)
    UNSUPPORTED = "unsupported"
    #: a frame grew beyond the decoder's size bound
    TOO_LARGE = "too-large"
    #: the OMS AFL MAC does not verify
    BAD_MAC = "bad-mac"
    #: decryption gave no ``2F 2F`` check bytes: the key is wrong
    WRONG_KEY = "wrong-key"
    #: the OMS message counter is not newer than the last accepted one
    REPLAYED = "replayed"
    #: an encrypted telegram from a meter for which no key is known
    UNKNOWN_METER = "unknown-meter"


class FrameRejected(Rejected):
    """LMN bytes were refused. ``reason`` is an :class:`LmnReason`."""

    reason: LmnReason  # type: ignore[assignment]

    def __init__(self, reason: LmnReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


class SmlRejected(FrameRejected):
    """An SML transport frame or SML message was refused (SML 1.04, TR-03109-1 Anlage IV b)."""


class WmbusRejected(FrameRejected):
    """A wireless M-Bus telegram was refused (EN 13757-4/-3/-7, OMS Vol. 2)."""


__all__ = ["FrameRejected", "LmnReason", "SmlRejected", "WmbusRejected"]
