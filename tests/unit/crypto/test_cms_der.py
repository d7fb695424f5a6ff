"""The DER reader under imsys.crypto.cms: its inline fast paths (short and two common long
length forms) answer exactly as the general element reader does, results and errors alike."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imsys.core.errors import CmsRejected, Reason
from imsys.crypto import _cms_der as der

_TAGS = [der.INTEGER, der.OCTET_STRING, der.OID, der.SEQUENCE, der.SET, der.CTX_0,
         der.CTX_0_PRIMITIVE]


def _general_typed(buf: bytes, pos: int, end: int, tag: int) -> tuple[bytes, int, int, int]:
    start, stop, after = _general_take(buf, pos, end, tag)
    oid_start, oid_stop, start = _general_take(buf, start, stop, der.OID)
    return buf[oid_start:oid_stop], start, stop, after


@st.composite
def _elements(draw: st.DrawFn) -> tuple[bytes, int, int, int]:
    """``(buffer, pos, end, tag)``: an element header at ``pos`` in every length form, its
    length at, around or far from the contents that follow, and ``end`` at, around or far
    from where the element ends; mostly with the tag that will be asked for."""
    tag = draw(st.sampled_from(_TAGS))
    got = tag if draw(st.integers(0, 3)) else draw(st.integers(0, 255))
    size = draw(st.integers(0, 300))
    n = max(0, size + draw(st.sampled_from([0, 0, 0, -1, 1, 200])))
    form = draw(st.sampled_from(["short", "0x81", "0x82", "0x83", "0x80", "0x85", "cut"]))
    if form == "short":
        length = bytes((n & 0x7F,))
    elif form == "0x81":
        length = bytes((0x81, n & 0xFF))
    elif form == "0x82":
        length = bytes((0x82,)) + (n & 0xFFFF).to_bytes(2, "big")
    elif form == "0x83":
        length = bytes((0x83,)) + n.to_bytes(3, "big")
    elif form == "0x80":
        length = b"\x80"
    elif form == "0x85":
        length = b"\x85" + n.to_bytes(5, "big")
    else:
        length = draw(st.sampled_from([b"", b"\x81", b"\x82", b"\x82\x01"]))
    prefix = draw(st.binary(max_size=3))
    contents = draw(st.binary(min_size=size, max_size=size))
    if size >= 2 and draw(st.booleans()):  # begins with an OBJECT IDENTIFIER, for typed()
        oid_size = max(0, size - 2 + draw(st.sampled_from([0, -1, 1, -5, -size])))
        contents = bytes((der.OID, oid_size & 0xFF)) + contents[2:]
    if form == "0x80" and draw(st.booleans()):
        contents = bytes((der.OCTET_STRING, 1, 0)) + b"\x00\x00"
    suffix = draw(st.binary(max_size=3))
    buf = prefix + bytes((got,)) + length + contents + suffix
    pos = len(prefix)
    element_end = pos + 1 + len(length) + len(contents)
    end = draw(st.sampled_from([len(buf), element_end, element_end - 1, element_end + 1,
                                pos, pos + 1, pos + 2, pos + 3]))
    return buf, pos, max(pos, min(end, len(buf))), tag


def _outcome(read: Callable[[], object]) -> tuple[object, ...]:
    try:
        return ("read", read())
    except CmsRejected as exc:
        return ("refused", exc.reason, exc.message, exc.context)


def _general_take(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int, int]:
    got, start, stop, after = der._element(buf, pos, end, 0)
    if got != tag:
        raise CmsRejected(Reason.MALFORMED, f"expected tag 0x{tag:02x}, found 0x{got:02x}",
                          offset=pos)
    return start, stop, after


@settings(max_examples=1500, deadline=None, database=None)
@given(case=_elements())
def test_fast_paths_answer_as_the_general_reader(case: tuple[bytes, int, int, int]) -> None:
    buf, pos, end, tag = case
    general = _outcome(lambda: _general_take(buf, pos, end, tag))
    assert _outcome(lambda: der.take(buf, pos, end, tag)) == general
    if general[0] == "read":
        start, stop, after = general[1]  # type: ignore[misc]
        general = ("read", (buf[start:stop], after))
    assert _outcome(lambda: der.value(buf, pos, end, tag)) == general
    assert _outcome(lambda: der.typed(buf, pos, end, tag)) == _outcome(
        lambda: _general_typed(buf, pos, end, tag))
    assert _outcome(lambda: der.element(buf, pos, end)) == _outcome(
        lambda: der._element(buf, pos, end, 0))


@pytest.mark.parametrize(("encoding", "bounds", "octets"), [
    (b"\x04\x03abc", (2, 5, 5), b"abc"),
    (b"\x04\x81\x03abc", (3, 6, 6), b"abc"),
    (b"\x04\x82\x00\x03abc", (4, 7, 7), b"abc"),
    (b"\x04\x83\x00\x00\x03abc", (5, 8, 8), b"abc"),
    # BER: constructed, indefinite length; the contents end where the end-of-contents begins
    (b"\x24\x80\x04\x01a\x04\x02bc\x00\x00", (2, 9, 11), b"abc"),
])
def test_take_and_octets_read_every_length_form(encoding: bytes, bounds: tuple[int, int, int],
                                                octets: bytes) -> None:
    assert der.take(encoding, 0, len(encoding), encoding[0]) == bounds
    assert der.octets(encoding, 0, len(encoding)) == (octets, len(encoding))


@pytest.mark.parametrize(("encoding", "end", "reason"), [
    (b"\x04\x05abc", None, Reason.TRUNCATED),  # runs past the input
    (b"\x04\x82\x01", None, Reason.TRUNCATED),  # the length field itself is cut
    (b"\x04\x03abc", 4, Reason.MALFORMED),  # runs past its enclosing element
    (b"\x04\x81\x03abc", 5, Reason.MALFORMED),
    (b"\x04\x82\x00\x03abc", 6, Reason.MALFORMED),
    (b"\x02\x01\x00", None, Reason.MALFORMED),  # another tag
])
def test_take_refuses_overruns_and_wrong_tags(encoding: bytes, end: int | None,
                                              reason: Reason) -> None:
    with pytest.raises(CmsRejected) as exc:
        der.take(encoding, 0, len(encoding) if end is None else end, der.OCTET_STRING)
    assert exc.value.reason is reason


def test_positions_thread_through_a_sequence() -> None:
    encoding = der.sequence(der.integer(3), der.tlv(der.OID, b"\x2a\x03"),
                            der.octet_string(b"x" * 200), der.tlv(der.CTX_1, b""))
    start, end, after = der.take(encoding, 0, len(encoding), der.SEQUENCE)
    assert after == len(encoding)
    number, pos = der.small_int(encoding, start, end)
    oid, pos = der.value(encoding, pos, end, der.OID)
    octets, pos = der.octets(encoding, pos, end)
    assert (number, oid, octets) == (3, b"\x2a\x03", b"x" * 200)
    assert der.skip(encoding, pos, end, der.CTX_0) == pos  # absent OPTIONAL
    pos = der.skip(encoding, pos, end, der.CTX_1)
    assert pos == end
    assert str(der.trailing(7)) == str(CmsRejected(Reason.MALFORMED, "unexpected data after "
                                                                     "the last element"))
