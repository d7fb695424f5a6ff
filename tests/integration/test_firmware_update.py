"""Firmware update end to end (seed 003 §5, table 3 steps 3.3–3.8): a signed package from a
real HTTPS update server on 127.0.0.1, A/B slots, self-test, rollback – and a process kill at
every step, after which the gateway starts with its data intact.

The kill tests run this file as a child process (``python test_firmware_update.py <job.json>``):
the child opens the gateway's database and state directory, runs the boot check and the
pending job, and SIGKILLs itself at the chosen step. The parent restarts it in boot-only mode
and checks the result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from imsys.core.clock import SystemClock
from imsys.crypto import SoftwareKey
from imsys.crypto.tls import TlsIdentity
from imsys.firmware import Slot, Slots, build_package, package_digest, verify_package
from imsys.firmware.server import UpdateServer
from imsys.gateway.admin import AdminContext, AdminExecutor, ConfigKind, ConfigStore, ItemState
from imsys.gateway.admin import firmware as fw
from imsys.gateway.admin.firmware import FirmwareStep, FirmwareUpdater, JobState
from imsys.gateway.logs import CalibrationEvent, GatewayLogs, Outcome
from imsys.gateway.store import Database
from imsys.pki import PkiDirectory
from imsys.wire.command import Command, CommandResult, CommandType, CommandVerifier, issue_command

GATEWAY_ID = "EIMS0011223344"
GWA_ID = "GWA-Firmware"
IssueFn = Callable[..., tuple[SoftwareKey, x509.Certificate]]


# --------------------------------------------------------------------------- child process


def open_context(db_path: str, state_dir: str, pki_path: str) -> AdminContext:
    clock = SystemClock()
    db = Database(db_path)
    pki = PkiDirectory.open(pki_path)
    return AdminContext(GATEWAY_ID, db, GatewayLogs(db, clock), clock, ConfigStore(db),
                        Path(state_dir), extras={"pki_validator": pki.validator(clock=clock)})


def child(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    ctx = open_context(job["db"], job["state_dir"], job["pki"])
    kill_at = job.get("kill_at")

    def on_step(step: FirmwareStep) -> None:
        if kill_at == step.value:
            os.kill(os.getpid(), signal.SIGKILL)

    if kill_at and kill_at.endswith(":replace"):  # die inside the atomic replacement
        target = {"install:replace": "package.imfw", "activate:replace": "active"}[kill_at]
        real_replace = os.replace

        def replace(src: Any, dst: Any) -> None:
            if Path(dst).name == target:
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst)

        import imsys.firmware.slots as slots_module
        slots_module.os.replace = replace  # type: ignore[assignment]
    identity = TlsIdentity.from_files(Path(job["cert"]), Path(job["key"]))
    updater = FirmwareUpdater(ctx, tls_identity=identity, on_step=on_step)
    updater.boot()
    if job["mode"] == "run":
        updater.run_pending()
    print(json.dumps(updater.status()))


# --------------------------------------------------------------------------- fixtures


@dataclass
class Rig:
    ctx: AdminContext
    pki: PkiDirectory
    server: UpdateServer
    folder: Path
    identity: TlsIdentity
    gwa_key: SoftwareKey
    gwa_cert: x509.Certificate
    verifier: CommandVerifier
    sign_key: SoftwareKey
    sign_cert: x509.Certificate
    tmp: Path
    sequence: int = 0

    def publish(self, name: str, version: str, image: bytes | None = None, *,
                key: SoftwareKey | None = None, cert: x509.Certificate | None = None) -> bytes:
        package = build_package(image or f"imsys gateway firmware {version}\n".encode() * 50,
                                version, key or self.sign_key, cert or self.sign_cert)
        (self.folder / name).write_bytes(package)
        return package

    def run(self, command_type: CommandType, parameters: dict[str, Any]) -> CommandResult:
        self.sequence += 1
        now = self.ctx.clock.now().replace(microsecond=0)
        command = Command(uuid.uuid4(), GATEWAY_ID, GWA_ID, self.sequence, now,
                          now + timedelta(minutes=5), command_type, parameters)
        verified = self.verifier.verify(issue_command(command, self.gwa_key, self.gwa_cert))
        return AdminExecutor(self.ctx, fw.HANDLERS).execute(verified)

    def order(self, name: str, version: str, package: bytes) -> CommandResult:
        return self.run(CommandType.FIRMWARE_UPDATE, {
            "url": self.server.url(name), "digest": package_digest(package),
            "version": version})

    def updater(self, **kwargs: Any) -> FirmwareUpdater:
        return FirmwareUpdater(self.ctx, tls_identity=self.identity, **kwargs)

    def calibration(self) -> list[tuple[Outcome, str]]:
        return [(e.outcome, e.text) for e in self.ctx.logs.calibration.entries()
                if e.event is CalibrationEvent.FIRMWARE_UPDATE]


@pytest.fixture
def rig(tmp_path: Path, pki: PkiDirectory, issue: IssueFn) -> Iterator[Rig]:
    gw_key, gw_cert = issue("gateway-tls", GATEWAY_ID)
    identity = TlsIdentity((gw_cert, *pki.chain()[:-1]), gw_key)
    srv_key, srv_cert = issue("manufacturer-tls", "GWH-Update")
    sign_key, sign_cert = issue("manufacturer-sig", "GWH-Imsys")
    gwa_key, gwa_cert = issue("gwa-sig", GWA_ID)
    folder = tmp_path / "served"
    folder.mkdir()
    clock = SystemClock()
    server = UpdateServer(folder, TlsIdentity((srv_cert, *pki.chain()[:-1]), srv_key),
                          pki.validator(clock=clock)).start()
    db = Database(str(tmp_path / "gateway.db"))
    ctx = AdminContext(GATEWAY_ID, db, GatewayLogs(db, clock), clock, ConfigStore(db),
                       tmp_path / "state", extras={"pki_validator": pki.validator(clock=clock)})
    ctx.state_dir.mkdir()
    # data that must survive every update: a consumer, a meter, a communication profile
    ctx.config.put(ConfigKind.CONSUMER, "LV-1", {"consumer_id": "LV-1"}, state=ItemState.ACTIVE)
    ctx.config.put(ConfigKind.METER, "1EMH0012345678", {"meter_id": "1EMH0012345678"})
    ctx.config.put(ConfigKind.COMMUNICATION_PROFILE, "cp-1", {"profile": "cp-1"},
                   state=ItemState.ACTIVE)
    verifier = CommandVerifier(GATEWAY_ID, gwa_cert, clock, administrator_id=GWA_ID)
    yield Rig(ctx, pki, server, folder, identity, gwa_key, gwa_cert, verifier, sign_key,
              sign_cert, tmp_path)
    server.stop()
    db.close()


def data_intact(ctx: AdminContext) -> None:
    ctx.logs.verify_all()
    assert ctx.config.require(ConfigKind.CONSUMER, "LV-1").state is ItemState.ACTIVE
    assert ctx.config.get(ConfigKind.METER, "1EMH0012345678") is not None
    assert ctx.config.require(ConfigKind.COMMUNICATION_PROFILE, "cp-1").state \
        is ItemState.ACTIVE


# --------------------------------------------------------------------------- tests


def test_step_3_5_to_3_8_update_downloads_verifies_activates_and_confirms(rig: Rig) -> None:
    package = rig.publish("fw-1.1.0.imfw", "1.1.0")
    ordered = rig.order("fw-1.1.0.imfw", "1.1.0", package)
    assert ordered.details == {"job_id": str(ordered.command_id), "state": "pending",
                               "version": "1.1.0"}
    job = rig.updater().run_pending()
    assert job is not None and job["state"] == JobState.DONE
    assert rig.server.served == ["fw-1.1.0.imfw"]
    slots = Slots(rig.ctx.state_dir)
    assert slots.active is Slot.B and slots.trial is None
    assert slots.package(Slot.B) == package
    assert fw.active_version(rig.ctx) == "1.1.0"
    texts = [t for _, t in rig.calibration()]
    for word in ("ordered", "downloaded", "verified", "installed in slot b",
                 "activated in slot b (trial)", "confirmed after its self-test"):
        assert any(word in t for t in texts), word
    assert any(e.event is CalibrationEvent.SELF_TEST and "firmware 1.1.0" in e.text
               for e in rig.ctx.logs.calibration.entries())
    data_intact(rig.ctx)
    # the next update goes into the other slot
    package2 = rig.publish("fw-1.2.0.imfw", "1.2.0")
    rig.order("fw-1.2.0.imfw", "1.2.0", package2)
    assert rig.updater().run_pending()["state"] == JobState.DONE  # type: ignore[index]
    assert slots.active is Slot.A and fw.active_version(rig.ctx) == "1.2.0"
    # and the administrator can go back to the previous release still in slot B
    back = rig.run(CommandType.FIRMWARE_ACTIVATE, {"version": "1.1.0"})
    assert back.status.value == "ok", back.details
    assert rig.updater().run_pending()["state"] == JobState.DONE  # type: ignore[index]
    assert fw.active_version(rig.ctx) == "1.1.0"


def test_firmware_with_a_bad_signature_is_refused(rig: Rig, issue: IssueFn) -> None:
    package = bytearray(rig.publish("fw-bad.imfw", "2.0.0"))
    package[-1] ^= 0x01  # image no longer matches the signed manifest
    (rig.folder / "fw-bad.imfw").write_bytes(bytes(package))
    rig.order("fw-bad.imfw", "2.0.0", bytes(package))
    job = rig.updater().run_pending()
    assert job is not None and job["state"] == JobState.FAILED
    assert job["reason"] == "digest-mismatch"
    # signed by a certificate that is not a manufacturer SIG certificate
    emt_key, emt_cert = issue("emt-sig", "EMT-Forger")
    forged = rig.publish("fw-forged.imfw", "2.0.1", key=emt_key, cert=emt_cert)
    rig.order("fw-forged.imfw", "2.0.1", forged)
    job = rig.updater().run_pending()
    assert job is not None and (job["state"], job["reason"]) == (JobState.FAILED,
                                                                  "untrusted-signer")
    # a tampered manifest signature
    original = rig.publish("fw-sig.imfw", "2.0.2")
    signed = original.replace(b'"version":"2.0.2"', b'"version":"2.0.3"', 1)
    assert signed != original
    (rig.folder / "fw-sig.imfw").write_bytes(signed)
    rig.order("fw-sig.imfw", "2.0.3", signed)
    job = rig.updater().run_pending()
    assert job is not None and (job["state"], job["reason"]) == (JobState.FAILED,
                                                                  "bad-signature")
    slots = Slots(rig.ctx.state_dir)
    assert slots.active is Slot.A and slots.package(Slot.B) is None
    assert not slots.download_path.exists()
    refusals = [t for o, t in rig.calibration() if o is Outcome.FAILURE]
    assert len(refusals) == 3 and all("refused at verify" in t for t in refusals)
    data_intact(rig.ctx)


def test_digest_other_than_the_commands_is_refused(rig: Rig) -> None:
    package = rig.publish("fw-3.imfw", "3.0.0")
    other = rig.publish("fw-3b.imfw", "3.0.0", b"another image")
    rig.order("fw-3.imfw", "3.0.0", other)  # the command names another file's digest
    job = rig.updater().run_pending()
    assert job is not None and job["reason"] == "digest-mismatch"
    assert verify_package(package, rig.pki.validator()).manifest.version == "3.0.0"


def test_failed_self_test_rolls_back(rig: Rig) -> None:
    good = rig.publish("fw-4.0.0.imfw", "4.0.0")
    rig.order("fw-4.0.0.imfw", "4.0.0", good)
    rig.updater().run_pending()

    def refuse_broken(manifest: Any) -> None:
        if manifest.version.endswith("-broken"):
            raise RuntimeError("metrology module does not start")

    rig.ctx.extras[fw.EXTRA_FIRMWARE_SELF_TEST] = refuse_broken
    broken = rig.publish("fw-4.1.0.imfw", "4.1.0-broken")
    rig.order("fw-4.1.0.imfw", "4.1.0-broken", broken)
    job = rig.updater().run_pending()
    assert job is not None and (job["state"], job["reason"]) == (JobState.ROLLED_BACK,
                                                                  "self-test-failed")
    slots = Slots(rig.ctx.state_dir)
    assert slots.trial is None and fw.active_version(rig.ctx) == "4.0.0"
    assert any("failed its self-test: rolled back" in t for _, t in rig.calibration())
    failed_tests = [e for e in rig.ctx.logs.calibration.entries()
                    if e.event is CalibrationEvent.SELF_TEST and e.outcome is Outcome.FAILURE]
    assert len(failed_tests) == 1 and "firmware-image" in failed_tests[0].text
    data_intact(rig.ctx)


def test_update_parameters_and_open_jobs_are_checked(rig: Rig) -> None:
    bad = rig.run(CommandType.FIRMWARE_UPDATE, {"url": "http://127.0.0.1:1/x",
                                                "digest": "sha256:" + "0" * 64,
                                                "version": "1.0.0"})
    assert bad.details["reason"] == "bad-parameter"
    package = rig.publish("fw-5.imfw", "5.0.0")
    assert rig.order("fw-5.imfw", "5.0.0", package).status.value == "ok"
    again = rig.order("fw-5.imfw", "5.0.0", package)
    assert again.details["reason"] == "in-use"
    assert rig.run(CommandType.FIRMWARE_ACTIVATE, {"version": "9.9.9"}).details["reason"] \
        == "in-use"


def test_download_refuses_a_server_outside_the_sm_pki(rig: Rig, tmp_path: Path) -> None:
    foreign = PkiDirectory.init(tmp_path / "foreign")
    key, cert = foreign.issue_with_new_key("manufacturer-tls", "Evil-Update")
    folder = tmp_path / "evil"
    folder.mkdir()
    package = rig.publish("fw-6.imfw", "6.0.0")
    (folder / "fw-6.imfw").write_bytes(package)
    with UpdateServer(folder, TlsIdentity((cert, *foreign.chain()[:-1]), key),
                      foreign.validator()) as evil:
        rig.run(CommandType.FIRMWARE_UPDATE, {"url": evil.url("fw-6.imfw"),
                                              "digest": package_digest(package),
                                              "version": "6.0.0"})
        job = rig.updater().run_pending()
    assert job is not None and job["state"] == JobState.FAILED
    assert job["reason"] == "download-failed"  # the handshake fails: foreign server chain
    assert Slots(rig.ctx.state_dir).package(Slot.B) is None
    # a missing file on the right server
    rig.run(CommandType.FIRMWARE_UPDATE, {"url": rig.server.url("nothing.imfw"),
                                          "digest": package_digest(package),
                                          "version": "6.0.0"})
    job = rig.updater().run_pending()
    assert job is not None and job["reason"] == "download-failed"


def test_update_server_serves_only_gateways(rig: Rig, issue: IssueFn) -> None:
    from imsys.firmware.image import FirmwareRejected
    from imsys.firmware.server import download

    rig.publish("fw-7.imfw", "7.0.0")
    validator = rig.pki.validator()
    key, cert = issue("consumer-tls", "LV-curious")
    with pytest.raises(FirmwareRejected) as refused:
        download(rig.server.url("fw-7.imfw"), rig.tmp / "x.part",
                 TlsIdentity((cert, *rig.pki.chain()[:-1]), key), validator.trust_anchors,
                 validator, intermediates=validator.intermediates)
    assert refused.value.reason.value == "download-failed"
    assert rig.server.served == []
    digest = download(rig.server.url("fw-7.imfw"), rig.tmp / "y.part", rig.identity,
                      validator.trust_anchors, validator, intermediates=validator.intermediates)
    assert digest == package_digest((rig.folder / "fw-7.imfw").read_bytes())


KILL_POINTS = [s.value for s in FirmwareStep if s is not FirmwareStep.ROLLBACK] + [
    "install:replace", "activate:replace"]


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_process_kill_at_any_step_leaves_a_gateway_that_starts(rig: Rig, kill_at: str) -> None:
    base = rig.publish("fw-1.0.0.imfw", "1.0.0")
    rig.order("fw-1.0.0.imfw", "1.0.0", base)
    rig.updater().run_pending()
    new = rig.publish("fw-2.0.0.imfw", "2.0.0")
    rig.order("fw-2.0.0.imfw", "2.0.0", new)
    rig.ctx.db.close()
    cert_file, key_file = rig.tmp / "gw-cert.pem", rig.tmp / "gw-key.pem"
    from cryptography.hazmat.primitives import serialization
    cert_file.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                   for c in rig.identity.chain))
    assert isinstance(rig.identity.key, SoftwareKey)
    key_file.write_bytes(rig.identity.key.private_key_pem())
    job = {"db": rig.ctx.db.path, "state_dir": str(rig.ctx.state_dir), "pki": str(rig.pki.path),
           "cert": str(cert_file), "key": str(key_file), "mode": "run", "kill_at": kill_at}
    job_file = rig.tmp / "job.json"

    def start(**changes: Any) -> subprocess.CompletedProcess[str]:
        job_file.write_text(json.dumps({**job, **changes}))
        return subprocess.run([sys.executable, __file__, str(job_file)], capture_output=True,
                              text=True, timeout=120)

    killed = start()
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    restarted = start(mode="boot", kill_at=None)
    assert restarted.returncode == 0, restarted.stderr
    status = json.loads(restarted.stdout.strip().splitlines()[-1])
    # the old firmware runs, nothing is left on trial, the job is closed
    assert status["active_version"] == "1.0.0" and status["trial"] is None
    assert status["job"]["state"] in (JobState.INTERRUPTED, JobState.ROLLED_BACK)
    ctx = open_context(job["db"], job["state_dir"], job["pki"])
    try:
        data_intact(ctx)
        slots = Slots(ctx.state_dir)
        assert not list(slots.root.rglob("*.tmp")) and not slots.download_path.exists()
        verify_package(slots.package(slots.active) or b"", rig.pki.validator())
        last = ctx.logs.calibration.entries()[-1]
        assert last.event is CalibrationEvent.FIRMWARE_UPDATE
        assert last.outcome is Outcome.FAILURE
        # the gateway can update again after the restart
        updater = FirmwareUpdater(ctx, tls_identity=rig.identity)
        ctx.config.put(ConfigKind.SETTING, fw.JOB_ITEM, {
            **status["job"], "state": JobState.PENDING.value, "job_id": "retry"},
            state=ItemState.ACTIVE)
        assert (updater.run_pending() or {})["state"] == JobState.DONE
        assert fw.active_version(ctx) == "2.0.0"
    finally:
        ctx.db.close()


def test_kill_after_confirmation_keeps_the_new_firmware(rig: Rig) -> None:
    """The one window in which the new firmware stays: confirmed, job record not yet closed."""
    base = rig.publish("fw-1.0.0.imfw", "1.0.0")
    rig.order("fw-1.0.0.imfw", "1.0.0", base)
    rig.updater().run_pending()
    new = rig.publish("fw-2.0.0.imfw", "2.0.0")
    rig.order("fw-2.0.0.imfw", "2.0.0", new)

    class Killed(Exception):
        pass

    updater = rig.updater()
    real_confirm = updater.slots.confirm

    def confirm_then_die() -> Any:
        real_confirm()
        raise Killed

    updater.slots.confirm = confirm_then_die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        updater.run_pending()
    rig.updater().boot()
    assert fw.active_version(rig.ctx) == "2.0.0"
    job = rig.updater().job()
    assert job is not None and job["state"] == JobState.DONE
    assert Slots(rig.ctx.state_dir).trial is None


if __name__ == "__main__":
    child(sys.argv[1])
