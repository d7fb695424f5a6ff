"""``commissioning.*`` handlers: seed 003 §2.3.3/§2.3.4 driven through the AdminExecutor.

Oracle: the key-material summaries after §2.3.3 (commissioning_helpers.GATEWAY_2_3_3 and
MODULE_2_3_3, from the seed's lists).
"""

from __future__ import annotations

import base64
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "gwa"))

from commissioning_helpers import GATEWAY_2_3_3, MODULE_2_3_3, listing
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from gwa_helpers import GWA_ID, GatewayUnderTest, gateway_at_personalisation, gwa_keys

from imsys.gateway.admin import AdminExecutor
from imsys.gateway.admin.commissioning_handlers import HANDLERS
from imsys.gateway.commissioning import Phase
from imsys.gateway.initial_config import GwaAddress
from imsys.gateway.logs import SystemEvent
from imsys.gwa import answer_admin_challenge
from imsys.gwa.keys import GwaKeys
from imsys.pki import PkiDirectory
from imsys.wire.command import Command, CommandResult, CommandType, ResultStatus

GATEWAY = "EIMS0000000101"
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


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def personalise(gateway: GatewayUnderTest, pki: PkiDirectory, keys: GwaKeys) -> CommandResult:
    challenge = run(gateway, CommandType.COMMISSIONING_ADMIN_CHALLENGE)
    nonce = base64.b64decode(challenge.details["challenge"])
    assert len(nonce) == 32
    auth = run(gateway, CommandType.COMMISSIONING_AUTHENTICATE,
               signature=b64(answer_admin_challenge(nonce, keys.key("AUT"))))
    assert auth.status is ResultStatus.OK, auth.details
    generated = run(gateway, CommandType.COMMISSIONING_GENERATE_KEYS)
    assert set(generated.details["public_keys"]) == {"GW_WAN_TLS_PUB", "GW_WAN_SIG_PUB",
                                                      "GW_WAN_ENC_PUB"}
    exported = run(gateway, CommandType.COMMISSIONING_EXPORT_PUBLIC_KEYS)
    assert exported.details == generated.details
    requests = run(gateway, CommandType.COMMISSIONING_CERTIFICATE_REQUESTS).details["requests"]
    certs = {}
    for use in ("TLS", "SIG", "ENC"):
        csr = x509.load_der_x509_csr(base64.b64decode(requests[f"GW_WAN_{use}_CRT"]))
        spki = csr.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        assert b64(spki) == generated.details["public_keys"][f"GW_WAN_{use}_PUB"]
        certs[use.lower()] = b64(pki.issue(f"gateway-{use.lower()}", GATEWAY, csr=csr)
                                 .public_bytes(serialization.Encoding.DER))
    chain = [b64(c.public_bytes(serialization.Encoding.DER)) for c in pki.chain()[:-1]]
    imported = run(gateway, CommandType.COMMISSIONING_IMPORT_CERTIFICATES, chain=chain, **certs)
    assert imported.status is ResultStatus.OK, imported.details
    return run(gateway, CommandType.COMMISSIONING_COMPLETE_PERSONALISATION)


def test_personalisation_over_commands_ends_with_the_seeds_key_material(
        gateway: GatewayUnderTest, pki: PkiDirectory, keys: GwaKeys) -> None:
    done = personalise(gateway, pki, keys)
    assert done.status is ResultStatus.OK
    assert done.details["phase"] == "operation"
    assert done.details["key_material"] == {k: v.value for k, v in GATEWAY_2_3_3.items()}
    assert listing(gateway.secmod) == MODULE_2_3_3
    assert gateway.commissioning.phase is Phase.OPERATION
    synced = run(gateway, CommandType.COMMISSIONING_SYNCHRONISE_TIME,
                 administrator_time=datetime.now(UTC).isoformat())
    assert synced.status is ResultStatus.OK and abs(synced.details["offset_seconds"]) < 60
    test = run(gateway, CommandType.COMMISSIONING_SELF_TEST)
    assert test.details["self_test"] == "passed"
    assert test.details["module_objects"] == {k: v.value for k, v in MODULE_2_3_3.items()}


def test_a_wrong_administrator_signature_is_refused(gateway: GatewayUnderTest) -> None:
    run(gateway, CommandType.COMMISSIONING_ADMIN_CHALLENGE)
    refused = run(gateway, CommandType.COMMISSIONING_AUTHENTICATE, signature=b64(b"\x30\x00"))
    assert refused.status is ResultStatus.FAILED
    assert refused.details["reason"] == "not-authenticated"
    generate = run(gateway, CommandType.COMMISSIONING_GENERATE_KEYS)
    assert generate.details["reason"] == "not-authenticated"
    assert "GW_WAN_TLS" not in listing(gateway.secmod)


def test_steps_of_another_phase_are_refused_and_logged(gateway: GatewayUnderTest) -> None:
    refused = run(gateway, CommandType.COMMISSIONING_SYNCHRONISE_TIME,
                  administrator_time="2025-03-01T12:00:00Z")
    assert (refused.status, refused.details["reason"]) == (ResultStatus.FAILED, "wrong-phase")
    last = gateway.context.logs.system.entries()[-1]
    assert last.event == SystemEvent.CONFIGURATION_CHANGE
    assert "commissioning.synchronise-time" in last.text and "wrong-phase" in last.text


@pytest.mark.parametrize(("kind", "parameters"), [
    (CommandType.COMMISSIONING_AUTHENTICATE, {}),
    (CommandType.COMMISSIONING_AUTHENTICATE, {"signature": "not base64!"}),
    (CommandType.COMMISSIONING_ADMIN_CHALLENGE, {"unexpected": 1}),
    (CommandType.COMMISSIONING_IMPORT_CERTIFICATES, {"tls": "AA==", "sig": "AA==", "enc": "AA==",
                                                     "chain": []}),
])
def test_bad_parameters_are_refused(gateway: GatewayUnderTest, kind: CommandType,
                                    parameters: dict[str, Any]) -> None:
    result = run(gateway, kind, **parameters)
    assert (result.status, result.details["reason"]) == (ResultStatus.FAILED, "bad-parameters")


def test_without_commissioning_the_handlers_are_not_available(gateway: GatewayUnderTest) -> None:
    gateway.context.commissioning = None
    result = run(gateway, CommandType.COMMISSIONING_ADMIN_CHALLENGE)
    assert result.details["reason"] == "not-available"
