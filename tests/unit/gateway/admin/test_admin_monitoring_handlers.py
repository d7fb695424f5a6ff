"""Monitoring, self-test, log retrieval, time service and wake-up configuration
(seed 003 §5, table 3 steps 2.3, 5.2, 5.3, 5.6)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

from admin_handler_helpers import Gateway

from imsys.gateway.admin import ConfigKind
from imsys.gateway.admin.monitoring_handlers import (
    EXTRA_SELF_TEST_CHECKS,
    clock_state,
    clock_valid,
    gateway_time,
)
from imsys.gateway.logs import AR_2418_6_NS, CalibrationEvent, Level, Outcome, SystemEvent
from imsys.wire.command import CommandType as T
from imsys.wire.command import ResultStatus

OK = ResultStatus.OK


def _iso(when) -> str:  # type: ignore[no-untyped-def]
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_step_2_3_self_test_is_written_to_the_calibration_log(gateway: Gateway) -> None:
    result = gateway.run(T.SELF_TEST)
    assert result.status is OK
    assert result.details["passed"] is True
    assert set(result.details["checks"]) == {"database", "logs", "security-module", "clock"}
    entry = gateway.ctx.logs.calibration.entries()[-1]
    assert entry.event is CalibrationEvent.SELF_TEST and entry.outcome is Outcome.SUCCESS


def test_step_5_3_failed_self_test_is_logged_as_failure(gateway: Gateway) -> None:
    def broken() -> None:
        raise RuntimeError("active image digest mismatch")

    gateway.ctx.extras[EXTRA_SELF_TEST_CHECKS] = {"firmware": broken}
    result = gateway.run(T.SELF_TEST)
    assert result.status is OK and result.details["passed"] is False
    assert result.details["checks"]["firmware"].startswith("failed")
    entry = gateway.ctx.logs.calibration.entries()[-1]
    assert entry.outcome is Outcome.FAILURE and "firmware" in entry.text


def test_status_reports_state_without_consumer_data(gateway: Gateway) -> None:
    gateway.run(T.CONSUMER_CREATE, {"consumer_id": "LV-secret-name"})
    result = gateway.run(T.STATUS_QUERY)
    assert result.status is OK
    assert result.details["gateway_id"] == gateway.ctx.gateway_id
    assert result.details["counts"]["consumer"] == 1
    assert result.details["clock"]["valid"] is True
    assert "LV-secret-name" not in str(result.details)
    assert gateway.run(T.STATUS_QUERY, {"verbose": True}).details["reason"] \
        == "unknown-parameter"


def test_step_5_6_log_retrieval_returns_ar_2418_6_extracts(gateway: Gateway) -> None:
    gw = gateway
    gw.run(T.STATUS_QUERY)  # one system-log entry by the executor
    gw.ctx.logs.system.append(Level.ERROR, Outcome.FAILURE, "meter link lost",
                              event=SystemEvent.TLS_FAILURE)
    first = gw.run(T.LOG_RETRIEVE_SYSTEM, {"limit": 1})
    assert first.status is OK and first.details["count"] == 1 and first.details["more"]
    root = ET.fromstring(first.details["xml"])
    assert root.tag == f"{{{AR_2418_6_NS}}}UsagePoints"
    everything = gw.run(T.LOG_RETRIEVE_SYSTEM, {})
    texts = [e.text for e in root.iter(f"{{{AR_2418_6_NS}}}text")]
    assert len(texts) == 1
    all_texts = [e.text for e in ET.fromstring(everything.details["xml"]).iter(
        f"{{{AR_2418_6_NS}}}text")]
    assert "meter link lost" in all_texts
    after = gw.run(T.LOG_RETRIEVE_SYSTEM, {"after": first.details["last_record_number"]})
    numbers = [int(e.text or 0) for e in ET.fromstring(after.details["xml"]).iter(
        f"{{{AR_2418_6_NS}}}recordNumber")]
    assert numbers and min(numbers) > first.details["last_record_number"]
    gw.clock.advance(timedelta(hours=1))
    later = gw.clock.now()
    gw.ctx.logs.calibration.append(Level.INFO, Outcome.SUCCESS, "marker",
                                   event=CalibrationEvent.PARAMETER_CHANGE)
    since = gw.run(T.LOG_RETRIEVE_CALIBRATION, {"since": _iso(later)})
    assert since.details["count"] == 1 and "marker" in since.details["xml"]
    assert gw.run(T.LOG_RETRIEVE_SYSTEM, {"since": "yesterday"}).details["reason"] \
        == "bad-parameter"
    assert gw.run(T.LOG_RETRIEVE_SYSTEM, {"limit": 0}).details["reason"] == "bad-parameter"


def test_time_service_small_deviation_is_a_correction(gateway: Gateway) -> None:
    gw = gateway
    reference = gw.clock.now() + timedelta(seconds=2)
    result = gw.run(T.TIME_SERVICE_CONFIGURE, {"reference_time": _iso(reference),
                                               "servers": ["ntp.gwa.example"],
                                               "interval_s": 3600})
    assert result.status is OK
    assert abs(result.details["deviation_s"] - 2.0) < 1e-6
    assert clock_valid(gw.ctx.config)
    assert gateway_time(gw.ctx.config, gw.clock) == reference
    entry = gw.ctx.logs.calibration.entries()[-1]
    assert entry.event is CalibrationEvent.TIME_CORRECTION


def test_time_service_large_deviation_marks_clock_invalid_until_confirmed(
        gateway: Gateway) -> None:
    gw = gateway
    reference = gw.clock.now() - timedelta(seconds=40)
    gw.run(T.TIME_SERVICE_CONFIGURE, {"reference_time": _iso(reference)})
    state = clock_state(gw.ctx.config)
    assert not state.valid and state.offset == timedelta(seconds=-40)
    entry = gw.ctx.logs.calibration.entries()[-1]
    assert entry.event is CalibrationEvent.CLOCK_INVALID and entry.outcome is Outcome.FAILURE
    # the self-test sees the invalid clock
    assert gw.run(T.SELF_TEST).details["checks"]["clock"].startswith("failed")
    # a synchronisation that finds the corrected clock within the threshold confirms it
    gw.clock.advance(timedelta(minutes=5))
    confirm = gateway_time(gw.ctx.config, gw.clock) + timedelta(milliseconds=500)
    gw.run(T.TIME_SERVICE_CONFIGURE, {"reference_time": _iso(confirm)})
    assert clock_valid(gw.ctx.config)


def test_time_service_threshold_is_configurable_and_checked(gateway: Gateway) -> None:
    gw = gateway
    assert gw.run(T.TIME_SERVICE_CONFIGURE, {}).details["reason"] == "missing-parameter"
    assert gw.run(T.TIME_SERVICE_CONFIGURE, {"max_offset_s": 60}).details["reason"] \
        == "bad-parameter"
    gw.run(T.TIME_SERVICE_CONFIGURE, {"max_offset_s": 10})
    gw.run(T.TIME_SERVICE_CONFIGURE, {"reference_time": _iso(gw.clock.now()
                                                             + timedelta(seconds=8))})
    assert clock_valid(gw.ctx.config)


def test_wakeup_configuration_is_stored(gateway: Gateway) -> None:
    gw = gateway
    result = gw.run(T.WAKEUP_CONFIGURE, {"port": 47110, "max_age_s": 120})
    assert result.status is OK
    assert gw.ctx.config.require(ConfigKind.WAKEUP, "wakeup").document == {
        "enabled": True, "port": 47110, "max_age_s": 120}
    assert gw.run(T.WAKEUP_CONFIGURE, {"port": 70000}).details["reason"] == "bad-parameter"
