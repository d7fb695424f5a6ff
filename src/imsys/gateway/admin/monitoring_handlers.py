"""Monitoring, self-test, log retrieval, time service and wake-up configuration
(seed 003 §5, table 3 steps 2.3, 5.2, 5.3, 5.6).

* ``monitoring.status`` – the gateway's state for the fleet view (no consumer data).
* ``monitoring.self-test`` – :func:`run_self_test`; result and outcome go to the calibration
  log (step 5.3). A failed self-test is an ``ok`` command result with ``passed: false`` (the
  command ran; its calibration-log entry must be kept, which a refusal would roll back).
* ``monitoring.log.system`` / ``monitoring.log.calibration`` – AR 2418-6 XML extracts,
  filtered by ``since`` (time) and ``after`` (record number), at most ``limit`` entries.
* ``time.service.configure`` – the GWA's time service: servers, interval and, with
  ``reference_time``, a synchronisation. The gateway keeps its clock as an offset to the
  hardware clock (``time-service/clock``). A correction within :data:`MAX_CLOCK_OFFSET`
  (or the configured ``max_offset_s``) is a ``TIME_CORRECTION`` calibration-log entry; a
  larger deviation is corrected too, but written as ``CLOCK_INVALID`` and marks the clock
  **invalid until a later synchronisation confirms it within the threshold**. Measurement
  asks :func:`clock_valid` / :func:`clock_state` and marks readings taken meanwhile invalid.
* ``wakeup.configure`` – port, packet age and on/off of the wake-up receiver.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from imsys.core.clock import Clock
from imsys.core.errors import KeyRejected, Rejected
from imsys.crypto.primitives import ecdsa_verify
from imsys.gateway.admin.config_store import ConfigKind, ConfigStore, ItemState
from imsys.gateway.admin.context import AdminContext, HandlerTable
from imsys.gateway.admin.device_handlers import HandlerReason, HandlerRejected, Params
from imsys.gateway.logs import CalibrationEvent, Level, LogName, Outcome, export_xml
from imsys.wire.command import Command, CommandType

__all__ = ["CLOCK_ITEM", "EXTRA_SELF_TEST_CHECKS", "HANDLERS", "MAX_CLOCK_OFFSET",
           "ClockState", "SelfTestReport", "clock_state", "clock_valid", "gateway_time",
           "run_self_test"]

#: Deviation of the gateway clock from the time service up to which a synchronisation is a
#: plain correction. Beyond it the clock was unfit for time stamps: CLOCK_INVALID.
#: imsys's default; the GWA may set 1..27 s (``max_offset_s``; 27 s = 3 % of a
#: 15-minute measuring period).
MAX_CLOCK_OFFSET = timedelta(seconds=3)
CLOCK_ITEM = "clock"
WAKEUP_ITEM = "wakeup"
SELF_TEST_ITEM = "self-test"
#: ``context.extras`` name: ``{name: check()}`` the process adds to the self-test; a check
#: raises (any exception) when it fails.
EXTRA_SELF_TEST_CHECKS = "self_test_checks"
MAX_LOG_EXTRACT = 5000
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252}[A-Za-z0-9])?$")


# --------------------------------------------------------------------------- clock


@dataclass(frozen=True)
class ClockState:
    offset: timedelta  # gateway time = hardware clock + offset
    valid: bool
    last_sync: datetime | None
    max_offset: timedelta
    servers: tuple[str, ...] = ()
    interval_s: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"offset_us": int(self.offset / timedelta(microseconds=1)), "valid": self.valid,
                "last_sync": None if self.last_sync is None else _iso(self.last_sync),
                "max_offset_s": self.max_offset.total_seconds(),
                "servers": list(self.servers), "interval_s": self.interval_s}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ClockState:
        last = doc.get("last_sync")
        return cls(timedelta(microseconds=int(doc["offset_us"])), bool(doc["valid"]),
                   None if last is None else datetime.fromisoformat(last[:-1]).replace(
                       tzinfo=UTC),
                   timedelta(seconds=float(doc["max_offset_s"])), tuple(doc.get("servers", ())),
                   doc.get("interval_s"))


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def clock_state(config: ConfigStore) -> ClockState:
    """The gateway clock's state (valid with offset 0 before any synchronisation)."""
    item = config.get(ConfigKind.TIME_SERVICE, CLOCK_ITEM)
    if item is None:
        return ClockState(timedelta(0), True, None, MAX_CLOCK_OFFSET)
    return ClockState.from_json(item.document)


def clock_valid(config: ConfigStore) -> bool:
    """Whether time stamps taken now are valid (False after a deviation beyond the
    threshold, until a synchronisation confirms the clock)."""
    return clock_state(config).valid


