"""End to end: a gateway from the end of the installation phase (local steps, seed 003
§2.3.1–§2.3.2) to normal operation through the real GWA service over real TLS on 127.0.0.1
(§2.3.3 personalisation, §2.3.4 time synchronisation and self-test), then configured with a
meter profile (its key sealed), a communication and an evaluation profile. On SQLite and
PostgreSQL.

Oracle: the seed's key-material summaries after §2.3.3 (commissioning_helpers.GATEWAY_2_3_3,
MODULE_2_3_3).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "gwa"))
sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "gateway"))

from commissioning_helpers import GATEWAY_2_3_3, MODULE_2_3_3, listing
from gwa_helpers import (
    METER_KEY,
    communication_document,
    db_url,
    evaluation_document,
    gateway_at_personalisation,
    gwa_keys,
    meter_document,
    new_service,
)

from imsys.gateway.admin import ConfigKind, ItemState
from imsys.gateway.admin.profile_handlers import stored_meter_profile
from imsys.gateway.commissioning import Phase
from imsys.gateway.initial_config import GwaAddress
from imsys.gateway.store import StateKey, StateTable
from imsys.gwa.db import CommandStatus, Commissioning
from imsys.gwa.keys import GwaKeys
from imsys.gwa.server import AdminEndpoint
from imsys.pki import PkiDirectory
from imsys.wire.command import verify_result

__all__ = ["db_url"]

GATEWAY = "EIMS0000000301"


@pytest.fixture(scope="module")
def keys(pki: PkiDirectory, tmp_path_factory: pytest.TempPathFactory) -> GwaKeys:
    return gwa_keys(pki, tmp_path_factory.mktemp("gwa-keys"))


def test_gateway_from_installation_to_configured_normal_operation(
        pki: PkiDirectory, keys: GwaKeys, db_url: str, tmp_path: Path) -> None:
    service = new_service(pki, keys, db_url)

    async def scenario() -> None:
        async with AdminEndpoint(service, lambda: validator) as endpoint:
            gateway = gateway_at_personalisation(tmp_path / "gw", GATEWAY, pki, keys,
                                                 GwaAddress("127.0.0.1", endpoint.port))
            assert gateway.commissioning.phase is Phase.PERSONALISATION
            personalisation, setup = await gateway.client().run()
            # §2.3.3 over the PRE keys, then a new TLS channel with the operational keys
            assert (personalisation.phase_before, personalisation.phase_after) == (
                Phase.PERSONALISATION, Phase.OPERATION)
            assert (personalisation.executed, personalisation.failed) == (6, 0)
            assert (setup.phase_before, setup.phase_after, setup.executed) == (
                Phase.OPERATION, Phase.OPERATION, 2)
            assert endpoint.sessions == 2
            row = service.db.gateway(GATEWAY)
            assert row is not None and row.commissioning is Commissioning.OPERATIONAL
            assert (row.phase, row.contacts) == ("operation", 2)
            # the seed's summary after §2.3.3
            assert gateway.commissioning.key_material() == GATEWAY_2_3_3
            assert listing(gateway.secmod) == MODULE_2_3_3

            # §2.3.4: meter pairing material and profiles, queued by the operator
            batches = [
                ("device.meter.register", {"profile": meter_document()}),
                ("profile.communication.install", {"profile": communication_document(pki)}),
                ("profile.communication.activate", {"profile_id": "CP-1"}),
                ("profile.evaluation.install", {"profile": evaluation_document()}),
                ("profile.evaluation.activate", {"profile_id": "TP-7"}),
            ]
            ids = [service.enqueue([GATEWAY], kind, params)[0] for kind, params in batches]
            configured = await gateway.client().run_once()
            assert (configured.executed, configured.failed, configured.refused) == (5, 0, [])
            for command_id in ids:
                command = service.db.command(command_id)
                assert command is not None and command.status is CommandStatus.OK, command
            # the stored result is evidence: it verifies with the gateway's SIG certificate
            sig = gateway.commissioning.operational_certificate("GW_WAN_SIG_CRT")
            blob = service.db.result_cms(ids[0])
            assert blob is not None
            assert verify_result(blob, sig, ids[0]).details["meter_id"] == "7ELS0087654321"

            config = gateway.context.config
            meter = config.require(ConfigKind.METER, "7ELS0087654321")
            assert stored_meter_profile(gateway.context, meter).aes_key == METER_KEY
            assert config.require(ConfigKind.COMMUNICATION_PROFILE, "CP-1").state is \
                ItemState.ACTIVE
            assert config.require(ConfigKind.EVALUATION_PROFILE, "TP-7").state is \
                ItemState.ACTIVE
            assert StateTable(gateway.db).get_time(StateKey.LAST_ADMIN_CONTACT) is not None
            # nothing more to do: a session now just reports
            idle = await gateway.client().run_once()
            assert (idle.executed, idle.refused) == (0, [])
            gateway.close()

    validator = pki.validator()
    asyncio.run(scenario())
    service.db.dispose()
