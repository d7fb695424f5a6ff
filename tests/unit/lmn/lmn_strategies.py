"""Hypothesis strategies for the LMN codecs (imported by the unit and interop tests).

``sml_files(libsml=True)`` leaves out what libsml 0.1.1 (Debian, 2018) cannot read:
``SML_TimestampLocal``, times inside ``SML_Value`` (``SML_ListType``) and the
``SML_ProcParValue`` list-entry choice.
"""

from __future__ import annotations

from functools import cache

from hypothesis import strategies as st

from imsys.lmn import sml
from imsys.lmn.sml.units import UNIT_BY_CODE

U8 = st.integers(0, 0xFF)
U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
I8 = st.integers(-128, 127)
I16 = st.integers(-(2**15), 2**15 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)


@cache
def octets(max_size: int = 24) -> st.SearchStrategy[bytes]:
    # mostly short strings, sometimes long ones (multi-byte TL fields, aligned 1b1b1b1b words)
    return st.one_of(
        st.binary(max_size=max_size),
        st.binary(min_size=14, max_size=300),
        st.lists(st.sampled_from([b"\x1b\x1b\x1b\x1b", b"\x1b", b"\x00", b"\x1a"]),
                 max_size=12).map(b"".join),
    )


@cache
def opt_octets(max_size: int = 24) -> st.SearchStrategy[bytes | None]:
    return st.none() | octets(max_size).filter(bool)


@cache
def times(local: bool = True) -> st.SearchStrategy[sml.SmlTime]:
    base = st.builds(sml.SecIndex, U32) | st.builds(sml.Timestamp, U32)
    if local:
        base = base | st.builds(sml.LocalTimestamp, U32, I16, I16)
    return base


@cache
def values(libsml: bool = False) -> st.SearchStrategy[sml.SmlValue]:
    v = st.one_of(st.none(), st.booleans(), octets().filter(bool),
                  st.integers(-(2**63), 2**64 - 1))
    return v if libsml else v | times()


UNITS = U8.map(lambda c: UNIT_BY_CODE[c])


@cache
def list_entries(libsml: bool = False) -> st.SearchStrategy[sml.ListEntry]:
    return st.builds(sml.ListEntry, octets(8), st.none() | U64,
                     st.none() | times(not libsml), st.none() | UNITS, st.none() | I8,
                     values(libsml), opt_octets())


@cache
def period_entries(libsml: bool = False) -> st.SearchStrategy[sml.PeriodEntry]:
    return st.builds(sml.PeriodEntry, octets(8), UNITS, I8, values(libsml), opt_octets())


@cache
def tupel_entries(libsml: bool = False) -> st.SearchStrategy[sml.TupelEntry]:
    kw = {"server_id": octets(), "sec_index": times(not libsml), "status": U64,
          "signature_pA_R1_R4": octets(), "signature_mA_R2_R3": octets()}
    for name in ("pA", "R1", "R4", "mA", "R2", "R3"):
        kw[f"unit_{name}"] = U8
        kw[f"scaler_{name}"] = I8
        kw[f"value_{name}"] = I64
    return st.builds(sml.TupelEntry, **kw)


@cache
def proc_par_values(libsml: bool = False) -> st.SearchStrategy[sml.ProcParValue]:
    K = sml.ProcParKind
    options = [
        st.builds(sml.ProcParValue, st.just(K.VALUE), values(libsml)),
        st.builds(sml.ProcParValue, st.just(K.PERIOD_ENTRY), period_entries(libsml)),
        st.builds(sml.ProcParValue, st.just(K.TUPEL_ENTRY), tupel_entries(libsml)),
        st.builds(sml.ProcParValue, st.just(K.TIME), times(not libsml)),
    ]
    if not libsml:
        options.append(st.builds(sml.ProcParValue, st.just(K.LIST_ENTRY), list_entries()))
    return st.one_of(options)


@cache
def trees(libsml: bool = False) -> st.SearchStrategy[sml.Tree]:
    leaf = st.builds(sml.Tree, parameter_name=octets(8),
                     value=st.none() | proc_par_values(libsml), children=st.none())
    return st.recursive(
        leaf,
        lambda kids: st.builds(sml.Tree, parameter_name=octets(8),
                               value=st.none() | proc_par_values(libsml),
                               children=st.lists(kids, max_size=3).map(tuple)),
        max_leaves=6,
    )


PATHS = st.lists(octets(8), max_size=4).map(tuple)


