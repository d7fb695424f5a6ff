"""The EMT's small HTTP/1.1 reader: bounded, strict, and failing only with its own error."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imsys.emt.server import _HttpError, _read_request, _Request


def read(data: bytes, max_body: int = 1000, limit: int = 2048) -> _Request | None:
    async def scenario() -> _Request | None:
        reader = asyncio.StreamReader(limit=limit)
        reader.feed_data(data)
        reader.feed_eof()
        return await _read_request(reader, max_body)

    return asyncio.run(scenario())


def status_of(data: bytes, **kw: int) -> int:
    with pytest.raises(_HttpError) as info:
        read(data, **kw)
    return info.value.status


def test_post_with_body_and_keep_alive() -> None:
    request = read(b"POST /deliveries/v1 HTTP/1.1\r\nContent-Type: application/cms\r\n"
                   b"Content-Length: 3\r\n\r\nabc")
    assert request is not None
    assert (request.method, request.target, request.body, request.keep_alive) == (
        "POST", "/deliveries/v1", b"abc", True)
    assert request.headers["content-type"] == "application/cms"


def test_connection_close_and_http10() -> None:
    assert read(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive is False  # type: ignore[union-attr]
    assert read(b"GET / HTTP/1.0\r\n\r\n").keep_alive is False  # type: ignore[union-attr]
    assert read(b"") is None  # the client closed between requests


@pytest.mark.parametrize("data, status", [
    (b"POST / HTTP/1.1\r\n\r\n", 411),
    (b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    (b"GET / HTTP/2\r\n\r\n", 400),
    (b"GET /\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n", 400),  # truncated head
], ids=["no-length", "too-large", "chunked", "negative", "two-lengths", "http2", "http09",
        "no-colon", "not-ascii", "truncated"])
def test_bad_requests_are_refused(data: bytes, status: int) -> None:
    assert status_of(data) == status


def test_header_bound() -> None:
    assert status_of(b"GET / HTTP/1.1\r\nX: " + b"a" * 5000 + b"\r\n\r\n", limit=1024) == 431


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_fail_only_with_http_error(data: bytes) -> None:
    # IncompleteReadError: a body shorter than its Content-Length (the peer closed early),
    # which the connection handler treats as a closed connection
    with contextlib.suppress(_HttpError, asyncio.IncompleteReadError):
        read(data)
