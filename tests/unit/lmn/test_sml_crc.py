"""CRC-16 known-answer tests (SML 1.04 §8; vectors: reveng catalogue, SmlLib tests/test_crc.py)."""

from __future__ import annotations

import os

import pytest

from imsys.lmn.sml.crc import CrcKind, crc16_kermit, crc16_x25, sml_crc


def test_crc16_x25_check_value() -> None:
    assert crc16_x25(b"123456789") == 0x906E


def test_crc16_kermit_check_value() -> None:
    assert crc16_kermit(b"123456789") == 0x2189


def test_sml_x25_value_is_the_byte_swapped_crc() -> None:
    assert sml_crc(b"123456789") == 0x6E90
    assert sml_crc(b"123456789", CrcKind.KERMIT) == 0x2189


@pytest.mark.parametrize("message", [
    pytest.param("7605032b18116200620072630201710163fa3600", id="crc1"),
    pytest.param("7605171756bd6200620072630201710163170f00", id="crc2"),
    pytest.param("760700070615fce7620062007263010176010107000702e053ce0b0901454d4800004895f70101"
                 "6333aa00", id="crc3"),
    pytest.param("76051c414c02620062007263010176010102310b0a01445a47000282c0b07262016505471c2a62"
                 "0263f93800", id="crc4"),
    pytest.param("76040000016200620072650000010176010107000002dba23c0b0a01484c5902000424a0010163"
                 "945b00", id="crc5"),
])
def test_message_crc_vectors_from_smllib(message: str) -> None:
    data = bytes.fromhex(message)
    assert sml_crc(data[:-4]) == int.from_bytes(data[-3:-1], "big")


def _bitwise(data: bytes, init: int, xorout: int) -> int:
    crc = init
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ xorout


def test_fast_crc_equals_bitwise_definition() -> None:
    for n in (0, 1, 2, 7, 64, 513):
        data = os.urandom(n)
        assert crc16_x25(data) == _bitwise(data, 0xFFFF, 0xFFFF)
        assert crc16_kermit(data) == _bitwise(data, 0, 0)
