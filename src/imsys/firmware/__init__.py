"""Firmware of the gateway: the signed package format (:mod:`.image`), the A/B slots in the
state directory (:mod:`.slots`) and the HTTPS update server with the gateway's download client
(:mod:`.server`). The update procedure itself – command, download, verification, trial,
self-test, rollback, calibration log – is ``imsys.gateway.admin.firmware``. See
docs/firmware.md."""

from __future__ import annotations

from imsys.firmware.image import (
    FORMAT,
    FirmwareReason,
    FirmwareRejected,
    Manifest,
    VerifiedPackage,
    build_package,
    package_digest,
    verify_package,
)
from imsys.firmware.slots import Slot, Slots, Trial

__all__ = ["FORMAT", "FirmwareReason", "FirmwareRejected", "Manifest", "Slot", "Slots",
           "Trial", "VerifiedPackage", "build_package", "package_digest", "verify_package"]