def gateway_time(config: ConfigStore, clock: Clock) -> datetime:
    """The gateway's legal time: the hardware clock corrected by the time service."""
    return clock.now() + clock_state(config).offset


def time_service_configure(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    servers = p.text_list("servers", pattern=_HOST, max_items=4, required=False)
    interval = p.integer("interval_s", minimum=60, maximum=86400, required=False)
    max_offset_s = p.integer("max_offset_s", minimum=1, maximum=27, required=False)
    reference = p.time("reference_time", required=False)
    p.done()
    if servers is None and interval is None and max_offset_s is None and reference is None:
        raise HandlerRejected(HandlerReason.MISSING_PARAMETER, "give servers, interval_s, "
                              "max_offset_s or reference_time")
    state = clock_state(ctx.config)
    offset, valid, last_sync = state.offset, state.valid, state.last_sync
    max_offset = state.max_offset if max_offset_s is None else timedelta(seconds=max_offset_s)
    details: dict[str, Any] = {}
    if reference is not None:
        hardware = ctx.clock.now()
        deviation = reference - (hardware + offset)
        offset += deviation
        last_sync = reference
        seconds = deviation.total_seconds()
        if abs(deviation) <= max_offset:
            valid = True
            ctx.logs.calibration.append(
                Level.INFO, Outcome.SUCCESS,
                f"time synchronised by the time service: deviation {seconds:+.3f} s corrected",
                event=CalibrationEvent.TIME_CORRECTION)
        else:
            valid = False
            ctx.logs.calibration.append(
                Level.WARNING, Outcome.FAILURE,
                f"clock deviation {seconds:+.3f} s beyond {max_offset.total_seconds():g} s: "
                "corrected; clock invalid until a synchronisation confirms it",
                event=CalibrationEvent.CLOCK_INVALID)
        details["deviation_s"] = seconds
    new = ClockState(offset, valid, last_sync, max_offset,
                     tuple(servers) if servers is not None else state.servers,
                     interval if interval is not None else state.interval_s)
    ctx.config.put(ConfigKind.TIME_SERVICE, CLOCK_ITEM, new.to_json(), state=ItemState.ACTIVE)
    return {**details, "clock": new.to_json()}


# --------------------------------------------------------------------------- self-test


@dataclass(frozen=True)
class SelfTestReport:
    checks: dict[str, str]  # name -> "ok" | "skipped: …" | "failed: …"

    @property
    def passed(self) -> bool:
        return all(not v.startswith("failed") for v in self.checks.values())

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": dict(self.checks)}


def _check_logs(ctx: AdminContext) -> str:
    heads = ctx.logs.verify_all()
    return f"ok ({len(heads)} log chains)"


def _check_database(ctx: AdminContext) -> str:
    result = ctx.db.connection.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        raise RuntimeError(f"database quick_check: {result}")
    ctx.config.revision()
    return "ok"


def _check_secmod(ctx: AdminContext) -> str:
    secmod = ctx.secmod
    if secmod is None:
        return "skipped: no security module"
    probe = secmod.random(32)
    if secmod.has("GW_WAN_SIG"):
        key = secmod.key("GW_WAN_SIG")
        ecdsa_verify(key.public_key(), key.sign(probe), probe)
        return "ok (random, GW_WAN_SIG signs)"
    return "ok (random)"


def _check_clock(ctx: AdminContext) -> str:
    if not clock_valid(ctx.config):
        raise RuntimeError("clock invalid (deviation beyond the threshold, not yet confirmed)")
    return "ok"


def run_self_test(ctx: AdminContext, *, reason: str = "administrator command",
                  extra: dict[str, Callable[[], object]] | None = None) -> SelfTestReport:
    """Run every check, record the outcome in the calibration log and in ``setting/self-test``.

    Checks: database integrity, the hash chains of every log, the security module (random,
    a signature with GW_WAN_SIG when present), the clock, and the process's own checks
    (``extras["self_test_checks"]``, e.g. the active firmware image) plus ``extra``.
    """
    checks: dict[str, Callable[[], object]] = {
        "database": lambda: _check_database(ctx),
        "logs": lambda: _check_logs(ctx),
        "security-module": lambda: _check_secmod(ctx),
        "clock": lambda: _check_clock(ctx),
    }
    checks.update(ctx.extras.get(EXTRA_SELF_TEST_CHECKS, {}))
    checks.update(extra or {})
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            value = check()
            results[name] = value if isinstance(value, str) else "ok"
        except (Rejected, KeyRejected, RuntimeError, ValueError, OSError,
                sqlite3.Error) as exc:
            results[name] = f"failed: {type(exc).__name__}: {exc}"[:200]
    report = SelfTestReport(results)
    failed = sorted(n for n, v in results.items() if v.startswith("failed"))
    if report.passed:
        ctx.logs.calibration.append(Level.INFO, Outcome.SUCCESS,
                                    f"self-test passed ({reason}; {len(results)} checks)",
                                    event=CalibrationEvent.SELF_TEST)
    else:
        ctx.logs.calibration.append(Level.ERROR, Outcome.FAILURE,
                                    f"self-test failed ({reason}): {', '.join(failed)}",
                                    event=CalibrationEvent.SELF_TEST)
    ctx.config.put(ConfigKind.SETTING, SELF_TEST_ITEM,
                   {**report.to_json(), "at": _iso(ctx.clock.now()), "reason": reason},
                   state=ItemState.ACTIVE)
    return report


def self_test(ctx: AdminContext, command: Command) -> dict[str, Any]:
    Params(command).done()
    return run_self_test(ctx).to_json()


# --------------------------------------------------------------------------- status, logs


def status(ctx: AdminContext, command: Command) -> dict[str, Any]:
    Params(command).done()
    commissioning = ctx.commissioning
    last_test = ctx.config.get(ConfigKind.SETTING, SELF_TEST_ITEM)
    firmware = ctx.extras.get("firmware_status")
    return {
        "gateway_id": ctx.gateway_id,
        "gateway_time": _iso(gateway_time(ctx.config, ctx.clock)),
        "clock": clock_state(ctx.config).to_json(),
        "phase": None if commissioning is None else commissioning.phase.value,
        "config_revision": ctx.config.revision(),
        "counts": {kind.value: len(ctx.config.items(kind))
                   for kind in (ConfigKind.METER, ConfigKind.CONSUMER, ConfigKind.CLS,
                                ConfigKind.DISPLAY, ConfigKind.COMMUNICATION_PROFILE,
                                ConfigKind.EVALUATION_PROFILE)},
        "logs": {"system": ctx.logs.system.head().seq,
                 "calibration": ctx.logs.calibration.head().seq},
        "last_self_test": None if last_test is None else last_test.document,
        "firmware": firmware() if callable(firmware) else None,
    }


def _log_extract(name: LogName) -> Callable[[AdminContext, Command], dict[str, Any]]:
    def handler(ctx: AdminContext, command: Command) -> dict[str, Any]:
        p = Params(command)
        since = p.time("since", required=False)
        after = p.integer("after", minimum=0, maximum=2**62, default=0, required=False)
        limit = p.integer("limit", minimum=1, maximum=MAX_LOG_EXTRACT, default=1000,
                          required=False)
        collapse = p.boolean("collapse_repetitions", default=False)
        p.done()
        assert after is not None and limit is not None
        log = ctx.logs.system if name is LogName.SYSTEM else ctx.logs.calibration
        entries = log.entries(since=since, after=after, limit=limit + 1)
        more = len(entries) > limit
        entries = entries[:limit]
        xml = export_xml(entries, collapse_repetitions=collapse, smgw_id=ctx.gateway_id)
        return {"log": name.value, "format": "AR 2418-6", "count": len(entries),
                "last_record_number": entries[-1].record_number if entries else after,
                "more": more, "xml": xml.decode("utf-8")}
    return handler


# --------------------------------------------------------------------------- wake-up


def wakeup_configure(ctx: AdminContext, command: Command) -> dict[str, Any]:
    p = Params(command)
    enabled = p.boolean("enabled", default=True)
    port = p.req_integer("port", minimum=1, maximum=65535)
    max_age = p.integer("max_age_s", minimum=10, maximum=3600, default=300, required=False)
    p.done()
    document = {"enabled": enabled, "port": port, "max_age_s": max_age}
    ctx.config.put(ConfigKind.WAKEUP, WAKEUP_ITEM, document,
                   state=ItemState.ACTIVE if enabled else ItemState.INSTALLED)
    return document


HANDLERS: HandlerTable = {
    CommandType.STATUS_QUERY: status,
    CommandType.SELF_TEST: self_test,
    CommandType.LOG_RETRIEVE_SYSTEM: _log_extract(LogName.SYSTEM),
    CommandType.LOG_RETRIEVE_CALIBRATION: _log_extract(LogName.CALIBRATION),
    CommandType.TIME_SERVICE_CONFIGURE: time_service_configure,
    CommandType.WAKEUP_CONFIGURE: wakeup_configure,
}
