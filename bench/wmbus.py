"""wM-Bus decoding throughput: security mode 5 and mode 7 telegrams per second (imsys).

Telegrams: the OMS Vol. 2 example gas-meter telegrams (mode 5: profile A; mode 7: profile B with
ELL and AFL, MAC verified) and a larger heat-meter telegram made by imsys (8 records) in each
mode. Each is decoded with its key, records built; mode 7 runs without a counter tracker (a
tracker would – rightly – reject the repeated telegram). For scale the script also times
pyMeterBus on the mode-5 telegrams when it is installed (it cannot read mode 7).

    python bench/wmbus.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from imsys.lmn.wmbus import (
    Address,
    Afl,
    Coding,
    DataRecord,
    FrameFormat,
    LinkHeader,
    SecurityMode,
    Telegram,
    TransportHeader,
    decode_telegram,
    encode_telegram,
    manufacturer_code,
)

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "lmn" / "wmbus_oms_examples.txt"
KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")


def _oms() -> dict[str, tuple[bytes, bytes]]:
    out = {}
    for line in DATA.read_text().splitlines():
        if line and not line.startswith("#"):
            ident, _fmt, key, hexdata = line.split()
            if key != "-":
                out[ident] = (bytes.fromhex(key), bytes.fromhex(hexdata))
    return out


def heat_meter(mode: SecurityMode) -> bytes:
    records = (
        DataRecord(coding=Coding.BCD8, vib=b"\x06", value=12345678),       # energy kWh
        DataRecord(coding=Coding.BCD8, vib=b"\x14", value=4567890),        # volume 10 l
        DataRecord(coding=Coding.INT32, vib=b"\x2b", value=12500),         # power W
        DataRecord(coding=Coding.INT32, vib=b"\x3b", value=1234),          # flow l/h
        DataRecord(coding=Coding.INT16, vib=b"\x5b", value=72),            # flow temp °C
        DataRecord(coding=Coding.INT16, vib=b"\x5f", value=41),            # return temp °C
        DataRecord(coding=Coding.INT16, vib=b"\x61", value=310),           # ΔT 0.01 K
        DataRecord(coding=Coding.BCD8, vib=b"\x06", value=12000000, storage=1),
    )
    addr = Address(manufacturer_code("ABC"), 0x87654321, 1, 0x04)
    t = Telegram(link=LinkHeader(0x44, addr),
                 afl=Afl(message_counter=7) if mode is SecurityMode.AES_CBC_NO_IV else None,
                 tpl=TransportHeader(ci=0x7A, access_number=9, mode=mode,
                                     config_ext=0x10 if mode is SecurityMode.AES_CBC_NO_IV
                                     else None),
                 records=records)
    return encode_telegram(t, KEY, FrameFormat.A)


def rate(telegrams: list[tuple[bytes, bytes]], seconds: float) -> float:
    n = 0
    t0 = time.perf_counter()
    while True:
        for key, wire in telegrams:
            t = decode_telegram(wire, key)
            assert t.records
        n += len(telegrams)
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def pymeterbus_rate(telegrams: list[tuple[bytes, bytes]], seconds: float) -> float | None:
    try:
        import meterbus
    except ImportError:
        return None
    prepared = []
    for key, wire in telegrams:
        t = decode_telegram(wire, key)
        meterbus.add_wmbus_encryption_key(t.meter.ident.to_bytes(4, "big"), key)
        prepared.append(encode_telegram(t, key, FrameFormat.NONE))
    n = 0
    t0 = time.perf_counter()
    while True:
        for wire in prepared:
            assert meterbus.load(wire).records
        n += len(prepared)
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    oms = _oms()
    mode5 = [oms["oms-profile-a-mode5"], (KEY, heat_meter(SecurityMode.AES_CBC_IV))]
    mode7 = [oms["oms-profile-b-mode7-integrated"], oms["oms-profile-b-mode7-radio-adapter"],
             (KEY, heat_meter(SecurityMode.AES_CBC_NO_IV))]
    r5 = max(rate(mode5, args.seconds) for _ in range(args.rounds))
    r7 = max(rate(mode7, args.seconds) for _ in range(args.rounds))
    peer = pymeterbus_rate(mode5, args.seconds)
    print(f"wmbus_mode5_telegrams_per_s {r5:.0f}")
    print(f"wmbus_mode7_telegrams_per_s {r7:.0f}")
    if peer is not None:
        print(f"pymeterbus_mode5_telegrams_per_s {peer:.0f}")
        print(f"wmbus_mode5_vs_pymeterbus {r5 / peer:.1f}")


if __name__ == "__main__":
    main()
