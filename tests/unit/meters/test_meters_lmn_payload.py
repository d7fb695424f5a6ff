"""Snapshots → SML files and wM-Bus telegrams (imsys.meters.lmn_payload), decoded by the codecs
of imsys.lmn and – for SML – by SmlLib, a parser we did not write."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imsys.core.clock import SimulatedClock
from imsys.core.errors import UsageError
from imsys.lmn import sml
from imsys.lmn.errors import LmnReason, SmlRejected, WmbusRejected
from imsys.lmn.wmbus import (
    Coding,
    DataRecord,
    FrameFormat,
    MemoryCounterTracker,
    SecurityMode,
    decode_records,
    decode_telegram,
    encode_records,
)
from imsys.meters import registers as R
from imsys.meters.ids import MeterId
from imsys.meters.lmn_payload import (
    DEVICE_ID_OBIS,
    MANUFACTURER_OBIS,
    SmlPushEncoder,
    SmlResponder,
    WmbusEncoder,
    meter_id_from_address,
    obis_bytes,
    profile_periods,
    tpl_status,
    vib_for,
    wmbus_address,
)
from imsys.meters.settings import FaultKind, InjectedFault, MeterSettings
from imsys.meters.simulator import MeterKind, MeterSimulator, MeterSnapshot, ModelKind
from imsys.meters.status import MeterStatus

T0 = datetime(2024, 12, 31, 23, 0, tzinfo=UTC)  # 1 January 2025, 00:00 local
Q = timedelta(minutes=15)
KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
WRONG_KEY = bytes.fromhex("f0e0d0c0b0a090807060504030201000")
IDS = {
    MeterKind.ELECTRICITY: "1EMH0012345678",
    MeterKind.GAS: "7ELS0087654321",
    MeterKind.WATER: "8DME0011223344",
    MeterKind.HEAT: "6KAM0055667788",
}
MODELS = {
    MeterKind.GAS: ModelKind.GAS_HEATING,
    MeterKind.WATER: ModelKind.WATER,
    MeterKind.HEAT: ModelKind.DISTRICT_HEAT,
}


def make(kind: MeterKind = MeterKind.ELECTRICITY, model: ModelKind | None = None,
         start: datetime = T0, **settings: object) -> tuple[MeterSimulator, SimulatedClock]:
    clock = SimulatedClock(start)
    model = model or MODELS.get(kind, ModelKind.HOUSEHOLD_H0)
    return MeterSimulator(IDS[kind], kind, model, MeterSettings(**settings), clock), clock


def exact(value: int | float, exponent: int) -> Decimal:
    return Decimal(str(value)).scaleb(exponent) if isinstance(value, float) \
        else Decimal(value).scaleb(exponent)


def sml_values(file: sml.SmlFile) -> dict[str, tuple[int, int, int | None, int | None]]:
    return {str(e.obis): (e.value, e.scaler, None if e.unit is None else int(e.unit), e.status)
            for e in file.list_entries() if e.unit is not None}


def snapshot_values(snap: MeterSnapshot) -> dict[str, tuple[int, int, int, int]]:
    return {r.obis: (r.value, r.scaler, int(r.unit), snap.status) for r in snap.readings}


# --------------------------------------------------------------------------- SML push


@pytest.mark.parametrize(("kind", "model"), [
    (MeterKind.ELECTRICITY, ModelKind.HOUSEHOLD_H0),
    (MeterKind.ELECTRICITY, ModelKind.PROSUMER),  # negative power in summer noons
    (MeterKind.GAS, ModelKind.GAS_HEATING),
    (MeterKind.WATER, ModelKind.WATER),
    (MeterKind.HEAT, ModelKind.DISTRICT_HEAT),
])
def test_push_frame_decodes_to_the_snapshot_values(kind: MeterKind, model: ModelKind) -> None:
    sim, clock = make(kind, model, seed=3)
    enc = SmlPushEncoder(sim.meter_id)
    clock.advance(timedelta(days=170, hours=12, minutes=15))
    snap = sim.sample()
    file = sml.decode_frame(enc.frame(snap))
    assert [type(m.body) for m in file.messages] == [
        sml.OpenResponse, sml.GetListResponse, sml.CloseResponse]
    body = file.messages[1].body
    assert isinstance(body, sml.GetListResponse)
    server_id = MeterId.parse(IDS[kind]).server_id
    assert body.server_id == server_id == file.messages[0].body.server_id  # type: ignore[union-attr]
    assert body.act_sensor_time == sml.Timestamp(int(snap.timestamp.timestamp()))
    assert sml_values(file) == snapshot_values(snap)
    ident = {e.obj_name: e.value for e in body.val_list if e.unit is None}
    assert ident == {DEVICE_ID_OBIS: server_id, MANUFACTURER_OBIS: IDS[kind][1:4].encode()}


def test_push_frames_count_files_and_keep_transaction_ids_unique() -> None:
    sim, clock = make()
    enc = SmlPushEncoder(sim.meter_id, first_file=0xFFFFFFFF)
    ids = set()
    for _ in range(3):
        clock.advance(Q)
        file = sml.decode_frame(enc.frame(sim.sample()))
        assert file.messages[0].body.req_file_id == file.messages[0].transaction_id[:4]  # type: ignore[union-attr]
        ids.update(m.transaction_id for m in file.messages)
    assert len(ids) == 9
    assert enc.file_number == 2  # wrapped around 32 bits


def test_push_encoder_refuses_a_snapshot_of_another_meter() -> None:
    sim, _ = make()
    other = SmlPushEncoder("1EMH0099999999")
    with pytest.raises(UsageError):
        other.frame(sim.sample())


def test_push_frame_without_identity_entries_holds_only_readings() -> None:
    sim, clock = make()
    clock.advance(Q)
    snap = sim.sample()
    file = sml.decode_frame(SmlPushEncoder(sim.meter_id, identity_entries=False).frame(snap))
    assert len(list(file.list_entries())) == len(snap.readings)


def test_push_frame_reads_the_same_in_smllib() -> None:
    reader_mod = pytest.importorskip("smllib.reader")
    sim, clock = make(MeterKind.ELECTRICITY, ModelKind.PROSUMER, seed=11)
    enc = SmlPushEncoder(sim.meter_id)
    for step in (timedelta(hours=12), timedelta(days=180), timedelta(days=1, hours=3)):
        clock.advance(step)
        snap = sim.sample()
        wire = enc.frame(snap)
        mine = sml.decode_frame(wire)
        reader = reader_mod.SmlStreamReader()
        reader.add(wire)
        frame = reader.get_frame()
        assert frame is not None
        theirs = [e for m in frame.parse_frame()
                  for e in (getattr(m.message_body, "val_list", None) or [])]
        ours = list(mine.list_entries())
        assert [t.obis for t in theirs] == [e.obj_name.hex() for e in ours]
        for t, e in zip(theirs, ours, strict=True):
            assert t.status == e.status
            assert t.unit == (None if e.unit is None else int(e.unit))
            assert t.scaler == e.scaler
            if isinstance(e.value, int):
                assert t.value == e.value
                assert math.isclose(t.get_value(), e.scaled_value, rel_tol=1e-12)  # type: ignore[arg-type]
        by_obis = {t.obis: t for t in theirs}
        for r in snap.readings:
            t = by_obis[obis_bytes(r.obis).hex()]
            assert (t.value, t.scaler, t.unit, t.status) == (r.value, r.scaler, r.unit, snap.status)


def test_push_frame_carries_fault_status_bits() -> None:
    fault = InjectedFault(FaultKind.MANIPULATION, T0 + timedelta(hours=1))
    sim, clock = make(faults=(fault,))
    clock.advance(timedelta(hours=2))
    snap = sim.sample()
    assert snap.status & MeterStatus.MANIPULATION
    file = sml.decode_frame(SmlPushEncoder(sim.meter_id).frame(snap))
    assert {v[3] for v in sml_values(file).values()} == {snap.status}


# --------------------------------------------------------------------------- SML pull


def request(*bodies: object, server_id: bytes | None = None) -> sml.SmlFile:
    msgs = [sml.SmlMessage(transaction_id=b"gw-0", body=sml.OpenRequest(
        client_id=b"\x01\x02\x03\x04\x05\x06", req_file_id=b"r1", server_id=server_id))]
    msgs += [sml.SmlMessage(transaction_id=f"gw-{k}".encode(), group_no=k, body=b)  # type: ignore[arg-type]
             for k, b in enumerate(bodies, 1)]
    msgs.append(sml.SmlMessage(transaction_id=b"gw-9", body=sml.CloseRequest()))
    return sml.SmlFile(tuple(msgs))


def ts(when: datetime) -> sml.Timestamp:
    return sml.Timestamp(int(when.timestamp()))


def test_get_list_request_is_answered_with_the_current_values() -> None:
    sim, clock = make(seed=5)
    ref, _ = make(seed=5)
    responder = SmlResponder(sim)
    clock.advance(timedelta(days=3, minutes=7))
    req = request(sml.GetListRequest(client_id=b"\x01\x02\x03\x04\x05\x06",
                                     list_name=bytes.fromhex("0100620affff")))
    answer = sml.decode_frame(responder.respond_frame(req))
    assert [m.transaction_id for m in answer.messages] == [m.transaction_id for m in req.messages]
    assert [m.group_no for m in answer.messages] == [0, 1, 0]
    opened, got, _ = (m.body for m in answer.messages)
    assert isinstance(opened, sml.OpenResponse) and opened.req_file_id == b"r1"
    assert isinstance(got, sml.GetListResponse)
    assert got.client_id == b"\x01\x02\x03\x04\x05\x06"
    assert got.list_name == bytes.fromhex("0100620affff")
    assert sml_values(answer) == snapshot_values(ref.snapshot_at(clock.now()))


def test_get_profile_list_answers_match_series() -> None:
    sim, clock = make(MeterKind.ELECTRICITY, ModelKind.PROSUMER, seed=2)
    clock.advance(timedelta(days=2, hours=5, minutes=3))
    now = clock.now()
    responder = SmlResponder(sim)
    begin = T0 + timedelta(hours=20, minutes=1)  # first period: 20:15
    end = T0 + timedelta(days=1, hours=2)
    req = request(sml.GetProfileListRequest(
        begin_time=ts(begin), end_time=ts(end),
        parameter_tree_path=(bytes.fromhex("8181c78610ff"),)))
    answer = sml.decode_frame(responder.respond_frame(req, now))
    periods = [m.body for m in answer.messages
               if isinstance(m.body, sml.GetProfileListResponse)]
    first = T0 + timedelta(hours=20, minutes=15)
    series = sim.series(first, end, Q)
    assert len(periods) == len(series.times) == 24
    for k, p in enumerate(periods):
        assert p.val_time == ts(first + k * Q)
        assert p.reg_period == 900
        assert p.act_time == ts(now)
        assert p.parameter_tree_path == (bytes.fromhex("8181c78610ff"),)
        assert p.status == sim.snapshot_at(first + k * Q).status
        values = {e.obj_name: (e.value, e.scaler, int(e.unit)) for e in p.period_list}
        assert values == {obis_bytes(o): (int(series.registers[o][k]), series.scalers[o], 30)
                          for o in series.registers}
    assert all(m.transaction_id == b"gw-1" for m in answer.messages[1:-1])


def test_profile_window_is_clipped_to_epoch_now_and_max_periods() -> None:
    sim, clock = make(MeterKind.GAS, seed=1)
    clock.advance(timedelta(hours=10, minutes=20))
    now = clock.now()
    everything = profile_periods(sim, None, None, now)
    assert [p.val_time for p in everything] == [ts(T0 + k * Q) for k in range(42)]
    future = profile_periods(sim, now, now + timedelta(days=1), now)
    assert future == ()
    capped = profile_periods(sim, T0 - timedelta(days=9), None, now, max_periods=5)
    assert [p.val_time for p in capped] == [ts(T0 + k * Q) for k in range(5)]
    hourly = profile_periods(sim, None, None, now, reg_period=3600)
    assert [p.val_time for p in hourly] == [ts(T0 + timedelta(hours=k)) for k in range(11)]


def test_profile_object_list_selects_registers() -> None:
    sim, clock = make(seed=1)
    clock.advance(timedelta(hours=2))
    export = obis_bytes(R.EXPORT_ENERGY)
    req = request(sml.GetProfileListRequest(parameter_tree_path=(), object_list=(export,)))
    answer = SmlResponder(sim).respond(req)
    periods = [m.body for m in answer.messages if isinstance(m.body, sml.GetProfileListResponse)]
    assert len(periods) == 9
    assert {e.obj_name for p in periods for e in p.period_list} == {export}


def test_sec_index_counts_from_the_meter_epoch() -> None:
    sim, clock = make(seed=1)
    clock.advance(timedelta(hours=2))
    req = request(sml.GetProfileListRequest(begin_time=sml.SecIndex(3600),
                                            end_time=sml.SecIndex(4500), parameter_tree_path=()))
    periods = [m.body for m in SmlResponder(sim).respond(req).messages
               if isinstance(m.body, sml.GetProfileListResponse)]
    assert [p.val_time for p in periods] == [ts(T0 + timedelta(hours=1)), ts(T0 + 5 * Q)]


@pytest.mark.parametrize(("body", "number"), [
    (sml.GetListRequest(client_id=b"gw", server_id=b"\x0a\x01OTHER\x00\x00\x00"),
     sml.AttentionNumber.RECIPIENT_NOT_FOUND),
    (sml.GetProcParameterRequest(parameter_tree_path=(b"\x01",)),
     sml.AttentionNumber.UNKNOWN_SML_ID),
    (sml.GetProfileListRequest(begin_time=sml.Timestamp(2_000_000_000), parameter_tree_path=()),
     sml.AttentionNumber.CANNOT_READ),
])
def test_requests_the_meter_cannot_serve_get_an_attention_response(
        body: object, number: sml.AttentionNumber, caplog: pytest.LogCaptureFixture) -> None:
    sim, clock = make()
    clock.advance(Q)
    responder = SmlResponder(sim)
    answer = sml.decode_frame(responder.respond_frame(request(body)))
    att = answer.messages[1].body
    assert isinstance(att, sml.AttentionResponse)
    assert att.attention_number == number.value
    assert att.server_id == responder.server_id
    assert answer.messages[1].transaction_id == b"gw-1"
    assert isinstance(answer.messages[2].body, sml.CloseResponse)
    assert responder.refused == 1
    assert "refuses SML request" in caplog.text


def test_open_request_for_another_meter_is_refused() -> None:
    sim, _ = make()
    answer = SmlResponder(sim).respond(request(server_id=b"\x0a\x01XYZ\x00\x00\x00\x00\x01"))
    assert answer.messages[0].body.attention_number == (  # type: ignore[union-attr]
        sml.AttentionNumber.RECIPIENT_NOT_FOUND.value)


def test_unparseable_frame_is_answered_with_unparseable() -> None:
    sim, _ = make()
    responder = SmlResponder(sim)
    wire = responder.reject(SmlRejected(LmnReason.BAD_CRC, "x"))
    att = sml.decode_frame(wire).messages[0].body
    assert isinstance(att, sml.AttentionResponse)
    assert att.attention_number == sml.AttentionNumber.UNPARSEABLE.value


# --------------------------------------------------------------------------- wM-Bus

QUANTITY_OBIS = {
    ("volume", 0): {MeterKind.GAS: R.GAS_VOLUME, MeterKind.WATER: R.WATER_VOLUME,
                    MeterKind.HEAT: R.HEAT_VOLUME},
    ("volume", 1): {MeterKind.GAS: R.GAS_VOLUME_HOURLY},
    ("energy", 0): {MeterKind.HEAT: R.HEAT_ENERGY},
    ("power", 0): {MeterKind.HEAT: R.HEAT_POWER},
    ("volume flow", 0): {MeterKind.HEAT: R.HEAT_FLOW_RATE},
    ("flow temperature", 0): {MeterKind.HEAT: R.HEAT_FLOW_TEMPERATURE},
    ("return temperature", 0): {MeterKind.HEAT: R.HEAT_RETURN_TEMPERATURE},
    ("temperature difference", 0): {MeterKind.HEAT: R.HEAT_TEMPERATURE_DIFFERENCE},
}


def telegram_values(records: tuple[DataRecord, ...], kind: MeterKind) -> dict[str, Decimal]:
    out = {}
    for r in records:
        info = r.info
        obis = QUANTITY_OBIS.get((info.quantity, r.storage), {}).get(kind)
        if obis is not None:
            assert isinstance(r.value, int)
            out[obis] = exact(r.value, info.exponent)
    return out


def assert_telegram_matches(t: object, snap: MeterSnapshot, kind: MeterKind) -> None:
    records = t.records  # type: ignore[attr-defined]
    expected = {r.obis: exact(r.value, r.scaler) for r in snap.readings}
    assert telegram_values(records, kind) == expected
    flags = [r.value for r in records if r.info.quantity == "error flags"]
    assert flags == [snap.status]
    stamp = next(r.value for r in records if r.info.quantity == "date and time"
                 and r.storage == 0)
    local = snap.timestamp.astimezone(ZoneInfo("Europe/Berlin"))
    assert str(stamp) == local.strftime("%Y-%m-%dT%H:%M")


@pytest.mark.parametrize("kind", [MeterKind.GAS, MeterKind.WATER, MeterKind.HEAT])
@pytest.mark.parametrize("mode", [SecurityMode.AES_CBC_IV, SecurityMode.AES_CBC_NO_IV])
@pytest.mark.parametrize("long_header", [False, True])
def test_telegrams_decode_with_the_right_key_to_the_snapshot_values(
        kind: MeterKind, mode: SecurityMode, long_header: bool) -> None:
    sim, clock = make(kind, seed=4)
    enc = WmbusEncoder(sim.meter_id, kind, key=KEY, mode=mode, long_header=long_header,
                       access_number=250)
    counters = MemoryCounterTracker()
    for k in range(8):
        clock.advance(timedelta(hours=7, minutes=15))
        snap = sim.sample()
        wire = enc.encode(snap)
        t = decode_telegram(wire, KEY, counters=counters, fmt=FrameFormat.A)
        assert t.tpl.mode is mode
        assert t.tpl.ci == (0x72 if long_header else 0x7A)
        assert t.link.c_field == 0x44
        assert t.meter == wmbus_address(IDS[kind], kind)
        assert t.tpl.access_number == (250 + k) % 256
        if mode is SecurityMode.AES_CBC_NO_IV:
            assert t.afl is not None and t.afl.message_counter == 1 + k
        else:
            assert t.afl is None
        assert_telegram_matches(t, snap, kind)
    if mode is SecurityMode.AES_CBC_NO_IV:
        with pytest.raises(WmbusRejected) as replay:
            decode_telegram(wire, KEY, counters=counters)
        assert replay.value.reason is LmnReason.REPLAYED


@pytest.mark.parametrize(("mode", "reason"), [
    (SecurityMode.AES_CBC_IV, LmnReason.WRONG_KEY),
    (SecurityMode.AES_CBC_NO_IV, LmnReason.BAD_MAC),
])
def test_wrong_key_is_a_typed_rejection(mode: SecurityMode, reason: LmnReason) -> None:
    sim, clock = make(MeterKind.GAS, seed=4)
    enc = WmbusEncoder(sim.meter_id, MeterKind.GAS, key=KEY, mode=mode)
    clock.advance(timedelta(hours=3))
    wire = enc.encode(sim.sample())
    with pytest.raises(WmbusRejected) as exc:
        decode_telegram(wire, WRONG_KEY)
    assert exc.value.reason is reason
    with pytest.raises(WmbusRejected) as exc:
        decode_telegram(wire, None)
    assert exc.value.reason is LmnReason.UNKNOWN_METER
    ok = decode_telegram(wire, {"12345678": WRONG_KEY, "87654321": KEY})
    assert ok.meter.id_text == "87654321"


def test_unencrypted_telegrams_and_format_b() -> None:
    sim, clock = make(MeterKind.WATER, seed=4)
    enc = WmbusEncoder(sim.meter_id, MeterKind.WATER, key=None, mode=SecurityMode.NONE,
                       fmt=FrameFormat.B)
    clock.advance(timedelta(hours=9))
    snap = sim.sample()
    t = decode_telegram(enc.encode(snap))
    assert t.tpl.mode is SecurityMode.NONE
    assert_telegram_matches(t, snap, MeterKind.WATER)


def test_fault_status_reaches_the_tpl_status_byte() -> None:
    faults = (InjectedFault(FaultKind.MAGNETIC_INFLUENCE, T0 + timedelta(hours=1)),
              InjectedFault(FaultKind.FATAL_ERROR, T0 + timedelta(hours=2)))
    sim, clock = make(MeterKind.HEAT, faults=faults)
    enc = WmbusEncoder(sim.meter_id, MeterKind.HEAT, key=KEY)
    statuses = []
    for _ in range(3):
        statuses.append(decode_telegram(enc.encode(sim.sample()), KEY).tpl.status)
        clock.advance(timedelta(hours=1))
    assert statuses == [0x00, 0x13, 0x1B]
    assert tpl_status(int(MeterStatus.BIT_POS_2)) == 0


def test_meter_address_round_trip() -> None:
    for kind, text in IDS.items():
        if kind is MeterKind.ELECTRICITY:
            with pytest.raises(UsageError):
                wmbus_address(text, kind)
            continue
        address = wmbus_address(text, kind)
        assert address.id_text == text[-8:]
        assert address.manufacturer_id == text[1:4]
        assert str(meter_id_from_address(address)) == text


def test_encoder_refuses_misuse() -> None:
    with pytest.raises(UsageError):
        WmbusEncoder(IDS[MeterKind.ELECTRICITY], MeterKind.ELECTRICITY, key=KEY)
    with pytest.raises(UsageError):
        WmbusEncoder(IDS[MeterKind.GAS], MeterKind.GAS, key=None, mode=SecurityMode.AES_CBC_IV)
    with pytest.raises(UsageError):
        WmbusEncoder(IDS[MeterKind.GAS], MeterKind.GAS, key=b"short")
    sim, _ = make(MeterKind.WATER)
    with pytest.raises(UsageError):
        WmbusEncoder(IDS[MeterKind.GAS], MeterKind.GAS, key=KEY).encode(sim.sample())


@settings(max_examples=60, deadline=None)
@given(quantity=st.sampled_from(["energy", "volume", "power", "flow"]),
       scaler=st.integers(-9, 6), value=st.integers(-(2**40), 2**40))
def test_vib_for_expresses_every_scaler_exactly(quantity: str, scaler: int, value: int) -> None:
    try:
        vib = vib_for(quantity, scaler)
    except UsageError:
        return  # beyond what a VIF plus one correction VIFE can say
    records, _, _ = decode_records(encode_records(
        [DataRecord(coding=Coding.INT64, vib=vib, value=value)]))
    assert records[0].info.exponent == scaler
    assert records[0].value == value


def test_vib_for_covers_the_simulator_scaler_settings() -> None:
    for scaler in range(-4, 4):  # MeterSettings.energy_scaler
        vib_for("energy", scaler)
    for scaler in range(-6, 1):  # MeterSettings.volume_scaler
        vib_for("volume", scaler)
    for scaler in range(-2, 7):  # MeterSettings.heat_energy_scaler
        vib_for("energy", scaler)
