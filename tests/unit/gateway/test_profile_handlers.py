"""``profile.*`` and ``device.meter.*`` handlers: validation, the configuration store, sealed
meter keys, consumer-log entries."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "gwa"))

from gwa_helpers import (
    GWA_ID,
    METER_KEY,
    GatewayUnderTest,
    communication_document,
    evaluation_document,
    gateway_at_personalisation,
    gwa_keys,
    meter_document,
)

from imsys.gateway.admin import AdminExecutor, ConfigKind, ItemState
from imsys.gateway.admin.profile_handlers import HANDLERS, stored_meter_profile
from imsys.gateway.initial_config import GwaAddress
from imsys.gateway.logs import ConsumerEvent
from imsys.gwa.keys import GwaKeys
from imsys.pki import PkiDirectory
from imsys.wire.command import Command, CommandResult, CommandType, ResultStatus

GATEWAY = "EIMS0000000202"
T = CommandType
_sequence = iter(range(1, 10_000))


@pytest.fixture(scope="module")
def keys(pki: PkiDirectory, tmp_path_factory: pytest.TempPathFactory) -> GwaKeys:
    return gwa_keys(pki, tmp_path_factory.mktemp("gwa-keys"))


@pytest.fixture
def gateway(tmp_path: Path, pki: PkiDirectory, keys: GwaKeys) -> Iterator[GatewayUnderTest]:
    gw = gateway_at_personalisation(tmp_path / "gw", GATEWAY, pki, keys,
                                    GwaAddress("127.0.0.1", 4443))
    yield gw
    gw.close()


def run(gateway: GatewayUnderTest, kind: CommandType, **parameters: Any) -> CommandResult:
    now = datetime.now(UTC).replace(microsecond=0)
    command = Command(uuid.uuid4(), GATEWAY, GWA_ID, next(_sequence), now,
                      now + timedelta(hours=1), kind, parameters)
    return AdminExecutor(gateway.context, HANDLERS).execute(command)


def ok(result: CommandResult) -> dict[str, Any]:
    assert result.status is ResultStatus.OK, result.details
    return dict(result.details)


def failed(result: CommandResult) -> str:
    assert result.status is ResultStatus.FAILED, result.details
    return str(result.details["reason"])


def consumer_texts(gateway: GatewayUnderTest, consumer: str) -> list[str]:
    entries = gateway.context.logs.consumer(consumer).entries()
    assert all(e.event == ConsumerEvent.ADMIN_ACTION for e in entries)
    return [e.text for e in entries]


def test_meter_register_keeps_the_key_sealed_and_logs_for_the_consumer(
        gateway: GatewayUnderTest) -> None:
    assert ok(run(gateway, T.METER_REGISTER, profile=meter_document())) == {
        "meter_id": "7ELS0087654321", "state": "active"}
    item = gateway.context.config.require(ConfigKind.METER, "7ELS0087654321")
    assert item.document["aes_key"] is None
    assert METER_KEY.hex() not in str(item.document)
    assert stored_meter_profile(gateway.context, item).aes_key == METER_KEY
    assert consumer_texts(gateway, "consumer-1") == [
        "administrator registered meter 7ELS0087654321 (wmbus-mode5) for this consumer"]
    assert failed(run(gateway, T.METER_REGISTER, profile=meter_document())) == "already-exists"


def test_bad_meter_profiles_are_refused(gateway: GatewayUnderTest) -> None:
    broken = {**meter_document(), "aes_key": "00"}
    assert failed(run(gateway, T.METER_REGISTER, profile=broken)) == "bad-key-material"
    assert failed(run(gateway, T.METER_REGISTER, profile={"format": "x"})) == \
        "unsupported-format"
    assert failed(run(gateway, T.METER_REGISTER, document={})) == "bad-parameters"
    assert gateway.context.config.items(ConfigKind.METER) == []


def test_evaluation_profile_life_cycle(gateway: GatewayUnderTest) -> None:
    assert failed(run(gateway, T.EVALUATION_PROFILE_INSTALL,
                      profile=evaluation_document())) == "unknown-meter"
    ok(run(gateway, T.METER_REGISTER, profile=meter_document()))
    assert ok(run(gateway, T.EVALUATION_PROFILE_INSTALL, profile=evaluation_document())) == {
        "profile_id": "TP-7", "state": "installed"}
    assert ok(run(gateway, T.EVALUATION_PROFILE_ACTIVATE, profile_id="TP-7"))["state"] == \
        "active"
    item = gateway.context.config.require(ConfigKind.EVALUATION_PROFILE, "TP-7")
    assert item.state is ItemState.ACTIVE and item.document == evaluation_document()
    assert failed(run(gateway, T.METER_DELETE, meter_id="7ELS0087654321")) == "in-use"
    ok(run(gateway, T.EVALUATION_PROFILE_DELETE, profile_id="TP-7"))
    ok(run(gateway, T.METER_DELETE, meter_id="7ELS0087654321"))
    assert consumer_texts(gateway, "consumer-1")[1:] == [
        "administrator installed evaluation profile TP-7 (TAF 7) for meter 7ELS0087654321",
        "administrator activated evaluation profile TP-7",
        "administrator deleted evaluation profile TP-7",
        "administrator deleted meter 7ELS0087654321"]
    assert failed(run(gateway, T.EVALUATION_PROFILE_ACTIVATE, profile_id="TP-7")) == \
        "unknown-item"


def test_a_bad_evaluation_profile_is_refused(gateway: GatewayUnderTest) -> None:
    ok(run(gateway, T.METER_REGISTER, profile=meter_document()))
    bad = {**evaluation_document(), "taf": 99}
    assert failed(run(gateway, T.EVALUATION_PROFILE_INSTALL, profile=bad)) != "ok"
    assert gateway.context.config.items(ConfigKind.EVALUATION_PROFILE) == []


def test_communication_profile_life_cycle(gateway: GatewayUnderTest, pki: PkiDirectory) -> None:
    document = communication_document(pki)
    ok(run(gateway, T.COMMUNICATION_PROFILE_INSTALL, profile=document))
    ok(run(gateway, T.COMMUNICATION_PROFILE_ACTIVATE, profile_id="CP-1"))
    item = gateway.context.config.require(ConfigKind.COMMUNICATION_PROFILE, "CP-1")
    assert item.state is ItemState.ACTIVE and item.document == document
    ok(run(gateway, T.COMMUNICATION_PROFILE_DELETE, profile_id="CP-1"))
    assert gateway.context.config.get(ConfigKind.COMMUNICATION_PROFILE, "CP-1") is None


def test_communication_profile_certificates_are_checked(
        gateway: GatewayUnderTest, pki: PkiDirectory, tmp_path: Path) -> None:
    wrong_cn = {**communication_document(pki), "emt_id": "EMT-2"}
    assert failed(run(gateway, T.COMMUNICATION_PROFILE_INSTALL,
                      profile=wrong_cn)) == "bad-certificate"
    foreign = PkiDirectory.init(tmp_path / "foreign-pki")
    assert failed(run(gateway, T.COMMUNICATION_PROFILE_INSTALL,
                      profile=communication_document(foreign))) == "certificate-invalid"
    swapped = communication_document(pki)
    swapped["enc_certificate"], swapped["sig_certificate"] = (swapped["sig_certificate"],
                                                              swapped["enc_certificate"])
    assert failed(run(gateway, T.COMMUNICATION_PROFILE_INSTALL,
                      profile=swapped)) == "certificate-invalid"
    bad_url = {**communication_document(pki), "url": "http://emt:80/x"}
    assert failed(run(gateway, T.COMMUNICATION_PROFILE_INSTALL, profile=bad_url)) == "bad-url"
    assert gateway.context.config.items(ConfigKind.COMMUNICATION_PROFILE) == []
