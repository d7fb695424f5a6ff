"""Firmware update with A/B slots, self-test and rollback (seed 003 §5, table 3 steps 3.1–3.8).

``firmware.update`` (parameters ``url``, ``digest``, ``version``) is checked and recorded as a
*job* (``setting/firmware-job``) with a calibration-log entry, and answered at once; the job
runs outside the command's transaction – :meth:`FirmwareUpdater.run_pending`, called by the
process after the result has been sent – so every step commits its own calibration-log entry
and a process kill cannot undo what was logged. Steps (:class:`FirmwareStep`):

1. ``download`` – over TLS from the update server (:func:`imsys.firmware.server.download`),
   into ``firmware/download.part``;
2. ``verify`` – the file's SHA-256 is the command's ``digest``, the manifest is signed by a
   valid manufacturer SIG certificate of the SM-PKI, the image matches the manifest, the
   version is the ordered one (else the job fails: ``bad-signature``, ``untrusted-signer``,
   ``digest-mismatch``, ``version-mismatch``…; the slots are untouched);
3. ``install`` – into the inactive slot (atomic);
4. ``activate`` – ``trial`` marker, then the ``active`` pointer (:class:`imsys.firmware.Slots`);
5. ``self-test`` – :func:`run_self_test` plus a check of the active package;
6. ``confirm`` (marker removed) or ``rollback`` (previous slot active again).

:meth:`FirmwareUpdater.boot` runs at every start before anything else: a trial that never
confirmed is rolled back, half-written files are removed, and a job that a kill interrupted
is closed as ``interrupted`` (or ``done``/``rolled-back`` when its outcome is already on
disk). Stored data and profiles are never touched: the update only writes below
``<state_dir>/firmware`` and the job/calibration records.

``firmware.activate`` (``version``) switches to the package in the inactive slot (e.g. back to
the previous release) with the same verify → activate → self-test → confirm/rollback steps.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from imsys.core.errors import CmsRejected, Rejected
from imsys.crypto import cms
from imsys.crypto.tls import TlsIdentity
from imsys.firmware.image import (
    FirmwareReason,
    FirmwareRejected,
    Manifest,
    package_digest,
    split_package,
    verify_package,
)
from imsys.firmware.server import download
from imsys.firmware.slots import Recovery, Slots
from imsys.gateway.admin.config_store import ConfigKind, ItemState
from imsys.gateway.admin.context import AdminContext, HandlerTable
from imsys.gateway.admin.device_handlers import (
    HandlerReason,
    HandlerRejected,
    Params,
    validator_for,
)
from imsys.gateway.admin.monitoring_handlers import run_self_test
from imsys.gateway.logs import CalibrationEvent, Level, Outcome
from imsys.wire.command import Command, CommandType

__all__ = ["EXTRA_FIRMWARE_SELF_TEST", "EXTRA_WAN_TLS_IDENTITY", "HANDLERS", "JOB_ITEM",
           "FirmwareStep", "FirmwareUpdater", "JobState", "active_version"]

JOB_ITEM = "firmware-job"
#: ``context.extras`` names: the gateway's WAN TLS identity (for the download) and an
#: optional extra self-test of new firmware (``check(manifest)`` raising on failure).
EXTRA_WAN_TLS_IDENTITY = "wan_tls_identity"
EXTRA_FIRMWARE_SELF_TEST = "firmware_self_test"
_URL = re.compile(r"^https://[A-Za-z0-9.-]{1,253}:[0-9]{1,5}/[A-Za-z0-9._/-]{1,200}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+([-+][A-Za-z0-9.]{1,32})?$")


class FirmwareStep(StrEnum):
    DOWNLOAD = "download"
    VERIFY = "verify"
    INSTALL = "install"
    ACTIVATE = "activate"
    SELF_TEST = "self-test"
    CONFIRM = "confirm"
    ROLLBACK = "rollback"


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # refused before activation; nothing changed
    ROLLED_BACK = "rolled-back"  # activated, self-test failed (or never confirmed)
    INTERRUPTED = "interrupted"  # a kill stopped it before activation


_OPEN = (JobState.PENDING, JobState.RUNNING)


def _manifest_of(package: bytes) -> Manifest | None:
    """The manifest of a stored package (signature checked, signer path not: for display)."""
    try:
        signed, _ = split_package(package)
        return Manifest.decode(cms.verify(signed).content)
    except (FirmwareRejected, CmsRejected):
        return None


def active_version(ctx: AdminContext) -> str | None:
    """The version in the active slot, None for the factory image (no update yet)."""
    slots = Slots(ctx.state_dir)
    package = slots.package(slots.active)
    manifest = None if package is None else _manifest_of(package)
    return None if manifest is None else manifest.version


class FirmwareUpdater:
    """Runs firmware jobs of one gateway. ``on_step`` is called before each step (tests use it
    to kill the process at that point)."""

    def __init__(self, ctx: AdminContext, *, tls_identity: TlsIdentity | None = None,
                 product: str = "imsys-smgw",
                 on_step: Callable[[FirmwareStep], None] | None = None) -> None:
        self.ctx = ctx
        self.slots = Slots(ctx.state_dir)
        self.tls_identity = tls_identity or ctx.extras.get(EXTRA_WAN_TLS_IDENTITY)
        self.product = product
        self.on_step = on_step or (lambda step: None)

    # ------------------------------------------------------------------ records

    def job(self) -> dict[str, Any] | None:
        item = self.ctx.config.get(ConfigKind.SETTING, JOB_ITEM)
        return None if item is None else dict(item.document)

    def _save(self, job: dict[str, Any]) -> None:
        state = ItemState.ACTIVE if job["state"] in _OPEN else ItemState.INSTALLED
        self.ctx.config.put(ConfigKind.SETTING, JOB_ITEM, job, state=state)

    def _log(self, ok: bool, text: str) -> None:
        self.ctx.logs.calibration.append(Level.INFO if ok else Level.ERROR,
                                         Outcome.SUCCESS if ok else Outcome.FAILURE, text,
                                         event=CalibrationEvent.FIRMWARE_UPDATE)

    def status(self) -> dict[str, Any]:
        trial = self.slots.trial
        return {"active_slot": self.slots.active.value, "active_version": active_version(self.ctx),
                "trial": None if trial is None else trial.version, "job": self.job()}

    # ------------------------------------------------------------------ start-up

    def boot(self) -> Recovery:
        """Roll back an unconfirmed trial, clean up, close a job a kill interrupted."""
        recovery = self.slots.recover()
        job = self.job()
        if recovery.rolled_back is not None:
            self._log(False, f"firmware {recovery.rolled_back.version} never confirmed its "
                      f"self-test: rolled back to slot {recovery.rolled_back.previous.value}")
        if job is not None and job["state"] == JobState.RUNNING:
            if recovery.rolled_back is not None:
                job.update(state=JobState.ROLLED_BACK, reason="not-confirmed")
            elif active_version(self.ctx) == job["version"] and \
                    job.get("step") in (FirmwareStep.CONFIRM, FirmwareStep.SELF_TEST):
                job.update(state=JobState.DONE, reason=None)
                self._log(True, f"firmware {job['version']} confirmed (before the restart)")
            else:
                job.update(state=JobState.INTERRUPTED, reason="interrupted")
                self._log(False, f"firmware update to {job['version']} interrupted at "
                          f"{job.get('step')}; the running firmware is unchanged")
            self._save(job)
        return recovery

    # ------------------------------------------------------------------ jobs

    def run_pending(self) -> dict[str, Any] | None:
        """Run the pending job, if any; returns the finished job record."""
        job = self.job()
        if job is None or job["state"] != JobState.PENDING:
            return None
        job["state"] = JobState.RUNNING
        try:
            package = self._obtain(job)
            verified = self._step(job, FirmwareStep.VERIFY)(lambda: self._verify(job, package))
            if job["kind"] == "update":
                self._step(job, FirmwareStep.INSTALL)(
                    lambda: self.slots.install(self.slots.inactive, package))
                with contextlib.suppress(FileNotFoundError):
                    self.slots.download_path.unlink()
                self._log(True, f"firmware {job['version']} installed in slot "
                          f"{self.slots.inactive.value}")
        except Rejected as exc:
            with contextlib.suppress(FileNotFoundError):
                self.slots.download_path.unlink()
            job.update(state=JobState.FAILED, reason=exc.reason.value)
            self._log(False, f"firmware {job['version']} refused at {job.get('step')}: "
                      f"{exc.reason.value}")
            self._save(job)
            return job
        slot = self.slots.inactive
        self._step(job, FirmwareStep.ACTIVATE)(
            lambda: self.slots.begin_trial(slot, verified.version))
        self._log(True, f"firmware {job['version']} activated in slot {slot.value} (trial)")
        report = self._step(job, FirmwareStep.SELF_TEST)(lambda: run_self_test(
            self.ctx, reason=f"firmware {job['version']}",
            extra={"firmware-image": lambda: self._check_active(verified)}))
        if report.passed:
            self._step(job, FirmwareStep.CONFIRM)(self.slots.confirm)
            job.update(state=JobState.DONE, reason=None)
            self._log(True, f"firmware {job['version']} confirmed after its self-test")
        else:
            self._step(job, FirmwareStep.ROLLBACK)(self.slots.roll_back)
            job.update(state=JobState.ROLLED_BACK, reason="self-test-failed")
            self._log(False, f"firmware {job['version']} failed its self-test: rolled back "
                      f"to slot {self.slots.active.value}")
        self._save(job)
        return job

    def _step(self, job: dict[str, Any], step: FirmwareStep) -> Callable[[Callable[[], Any]],
                                                                          Any]:
        def run(action: Callable[[], Any]) -> Any:
            job["step"] = step.value
            self._save(job)
            self.on_step(step)
            return action()
        return run

    def _obtain(self, job: dict[str, Any]) -> bytes:
        if job["kind"] == "activate":
            package = self.slots.package(self.slots.inactive)
            if package is None:
                raise HandlerRejected(HandlerReason.UNKNOWN_ITEM, "the inactive slot is empty")
            return package
        if self.tls_identity is None:
            raise HandlerRejected(HandlerReason.WRONG_STATE, "no WAN TLS identity to download "
                                  "with")
        validator = validator_for(self.ctx)
        target = self.slots.download_path

        def fetch() -> str:
            return download(job["url"], target, self.tls_identity, validator.trust_anchors,
                            validator, intermediates=validator.intermediates)

        try:
            self._step(job, FirmwareStep.DOWNLOAD)(fetch)
        except OSError as exc:
            raise FirmwareRejected(FirmwareReason.DOWNLOAD_FAILED,
                                   f"download failed: {type(exc).__name__}") from None
        package = target.read_bytes()
        self._log(True, f"firmware {job['version']} downloaded ({len(package)} bytes)")
        return package

    def _verify(self, job: dict[str, Any], package: bytes) -> Manifest:
        if job.get("digest") is not None and package_digest(package) != job["digest"]:
            raise FirmwareRejected(FirmwareReason.DIGEST_MISMATCH,
                                   "package digest differs from the command's")
        verified = verify_package(package, validator_for(self.ctx), product=self.product,
                                  at=self.ctx.clock.now())
        if verified.manifest.version != job["version"]:
            raise FirmwareRejected(FirmwareReason.VERSION_MISMATCH,
                                   f"package holds {verified.manifest.version}")
        self._log(True, f"firmware {job['version']} verified: signed by the manufacturer, "
                  f"digest {verified.manifest.digest[:23]}…")
        return verified.manifest

    def _check_active(self, expected: Manifest) -> str:
        package = self.slots.package(self.slots.active)
        if package is None:
            raise RuntimeError("the active slot is empty")
        verified = verify_package(package, validator_for(self.ctx), product=self.product,
                                  at=self.ctx.clock.now())
        if verified.manifest != expected:
            raise RuntimeError("the active slot does not hold the activated firmware")
        extra = self.ctx.extras.get(EXTRA_FIRMWARE_SELF_TEST)
        if callable(extra):
            extra(verified.manifest)
        return f"ok ({verified.manifest.version})"


# --------------------------------------------------------------------------- handlers


def _refuse_open_job(ctx: AdminContext) -> None:
    item = ctx.config.get(ConfigKind.SETTING, JOB_ITEM)
    if item is not None and item.document["state"] in _OPEN:
        raise HandlerRejected(HandlerReason.IN_USE, "a firmware job is pending or running")


def firmware_update(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    url = p.req_text("url", pattern=_URL)
    digest = p.req_text("digest", pattern=_DIGEST)
    version = p.req_text("version", pattern=_VERSION)
    p.done()
    _refuse_open_job(ctx)
    if version == active_version(ctx):
        raise HandlerRejected(HandlerReason.ALREADY_EXISTS, f"{version} is running already")
    job = {"job_id": str(command.command_id), "kind": "update", "url": url, "digest": digest,
           "version": version, "state": JobState.PENDING.value, "step": None, "reason": None}
    ctx.config.put(ConfigKind.SETTING, JOB_ITEM, job, state=ItemState.ACTIVE)
    ctx.logs.calibration.append(Level.INFO, Outcome.SUCCESS,
                                f"firmware update to {version} ordered by the administrator "
                                f"(command verified; digest {digest[:23]}…)",
                                event=CalibrationEvent.FIRMWARE_UPDATE)
    return {"job_id": job["job_id"], "state": "pending", "version": version}


def firmware_activate(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    version = p.req_text("version", pattern=_VERSION)
    p.done()
    _refuse_open_job(ctx)
    slots = Slots(ctx.state_dir)
    package = slots.package(slots.inactive)
    manifest = None if package is None else _manifest_of(package)
    if manifest is None or manifest.version != version:
        raise HandlerRejected(HandlerReason.UNKNOWN_ITEM,
                              f"the inactive slot does not hold {version}")
    job = {"job_id": str(command.command_id), "kind": "activate", "url": None, "digest": None,
           "version": version, "state": JobState.PENDING.value, "step": None, "reason": None}
    ctx.config.put(ConfigKind.SETTING, JOB_ITEM, job, state=ItemState.ACTIVE)
    ctx.logs.calibration.append(Level.INFO, Outcome.SUCCESS,
                                f"activation of installed firmware {version} ordered",
                                event=CalibrationEvent.FIRMWARE_UPDATE)
    return {"job_id": job["job_id"], "state": "pending", "version": version}


HANDLERS: HandlerTable = {
    CommandType.FIRMWARE_UPDATE: firmware_update,
    CommandType.FIRMWARE_ACTIVATE: firmware_activate,
}
