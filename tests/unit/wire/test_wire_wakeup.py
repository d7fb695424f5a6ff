"""Wake-up packets (imsys-wakeup/1): the DER format, the signature and the receiver's checks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import algos, core
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imsys.core.clock import SimulatedClock
from imsys.core.errors import Rejected, UsageError
from imsys.crypto import SoftwareKey
from imsys.crypto.primitives import ecdsa_verify
from imsys.wire.wakeup import (
    MAX_WAKEUP_SIZE,
    MemoryReplayCache,
    NonceStatus,
    SignedWakeup,
    WakeupPacket,
    WakeupReason,
    WakeupReceiver,
    WakeupRejected,
    make_wakeup,
    sign_wakeup,
)

Issue = Callable[..., tuple[SoftwareKey, x509.Certificate]]
Pair = tuple[SoftwareKey, x509.Certificate]
GATEWAY = "EABC0012345678"
GWA = "GWA-One"
GWA_ADDRESS = "gwa-one.example:8443"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NONCE = bytes(range(16))
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

#: Vector: WakeupPacket(EABC0012345678, GWA-One, 2025-03-01T12:00:00Z, +2 min, nonce 00..0f).
#: Made by this module; checked independently below with asn1crypto's parser.
VECTOR = bytes.fromhex(
    "30500201010c0e45414243303031323334353637380c074757412d4f6e65180f3230323530333031"
    "3132303030305a180f32303235303330313132303230305a0410000102030405060708090a0b0c0d0e0f")


@pytest.fixture(scope="module")
def gwa(issue: Issue) -> Pair:
    return issue("gwa-sig", GWA)


@pytest.fixture(scope="module")
def other_gwa(issue: Issue) -> Pair:
    return issue("gwa-sig", "GWA-Two")


def receiver(gwa: Pair, clock: SimulatedClock | None = None,
             **kwargs: object) -> WakeupReceiver:
    return WakeupReceiver(GATEWAY, gwa[1], GWA_ADDRESS, clock or SimulatedClock(NOW),
                          **kwargs)  # type: ignore[arg-type]


def wakeup(key: SoftwareKey, *, gateway: str = GATEWAY, administrator: str = GWA,
           issued_at: datetime = NOW, validity: timedelta = timedelta(minutes=2),
           nonce: bytes | None = None) -> bytes:
    return make_wakeup(gateway, administrator, key, issued_at=issued_at, validity=validity,
                       nonce=nonce)


def rejection(rx: WakeupReceiver, data: bytes) -> WakeupReason:
    with pytest.raises(WakeupRejected) as info:
        rx.accept(data)
    return info.value.reason


# ------------------------------------------------------------------------- format


def test_wakeup_packet_encodes_to_the_vector() -> None:
    packet = WakeupPacket(GATEWAY, GWA, NOW, NOW + timedelta(minutes=2), NONCE)
    assert packet.encode() == VECTOR
    assert WakeupPacket.decode(VECTOR) == packet


def test_wakeup_vector_parses_with_an_independent_der_reader() -> None:
    parsed = core.Sequence.load(VECTOR, strict=True)
    assert [parsed[i].native for i in range(6)] == [
        1, GATEWAY, GWA, NOW, NOW + timedelta(minutes=2), NONCE]
    assert isinstance(parsed[3], core.GeneralizedTime)


def test_signed_wakeup_is_der_with_ecdsa_matched_to_the_curve(gwa: Pair) -> None:
    data = wakeup(gwa[0], nonce=NONCE)
    outer = core.Sequence.load(data, strict=True)
    algorithm = algos.SignedDigestAlgorithm.load(outer[1].dump())
    assert algorithm["algorithm"].native == "sha256_ecdsa"
    assert algorithm["parameters"].native is None and len(algorithm.dump()) == 12
    signature = outer[2].cast(core.OctetBitString).native
    ecdsa_verify(gwa[1].public_key(), signature, outer[0].dump())
    assert outer[0].dump() == VECTOR
    assert len(data) < 200


def test_wakeup_p384_key_signs_with_sha384(issue: Issue) -> None:
    key, cert = issue("gwa-sig", "GWA-384", curve="brainpoolP384r1")
    data = wakeup(key, administrator="GWA-384")
    assert SignedWakeup.decode(data).hash_name == "sha384"
    rx = WakeupReceiver(GATEWAY, cert, GWA_ADDRESS, SimulatedClock(NOW))
    assert rx.accept(data).packet.administrator_id == "GWA-384"


def test_wakeup_largest_packet_fits_the_size_bound(issue: Issue) -> None:
    key, _ = issue("gwa-sig", "GWA-512", curve="brainpoolP512r1")
    data = make_wakeup("\u00e9" * 64, "\u20ac" * 42, key, issued_at=NOW)  # 128 + 126 octets
    assert len(data) < 600 < MAX_WAKEUP_SIZE
    with pytest.raises(UsageError):
        make_wakeup("\u00e9" * 65, GWA, key, issued_at=NOW)  # 130 octets


_ids = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Co", "Cn",
                                                    "Zs", "Cf")), min_size=1, max_size=32)
_times = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 30),
                      timezones=st.just(UTC))


@settings(max_examples=200, deadline=None)
@given(gateway=_ids, administrator=_ids, issued_at=_times,
       seconds=st.integers(min_value=1, max_value=86_400), nonce=st.binary(min_size=16,
                                                                           max_size=16))
def test_wakeup_packet_round_trips(gateway: str, administrator: str, issued_at: datetime,
                                   seconds: int, nonce: bytes) -> None:
    packet = WakeupPacket(gateway, administrator, issued_at,
                          issued_at + timedelta(seconds=seconds), nonce)
    encoded = packet.encode()
    assert WakeupPacket.decode(encoded) == packet
    signed = SignedWakeup(packet, "sha256", b"\x30\x06\x02\x01\x01\x02\x01\x01", encoded)
    again = SignedWakeup.decode(signed.encode())
    assert again == signed


def test_sign_wakeup_matches_make_wakeup(gwa: Pair) -> None:
    packet = WakeupPacket(GATEWAY, GWA, NOW, NOW + timedelta(minutes=2), NONCE)
    data = sign_wakeup(packet, gwa[0])
    assert SignedWakeup.decode(data).packet == packet
    assert receiver(gwa).accept(data).packet == packet


def test_make_wakeup_refuses_bad_arguments(gwa: Pair) -> None:
    with pytest.raises(UsageError):
        make_wakeup(GATEWAY, GWA, gwa[0], issued_at=NOW, validity=timedelta(0))
    with pytest.raises(UsageError):
        make_wakeup(GATEWAY, GWA, gwa[0], issued_at=NOW.replace(tzinfo=None))
    with pytest.raises(UsageError):
        make_wakeup("", GWA, gwa[0], issued_at=NOW)
    with pytest.raises(UsageError):
        make_wakeup(GATEWAY, GWA, gwa[0], issued_at=NOW, nonce=b"short")


def test_make_wakeup_draws_a_fresh_nonce_each_time(gwa: Pair) -> None:
    a, b = wakeup(gwa[0]), wakeup(gwa[0])
    assert SignedWakeup.decode(a).packet.nonce != SignedWakeup.decode(b).packet.nonce


# ------------------------------------------------------------------------- receiver


def test_wakeup_accepted_asks_to_connect_to_the_configured_gwa(gwa: Pair) -> None:
    decision = receiver(gwa).accept(wakeup(gwa[0], nonce=NONCE))
    assert decision.connect_to == GWA_ADDRESS
    assert decision.packet.nonce == NONCE and decision.packet.gateway_id == GATEWAY


def test_wakeup_rejects_too_large(gwa: Pair) -> None:
    data = wakeup(gwa[0]) + bytes(MAX_WAKEUP_SIZE)
    assert rejection(receiver(gwa), data) is WakeupReason.TOO_LARGE
    assert rejection(receiver(gwa, max_size=100), wakeup(gwa[0])) is WakeupReason.TOO_LARGE


def _resign(key: SoftwareKey, tbs: bytes, algorithm: bytes | None = None,
            unused_bits: int = 0) -> bytes:
    algorithm = algorithm or bytes.fromhex("300a06082a8648ce3d040302")
    signature = key.sign(tbs)
    bits = b"\x03" + bytes((len(signature) + 1, unused_bits)) + signature
    body = tbs + algorithm + bits
    return b"\x30" + bytes((0x81, len(body))) + body


@pytest.mark.parametrize("variant", [
    "empty", "garbage", "trailing-octet", "indefinite-length", "non-minimal-length",
    "version-2", "short-nonce", "not-after-before-issued", "bad-time", "bad-utf8",
    "unknown-algorithm", "algorithm-with-null-parameters", "unused-bits",
])
def test_wakeup_rejects_malformed(gwa: Pair, variant: str) -> None:
    key = gwa[0]
    good = wakeup(key, nonce=NONCE)
    tbs = VECTOR
    data = {
        "empty": b"",
        "garbage": b"\x30\x03abc",
        "trailing-octet": good + b"\x00",
        "indefinite-length": b"\x30\x80" + good[3:] + b"\x00\x00",
        "non-minimal-length": b"\x30\x82\x00" + good[2:],
        "version-2": _resign(key, tbs.replace(b"\x02\x01\x01", b"\x02\x01\x02", 1)),
        "short-nonce": _resign(key, b"\x30\x4f" + tbs[2:-18] + b"\x04\x0f" + NONCE[:15]),
        "not-after-before-issued": _resign(key, tbs.replace(b"20250301120200Z",
                                                            b"20250301115900Z")),
        "bad-time": _resign(key, tbs.replace(b"20250301120000Z", b"20250231120000Z")),
        "bad-utf8": _resign(key, tbs.replace(b"GWA-One", b"GWA-\xffne")),
        "unknown-algorithm": _resign(key, tbs, bytes.fromhex("300a06082a8648ce3d040301")),
        "algorithm-with-null-parameters": _resign(
            key, tbs, bytes.fromhex("300c06082a8648ce3d0403020500")),
        "unused-bits": _resign(key, tbs, unused_bits=1),
    }[variant]
    assert rejection(receiver(gwa), data) is WakeupReason.MALFORMED


def test_wakeup_rejects_wrong_gateway(gwa: Pair) -> None:
    data = wakeup(gwa[0], gateway="EABC0099999999")
    assert rejection(receiver(gwa), data) is WakeupReason.WRONG_GATEWAY


def test_wakeup_rejects_unknown_administrator(gwa: Pair, other_gwa: Pair) -> None:
    data = wakeup(other_gwa[0], administrator="GWA-Two")
    assert rejection(receiver(gwa), data) is WakeupReason.UNKNOWN_ADMINISTRATOR


def test_wakeup_rejects_bad_signature_from_a_foreign_key(gwa: Pair, other_gwa: Pair) -> None:
    data = wakeup(other_gwa[0], administrator=GWA)  # claims to be our GWA
    assert rejection(receiver(gwa), data) is WakeupReason.BAD_SIGNATURE


def test_wakeup_rejects_bad_signature_on_a_tampered_packet(gwa: Pair) -> None:
    data = bytearray(wakeup(gwa[0], nonce=NONCE))
    data[data.index(NONCE) + 3] ^= 0x01
    assert rejection(receiver(gwa), bytes(data)) is WakeupReason.BAD_SIGNATURE


def test_wakeup_rejects_bad_signature_with_a_hash_not_matched_to_the_curve(gwa: Pair) -> None:
    data = _resign(gwa[0], VECTOR, bytes.fromhex("300a06082a8648ce3d040303"))  # SHA-384
    assert rejection(receiver(gwa), data) is WakeupReason.BAD_SIGNATURE


def test_wakeup_rejects_not_yet_valid(gwa: Pair) -> None:
    data = wakeup(gwa[0], issued_at=NOW + timedelta(seconds=31))
    assert rejection(receiver(gwa), data) is WakeupReason.NOT_YET_VALID


def test_wakeup_rejects_expired(gwa: Pair) -> None:
    data = wakeup(gwa[0], issued_at=NOW - timedelta(minutes=3))  # notAfter NOW - 1 min
    assert rejection(receiver(gwa), data) is WakeupReason.EXPIRED


def test_wakeup_expires_once_clock_skew_has_passed(gwa: Pair) -> None:
    clock = SimulatedClock(NOW + timedelta(minutes=2, seconds=29))
    assert receiver(gwa, clock).accept(wakeup(gwa[0]))  # 29 s after notAfter: in skew
    clock.advance(timedelta(seconds=1))
    assert rejection(receiver(gwa, clock), wakeup(gwa[0])) is WakeupReason.EXPIRED


def test_wakeup_accepts_within_clock_skew_of_issue_time(gwa: Pair) -> None:
    assert receiver(gwa).accept(wakeup(gwa[0], issued_at=NOW + timedelta(seconds=30)))


def test_wakeup_rejects_validity_too_long(gwa: Pair) -> None:
    data = wakeup(gwa[0], validity=timedelta(minutes=5, seconds=1))
    assert rejection(receiver(gwa), data) is WakeupReason.VALIDITY_TOO_LONG
    assert receiver(gwa).accept(wakeup(gwa[0], validity=timedelta(minutes=5)))


def test_wakeup_rejects_replayed_nonce(gwa: Pair) -> None:
    rx = receiver(gwa)
    data = wakeup(gwa[0])
    rx.accept(data)
    assert rejection(rx, data) is WakeupReason.REPLAYED_NONCE
    # the same nonce in a freshly signed packet is a replay too
    nonce = SignedWakeup.decode(data).packet.nonce
    again = wakeup(gwa[0], issued_at=NOW + timedelta(seconds=1), nonce=nonce)
    assert rejection(rx, again) is WakeupReason.REPLAYED_NONCE


def test_wakeup_rejected_packets_do_not_consume_their_nonce(gwa: Pair) -> None:
    clock = SimulatedClock(NOW - timedelta(minutes=1))
    rx = receiver(gwa, clock)
    data = wakeup(gwa[0])
    assert rejection(rx, data) is WakeupReason.NOT_YET_VALID
    clock.set(NOW)
    assert rx.accept(data)


def test_wakeup_rejects_replay_cache_full(gwa: Pair) -> None:
    rx = receiver(gwa, replay_cache=MemoryReplayCache(capacity=2))
    rx.accept(wakeup(gwa[0]))
    rx.accept(wakeup(gwa[0]))
    assert rejection(rx, wakeup(gwa[0])) is WakeupReason.REPLAY_CACHE_FULL


def test_replay_cache_forgets_nonces_after_their_validity() -> None:
    cache = MemoryReplayCache(capacity=3)
    for i in range(3):
        assert cache.remember(bytes([i]) * 16, NOW + timedelta(minutes=i + 1), NOW) \
            is NonceStatus.FRESH
    assert cache.remember(b"\x09" * 16, NOW + timedelta(minutes=5), NOW) is NonceStatus.FULL
    assert cache.remember(b"\x00" * 16, NOW + timedelta(minutes=5), NOW) \
        is NonceStatus.REPLAYED
    later = NOW + timedelta(minutes=2)  # the first two have expired
    assert cache.remember(b"\x09" * 16, NOW + timedelta(minutes=5), later) is NonceStatus.FRESH
    assert len(cache) == 2 and b"\x00" * 16 not in cache


def test_wakeup_replay_cache_stays_bounded_under_many_wakeups(gwa: Pair) -> None:
    clock = SimulatedClock(NOW)
    cache = MemoryReplayCache(capacity=8)
    rx = receiver(gwa, clock, replay_cache=cache)
    for _ in range(30):
        rx.accept(wakeup(gwa[0], issued_at=clock.now(), validity=timedelta(seconds=30)))
        clock.advance(timedelta(seconds=20))
    assert len(cache) <= 8


def test_wakeup_receiver_refuses_bad_configuration(gwa: Pair, issue: Issue) -> None:
    with pytest.raises(UsageError):
        WakeupReceiver(GATEWAY, gwa[1], "", SimulatedClock(NOW))
    with pytest.raises(UsageError):
        WakeupReceiver(GATEWAY, gwa[1], GWA_ADDRESS, SimulatedClock(NOW),
                       max_validity=timedelta(0))
    with pytest.raises(UsageError):
        WakeupReceiver("", gwa[1], GWA_ADDRESS, SimulatedClock(NOW))


def test_wakeup_receiver_takes_an_explicit_administrator_id(gwa: Pair) -> None:
    rx = receiver(gwa, administrator_id="9900000000042")
    assert rx.accept(wakeup(gwa[0], administrator="9900000000042"))
    assert rejection(rx, wakeup(gwa[0])) is WakeupReason.UNKNOWN_ADMINISTRATOR


def test_wakeup_rejection_names_the_nonce_but_no_secret(gwa: Pair) -> None:
    with pytest.raises(WakeupRejected) as info:
        receiver(gwa).accept(wakeup(gwa[0], gateway="EABC0099999999", nonce=NONCE))
    assert info.value.context == {"addressed": "EABC0099999999", "nonce": NONCE.hex()}


# ------------------------------------------------------------------------- fuzzing


def test_wakeup_rejections_are_rejected_subclasses() -> None:
    assert issubclass(WakeupRejected, Rejected)


def _der_sequence(body: bytes) -> bytes:
    n = len(body)
    return b"\x30" + (bytes((n,)) if n < 0x80 else bytes((0x81, n))) + body


@FUZZ
@given(data=st.binary(max_size=1200) | st.binary(max_size=255).map(_der_sequence))
def test_wakeup_random_bytes_only_raise_rejected(gwa: Pair, data: bytes) -> None:
    with contextlib.suppress(WakeupRejected):
        receiver(gwa).accept(data)


@FUZZ
@given(position=st.integers(min_value=0), value=st.integers(min_value=0, max_value=255),
       cut=st.integers(min_value=0, max_value=400))
def test_wakeup_mutated_packets_only_raise_rejected(gwa: Pair, position: int, value: int,
                                                    cut: int) -> None:
    data = bytearray(wakeup(gwa[0], nonce=NONCE))
    data[position % len(data)] = value
    mutated = bytes(data[:cut]) if cut < len(data) else bytes(data)
    try:
        decision = receiver(gwa).accept(mutated)
    except WakeupRejected:
        return
    assert decision.packet.nonce == NONCE  # only an unchanged packet can pass
