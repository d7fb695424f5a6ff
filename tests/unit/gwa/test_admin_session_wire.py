"""``imsys-admin-session/1`` sans-io core: messages, HTTP framing, the gateway's state machine."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from imsys.core.errors import UsageError
from imsys.wire.admin_session import (
    CMS_MEDIA_TYPE,
    COMMAND_PATH,
    HELLO_PATH,
    JSON_MEDIA_TYPE,
    RESULT_PATH,
    Ack,
    AlarmSummary,
    ClientSession,
    Hello,
    HttpParser,
    Refusal,
    SessionReason,
    SessionRejected,
    SessionStep,
    Welcome,
    build_request,
    build_response,
)

NOW = datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC)


def hello() -> Hello:
    return Hello("EIMS0012345678", "personalisation", "imsys-0.1.0",
                 AlarmSummary(1, 2, datetime(2025, 3, 1, 11, 0, tzinfo=UTC)), NOW)


def test_hello_is_canonical_json_and_round_trips() -> None:
    data = hello().encode()
    assert data == (b'{"alarms":{"errors":1,"last_error_at":"2025-03-01T11:00:00Z","warnings":2},'
                    b'"firmware_version":"imsys-0.1.0","gateway_id":"EIMS0012345678",'
                    b'"phase":"personalisation","sent_at":"2025-03-01T12:00:05Z","v":1}')
    assert Hello.decode(data) == hello()


@pytest.mark.parametrize("data", [
    b'{"v":1}',
    b'{"alarms":{"errors":1,"last_error_at":null,"warnings":2},"firmware_version":"x",'
    b'"gateway_id":"EIMS0012345678","phase":"personalisation","sent_at":"2025-03-01T12:00:05Z",'
    b'"v":2}',
    b'{"alarms":{"errors":-1,"last_error_at":null,"warnings":2},"firmware_version":"x",'
    b'"gateway_id":"EIMS0012345678","phase":"personalisation","sent_at":"2025-03-01T12:00:05Z",'
    b'"v":1}',
    b'{"v": 1, "gateway_id": "A"}',
    b"\xff\xfe",
    b"[]",
])
def test_malformed_hellos_are_refused(data: bytes) -> None:
    with pytest.raises(SessionRejected) as refused:
        Hello.decode(data)
    assert refused.value.reason is SessionReason.MALFORMED


def test_non_canonical_hello_is_refused() -> None:
    spaced = hello().encode().replace(b'"v":1', b'"v": 1')
    with pytest.raises(SessionRejected):
        Hello.decode(spaced)


def test_welcome_refusal_ack_round_trip() -> None:
    welcome = Welcome(uuid.uuid4(), "GWA-1", NOW, 3)
    assert Welcome.decode(welcome.encode()) == welcome
    refusal = Refusal("replayed", "sequence number not above the last accepted one")
    assert Refusal.decode(refusal.encode()) == refusal
    ack = Ack(uuid.uuid4())
    assert Ack.decode(ack.encode()) == ack
    with pytest.raises(UsageError):
        Refusal("Not A Token")


def test_parser_frames_split_and_pipelined_requests() -> None:
    first = build_request("POST", HELLO_PATH, host="gwa", body=b"{}",
                          content_type=JSON_MEDIA_TYPE)
    second = build_request("GET", COMMAND_PATH, host="gwa")
    parser = HttpParser("request")
    data = first + second
    messages = []
    for i in range(0, len(data), 7):  # arbitrary fragmentation
        messages += parser.feed(data[i:i + 7])
    assert [(m.method, m.target, m.body) for m in messages] == [
        ("POST", HELLO_PATH, b"{}"), ("GET", COMMAND_PATH, b"")]
    assert messages[0].media_type == JSON_MEDIA_TYPE


@pytest.mark.parametrize(("data", "reason"), [
    (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", SessionReason.MALFORMED),
    (b"POST /x HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", SessionReason.TOO_LARGE),
    (b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
     SessionReason.MALFORMED),
    (b"GET x HTTP/1.1\r\n\r\n", SessionReason.MALFORMED),
    (b"GET /x HTTP/1.1\r\n" + b"A: " + b"b" * 9000, SessionReason.TOO_LARGE),
])
def test_parser_refuses_what_it_does_not_frame(data: bytes, reason: SessionReason) -> None:
    parser = HttpParser("request")
    with pytest.raises(SessionRejected) as refused:
        parser.feed(data)
    assert refused.value.reason is reason
    with pytest.raises(SessionRejected):  # unusable afterwards
        parser.feed(b"")


def _response(data: bytes) -> object:
    return HttpParser("response").feed(data)[0]


def test_client_session_walks_the_sequence() -> None:
    session = ClientSession("gwa")
    assert session.start(hello()).startswith(b"POST /admin/v1/hello HTTP/1.1\r\n")
    welcome = Welcome(uuid.uuid4(), "GWA-1", NOW, 1)
    assert session.receive(_response(build_response(200, welcome.encode(),
                                                    content_type=JSON_MEDIA_TYPE))) == welcome
    assert session.next_request().startswith(b"GET /admin/v1/command ")
    command = session.receive(_response(build_response(200, b"\x30\x00",
                                                       content_type=CMS_MEDIA_TYPE)))
    assert command == b"\x30\x00" and session.step is SessionStep.ANSWER
    with pytest.raises(UsageError):
        session.next_request()  # the command must be answered first
    assert session.answer(b"result").startswith(f"POST {RESULT_PATH} ".encode())
    ack = Ack(uuid.uuid4())
    assert session.receive(_response(build_response(200, ack.encode(),
                                                    content_type=JSON_MEDIA_TYPE))) == ack
    session.next_request()
    assert session.receive(_response(build_response(204))) is None
    assert session.step is SessionStep.DONE and session.commands == 1


def test_client_session_refuses_an_unexpected_answer() -> None:
    session = ClientSession("gwa")
    session.start(hello())
    with pytest.raises(SessionRejected) as refused:
        session.receive(_response(build_response(403, b"wrong-gateway\n",
                                                 content_type="text/plain")))
    assert refused.value.reason is SessionReason.UNEXPECTED
