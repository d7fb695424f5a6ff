"""Administration commands (imsys-admin-command/1): documents, CMS envelopes, the gateway's
verifier with replay protection, and the signed results."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imsys.core.clock import SimulatedClock
from imsys.core.errors import Rejected, UsageError
from imsys.crypto import SoftwareKey, cms
from imsys.wire.command import (
    COMMAND_TABLE,
    Command,
    CommandGroup,
    CommandReason,
    CommandRejected,
    CommandResult,
    CommandType,
    CommandVerifier,
    MemorySequenceStore,
    ResultReason,
    ResultRejected,
    ResultStatus,
    issue_command,
    issue_result,
    verify_result,
)

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
Pair = tuple[SoftwareKey, x509.Certificate]
GATEWAY = "EABC0012345678"
GWA = "GWA-One"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def gwa(issue: Issue) -> Pair:
    return issue("gwa-sig", GWA)


@pytest.fixture(scope="module")
def other_gwa(issue: Issue) -> Pair:
    return issue("gwa-sig", "GWA-Two")


@pytest.fixture(scope="module")
def gateway_enc(issue: Issue) -> Pair:
    return issue("gateway-enc", GATEWAY)


@pytest.fixture(scope="module")
def other_gateway_enc(issue: Issue) -> Pair:
    return issue("gateway-enc", "EABC0099999999")


@pytest.fixture(scope="module")
def gateway_sig(issue: Issue) -> Pair:
    return issue("gateway-sig", GATEWAY)


@pytest.fixture(scope="module")
def gwa_enc(issue: Issue) -> Pair:
    return issue("gwa-enc", GWA)


def command(sequence: int = 1, type: CommandType = CommandType.STATUS_QUERY,
            **overrides: Any) -> Command:
    fields: dict[str, Any] = dict(
        command_id=uuid.uuid4(), gateway_id=GATEWAY, administrator_id=GWA, sequence=sequence,
        issued_at=NOW, not_after=NOW + timedelta(hours=1), type=type, parameters={})
    fields.update(overrides)
    return Command(**fields)


def verifier(gwa: Pair, clock: SimulatedClock | None = None, **kwargs: Any) -> CommandVerifier:
    return CommandVerifier(GATEWAY, gwa[1], clock or SimulatedClock(NOW), **kwargs)


def rejection(v: CommandVerifier, data: bytes, enc: Pair | None = None) -> CommandReason:
    with pytest.raises(CommandRejected) as info:
        v.verify(data, *(enc or (None, None)))
    return info.value.reason


# ------------------------------------------------------------------------- command set


def test_command_table_covers_every_type_and_every_group() -> None:
    assert set(COMMAND_TABLE) == set(CommandType)
    assert {t.group for t in CommandType} == set(CommandGroup)
    secret = {t for t in CommandType if t.carries_secrets}
    assert secret == {CommandType.METER_REGISTER, CommandType.CONSUMER_CREDENTIALS_SET,
                      CommandType.KEY_INSTALL}
    for t in CommandType:
        assert t.value.split(".")[0] == t.group.value


def test_command_set_covers_the_administration_activities_of_the_seed() -> None:
    values = {t.value for t in CommandType}
    for needed in ("device.meter.register", "device.cls.register", "device.display.register",
                   "device.assign", "consumer.create", "profile.communication.install",
                   "profile.evaluation.activate", "key.certificate.renew", "key.deactivate",
                   "time.service.configure", "monitoring.self-test", "monitoring.log.system",
                   "monitoring.log.calibration", "wakeup.configure", "firmware.update"):
        assert needed in values


# ------------------------------------------------------------------------- documents


def test_command_document_is_canonical_json() -> None:
    c = command(parameters={"profile": {"id": "CP-1", "b": [1, 2]}, "a": True})
    encoded = c.encode()
    obj = json.loads(encoded)
    assert obj["v"] == 1 and obj["type"] == "monitoring.status"
    assert obj["issued_at"] == "2025-03-01T12:00:00Z" and obj["sequence"] == 1
    assert encoded == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    assert Command.decode(encoded) == c


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53)
                     | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(sequence=st.integers(1, 2**63 - 1), type=st.sampled_from(list(CommandType)),
       parameters=st.dictionaries(st.text(max_size=8), _json, max_size=5),
       issued_at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                              timezones=st.just(UTC)),
       seconds=st.integers(1, 10**7))
def test_command_document_round_trips(sequence: int, type: CommandType,
                                      parameters: dict[str, Any], issued_at: datetime,
                                      seconds: int) -> None:
    c = Command(uuid.uuid4(), GATEWAY, GWA, sequence, issued_at,
                issued_at + timedelta(seconds=seconds), type, parameters)
    assert Command.decode(c.encode()) == c


@pytest.mark.parametrize("mutate", [
    lambda o: o.pop("sequence"),
    lambda o: o.update(extra=1),
    lambda o: o.update(v=2),
    lambda o: o.update(sequence=0),
    lambda o: o.update(sequence=True),
    lambda o: o.update(sequence="7"),
    lambda o: o.update(command_id="not-a-uuid"),
    lambda o: o.update(command_id=o["command_id"].upper()),
    lambda o: o.update(issued_at="2025-03-01 12:00:00"),
    lambda o: o.update(not_after=o["issued_at"]),
    lambda o: o.update(parameters=[1]),
    lambda o: o.update(gateway_id=""),
], ids=["missing", "extra-key", "version", "sequence-0", "sequence-bool", "sequence-str",
        "bad-uuid", "upper-uuid", "bad-time", "not-after", "parameters-list", "empty-id"])
def test_command_document_rejects_malformed(mutate: Callable[[dict[str, Any]], None]) -> None:
    obj = json.loads(command().encode())
    mutate(obj)
    data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(CommandRejected) as info:
        Command.decode(data)
    assert info.value.reason is CommandReason.MALFORMED


@pytest.mark.parametrize("data", [
    b"", b"[]", b"{", b"\xff", b'{"v":NaN}',
    b'{"a":1,"a":1}',
    command().encode().replace(b",", b", ", 1),  # not canonical
    command().encode() + b"\n",
])
def test_command_document_rejects_non_json_and_non_canonical(data: bytes) -> None:
    with pytest.raises(CommandRejected) as info:
        Command.decode(data)
    assert info.value.reason is CommandReason.MALFORMED


def test_command_construction_refuses_bad_values() -> None:
    with pytest.raises(UsageError):
        command(issued_at=NOW.replace(tzinfo=None))
    with pytest.raises(UsageError):
        command(type="no.such.command")
    with pytest.raises(UsageError):
        command(parameters={"x": float("nan")})
    with pytest.raises(UsageError):
        command(parameters={1: "int key"})


# ------------------------------------------------------------------------- verifier


def test_command_signed_by_the_current_administrator_is_accepted(gwa: Pair) -> None:
    c = command(parameters={"profile_id": "CP-1"}, type=CommandType.EVALUATION_PROFILE_DELETE)
    data = issue_command(c, *gwa)
    assert verifier(gwa).verify(data) == c


def test_command_sealed_for_the_gateway_is_accepted(gwa: Pair, gateway_enc: Pair) -> None:
    c = command(type=CommandType.KEY_INSTALL, parameters={"meter": "1EMH0012345678",
                                                          "key": "00" * 16})
    data = issue_command(c, *gwa, gateway_enc_certificate=gateway_enc[1])
    assert b"00000000" not in data  # the key travels encrypted
    assert verifier(gwa).verify(data, *gateway_enc) == c


def test_command_signed_by_another_gwa_is_rejected(gwa: Pair, other_gwa: Pair) -> None:
    data = issue_command(command(), *other_gwa)  # a valid GWA, but not ours
    assert rejection(verifier(gwa), data) is CommandReason.SIGNER_NOT_CURRENT_ADMINISTRATOR


def test_command_sealed_and_signed_by_another_gwa_is_rejected(gwa: Pair, other_gwa: Pair,
                                                              gateway_enc: Pair) -> None:
    data = issue_command(command(), *other_gwa, gateway_enc_certificate=gateway_enc[1])
    assert rejection(verifier(gwa), data, gateway_enc) \
        is CommandReason.SIGNER_NOT_CURRENT_ADMINISTRATOR


def test_command_naming_another_administrator_is_rejected(gwa: Pair) -> None:
    data = issue_command(command(administrator_id="GWA-Two"), *gwa)
    assert rejection(verifier(gwa), data) is CommandReason.SIGNER_NOT_CURRENT_ADMINISTRATOR


def test_command_for_another_gateway_is_rejected_as_wrong_gateway(gwa: Pair) -> None:
    data = issue_command(command(gateway_id="EABC0099999999"), *gwa)
    assert rejection(verifier(gwa), data) is CommandReason.WRONG_GATEWAY


def test_command_encrypted_for_another_gateway_is_rejected_as_wrong_gateway(
        gwa: Pair, gateway_enc: Pair, other_gateway_enc: Pair) -> None:
    data = issue_command(command(), *gwa, gateway_enc_certificate=other_gateway_enc[1])
    assert rejection(verifier(gwa), data, gateway_enc) is CommandReason.WRONG_GATEWAY


def test_command_rejects_replayed_same_bytes(gwa: Pair) -> None:
    v = verifier(gwa)
    data = issue_command(command(sequence=5), *gwa)
    v.verify(data)
    assert rejection(v, data) is CommandReason.REPLAYED


def test_command_rejects_replayed_lower_sequence(gwa: Pair) -> None:
    v = verifier(gwa)
    v.verify(issue_command(command(sequence=5), *gwa))
    assert rejection(v, issue_command(command(sequence=5), *gwa)) is CommandReason.REPLAYED
    assert rejection(v, issue_command(command(sequence=4), *gwa)) is CommandReason.REPLAYED
    assert v.verify(issue_command(command(sequence=9), *gwa)).sequence == 9  # gaps allowed


def test_command_rejects_replayed_command_id(gwa: Pair) -> None:
    v = verifier(gwa)
    first = command(sequence=1)
    v.verify(issue_command(first, *gwa))
    again = command(sequence=2, command_id=first.command_id)
    assert rejection(v, issue_command(again, *gwa)) is CommandReason.REPLAYED


def test_command_replay_state_lives_in_the_sequence_store(gwa: Pair) -> None:
    store = MemorySequenceStore()
    data = issue_command(command(sequence=3), *gwa)
    verifier(gwa, sequence_store=store).verify(data)
    assert store.last_sequence(GATEWAY) == 3
    # a new verifier (gateway restart) over the same persisted store still refuses the replay
    assert rejection(verifier(gwa, sequence_store=store), data) is CommandReason.REPLAYED


def test_command_rejected_commands_leave_the_sequence_untouched(gwa: Pair) -> None:
    store = MemorySequenceStore()
    v = verifier(gwa, sequence_store=store)
    expired = command(sequence=7, issued_at=NOW - timedelta(hours=2),
                      not_after=NOW - timedelta(hours=1))
    assert rejection(v, issue_command(expired, *gwa)) is CommandReason.EXPIRED
    assert store.last_sequence(GATEWAY) == 0
    assert v.verify(issue_command(command(sequence=1), *gwa)).sequence == 1


def test_command_rejects_expired(gwa: Pair) -> None:
    c = command(issued_at=NOW - timedelta(hours=1), not_after=NOW - timedelta(seconds=30))
    assert rejection(verifier(gwa), issue_command(c, *gwa)) is CommandReason.EXPIRED
    c = command(issued_at=NOW - timedelta(hours=1), not_after=NOW - timedelta(seconds=29))
    assert verifier(gwa).verify(issue_command(c, *gwa))  # within the clock skew


def test_command_rejects_not_yet_valid(gwa: Pair) -> None:
    c = command(issued_at=NOW + timedelta(seconds=31), not_after=NOW + timedelta(hours=1))
    assert rejection(verifier(gwa), issue_command(c, *gwa)) is CommandReason.NOT_YET_VALID


def test_command_rejects_malformed(gwa: Pair) -> None:
    assert rejection(verifier(gwa), b"\x30\x03\x02\x01\x01") is CommandReason.MALFORMED
    signed_garbage = cms.sign(b'{"v":1}', gwa[0], gwa[1])
    assert rejection(verifier(gwa), signed_garbage) is CommandReason.MALFORMED


def test_command_rejects_malformed_when_too_large(gwa: Pair) -> None:
    data = issue_command(command(parameters={"blob": "x" * 5000}), *gwa)
    v = verifier(gwa, max_size=4096)
    assert rejection(v, data) is CommandReason.MALFORMED


def test_command_rejects_sealed_without_a_key_to_open_it(gwa: Pair, gateway_enc: Pair) -> None:
    data = issue_command(command(), *gwa, gateway_enc_certificate=gateway_enc[1])
    assert rejection(verifier(gwa), data) is CommandReason.MALFORMED


def test_command_rejects_unknown_command(gwa: Pair) -> None:
    obj = json.loads(command().encode())
    obj["type"] = "device.teleport"
    data = cms.sign(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode(), *gwa,
                    signing_time=NOW)
    assert rejection(verifier(gwa), data) is CommandReason.UNKNOWN_COMMAND


def test_command_rejects_not_encrypted_secret_command(gwa: Pair) -> None:
    c = command(type=CommandType.CONSUMER_CREDENTIALS_SET,
                parameters={"consumer": "c-1", "password": "hunter2"})
    with pytest.raises(UsageError):
        issue_command(c, *gwa)  # the GWA side refuses to send it only signed …
    data = cms.sign(c.encode(), *gwa, signing_time=NOW)  # … a faulty GWA does anyway
    assert rejection(verifier(gwa), data) is CommandReason.NOT_ENCRYPTED


def test_command_rejects_bad_signature(gwa: Pair) -> None:
    data = bytearray(issue_command(command(), *gwa))
    signature_start = len(data) - 40  # inside the ECDSA signature value at the end
    data[signature_start] ^= 0x01
    assert rejection(verifier(gwa), bytes(data)) is CommandReason.BAD_SIGNATURE


def test_command_rejects_bad_signature_on_tampered_content(gwa: Pair) -> None:
    data = issue_command(command(type=CommandType.SELF_TEST), *gwa)
    tampered = data.replace(b"monitoring.self-test", b"monitoring.self-tesT")
    assert tampered != data
    assert rejection(verifier(gwa), tampered) is CommandReason.BAD_SIGNATURE


def test_command_rejects_bad_signature_on_tampered_ciphertext(gwa: Pair,
                                                              gateway_enc: Pair) -> None:
    data = bytearray(issue_command(command(), *gwa, gateway_enc_certificate=gateway_enc[1]))
    data[-30] ^= 0x01  # inside the GCM tag / ciphertext
    assert rejection(verifier(gwa), bytes(data), gateway_enc) in (
        CommandReason.BAD_SIGNATURE, CommandReason.MALFORMED)


def test_command_rejections_are_rejected_subclasses() -> None:
    assert issubclass(CommandRejected, Rejected) and issubclass(ResultRejected, Rejected)


@FUZZ
@given(data=st.binary(max_size=600))
def test_command_random_bytes_only_raise_rejected(gwa: Pair, gateway_enc: Pair,
                                                  data: bytes) -> None:
    with contextlib.suppress(CommandRejected):
        verifier(gwa).verify(data, *gateway_enc)


@pytest.fixture(scope="module")
def envelopes(gwa: Pair, gateway_enc: Pair) -> tuple[bytes, bytes]:
    """A signed and a sealed command to mutate."""
    secret = command(type=CommandType.KEY_INSTALL, parameters={"k": "v"})
    return (issue_command(command(), *gwa),
            issue_command(secret, *gwa, gateway_enc_certificate=gateway_enc[1]))


@FUZZ
@given(position=st.integers(min_value=0), value=st.integers(0, 255))
def test_command_mutated_envelopes_only_raise_rejected(gwa: Pair, gateway_enc: Pair,
                                                       envelopes: tuple[bytes, bytes],
                                                       position: int, value: int) -> None:
    for envelope in envelopes:
        data = bytearray(envelope)
        data[position % len(data)] = value
        with contextlib.suppress(CommandRejected):
            verifier(gwa).verify(bytes(data), *gateway_enc)


# ------------------------------------------------------------------------- results


def result(command_id: uuid.UUID, **overrides: Any) -> CommandResult:
    fields: dict[str, Any] = dict(command_id=command_id, gateway_id=GATEWAY,
                                  status=ResultStatus.OK, completed_at=NOW,
                                  details={"self_test": "passed"})
    fields.update(overrides)
    return CommandResult(**fields)


def test_command_result_round_trips_and_verifies(gateway_sig: Pair) -> None:
    cid = uuid.uuid4()
    r = result(cid)
    assert CommandResult.decode(r.encode()) == r
    assert verify_result(issue_result(r, *gateway_sig), gateway_sig[1], cid) == r


def test_command_result_sealed_for_the_gwa_verifies(gateway_sig: Pair, gwa_enc: Pair) -> None:
    cid = uuid.uuid4()
    r = result(cid, status=ResultStatus.FAILED, details={"error": "profile unknown"})
    data = issue_result(r, *gateway_sig, gwa_enc_certificate=gwa_enc[1])
    assert verify_result(data, gateway_sig[1], cid, gwa_enc_key=gwa_enc[0],
                         gwa_enc_cert=gwa_enc[1]) == r


def test_command_result_for_another_command_is_rejected(gateway_sig: Pair) -> None:
    data = issue_result(result(uuid.uuid4()), *gateway_sig)
    with pytest.raises(ResultRejected) as info:
        verify_result(data, gateway_sig[1], uuid.uuid4())
    assert info.value.reason is ResultReason.WRONG_COMMAND


def test_command_result_naming_another_gateway_is_rejected(gateway_sig: Pair) -> None:
    cid = uuid.uuid4()
    data = issue_result(result(cid, gateway_id="EABC0099999999"), *gateway_sig)
    with pytest.raises(ResultRejected) as info:
        verify_result(data, gateway_sig[1], cid)
    assert info.value.reason is ResultReason.WRONG_COMMAND


def test_command_result_signed_by_another_key_is_rejected(gateway_sig: Pair,
                                                          gwa: Pair) -> None:
    cid = uuid.uuid4()
    data = cms.sign(result(cid).encode(), *gwa)
    with pytest.raises(ResultRejected) as info:
        verify_result(data, gateway_sig[1], cid)
    assert info.value.reason is ResultReason.WRONG_SIGNER


def test_command_result_rejects_bad_signature_and_malformed(gateway_sig: Pair) -> None:
    cid = uuid.uuid4()
    data = issue_result(result(cid), *gateway_sig).replace(b"passed", b"failed")
    with pytest.raises(ResultRejected) as info:
        verify_result(data, gateway_sig[1], cid)
    assert info.value.reason is ResultReason.BAD_SIGNATURE
    for bad in (b"junk", cms.sign(b"{}", *gateway_sig)):
        with pytest.raises(ResultRejected) as info:
            verify_result(bad, gateway_sig[1], cid)
        assert info.value.reason is ResultReason.MALFORMED


@FUZZ
@given(data=st.binary(max_size=400))
def test_command_result_random_bytes_only_raise_rejected(gateway_sig: Pair,
                                                         data: bytes) -> None:
    with contextlib.suppress(ResultRejected):
        verify_result(data, gateway_sig[1], uuid.uuid4())
