"""The production line of a gateway (imsys.system.factory): manufacture (§2.3.1.1, §2.3.1.2),
initial configuration (§2.3.1.3) and installation (§2.3.2) on a state directory, checked
against the seed's key-material summary of §2.3.1 – and reopened as the gateway would."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from commissioning_helpers import (
    GATEWAY_2_3_1,
    GATEWAY_ID,
    MODULE_2_3_1,
    TEST_KDF_LOG2_N,
    Gwa,
    IssueFn,
    listing,
)

from imsys.core.clock import SimulatedClock
from imsys.gateway.commissioning import CommissioningRejected, Phase
from imsys.gateway.device import GatewayDevice
from imsys.pki import PkiDirectory
from imsys.system.factory import install, load_initial_configuration, manufacture

INTEGRATOR, INSTALLER = "integrator-1234", "installer-5678"


def test_factory_takes_a_gateway_to_personalisation(pki: PkiDirectory, issue: IssueFn,
                                                    tmp_path: Path) -> None:
    clock = SimulatedClock(datetime.now(UTC))
    state = tmp_path / "gw"
    assert manufacture(state, GATEWAY_ID, pki, clock, integrator_pin=INTEGRATOR,
                       installer_pin=INSTALLER,
                       kdf_log2_n=TEST_KDF_LOG2_N) is Phase.PRE_PERSONALISATION_2
    gwa = Gwa(pki, issue)
    with pytest.raises(CommissioningRejected):  # the installer has no integrator rights
        load_initial_configuration(state, clock, gwa.document(), integrator_pin=INSTALLER)
    assert load_initial_configuration(state, clock, gwa.document(),
                                      integrator_pin=INTEGRATOR) is Phase.INSTALLATION
    assert install(state, clock, installer_pin=INSTALLER) is Phase.PERSONALISATION
    with GatewayDevice(state, clock) as device:  # as the gateway process opens it
        assert listing(device.secmod) == MODULE_2_3_1
        assert device.commissioning.key_material() == GATEWAY_2_3_1
        assert not device.commissioning.local_interface_enabled
        assert device.secmod.pin_verified  # unlocked with the stored system PIN
        texts = [e.text for e in device.logs.system.entries()]
    assert any("load-initial-configuration" in t for t in texts)
