"""Device and consumer management commands (seed 003 §5, table 3 steps 2.1/2.2, 5.6, 5.7)."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from admin_handler_helpers import Gateway
from cryptography.hazmat.primitives import serialization

from imsys.gateway.admin import ConfigKind
from imsys.gateway.admin.device_handlers import verify_credentials
from imsys.gateway.logs import ConsumerEvent, Outcome
from imsys.wire.command import CommandType as T
from imsys.wire.command import ResultStatus


def der64(cert) -> str:  # type: ignore[no-untyped-def]
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def consumer_texts(gw: Gateway, consumer_id: str) -> list[str]:
    entries = gw.ctx.logs.consumer(consumer_id).entries()
    assert all(e.event is ConsumerEvent.ADMIN_ACTION for e in entries)
    return [e.text for e in entries]


def test_step_2_2_consumer_lifecycle_is_logged_in_the_consumer_log(gateway: Gateway) -> None:
    gw = gateway
    assert gw.run(T.CONSUMER_CREATE, {"consumer_id": "LV-1", "label": "flat 3"}).status \
        is ResultStatus.OK
    assert gw.run(T.CONSUMER_UPDATE, {"consumer_id": "LV-1", "label": "flat 4"}).status \
        is ResultStatus.OK
    assert gw.ctx.config.require(ConfigKind.CONSUMER, "LV-1").document["label"] == "flat 4"
    assert gw.run(T.CONSUMER_DELETE, {"consumer_id": "LV-1"}).status is ResultStatus.OK
    assert gw.ctx.config.get(ConfigKind.CONSUMER, "LV-1") is None
    texts = consumer_texts(gw, "LV-1")
    assert texts == ["administrator: consumer created", "administrator: consumer data changed",
                     "administrator: consumer deleted (the log is kept)"]


@pytest.mark.parametrize(("params", "reason"), [
    ({}, "missing-parameter"),
    ({"consumer_id": "LV-1", "colour": "red"}, "unknown-parameter"),
    ({"consumer_id": "bad id with spaces"}, "bad-parameter"),
    ({"consumer_id": 7}, "bad-parameter"),
    ({"consumer_id": "LV-1", "label": "x" * 200}, "bad-parameter"),
])
def test_bad_consumer_parameters_are_refused_and_logged(gateway: Gateway,
                                                        params: dict[str, object],
                                                        reason: str) -> None:
    result = gateway.run(T.CONSUMER_CREATE, params)
    assert result.status is ResultStatus.FAILED
    assert result.details["reason"] == reason
    last = gateway.ctx.logs.system.entries()[-1]
    assert last.outcome is Outcome.FAILURE and reason in last.text
    assert gateway.ctx.config.items(ConfigKind.CONSUMER) == []


def test_duplicate_consumer_is_refused(gateway: Gateway) -> None:
    gateway.run(T.CONSUMER_CREATE, {"consumer_id": "LV-1"})
    result = gateway.run(T.CONSUMER_CREATE, {"consumer_id": "LV-1"})
    assert result.details["reason"] == "already-exists"


def test_devices_are_registered_assigned_and_unassigned(gateway: Gateway) -> None:
    gw = gateway
    gw.run(T.CONSUMER_CREATE, {"consumer_id": "LV-1"})
    ok = ResultStatus.OK
    assert gw.run(T.CLS_REGISTER, {"device_id": "wallbox-1", "address": "192.168.1.20",
                                   "port": 502}).status is ok
    assert gw.run(T.DISPLAY_REGISTER, {"device_id": "display-1"}).status is ok
    assert gw.run(T.DEVICE_ASSIGN, {"device_kind": "cls", "device_id": "wallbox-1",
                                    "consumer_id": "LV-1"}).status is ok
    assert gw.run(T.DEVICE_ASSIGN, {"device_kind": "display", "device_id": "display-1",
                                    "consumer_id": "LV-1"}).status is ok
    # an assigned device cannot be deleted, and the consumer cannot go while it has devices
    assert gw.run(T.CLS_DELETE, {"device_id": "wallbox-1"}).details["reason"] == "in-use"
    assert gw.run(T.CONSUMER_DELETE, {"consumer_id": "LV-1"}).details["reason"] == "in-use"
    assert gw.run(T.DEVICE_UNASSIGN, {"device_kind": "cls",
                                      "device_id": "wallbox-1"}).status is ok
    assert gw.run(T.DEVICE_UNASSIGN, {"device_kind": "cls", "device_id": "wallbox-1"}
                  ).details["reason"] == "not-assigned"
    assert gw.run(T.CLS_DELETE, {"device_id": "wallbox-1"}).status is ok
    assert gw.ctx.config.get(ConfigKind.CLS, "wallbox-1") is None
    assert consumer_texts(gw, "LV-1")[1:] == [
        "administrator: cls wallbox-1 assigned", "administrator: display display-1 assigned",
        "administrator: cls wallbox-1 unassigned"]


def test_assignment_to_unknown_consumer_or_device_is_refused(gateway: Gateway) -> None:
    gw = gateway
    gw.run(T.DISPLAY_REGISTER, {"device_id": "display-1"})
    assert gw.run(T.DEVICE_ASSIGN, {"device_kind": "display", "device_id": "display-1",
                                    "consumer_id": "nobody"}).details["reason"] == "unknown-item"
    gw.run(T.CONSUMER_CREATE, {"consumer_id": "LV-1"})
    assert gw.run(T.DEVICE_ASSIGN, {"device_kind": "display", "device_id": "nothing",
                                    "consumer_id": "LV-1"}).details["reason"] == "unknown-item"
    assert gw.run(T.DEVICE_ASSIGN, {"device_kind": "toaster", "device_id": "display-1",
                                    "consumer_id": "LV-1"}).details["reason"] == "bad-parameter"
    assert gw.run(T.CLS_REGISTER, {"device_id": "x", "address": "h", "port": 0}
                  ).details["reason"] == "bad-parameter"


def test_meter_reassignment_is_logged_for_both_consumers(gateway: Gateway) -> None:
    gw = gateway
    for consumer in ("LV-1", "LV-2"):
        gw.run(T.CONSUMER_CREATE, {"consumer_id": consumer})
    gw.ctx.config.put(ConfigKind.METER, "1EMH0012345678", {"meter_id": "1EMH0012345678",
                                                             "consumer_id": "LV-1"})
    result = gw.run(T.DEVICE_ASSIGN, {"device_kind": "meter", "device_id": "1EMH0012345678",
                                      "consumer_id": "LV-2"})
    assert result.status is ResultStatus.OK
    assert result.details["previous_consumer_id"] == "LV-1"
    assert gw.ctx.config.require(ConfigKind.METER, "1EMH0012345678"
                                 ).document["consumer_id"] == "LV-2"
    assert consumer_texts(gw, "LV-1")[-1] == "administrator: meter 1EMH0012345678 unassigned"
    assert consumer_texts(gw, "LV-2")[-1] == "administrator: meter 1EMH0012345678 assigned"


def test_consumer_certificate_is_validated_before_install(gateway: Gateway, issue) -> None:  # type: ignore[no-untyped-def]
    gw = gateway
    gw.run(T.CONSUMER_CREATE, {"consumer_id": "LV-1"})
    _, han_cert = issue("consumer-tls", "LV-1-han")
    _, wrong_role = issue("emt-tls", "EMT-1")
    refused = gw.run(T.CONSUMER_CERTIFICATE_INSTALL, {"consumer_id": "LV-1",
                                                      "certificate": der64(wrong_role)})
    assert refused.status is ResultStatus.FAILED
    assert refused.details["reason"] in ("wrong-role", "wrong-key-usage")
    ok = gw.run(T.CONSUMER_CERTIFICATE_INSTALL, {"consumer_id": "LV-1",
                                                 "certificate": der64(han_cert)})
    assert ok.status is ResultStatus.OK
    serial = ok.details["serial"]
    stored = gw.ctx.config.require(ConfigKind.CONSUMER, "LV-1").document["certificates"]
    assert [c["serial"] for c in stored] == [serial]
    assert gw.run(T.CONSUMER_CERTIFICATE_DELETE, {"consumer_id": "LV-1", "serial": serial}
                  ).status is ResultStatus.OK
    assert gw.ctx.config.require(ConfigKind.CONSUMER, "LV-1").document["certificates"] == []
    assert any("HAN certificate installed" in t for t in consumer_texts(gw, "LV-1"))


def test_revoked_consumer_certificate_is_refused(gateway: Gateway, pki, issue) -> None:  # type: ignore[no-untyped-def]
    gw = gateway
    gw.run(T.CONSUMER_CREATE, {"consumer_id": "LV-9"})
    _, cert = issue("consumer-tls", "LV-9-revoked")
    pki.revoke(cert.serial_number, "key_compromise")
    gw.clock.advance(timedelta(seconds=5))  # validation after the revocation time
    gw.ctx.extras["pki_validator"] = pki.validator(clock=gw.clock)
    result = gw.run(T.CONSUMER_CERTIFICATE_INSTALL, {"consumer_id": "LV-9",
                                                     "certificate": der64(cert)})
    assert result.details["reason"] == "revoked"


def test_han_credentials_are_stored_only_as_salted_hash(gateway: Gateway) -> None:
    gw = gateway
    gw.run(T.CONSUMER_CREATE, {"consumer_id": "LV-1"})
    password = "correct horse battery"
    result = gw.run(T.CONSUMER_CREDENTIALS_SET, {"consumer_id": "LV-1", "username": "anna",
                                                 "password": password})
    assert result.status is ResultStatus.OK and password not in str(result.details)
    document = gw.ctx.config.require(ConfigKind.CONSUMER, "LV-1").document
    assert password not in str(document)
    assert document["credentials"]["scheme"].startswith("scrypt")
    assert verify_credentials(gw.ctx.config, "LV-1", "anna", password)
    assert not verify_credentials(gw.ctx.config, "LV-1", "anna", password + "!")
    assert not verify_credentials(gw.ctx.config, "LV-1", "bert", password)
    # the same password again gets another salt
    gw.run(T.CONSUMER_CREDENTIALS_SET, {"consumer_id": "LV-1", "username": "anna",
                                        "password": password})
    again = gw.ctx.config.require(ConfigKind.CONSUMER, "LV-1").document["credentials"]
    assert again["salt"] != document["credentials"]["salt"]
    short = gw.run(T.CONSUMER_CREDENTIALS_SET, {"consumer_id": "LV-1", "username": "anna",
                                                "password": "short"})
    assert short.details["reason"] == "bad-parameter" and "short" not in str(short.details)
    # nothing about the password reaches the system log
    assert all(password not in e.text for e in gw.ctx.logs.system.entries())
