"""The firmware package format and the A/B slots without a network (docs/firmware.md)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from imsys.core.errors import UsageError
from imsys.crypto import SoftwareKey
from imsys.firmware import Slot, Slots, build_package, verify_package
from imsys.firmware.image import FirmwareRejected, Manifest, split_package
from imsys.pki import PkiDirectory

IssueFn = Callable[..., tuple[SoftwareKey, x509.Certificate]]


def reason(exc: pytest.ExceptionInfo[FirmwareRejected]) -> str:
    return exc.value.reason.value


def test_package_round_trip_and_refusals(pki: PkiDirectory, issue: IssueFn) -> None:
    key, cert = issue("manufacturer-sig", "GWH-Unit")
    validator = pki.validator()
    image = b"\x7fELF firmware" * 100
    package = build_package(image, "1.2.3", key, cert)
    verified = verify_package(package, validator)
    assert verified.image == image and verified.manifest.version == "1.2.3"
    assert verified.manifest.size == len(image)
    with pytest.raises(FirmwareRejected) as bad:
        verify_package(b"ZIP!" + package[4:], validator)
    assert reason(bad) == "malformed"
    with pytest.raises(FirmwareRejected) as bad:
        verify_package(package[:4] + struct.pack(">I", 10**7) + package[8:], validator)
    assert reason(bad) == "malformed"
    with pytest.raises(FirmwareRejected) as bad:
        verify_package(package + b"appended", validator)
    assert reason(bad) == "digest-mismatch"
    with pytest.raises(FirmwareRejected) as bad:
        verify_package(package, validator, product="other-gateway")
    assert reason(bad) == "wrong-product"
    signed, _ = split_package(package)
    with pytest.raises(FirmwareRejected) as bad:
        Manifest.decode(b'{"format": "imsys-firmware/1"}')
    assert reason(bad) == "malformed"
    assert signed[:1] == b"\x30"  # a DER ContentInfo


def test_slots_trial_confirm_and_rollback(tmp_path: Path) -> None:
    slots = Slots(tmp_path)
    assert slots.active is Slot.A and slots.trial is None
    with pytest.raises(UsageError):  # never into the active slot
        slots.install(Slot.A, b"x")
    slots.install(Slot.B, b"package-b")
    slots.begin_trial(Slot.B, "2.0.0")
    assert slots.active is Slot.B and slots.trial is not None
    # a restart before the confirmation rolls back
    recovery = Slots(tmp_path).recover()
    assert recovery.rolled_back is not None and recovery.rolled_back.version == "2.0.0"
    assert slots.active is Slot.A and slots.trial is None
    slots.begin_trial(Slot.B, "2.0.0")
    slots.confirm()
    assert Slots(tmp_path).recover().rolled_back is None
    assert slots.active is Slot.B
    (slots.root / "slot-a" / "package.imfw.tmp").write_bytes(b"half")
    slots.download_path.write_bytes(b"partial")
    removed = slots.recover().removed
    assert set(removed) == {"slot-a/package.imfw.tmp", "download.part"}
