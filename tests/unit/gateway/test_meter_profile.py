"""The meter profile (Zählerprofil): validated on construction, round trip through a document."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from imsys.crypto import SoftwareKey
from imsys.gateway.meter_profile import (
    PROFILE_FORMAT,
    ClockOffPolicy,
    MeterProfile,
    MeterProfileReason,
    MeterProfileRejected,
    MeterProtocol,
    PullRequest,
    tls_fingerprint,
    wmbus_address_key,
)

FP = bytes(range(32))
KEY = bytes(range(16))
SIGNATURE_KEY = SoftwareKey.generate().public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def wired(**changes: Any) -> MeterProfile:
    fields: dict[str, Any] = {
        "meter_id": "1EMH0012345678", "protocol": MeterProtocol.SML_TLS_PUSH,
        "tls_fingerprint": FP, "channels": ("1-0:1.8.0", "1-0:2.8.0*255"),
        "consumer_id": "consumer-1"}
    fields.update(changes)
    return MeterProfile(**fields)


def wireless(**changes: Any) -> MeterProfile:
    fields: dict[str, Any] = {
        "meter_id": "7ELS0087654321", "protocol": MeterProtocol.WMBUS_MODE5, "aes_key": KEY,
        "channels": ("7-0:3.0.0*255",), "consumer_id": "consumer-2"}
    fields.update(changes)
    return MeterProfile(**fields)


def test_meter_profile_canonicalises_channels_and_keeps_defaults() -> None:
    p = wired()
    assert p.channels == ("1-0:1.8.0*255", "1-0:2.8.0*255")
    assert p.read_interval == timedelta(minutes=15) and p.transformer_factor == 1
    assert p.clock_off is ClockOffPolicy.MARK_INVALID
    assert wmbus_address_key("7ELS0087654321") == ("ELS", "87654321", 0)


@pytest.mark.parametrize("profile", [
    wired(),
    wired(protocol=MeterProtocol.SML_TLS_PULL, endpoint="127.0.0.1:4059",
          pull_request=PullRequest.GET_LIST, transformer_factor=60,
          read_interval=timedelta(seconds=60), clock_off=ClockOffPolicy.REJECT),
    wired(signature_key=SIGNATURE_KEY),
    wireless(),
    wireless(protocol=MeterProtocol.WMBUS_MODE7, aes_key=None, aes_key_label="lmn/gas-1"),
])
def test_meter_profile_round_trips_through_a_json_document(profile: MeterProfile) -> None:
    document = json.loads(json.dumps(profile.to_dict()))
    assert document["format"] == PROFILE_FORMAT
    assert MeterProfile.from_dict(document) == profile


@given(channels=st.lists(st.tuples(*[st.integers(0, 255)] * 6), min_size=1, max_size=8,
                         unique=True),
       factor=st.integers(1, 1_000_000), seconds=st.integers(1, 86_400))
def test_meter_profile_round_trip_property(channels: list[tuple[int, ...]], factor: int,
                                           seconds: int) -> None:
    obis = tuple(f"{a}-{b}:{c}.{d}.{e}*{f}" for a, b, c, d, e, f in channels)
    p = wired(channels=obis, transformer_factor=factor, read_interval=timedelta(seconds=seconds))
    assert MeterProfile.from_dict(json.loads(json.dumps(p.to_dict()))) == p


@pytest.mark.parametrize(("build", "reason"), [
    (lambda: wired(meter_id="EMH0012345678"), MeterProfileReason.BAD_IDENTIFIER),
    (lambda: wired(consumer_id=""), MeterProfileReason.BAD_IDENTIFIER),
    (lambda: wired(tls_fingerprint=None), MeterProfileReason.BAD_KEY_MATERIAL),
    (lambda: wired(tls_fingerprint=b"short"), MeterProfileReason.BAD_KEY_MATERIAL),
    (lambda: wired(aes_key=KEY), MeterProfileReason.BAD_KEY_MATERIAL),
    (lambda: wireless(aes_key_label="lmn/gas-1"), MeterProfileReason.BAD_KEY_MATERIAL),
    (lambda: wireless(aes_key=None), MeterProfileReason.BAD_KEY_MATERIAL),
    (lambda: wireless(aes_key=bytes(15)), MeterProfileReason.BAD_KEY_MATERIAL),
    (lambda: wireless(tls_fingerprint=FP), MeterProfileReason.BAD_KEY_MATERIAL),
    (lambda: wired(signature_key=b"not a key"), MeterProfileReason.BAD_KEY_MATERIAL),
    (lambda: wireless(signature_key=SIGNATURE_KEY), MeterProfileReason.BAD_KEY_MATERIAL),
    (lambda: wired(channels=()), MeterProfileReason.BAD_CHANNEL),
    (lambda: wired(channels="1-0:1.8.0"), MeterProfileReason.BAD_CHANNEL),
    (lambda: wired(channels=("1.8.0.0",)), MeterProfileReason.BAD_CHANNEL),
    (lambda: wired(channels=("1-0:1.8.0", "1-0:1.8.0*255")), MeterProfileReason.BAD_CHANNEL),
    (lambda: wired(transformer_factor=0), MeterProfileReason.BAD_TRANSFORMER_FACTOR),
    (lambda: wired(transformer_factor=1.5), MeterProfileReason.BAD_TRANSFORMER_FACTOR),
    (lambda: wired(read_interval=timedelta(0)), MeterProfileReason.BAD_INTERVAL),
    (lambda: wired(read_interval=timedelta(seconds=1.5)), MeterProfileReason.BAD_INTERVAL),
    (lambda: wired(read_interval=timedelta(days=2)), MeterProfileReason.BAD_INTERVAL),
    (lambda: wired(protocol=MeterProtocol.SML_TLS_PULL), MeterProfileReason.BAD_ENDPOINT),
    (lambda: wired(endpoint="127.0.0.1:4059"), MeterProfileReason.BAD_ENDPOINT),
    (lambda: wired(protocol=MeterProtocol.SML_TLS_PULL, endpoint="host"),
     MeterProfileReason.BAD_ENDPOINT),
    (lambda: wired(protocol="serial"), MeterProfileReason.MALFORMED),
])
def test_meter_profile_refuses_an_invalid_profile(build: Any,
                                                  reason: MeterProfileReason) -> None:
    with pytest.raises(MeterProfileRejected) as info:
        build()
    assert info.value.reason is reason


def test_meter_profile_document_refuses_unknown_fields_and_formats() -> None:
    document = wired().to_dict()
    with pytest.raises(MeterProfileRejected) as info:
        MeterProfile.from_dict({**document, "extra": 1})
    assert info.value.reason is MeterProfileReason.MALFORMED
    with pytest.raises(MeterProfileRejected) as info:
        MeterProfile.from_dict({**document, "format": "imsys-meter-profile/9"})
    assert info.value.reason is MeterProfileReason.UNSUPPORTED_FORMAT
    with pytest.raises(MeterProfileRejected) as info:
        MeterProfile.from_dict({**document, "tls_fingerprint": "zz"})
    assert info.value.reason is MeterProfileReason.MALFORMED
    del document["channels"]
    with pytest.raises(MeterProfileRejected):
        MeterProfile.from_dict(document)


def test_tls_fingerprint_pins_the_meter_certificate(issue) -> None:
    _, cert = issue("meter-tls", "1EMH0012345678")
    fp = tls_fingerprint(cert)
    assert len(fp) == 32 and wired(tls_fingerprint=fp).tls_fingerprint == fp
