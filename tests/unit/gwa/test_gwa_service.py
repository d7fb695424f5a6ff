"""The GWA service without TLS: session rules, result verification, the commissioning driver's
reaction to failures, and the operator API (FastAPI) over it."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from gwa_helpers import GWA_ID, gwa_keys, new_service

from imsys.core.clock import SystemClock
from imsys.gwa.api import create_api
from imsys.gwa.db import CommandStatus, Commissioning
from imsys.gwa.keys import GwaKeys
from imsys.gwa.service import GwaReason, GwaRejected, GwaService
from imsys.pki import PkiDirectory
from imsys.wire.admin_session import AlarmSummary, Hello, Refusal
from imsys.wire.command import CommandResult, ResultStatus, issue_result
from imsys.wire.wakeup import WakeupReceiver

GW = "EIMS0000000501"


@pytest.fixture(scope="module")
def keys(pki: PkiDirectory, tmp_path_factory: pytest.TempPathFactory) -> GwaKeys:
    return gwa_keys(pki, tmp_path_factory.mktemp("gwa-keys"))


@pytest.fixture
def service(pki: PkiDirectory, keys: GwaKeys, db_url: str) -> Iterator[GwaService]:
    svc = new_service(pki, keys, db_url)
    yield svc
    svc.db.dispose()


def hello(phase: str = "operation", gateway_id: str = GW, errors: int = 0) -> Hello:
    return Hello(gateway_id, phase, "fw-1", AlarmSummary(errors, 0, None), datetime.now(UTC))


def operational(service: GwaService) -> None:
    service.db.ensure_gateway(GW, datetime.now(UTC))
    service.db.update_gateway(GW, commissioning=Commissioning.OPERATIONAL)


def test_hello_must_name_the_tls_peer(service: GwaService) -> None:
    with pytest.raises(GwaRejected) as refused:
        service.open_session("EIMS0000000999", hello())
    assert refused.value.reason is GwaReason.WRONG_GATEWAY
    assert service.db.gateways() == []


def test_personalisation_contact_starts_the_driver_and_holds_back_operator_commands(
        service: GwaService) -> None:
    operator = service.enqueue([GW], "profile.communication.activate", {"profile_id": "CP"})[0]
    session, welcome = service.open_session(GW, hello("personalisation"))
    assert welcome.pending == 1 and welcome.administrator_id == GWA_ID
    assert service.db.gateway(GW).commissioning is Commissioning.PERSONALISING  # type: ignore[union-attr]
    assert service.next_command(session) is not None
    assert session.outstanding is not None
    assert session.outstanding.type == "commissioning.admin-challenge"
    with pytest.raises(GwaRejected):  # the outstanding command must be answered first
        service.next_command(session)
    service.record_refusal(session, Refusal("expired", "clock"))
    # a refused commissioning step fails the driver and ends the session's commands
    row = service.db.gateway(GW)
    assert row is not None and row.commissioning is Commissioning.FAILED
    assert row.commissioning_detail == "commissioning.admin-challenge: expired"
    assert service.next_command(session) is None
    assert service.db.command(operator).status is CommandStatus.QUEUED  # type: ignore[union-attr]


def test_results_must_be_signed_by_the_gateway(service: GwaService, pki: PkiDirectory) -> None:
    operational(service)
    command_id = service.enqueue([GW], "profile.communication.activate", {"profile_id": "CP"})[0]
    session, _ = service.open_session(GW, hello())
    assert service.next_command(session) is not None
    now = datetime.now(UTC).replace(microsecond=0)
    result = CommandResult(command_id, GW, ResultStatus.OK, now, {})
    with pytest.raises(GwaRejected) as no_session:
        service.record_result(type(session)(uuid.uuid4(), GW, "operation", ()), b"")
    assert no_session.value.reason is GwaReason.NO_OUTSTANDING_COMMAND
    other_key, other_cert = pki.issue_with_new_key("gateway-sig", "EIMS0000000999")
    with pytest.raises(GwaRejected) as refused:
        service.record_result(session, issue_result(result, other_key, other_cert))
    assert (refused.value.reason, refused.value.context["result_reason"]) == (
        GwaReason.BAD_RESULT, "wrong-signer")
    row = service.db.command(command_id)
    assert row is not None and row.status is CommandStatus.UNANSWERED
    assert "wrong-signer" in (row.detail or "")


def test_results_are_verified_and_kept(service: GwaService, pki: PkiDirectory) -> None:
    operational(service)
    command_id = service.enqueue([GW], "profile.communication.activate", {"profile_id": "CP"})[0]
    session, _ = service.open_session(GW, hello(errors=3))
    service.next_command(session)
    key, cert = pki.issue_with_new_key("gateway-sig", GW)
    now = datetime.now(UTC).replace(microsecond=0)
    wrong = CommandResult(uuid.uuid4(), GW, ResultStatus.OK, now, {})
    with pytest.raises(GwaRejected):
        service.record_result(session, issue_result(wrong, key, cert))
    command_id = service.enqueue([GW], "profile.communication.activate", {"profile_id": "CP"})[0]
    service.next_command(session)
    good = CommandResult(command_id, GW, ResultStatus.FAILED, now, {"reason": "unknown-item"})
    ack = service.record_result(session, issue_result(good, key, cert))
    assert ack.recorded == command_id
    row = service.db.command(command_id)
    assert row is not None and row.status is CommandStatus.FAILED
    assert row.result == {"reason": "unknown-item"}
    assert service.db.gateway(GW).alarm_errors == 3  # type: ignore[union-attr]


def test_secret_commands_need_the_gateway_enc_certificate(service: GwaService) -> None:
    operational(service)
    command_id = service.enqueue([GW], "device.meter.register", {"profile": {}})[0]
    session, _ = service.open_session(GW, hello())
    assert service.next_command(session) is None
    row = service.db.command(command_id)
    assert row is not None and row.status is CommandStatus.NOT_ISSUED


# --------------------------------------------------------------------------- operator API


def test_operator_api(service: GwaService, keys: GwaKeys) -> None:
    client = TestClient(create_api(service))
    assert "/api/v1/gateways" in client.get("/openapi.json").json()["paths"]
    created = client.post("/api/v1/commands", json={
        "gateways": [GW, "EIMS0000000502"], "type": "profile.evaluation.activate",
        "parameters": {"profile_id": "TP-1"}})
    assert created.status_code == 201
    batch = created.json()
    assert batch["total"] == 2 and batch["by_status"] == {"queued": 2}
    fleet = client.get("/api/v1/gateways").json()
    assert [g["gateway_id"] for g in fleet] == [GW, "EIMS0000000502"]
    assert fleet[0]["pending"] == 1 and fleet[0]["missed_intervals"] == 0
    command_id = batch["commands"][0]["command_id"]
    assert client.get(f"/api/v1/commands/{command_id}").json()["status"] == "queued"
    progress = client.get(f"/api/v1/batches/{batch['batch']}").json()
    assert (progress["total"], progress["done"]) == (2, 0)
    detail = client.get(f"/api/v1/gateways/{GW}").json()
    assert [c["type"] for c in detail["commands"]] == ["profile.evaluation.activate"]
    assert client.post("/api/v1/commands", json={
        "gateways": [GW], "type": "nope", "parameters": {}}).status_code == 400
    assert client.get("/api/v1/gateways/EIMS0000000999").status_code == 404
    assert client.post(f"/api/v1/gateways/{GW}/wakeup").status_code == 409  # no address


def test_operator_api_sends_a_verifiable_wakeup(service: GwaService, keys: GwaKeys) -> None:
    client = TestClient(create_api(service))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
        updated = client.put(f"/api/v1/gateways/{GW}",
                             json={"wakeup_host": "127.0.0.1", "wakeup_port": port})
        assert updated.json()["wakeup_address"] == f"127.0.0.1:{port}"
        assert client.post(f"/api/v1/gateways/{GW}/wakeup").json()["address"] == \
            f"127.0.0.1:{port}"
        packet, _ = sock.recvfrom(2048)
    receiver = WakeupReceiver(GW, keys.certificate("SIG"), "127.0.0.1:4443", SystemClock())
    assert receiver.accept(packet).packet.administrator_id == GWA_ID


def test_cli_init_creates_a_provisioned_gwa(pki: PkiDirectory, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from imsys.gwa.cli import gwa_app
    from imsys.gwa.keys import GwaKeys as Keys
    from imsys.secmod import SoftwareSecurityModule

    monkeypatch.setenv("IMSYS_GWA_PASSPHRASE", "cli test passphrase")
    runner = CliRunner()
    result = runner.invoke(gwa_app, ["init", str(tmp_path / "gwa"), "--pki", str(pki.path),
                                     "--id", "GWA-Cli-1"])
    assert result.exit_code == 0, result.output
    with SoftwareSecurityModule(tmp_path / "gwa" / "secmod", b"cli test passphrase") as module:
        assert Keys.load(module).administrator_id == "GWA-Cli-1"
    again = runner.invoke(gwa_app, ["init", str(tmp_path / "gwa"), "--pki", str(pki.path),
                                    "--id", "GWA-Cli-1"])
    assert again.exit_code == 2
