"""imsys ⇄ libsml (Debian libsml 0.1.1+git20180125): frames one side writes, the other reads.

A small C harness (``libsml_harness.c``) is compiled into ``tmp_path`` with ``gcc … -lsml -luuid``.
It checks each frame's transport CRC with libsml's ``sml_crc16_calculate``, parses the SML file
with ``sml_file_parse`` and prints every field; :func:`_dump` prints imsys's model in the same
format and the two must be identical. The reverse direction decodes a frame that libsml's own
encoder (``sml_transport_write``) produced.

libsml 0.1.1 cannot read ``SML_TimestampLocal``, times inside ``SML_Value`` or the list-entry
choice of ``SML_ProcParValue``, so the generated files leave those out (``sml_files(libsml=True)``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "lmn"))
from lmn_strategies import sml_files

from imsys.lmn import sml
from imsys.lmn.sml.model import ProcParKind

pytestmark = pytest.mark.interop

HARNESS_SRC = Path(__file__).with_name("libsml_harness.c")
DATA = Path(__file__).parents[1] / "data" / "lmn"


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None or not Path("/usr/include/sml/sml_file.h").exists():
        pytest.skip("gcc or libsml-dev not installed")
    exe = tmp_path_factory.mktemp("libsml") / "libsml_harness"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(HARNESS_SRC), "-lsml", "-luuid", "-lm"],
                   check=True, capture_output=True)
    return exe


def run_harness(exe: Path, tmp: Path, wire: bytes) -> list[str]:
    path = tmp / "capture.bin"
    path.write_bytes(wire)
    out = subprocess.run([str(exe), "parse", str(path)], check=True, capture_output=True,
                         text=True)
    return out.stdout.splitlines()


# --------------------------------------------------------------------------- the dump


def _o(v: bytes | None) -> str:
    return v.hex() if v else "-"  # libsml reads an empty octet string (0x01) as absent


def _n(v: int | None) -> str:
    return "-" if v is None else str(int(v))


def _t(v: sml.SmlTime | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, sml.SecIndex):
        return f"sec:{v.value}"
    if isinstance(v, sml.Timestamp):
        return f"ts:{v.value}"
    raise AssertionError(f"libsml cannot carry {v!r}")


def _v(v: sml.SmlValue) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return f"b:{int(v)}"
    if isinstance(v, int):
        return f"n:{v}"
    if isinstance(v, bytes):
        return f"o:{v.hex()}"
    raise AssertionError(f"libsml cannot carry {v!r}")


def _path(p: sml.TreePath) -> str:
    # libsml reads an empty path element (0x01) as absent and leaves it out of the path
    return "[" + ",".join(_o(x) for x in p if x) + "]"


def _period(e: sml.PeriodEntry) -> list[str]:
    return ["period_entry", f"obj_name={_o(e.obj_name)}", f"unit={_n(e.unit)}",
            f"scaler={_n(e.scaler)}", f"value={_v(e.value)}",
            f"value_signature={_o(e.value_signature)}"]


def _tree(t: sml.Tree, depth: int) -> list[str]:
    out = [f"tree depth={depth}", f"parameter_name={_o(t.parameter_name)}"]
    if t.value is None:
        out.append("parameter_value=-")
    else:
        out.append(f"parameter_value kind={int(t.value.kind)}")
        v = t.value.value
        if t.value.kind is ProcParKind.VALUE:
            out.append(f"value={_v(v)}")  # type: ignore[arg-type]
        elif t.value.kind is ProcParKind.PERIOD_ENTRY:
            out += _period(v)  # type: ignore[arg-type]
        elif t.value.kind is ProcParKind.TIME:
            out.append(f"time={_t(v)}")  # type: ignore[arg-type]
        elif t.value.kind is ProcParKind.TUPEL_ENTRY:
            assert isinstance(v, sml.TupelEntry)
            out += [f"server_id={_o(v.server_id)}", f"sec_index={_t(v.sec_index)}",
                    f"status={v.status}"]
            for group, sig in ((("pA", "R1", "R4"), v.signature_pA_R1_R4),
                               (("mA", "R2", "R3"), v.signature_mA_R2_R3)):
                for name in group:
                    out += [f"unit_{name}={getattr(v, f'unit_{name}')}",
                            f"scaler_{name}={getattr(v, f'scaler_{name}')}",
                            f"value_{name}={getattr(v, f'value_{name}')}"]
                out.append(f"signature_{'_'.join(group)}={_o(sig)}")
    if not t.children:  # libsml keeps no child list for an empty one
        out.append("children=-")
    else:
        out.append(f"children={len(t.children)}")
        for c in t.children:
            out += _tree(c, depth + 1)
    return out


def _tree_opt(name: str, t: sml.Tree | None) -> list[str]:
    return [f"{name}=-"] if t is None else [f"{name}=tree", *_tree(t, 0)]


def _body(b: sml.MessageBody) -> list[str]:
    if isinstance(b, sml.OpenRequest):
        return [f"codepage={_o(b.codepage)}", f"client_id={_o(b.client_id)}",
                f"req_file_id={_o(b.req_file_id)}", f"server_id={_o(b.server_id)}",
                f"username={_o(b.username)}", f"password={_o(b.password)}",
                f"sml_version={_n(b.sml_version)}"]
    if isinstance(b, sml.OpenResponse):
        return [f"codepage={_o(b.codepage)}", f"client_id={_o(b.client_id)}",
                f"req_file_id={_o(b.req_file_id)}", f"server_id={_o(b.server_id)}",
                f"ref_time={_t(b.ref_time)}", f"sml_version={_n(b.sml_version)}"]
    if isinstance(b, sml.CloseRequest | sml.CloseResponse):
        return [f"global_signature={_o(b.global_signature)}"]
    if isinstance(b, sml.GetProfilePackRequest | sml.GetProfileListRequest):
        objects = "-" if not b.object_list else "[" + ",".join(
            _o(o) for o in b.object_list) + "]"
        return [f"server_id={_o(b.server_id)}", f"username={_o(b.username)}",
                f"password={_o(b.password)}",
                f"with_rawdata={'-' if b.with_rawdata is None else int(b.with_rawdata)}",
                f"begin_time={_t(b.begin_time)}", f"end_time={_t(b.end_time)}",
                f"parameter_tree_path={_path(b.parameter_tree_path)}",
                f"object_list={objects}", *_tree_opt("das_details", b.das_details)]
    if isinstance(b, sml.GetProfilePackResponse):
        out = [f"server_id={_o(b.server_id)}", f"act_time={_t(b.act_time)}",
               f"reg_period={b.reg_period}", f"parameter_tree_path={_path(b.parameter_tree_path)}",
               f"header_list={len(b.header_list)}"]
        for h in b.header_list:
            out += [f"obj_name={_o(h.obj_name)}", f"unit={_n(h.unit)}", f"scaler={h.scaler}"]
        out.append(f"period_list={len(b.period_list)}")
        for p in b.period_list:
            out += [f"val_time={_t(p.val_time)}", f"status={p.status}", f"values={len(p.values)}"]
            for v in p.values:
                out += [f"value={_v(v.value)}", f"value_signature={_o(v.value_signature)}"]
            out.append(f"period_signature={_o(p.period_signature)}")
        return [*out, f"rawdata={_o(b.rawdata)}", f"profile_signature={_o(b.profile_signature)}"]
    if isinstance(b, sml.GetProfileListResponse):
        out = [f"server_id={_o(b.server_id)}", f"act_time={_t(b.act_time)}",
               f"reg_period={b.reg_period}", f"parameter_tree_path={_path(b.parameter_tree_path)}",
               f"val_time={_t(b.val_time)}", f"status={b.status}",
               f"period_list={len(b.period_list)}"]
        for e in b.period_list:
            out += _period(e)
        return [*out, f"rawdata={_o(b.rawdata)}", f"period_signature={_o(b.period_signature)}"]
    if isinstance(b, sml.GetProcParameterRequest):
        return [f"server_id={_o(b.server_id)}", f"username={_o(b.username)}",
                f"password={_o(b.password)}",
                f"parameter_tree_path={_path(b.parameter_tree_path)}",
                f"attribute={_o(b.attribute)}"]
    if isinstance(b, sml.GetProcParameterResponse):
        return [f"server_id={_o(b.server_id)}",
                f"parameter_tree_path={_path(b.parameter_tree_path)}",
                *_tree_opt("parameter_tree", b.parameter_tree)]
    if isinstance(b, sml.SetProcParameterRequest):
        return [f"server_id={_o(b.server_id)}", f"username={_o(b.username)}",
                f"password={_o(b.password)}",
                f"parameter_tree_path={_path(b.parameter_tree_path)}",
                *_tree_opt("parameter_tree", b.parameter_tree)]
    if isinstance(b, sml.GetListRequest):
        return [f"client_id={_o(b.client_id)}", f"server_id={_o(b.server_id)}",
                f"username={_o(b.username)}", f"password={_o(b.password)}",
                f"list_name={_o(b.list_name)}"]
    if isinstance(b, sml.GetListResponse):
        out = [f"client_id={_o(b.client_id)}", f"server_id={_o(b.server_id)}",
               f"list_name={_o(b.list_name)}", f"act_sensor_time={_t(b.act_sensor_time)}",
               f"val_list={len(b.val_list)}"]
        for e in b.val_list:
            out += [f"obj_name={_o(e.obj_name)}", f"status={_n(e.status)}",
                    f"val_time={_t(e.val_time)}", f"unit={_n(e.unit)}", f"scaler={_n(e.scaler)}",
                    f"value={_v(e.value)}", f"value_signature={_o(e.value_signature)}"]
        return [*out, f"list_signature={_o(b.list_signature)}",
                f"act_gateway_time={_t(b.act_gateway_time)}"]
    if isinstance(b, sml.AttentionResponse):
        return [f"server_id={_o(b.server_id)}", f"attention_number={_o(b.attention_number)}",
                f"attention_message={_o(b.attention_message)}",
                *_tree_opt("attention_details", b.attention_details)]
    raise AssertionError(type(b))


def _dump(f: sml.SmlFile, crc_ok: bool = True) -> list[str]:
    out = [f"FRAME crc={'ok' if crc_ok else 'bad'}", f"messages={len(f.messages)} errors=0"]
    for m in f.messages:
        out.append(f"MSG tx={_o(m.transaction_id)} group={m.group_no} "
                   f"abort={m.abort_on_error} tag={m.tag:04x}")
        out += _body(m.body)
    return out


# --------------------------------------------------------------------------- tests


def _one_of_each() -> sml.SmlFile:
    """A file with every message type libsml knows, with realistic contents."""
    obis = bytes(sml.Obis.parse("1-0:1.8.0*255"))
    entry = sml.ListEntry(obis, status=0x1C0104, val_time=sml.SecIndex(88546346),
                          unit=sml.Unit.WATT_HOUR, scaler=-1, value=44998962,
                          value_signature=b"\x11" * 48)
    power = sml.ListEntry(bytes(sml.Obis.parse("1-0:16.7.0*255")), unit=sml.Unit.WATT,
                          scaler=0, value=-1234)
    text = sml.ListEntry(bytes(sml.Obis.parse("129-129:199.130.3*255")), value=b"EMH")
    leaf = sml.Tree(parameter_name=b"\x01\x00\x60\x01\x00\xff",
                    value=sml.ProcParValue(ProcParKind.VALUE, b"serial-123"))
    period = sml.PeriodEntry(obis, sml.Unit.WATT_HOUR, -1, 123456, b"sig")
    tree = sml.Tree(parameter_name=b"\x81\x81\xc7\x82\x01\xff", children=(
        leaf,
        sml.Tree(parameter_name=b"t", value=sml.ProcParValue(ProcParKind.TIME,
                                                             sml.Timestamp(1700000000))),
        sml.Tree(parameter_name=b"p", value=sml.ProcParValue(ProcParKind.PERIOD_ENTRY, period)),
    ))
    path = (b"\x81\x81\xc7\x82\x01\xff",)
    server = b"\x0a\x01EMH\x00\x00\x48\x95\xf7"
    bodies: list[sml.MessageBody] = [
        sml.OpenRequest(client_id=b"gw", req_file_id=b"f1", server_id=server, username=b"u",
                        password=b"p", sml_version=1),
        sml.OpenResponse(req_file_id=b"f1", server_id=server, ref_time=sml.SecIndex(5),
                         sml_version=1),
        sml.GetListRequest(client_id=b"gw", server_id=server,
                           list_name=b"\x01\x00\x62\x0a\xff\xff"),
        sml.GetListResponse(server_id=server, list_name=b"\x01\x00\x62\x0a\xff\xff",
                            act_sensor_time=sml.SecIndex(88546346),
                            val_list=(entry, power, text), list_signature=b"\x22" * 8),
        sml.GetProfileListRequest(server_id=server, with_rawdata=False,
                                  begin_time=sml.Timestamp(1700000000),
                                  end_time=sml.Timestamp(1700000900), parameter_tree_path=path,
                                  object_list=(obis,)),
        sml.GetProfileListResponse(server_id=server, act_time=sml.Timestamp(1700000900),
                                   reg_period=900, parameter_tree_path=path,
                                   val_time=sml.Timestamp(1700000900), status=0,
                                   period_list=(period,), period_signature=b"ps"),
        sml.GetProfilePackRequest(parameter_tree_path=path, das_details=leaf),
        sml.GetProfilePackResponse(
            server_id=server, act_time=sml.Timestamp(1700000900), reg_period=900,
            parameter_tree_path=path,
            header_list=(sml.ProfileHeaderEntry(obis, sml.Unit.WATT_HOUR, -1),),
            period_list=(sml.ProfilePeriodEntry(sml.Timestamp(1700000900), 0,
                                                (sml.ValueEntry(123, b"v"),), b"p"),)),
        sml.GetProcParameterRequest(parameter_tree_path=path, attribute=b"a"),
        sml.GetProcParameterResponse(server_id=server, parameter_tree_path=path,
                                     parameter_tree=tree),
        sml.SetProcParameterRequest(parameter_tree_path=path, parameter_tree=leaf),
        sml.AttentionResponse(server_id=server, attention_number=bytes(sml.AttentionNumber.OK),
                              attention_message=b"ok", attention_details=leaf),
        sml.CloseRequest(global_signature=b"\x33" * 4),
        sml.CloseResponse(),
    ]
    return sml.SmlFile(tuple(sml.SmlMessage(transaction_id=bytes([i + 1]) * 3, body=b)
                             for i, b in enumerate(bodies)))


def test_every_message_type_encoded_by_imsys_is_read_identically_by_libsml(
        harness: Path, tmp_path: Path) -> None:
    f = _one_of_each()
    assert {m.tag for m in f.messages} == set(sml.MESSAGE_TYPES)
    assert run_harness(harness, tmp_path, sml.encode_frame(f)) == _dump(f)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(f=sml_files(libsml=True))
def test_generated_files_are_read_identically_by_libsml(harness: Path, tmp_path_factory:
                                                        pytest.TempPathFactory,
                                                        f: sml.SmlFile) -> None:
    wire = sml.encode_frame(f, sml.CrcKind.X25)
    tmp = tmp_path_factory.mktemp("gen")
    assert run_harness(harness, tmp, wire) == _dump(f)


def test_frame_written_by_libsml_decodes_in_imsys(harness: Path) -> None:
    wire = subprocess.run([str(harness), "write"], check=True, capture_output=True).stdout
    f = sml.decode_frame(wire)  # transport CRC and every message CRC verified
    assert [type(m.body) for m in f.messages] == [sml.OpenResponse, sml.GetListResponse,
                                                  sml.CloseResponse]
    entries = {str(e.obis): e for e in f.list_entries()}
    assert entries["1-0:1.8.0*255"].scaled_value == 12345678.9
    assert entries["1-0:1.8.0*255"].unit is sml.Unit.WATT_HOUR
    assert entries["1-0:16.7.0*255"].value == -1234


def test_real_dzg_frame_reads_the_same_in_libsml_and_imsys(harness: Path, tmp_path: Path) -> None:
    line = next(x for x in (DATA / "sml_frames.txt").read_text().splitlines()
                if x.startswith("smllib-frame1-dzg"))
    wire = bytes.fromhex(line.split()[1])
    assert run_harness(harness, tmp_path, wire) == _dump(sml.decode_frame(wire))


def test_libsml_and_imsys_agree_on_the_transport_crc(harness: Path, tmp_path: Path) -> None:
    f = _one_of_each()
    lines = run_harness(harness, tmp_path, sml.encode_frame(f, sml.CrcKind.KERMIT))
    assert lines[0] == "FRAME crc=bad"  # libsml knows only the X-25 convention
    bad = bytearray(sml.encode_frame(f))
    bad[-1] ^= 0x01
    assert run_harness(harness, tmp_path, bytes(bad))[0] == "FRAME crc=bad"
