"""Seed 003 §3 "Messung", table 1: one test per step the gateway performs, plus each rejection.

The core runs sans-io: frames come from the meter simulators' encoders (``SmlPushEncoder``,
``SmlResponder``, ``WmbusEncoder``), the clock is a ``SimulatedClock``, the store a real SQLite
database.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from imsys.core.clock import SimulatedClock
from imsys.core.reading import ReadingFlag
from imsys.crypto import SoftwareKey
from imsys.gateway.logs import CalibrationEvent, ConsumerEvent, SystemEvent
from imsys.gateway.measurement import (
    METER_CLOCK_TOLERANCE,
    Evaluated,
    LmnFrame,
    Measurement,
    MeterValue,
    PeerIdentity,
    PtbStatus,
    ReadingReason,
    ReadingRejected,
    SmgwStatus,
    Step,
    Transport,
    build_readings,
    fnn_word,
    meter_clock_deviation,
    ptb_status,
    server_id_of,
    signed_value_input,
    step_3_4_mark_validity,
    value_flags,
)
from imsys.gateway.meter_profile import ClockOffPolicy, MeterProfile, MeterProtocol
from imsys.gateway.store import Database, Durability
from imsys.lmn import sml
from imsys.lmn.wmbus import MemoryCounterTracker, SecurityMode
from imsys.meters.lmn_payload import SmlPushEncoder, SmlResponder, WmbusEncoder
from imsys.meters.settings import FaultKind, InjectedFault, MeterSettings
from imsys.meters.simulator import MeterKind, MeterSimulator, ModelKind

T0 = datetime(2024, 12, 31, 23, 0, tzinfo=UTC)
Q = timedelta(minutes=15)
METER_ID = "1EMH0012345678"
GAS_ID = "7ELS0087654321"
FP = bytes(range(32))
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
ELECTRICITY_CHANNELS = (
    "1-0:1.8.0*255", "1-0:2.8.0*255", "1-0:16.7.0*255", "1-0:36.7.0*255", "1-0:56.7.0*255",
    "1-0:76.7.0*255", "1-0:32.7.0*255", "1-0:52.7.0*255", "1-0:72.7.0*255", "1-0:31.7.0*255",
    "1-0:51.7.0*255", "1-0:71.7.0*255", "1-0:81.7.1*255", "1-0:81.7.2*255", "1-0:81.7.4*255",
    "1-0:81.7.15*255", "1-0:81.7.26*255", "1-0:14.7.0*255",
)
GAS_CHANNELS = ("7-0:3.0.0*255", "7-0:3.1.0*255")


class Bench:
    """A gateway core with one wired and one wireless meter on a simulated clock."""

    def __init__(self, *, settings: MeterSettings | None = None,
                 wired: dict[str, object] | None = None,
                 wireless: dict[str, object] | None = None,
                 clock_valid: bool = True) -> None:
        self.clock = SimulatedClock(T0)
        self.db = Database(":memory:", durability=Durability.OFF)
        self.sim = MeterSimulator(METER_ID, MeterKind.ELECTRICITY, ModelKind.HOUSEHOLD_H0,
                                  settings or MeterSettings(seed=9), self.clock)
        self.gas = MeterSimulator(GAS_ID, MeterKind.GAS, ModelKind.GAS_HEATING,
                                  MeterSettings(seed=3), self.clock)
        self.push = SmlPushEncoder(METER_ID)
        self.wired = MeterProfile(**{
            "meter_id": METER_ID, "protocol": MeterProtocol.SML_TLS_PUSH, "tls_fingerprint": FP,
            "channels": ELECTRICITY_CHANNELS, "consumer_id": "consumer-1",
            "transformer_factor": 1, **(wired or {})})  # type: ignore[arg-type]
        self.wireless = MeterProfile(**{
            "meter_id": GAS_ID, "protocol": MeterProtocol.WMBUS_MODE7, "aes_key": KEY,
            "channels": GAS_CHANNELS, "consumer_id": "consumer-2",
            **(wireless or {})})  # type: ignore[arg-type]
        self.clock_valid = clock_valid
        self.counters = MemoryCounterTracker()
        self.core = Measurement(self.db, self.clock, [self.wired, self.wireless],
                                counters=self.counters,
                                gateway_clock_valid=lambda: self.clock_valid)

    def sml_frame(self, data: bytes | None = None, peer: PeerIdentity | None = None) -> LmnFrame:
        if data is None:
            data = self.push.frame(self.sim.sample())
        return LmnFrame(Transport.SML, data, self.clock.now(), peer or PeerIdentity(METER_ID, FP))

    def radio(self, mode: SecurityMode = SecurityMode.AES_CBC_NO_IV,
              key: bytes = KEY) -> WmbusEncoder:
        return WmbusEncoder(GAS_ID, MeterKind.GAS, key=key, mode=mode, long_header=True)

    def wmbus_frame(self, data: bytes) -> LmnFrame:
        return LmnFrame(Transport.WMBUS, data, self.clock.now())

    def rejected(self, frame: LmnFrame) -> ReadingRejected:
        before = self.core.store.count()
        with pytest.raises(ReadingRejected) as info:
            self.core.ingest(frame)
        assert self.core.store.count() == before  # nothing of a refused frame is stored
        return info.value

    def system_rejections(self) -> list[str]:
        return [e.text for e in self.core.logs.system.entries()
                if e.event is SystemEvent.INPUT_REJECTED]


# --------------------------------------------------------------------------- step 2.1


def test_measurement_step_2_1_receives_pushed_values_and_refuses_oversized_frames() -> None:
    b = Bench()
    result = b.core.ingest(b.sml_frame())
    assert result.meter_id == METER_ID and len(result.readings) == len(ELECTRICITY_CHANNELS)
    err = b.rejected(b.sml_frame(b"\x1b" * (64 * 1024 + 1)))
    assert err.reason is ReadingReason.TOO_LARGE and err.step is Step.RECEIVE


# --------------------------------------------------------------------------- step 2.2


def test_measurement_step_2_2_accepts_data_only_from_known_meters() -> None:
    b = Bench()
    # a wired meter with a valid SM-PKI certificate but no meter profile
    stranger = SmlPushEncoder("1EMH0099999999")
    sim = MeterSimulator("1EMH0099999999", MeterKind.ELECTRICITY, ModelKind.HOUSEHOLD_H0,
                         MeterSettings(seed=1), b.clock)
    err = b.rejected(b.sml_frame(stranger.frame(sim.sample()),
                                 PeerIdentity("1EMH0099999999", FP)))
    assert err.reason is ReadingReason.UNKNOWN_METER and err.step is Step.ACCEPT_KNOWN_METER
    # a radio meter without a profile
    other = MeterSimulator("7ELS0011111111", MeterKind.GAS, ModelKind.GAS_HEATING,
                           MeterSettings(seed=2), b.clock)
    enc = WmbusEncoder("7ELS0011111111", MeterKind.GAS, key=KEY,
                       mode=SecurityMode.AES_CBC_NO_IV)
    err = b.rejected(b.wmbus_frame(enc.encode(other.sample())))
    assert err.reason is ReadingReason.UNKNOWN_METER
    # a known meter's TLS connection carrying another meter's server id
    err = b.rejected(b.sml_frame(stranger.frame(sim.sample())))
    assert err.reason is ReadingReason.UNKNOWN_METER and err.step is Step.INTEGRITY
    texts = b.system_rejections()
    assert len(texts) == 3 and all("reason=unknown-meter" in t for t in texts)
    assert not any("1EMH" in t or "7ELS" in t for t in texts)  # no meter or consumer data


# --------------------------------------------------------------------------- step 2.3


def test_measurement_step_2_3_discards_a_data_set_from_the_wrong_tls_certificate() -> None:
    b = Bench()
    err = b.rejected(b.sml_frame(peer=PeerIdentity(METER_ID, bytes(32))))
    assert err.reason is ReadingReason.BAD_SIGNATURE and err.step is Step.VERIFY


def test_measurement_step_2_3_discards_a_telegram_whose_mac_does_not_verify() -> None:
    b = Bench()
    forged = b.radio(key=bytes(16)).encode(b.gas.sample())  # right meter, wrong key
    err = b.rejected(b.wmbus_frame(forged))
    assert err.reason is ReadingReason.BAD_MAC and err.step is Step.VERIFY
    assert "reason=bad-mac" in b.system_rejections()[-1]


def test_measurement_step_2_3_discards_an_unprotected_or_wrongly_protected_telegram() -> None:
    b = Bench()
    mode5 = b.radio(SecurityMode.AES_CBC_IV).encode(b.gas.sample())  # profile says mode 7
    err = b.rejected(b.wmbus_frame(mode5))
    assert err.reason is ReadingReason.BAD_MAC


def test_measurement_rejects_a_replayed_wmbus_telegram_by_its_message_counter() -> None:
    b = Bench()
    radio = b.radio()
    first = radio.encode(b.gas.sample())
    b.clock.advance(Q)
    second = radio.encode(b.gas.sample())
    b.core.ingest(b.wmbus_frame(second))
    err = b.rejected(b.wmbus_frame(first))  # older counter
    assert err.reason is ReadingReason.REPLAYED and err.step is Step.VERIFY
    err = b.rejected(b.wmbus_frame(second))  # the same telegram again
    assert err.reason is ReadingReason.REPLAYED


def _signed_frame(b: Bench, key: SoftwareKey, *, tamper: bool = False) -> bytes:
    """A push frame whose values carry SML value signatures (imsys layout)."""
    file = b.push.file(b.sim.sample())
    body = file.messages[1].body
    assert isinstance(body, sml.GetListResponse) and isinstance(body.act_sensor_time,
                                                                 sml.Timestamp)
    entries = []
    for e in body.val_list:
        if e.unit is not None:
            data = signed_value_input(body.server_id, e.obj_name, int(e.unit), e.scaler or 0,
                                      int(e.value),  # type: ignore[arg-type]
                                      body.act_sensor_time.value, e.status)
            sig = key.sign(data + (b"x" if tamper else b""))
            tamper = False  # only the first value's signature is wrong
            e = e._replace(value_signature=sig)
        entries.append(e)
    message = dataclasses.replace(file.messages[1],
                                  body=dataclasses.replace(body, val_list=tuple(entries)))
    return sml.encode_frame([file.messages[0], message, file.messages[2]])


def test_measurement_step_2_3_verifies_sml_value_signatures_where_the_profile_has_a_key(
) -> None:
    key = SoftwareKey.generate()
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    b = Bench(wired={"signature_key": der})
    result = b.core.ingest(b.sml_frame(_signed_frame(b, key)))
    assert len(result.readings) == len(ELECTRICITY_CHANNELS)
    b.clock.advance(Q)
    err = b.rejected(b.sml_frame(_signed_frame(b, key, tamper=True)))
    assert err.reason is ReadingReason.BAD_SIGNATURE and err.step is Step.VERIFY
    err = b.rejected(b.sml_frame())  # no signatures at all
    assert err.reason is ReadingReason.BAD_SIGNATURE
    other = SoftwareKey.generate()
    err = b.rejected(b.sml_frame(_signed_frame(b, other)))
    assert err.reason is ReadingReason.BAD_SIGNATURE
    # without a key in the profile, signatures are carried but do not decide
    plain = Bench()
    assert plain.core.ingest(plain.sml_frame(_signed_frame(plain, other))).readings


# --------------------------------------------------------------------------- step 2.4


@pytest.mark.parametrize("protocol", [MeterProtocol.WMBUS_MODE5, MeterProtocol.WMBUS_MODE7])
def test_measurement_step_2_4_decrypts_the_data_set(protocol: MeterProtocol) -> None:
    b = Bench(wireless={"protocol": protocol, "aes_key": None, "aes_key_label": "lmn/gas-1"})
    b.core.key_resolver = {"lmn/gas-1": KEY}.__getitem__
    mode = (SecurityMode.AES_CBC_IV if protocol is MeterProtocol.WMBUS_MODE5
            else SecurityMode.AES_CBC_NO_IV)
    snap = b.gas.sample()
    result = b.core.ingest(b.wmbus_frame(b.radio(mode).encode(snap)))
    got = {r.obis: (r.value, r.scaler, r.unit) for r in result.readings}
    assert got["7-0:3.0.0*255"] == (snap.value("7-0:3.0.0*255"), -3, 13)
    assert set(got) == set(GAS_CHANNELS)
    assert all(r.valid for r in result.readings)


def test_measurement_step_2_4_a_wrong_mode_5_key_is_bad_mac() -> None:
    b = Bench(wireless={"protocol": MeterProtocol.WMBUS_MODE5})
    data = b.radio(SecurityMode.AES_CBC_IV, key=bytes(16)).encode(b.gas.sample())
    err = b.rejected(b.wmbus_frame(data))
    assert err.reason is ReadingReason.BAD_MAC


# --------------------------------------------------------------------------- step 3.1


def test_measurement_step_3_1_evaluates_sml_get_list_and_get_profile_list() -> None:
    b = Bench(wired={"protocol": MeterProtocol.SML_TLS_PULL, "endpoint": "127.0.0.1:4059",
                     "channels": ("1-0:1.8.0*255", "1-0:2.8.0*255")})
    b.clock.advance(timedelta(hours=1))
    request = sml.SmlFile((
        sml.SmlMessage(transaction_id=b"t0", body=sml.OpenRequest(client_id=b"gw",
                                                                  req_file_id=b"1")),
        sml.SmlMessage(transaction_id=b"t1", body=sml.GetProfileListRequest(
            parameter_tree_path=(bytes.fromhex("8181c78610ff"),))),
        sml.SmlMessage(transaction_id=b"t2", body=sml.CloseRequest()),
    ))
    answer = SmlResponder(b.sim).respond_frame(request)
    result = b.core.ingest(b.sml_frame(answer))
    stamps = sorted({r.timestamp for r in result.readings})
    assert stamps == [T0 + k * Q for k in range(5)]  # registration instants
    ref = b.sim.series(T0, T0 + 4 * Q, Q)
    for r in result.readings:
        k = stamps.index(r.timestamp)
        assert r.value == int(ref.registers[r.obis][k])
    assert b.core.last_accepted(METER_ID) == T0 + 4 * Q
    # an attention response instead of values is a meter error
    attention = SmlResponder(b.sim).reject(ReadingRejected(ReadingReason.MALFORMED, Step.RECEIVE))
    err = b.rejected(b.sml_frame(attention))
    assert err.reason is ReadingReason.METER_ATTENTION and err.step is Step.EVALUATE
    assert b.core.logs.calibration.entries()[-1].event is CalibrationEvent.METER_ERROR


# --------------------------------------------------------------------------- step 3.2


def test_measurement_step_3_2_checks_the_integrity_crc() -> None:
    b = Bench()
    data = bytearray(b.push.frame(b.sim.sample()))
    data[40] ^= 0x20
    err = b.rejected(b.sml_frame(bytes(data)))
    assert err.reason is ReadingReason.BAD_CRC and err.step is Step.INTEGRITY
    calibration = b.core.logs.calibration.entries()
    assert calibration[-1].event is CalibrationEvent.METER_ERROR
    assert METER_ID in calibration[-1].text
    radio = bytearray(b.radio().encode(b.gas.sample()))
    radio[12] ^= 0x01
    assert b.rejected(b.wmbus_frame(bytes(radio))).reason is ReadingReason.BAD_CRC


def test_measurement_step_3_2_refuses_a_value_of_an_unexpected_channel() -> None:
    b = Bench(wired={"channels": ("1-0:1.8.0*255", "1-0:2.8.0*255")})
    err = b.rejected(b.sml_frame())
    assert err.reason is ReadingReason.UNEXPECTED_CHANNEL and err.step is Step.INTEGRITY
    assert err.context["channel"] == "1-0:16.7.0*255"


def test_measurement_step_3_2_rejects_a_replayed_sml_frame() -> None:
    b = Bench()
    old = b.push.frame(b.sim.sample())
    b.core.ingest(b.sml_frame(old))
    err = b.rejected(b.sml_frame(old))
    assert err.reason is ReadingReason.REPLAYED
    b.clock.advance(Q)
    b.core.ingest(b.sml_frame())
    err = b.rejected(b.sml_frame(old))  # an older frame: meter time before the last one
    assert err.reason is ReadingReason.REPLAYED and err.step is Step.INTEGRITY
    # the replay state survives a restart of the core (it is stored with the readings)
    restarted = Measurement(b.db, b.clock, [b.wired, b.wireless])
    with pytest.raises(ReadingRejected) as info:
        restarted.ingest(b.sml_frame(old))
    assert info.value.reason is ReadingReason.REPLAYED


# --------------------------------------------------------------------------- step 3.3


def test_measurement_step_3_3_stamps_values_with_the_gateway_clock() -> None:
    b = Bench(settings=MeterSettings(seed=9, clock_offset_s=4))  # meter clock 4 s ahead
    b.clock.advance(timedelta(seconds=2))
    result = b.core.ingest(b.sml_frame())
    assert {r.timestamp for r in result.readings} == {T0 + timedelta(seconds=2)}
    stored = list(b.core.store.iter_readings(METER_ID))
    assert {s.received_at for s in stored} == {T0 + timedelta(seconds=2)}


# --------------------------------------------------------------------------- step 3.4


def test_measurement_step_3_4_marks_values_valid_from_the_fnn_status_word() -> None:
    b = Bench()
    result = b.core.ingest(b.sml_frame())
    for r in result.readings:
        assert r.valid and r.status_word is not None
        assert r.status_word >> 32 == int(SmgwStatus.IDENTIFICATION_LSB | SmgwStatus.BIT_POS_2)
        assert ptb_status(r.status_word) is PtbStatus.NO_ERROR


@pytest.mark.parametrize(("fault", "ptb"), [(FaultKind.FATAL_ERROR, PtbStatus.FATAL_ERROR),
                                            (FaultKind.MANIPULATION,
                                             PtbStatus.CRITICAL_TEMPORARY_ERROR)])
def test_measurement_step_3_4_marks_values_invalid_on_a_meter_fault(fault: FaultKind,
                                                                    ptb: PtbStatus) -> None:
    b = Bench(settings=MeterSettings(seed=9, faults=(InjectedFault(fault, T0),)))
    result = b.core.ingest(b.sml_frame())
    assert result.invalid == len(result.readings)
    for r in result.readings:
        assert r.flags & ReadingFlag.METER_ERROR and ptb_status(r.status_word or 0) is ptb
    assert b.core.logs.calibration.entries()[-1].event is CalibrationEvent.METER_ERROR


def test_measurement_step_3_4_stores_a_value_of_a_meter_whose_clock_is_off_as_invalid() -> None:
    b = Bench(settings=MeterSettings(seed=9, clock_offset_s=60))
    result = b.core.ingest(b.sml_frame())
    assert result.invalid == len(result.readings) > 0
    assert all(r.flags == ReadingFlag.METER_ERROR for r in result.readings)
    word = result.readings[0].status_word or 0
    assert word >> 32 & SmgwStatus.PTB_TEMP_ERROR_IS_INVALID
    entry = b.core.logs.calibration.entries()[-1]
    assert entry.event is CalibrationEvent.METER_ERROR and "Zähleruhr" in entry.text


def test_measurement_rejects_a_value_from_a_meter_whose_clock_is_off_if_the_profile_says_so(
) -> None:
    b = Bench(settings=MeterSettings(seed=9, clock_offset_s=-30),
              wired={"clock_off": ClockOffPolicy.REJECT})
    err = b.rejected(b.sml_frame())
    assert err.reason is ReadingReason.METER_CLOCK_OFF and err.step is Step.VALIDITY
    assert "reason=meter-clock-off" in b.system_rejections()[-1]


def test_measurement_step_3_4_meter_clock_threshold_is_9_seconds() -> None:
    assert timedelta(seconds=9) == METER_CLOCK_TOLERANCE
    for offset, valid in ((9, True), (-9, True), (10, False), (-10, False)):
        b = Bench(settings=MeterSettings(seed=9, clock_offset_s=offset))
        assert b.core.ingest(b.sml_frame()).readings[0].valid is valid
    # a wM-Bus clock has minute resolution: hh:mm covers [hh:mm:00, hh:mm:59]
    minute = timedelta(minutes=1)
    assert meter_clock_deviation(T0, minute, T0 + timedelta(seconds=65)) == timedelta(seconds=5)
    assert meter_clock_deviation(T0, minute, T0 + timedelta(seconds=30)) == timedelta(0)


def test_measurement_step_3_4_marks_values_invalid_when_the_gateway_clock_is_invalid() -> None:
    b = Bench(clock_valid=False)
    result = b.core.ingest(b.sml_frame())
    for r in result.readings:
        assert r.flags == ReadingFlag.CLOCK_INVALID
        assert ptb_status(r.status_word or 0) is PtbStatus.CRITICAL_TEMPORARY_ERROR
    assert b.core.logs.calibration.entries()[-1].event is CalibrationEvent.CLOCK_INVALID


@pytest.mark.parametrize("clock_valid", [True, False])
@pytest.mark.parametrize("clock_off", [False, True])
def test_build_readings_applies_fnn_word_and_value_flags_to_every_value(
        clock_valid: bool, clock_off: bool) -> None:
    """build_readings works the frame-level parts out once; per value the result must be
    exactly fnn_word and value_flags (meter halves: none, plain, manipulation, magnetic
    influence, fatal error)."""
    profile = Bench().wired
    statuses = (None, 0x4, 0x404, 0x204, 0x20004, 0x20604)
    values = tuple(MeterValue(ELECTRICITY_CHANNELS[i], 10 * i, -1, 30, status)
                   for i, status in enumerate(statuses))
    evaluated = Evaluated(server_id_of(METER_ID).hex(), values,
                          T0 + timedelta(minutes=1) if clock_off else T0)
    validity = step_3_4_mark_validity(profile, evaluated, T0, gateway_clock_valid=clock_valid)
    stamps = (T0,) * len(values)
    readings = build_readings(profile, evaluated, stamps, validity)
    assert len(readings) == len(values)
    for reading, value in zip(readings, values, strict=True):
        word = fnn_word(validity, value.status)
        assert reading.status_word == word
        assert reading.flags == value_flags(validity, word)
        assert (reading.meter_id, reading.obis, reading.value, reading.scaler, reading.unit,
                reading.timestamp) == (METER_ID, value.obis, value.value, -1, 30, T0)
    assert [r.valid for r in readings] == [
        clock_valid and not clock_off and not (s or 0) & 0x20600 for s in statuses]


def test_ptb_status_follows_trudi_mapping() -> None:
    assert ptb_status(0x0000000500000004) is PtbStatus.NO_ERROR
    assert ptb_status(0x0000100500000004) is PtbStatus.WARNING
    assert ptb_status(0x0000200500000004) is PtbStatus.TEMPORARY_ERROR
    assert ptb_status(0x0000400500000004) is PtbStatus.CRITICAL_TEMPORARY_ERROR
    assert ptb_status(0x0000020500000004) is PtbStatus.CRITICAL_TEMPORARY_ERROR
    assert ptb_status(0x0000010500100504) is PtbStatus.FATAL_ERROR  # TRuDI example word
    assert ptb_status(0x0000000500020004) is PtbStatus.FATAL_ERROR


# --------------------------------------------------------------------------- step 4.1


def test_measurement_step_4_1_stores_all_values_unchanged_and_unchangeably() -> None:
    b = Bench(wired={"transformer_factor": 40})
    snap = b.sim.sample()
    result = b.core.ingest(b.sml_frame(b.push.frame(snap)))
    stored = list(b.core.store.iter_readings(METER_ID))
    assert [s.seq for s in stored] == list(result.seqs)
    # the transformer factor is assigned by the profile, the value stays as the meter sent it
    sent = {r.obis: (r.value, r.scaler, int(r.unit)) for r in snap.readings}
    assert {s.reading.obis: (s.reading.value, s.reading.scaler, s.reading.unit)
            for s in stored} == sent
    b.core.store.verify_chain()
    with pytest.raises(sqlite3.IntegrityError):
        b.db.connection.execute("UPDATE readings SET value = 0 WHERE seq = 1")


def test_measurement_step_4_1_stores_nothing_when_logging_fails(monkeypatch) -> None:
    b = Bench()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("imsys.gateway.measurement.step_5_2_log", broken)
    with pytest.raises(RuntimeError):
        b.core.ingest(b.sml_frame())
    assert b.core.store.count() == 0 and b.core.last_accepted(METER_ID) is None


# --------------------------------------------------------------------------- step 5.2


def test_measurement_step_5_2_logs_the_stored_values_and_each_rejection() -> None:
    b = Bench()
    result = b.core.ingest(b.sml_frame())
    entry = b.core.logs.consumer("consumer-1").entries()[-1]
    assert entry.event is ConsumerEvent.RECORDING
    assert f"{len(result.readings)} Messwerte von Zähler {METER_ID}" in entry.text
    b.rejected(b.sml_frame(peer=PeerIdentity(METER_ID, bytes(32))))
    text = b.system_rejections()[-1]
    assert "step=2.3" in text and "transport=sml" in text and METER_ID not in text
    b.core.logs.verify_all()


# --------------------------------------------------------------------------- contract

_FUZZ = Bench()
_SML = _FUZZ.push.frame(_FUZZ.sim.sample())
_WMBUS = _FUZZ.radio().encode(_FUZZ.gas.sample())


def _ingest_or_reject(frame: LmnFrame) -> None:
    try:
        _FUZZ.core.ingest(frame)
    except ReadingRejected as exc:
        assert isinstance(exc.reason, ReadingReason) and isinstance(exc.step, Step)


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(st.binary(max_size=700),
                      st.tuples(st.sampled_from([_SML, _WMBUS]), st.integers(0, 10_000),
                                st.integers(1, 255)).map(
                          lambda t: t[0][:t[1] % len(t[0])]
                          + bytes((t[0][t[1] % len(t[0])] ^ t[2],))
                          + t[0][t[1] % len(t[0]) + 1:])),
       transport=st.sampled_from(Transport))
def test_any_bytes_are_stored_or_rejected_with_a_reading_rejection(data: bytes,
                                                                   transport: Transport) -> None:
    peer = PeerIdentity(METER_ID, FP) if transport is Transport.SML else None
    _ingest_or_reject(LmnFrame(transport, data, _FUZZ.clock.now(), peer))