@cache
def bodies(libsml: bool = False) -> dict[str, st.SearchStrategy[sml.MessageBody]]:
    """One strategy per message type (keys are the class names)."""
    t = times(not libsml)
    req = {"server_id": opt_octets(), "username": opt_octets(), "password": opt_octets(),
           "with_rawdata": st.none() | st.booleans(), "begin_time": st.none() | t,
           "end_time": st.none() | t, "parameter_tree_path": PATHS,
           "object_list": st.none() | st.lists(octets(8), max_size=4).map(tuple),
           "das_details": st.none() | trees(libsml)}
    return {
        "OpenRequest": st.builds(
            sml.OpenRequest, codepage=opt_octets(), client_id=octets(), req_file_id=octets(),
            server_id=opt_octets(), username=opt_octets(), password=opt_octets(),
            sml_version=st.none() | U8),
        "OpenResponse": st.builds(
            sml.OpenResponse, codepage=opt_octets(), client_id=opt_octets(),
            req_file_id=octets(), server_id=octets(), ref_time=st.none() | t,
            sml_version=st.none() | U8),
        "CloseRequest": st.builds(sml.CloseRequest, global_signature=opt_octets()),
        "CloseResponse": st.builds(sml.CloseResponse, global_signature=opt_octets()),
        "GetProfilePackRequest": st.builds(sml.GetProfilePackRequest, **req),
        "GetProfileListRequest": st.builds(sml.GetProfileListRequest, **req),
        "GetProfilePackResponse": st.builds(
            sml.GetProfilePackResponse, server_id=octets(), act_time=t, reg_period=U32,
            parameter_tree_path=PATHS,
            header_list=st.lists(st.builds(sml.ProfileHeaderEntry, octets(8), UNITS, I8),
                                 max_size=3).map(tuple),
            period_list=st.lists(st.builds(
                sml.ProfilePeriodEntry, t, U64,
                st.lists(st.builds(sml.ValueEntry, values(libsml), opt_octets()),
                         max_size=3).map(tuple),
                opt_octets()), max_size=3).map(tuple),
            rawdata=opt_octets(), profile_signature=opt_octets()),
        "GetProfileListResponse": st.builds(
            sml.GetProfileListResponse, server_id=octets(), act_time=t, reg_period=U32,
            parameter_tree_path=PATHS, val_time=t, status=U64,
            period_list=st.lists(period_entries(libsml), max_size=4).map(tuple),
            rawdata=opt_octets(), period_signature=opt_octets()),
        "GetProcParameterRequest": st.builds(
            sml.GetProcParameterRequest, server_id=opt_octets(), username=opt_octets(),
            password=opt_octets(), parameter_tree_path=PATHS, attribute=opt_octets()),
        "GetProcParameterResponse": st.builds(
            sml.GetProcParameterResponse, server_id=octets(), parameter_tree_path=PATHS,
            parameter_tree=trees(libsml)),
        "SetProcParameterRequest": st.builds(
            sml.SetProcParameterRequest, server_id=opt_octets(), username=opt_octets(),
            password=opt_octets(), parameter_tree_path=PATHS, parameter_tree=trees(libsml)),
        "GetListRequest": st.builds(
            sml.GetListRequest, client_id=octets(), server_id=opt_octets(),
            username=opt_octets(), password=opt_octets(), list_name=opt_octets()),
        "GetListResponse": st.builds(
            sml.GetListResponse, client_id=opt_octets(), server_id=octets(),
            list_name=opt_octets(), act_sensor_time=st.none() | t,
            val_list=st.lists(list_entries(libsml), max_size=6).map(tuple),
            list_signature=opt_octets(), act_gateway_time=st.none() | t),
        "AttentionResponse": st.builds(
            sml.AttentionResponse, server_id=octets(),
            attention_number=st.sampled_from(list(sml.AttentionNumber)).map(bytes) | octets(),
            attention_message=opt_octets(), attention_details=st.none() | trees(libsml)),
    }


def messages(body: st.SearchStrategy[sml.MessageBody]) -> st.SearchStrategy[sml.SmlMessage]:
    return st.builds(sml.SmlMessage, transaction_id=octets(12), group_no=U8,
                     abort_on_error=st.sampled_from([0, 1, 2, 0xFF]), body=body)


@cache
def sml_files(libsml: bool = False) -> st.SearchStrategy[sml.SmlFile]:
    any_body = st.one_of(list(bodies(libsml).values()))
    return st.builds(sml.SmlFile, st.lists(messages(any_body), min_size=1, max_size=4).map(tuple),
                     st.sampled_from(list(sml.CrcKind)))
