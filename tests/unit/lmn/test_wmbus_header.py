"""Transport-header round trips: what is encoded decodes to an equal header."""

from __future__ import annotations

from imsys.lmn.wmbus import SecurityMode
from imsys.lmn.wmbus.transport import TransportHeader


def test_mode7_header_without_explicit_extension_equals_its_decoded_form() -> None:
    header = TransportHeader(ci=0x7A, access_number=5, mode=SecurityMode.AES_CBC_NO_IV)
    assert header.config_ext == 0x10
    assert header == TransportHeader(ci=0x7A, access_number=5, mode=SecurityMode.AES_CBC_NO_IV,
                                     config_ext=0x10)
    assert header.to_bytes(2)[-1] == 0x10


def test_other_modes_carry_no_extension() -> None:
    header = TransportHeader(ci=0x7A, mode=SecurityMode.AES_CBC_IV)
    assert header.config_ext is None
    assert len(header.to_bytes(2)) == 5
