"""SML decoding throughput: imsys vs SmlLib (and libsml's C figure when libsml is installed).

The frames are the public meter frames in tests/data/lmn (the anonymised ones re-encoded with
valid message CRCs, the EMH file wrapped in a transport frame), decoded with the stream decoders
(``SmlStreamDecoder.feed/next_frame`` vs ``SmlStreamReader.add/get_frame/parse_frame``), all
values built. Rounds alternate between the two and the best round of each counts, so load from
other processes hurts both alike. The LAST line is ``sml_vs_smllib <imsys frames/s ÷ SmlLib's>``.

    python bench/sml.py [--seconds 0.4] [--rounds 7]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imsys.lmn.sml import SmlFile, SmlStreamDecoder, decode_frame, decode_messages, encode_frame

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "lmn"
HARNESS = ROOT / "tests" / "interop" / "libsml_harness.c"


def _load(name: str) -> dict[str, bytes]:
    out = {}
    for line in (DATA / name).read_text().splitlines():
        if line and not line.startswith("#"):
            k, h = line.split()
            out[k] = bytes.fromhex(h)
    return out


def bench_frames() -> list[bytes]:
    frames = []
    for key, wire in sorted(_load("sml_frames.txt").items()):
        f = decode_frame(wire, verify_message_crc=False)
        frames.append(wire if key in ("smllib-frame1-dzg", "smllib-frame2-hly")
                      else encode_frame(f))
    for payload in _load("sml_payloads.txt").values():
        frames.append(encode_frame(SmlFile(decode_messages(payload, verify_crc=False))))
    return frames


def run_imsys(frames: list[bytes], seconds: float) -> tuple[float, float]:
    dec = SmlStreamDecoder()
    n = values = 0
    t0 = time.perf_counter()
    while True:
        for wire in frames:
            dec.feed(wire)
            f = dec.next_frame()
            assert isinstance(f, SmlFile)
            for m in f.messages:
                values += len(getattr(m.body, "val_list", ()))
        n += len(frames)
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt, values / dt


def run_smllib(frames: list[bytes], seconds: float) -> tuple[float, float]:
    from smllib.reader import SmlStreamReader

    reader = SmlStreamReader()
    n = values = 0
    t0 = time.perf_counter()
    while True:
        for wire in frames:
            reader.add(wire)
            frame = reader.get_frame()
            for msg in frame.parse_frame():
                values += len(getattr(msg.message_body, "val_list", ()) or ())
        n += len(frames)
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt, values / dt


def run_libsml(frames: list[bytes]) -> tuple[float, float] | None:
    if shutil.which("gcc") is None or not Path("/usr/include/sml/sml_file.h").exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "harness"
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(HARNESS), "-lsml", "-luuid", "-lm"],
                       check=True, capture_output=True)
        capture = Path(tmp) / "frames.bin"
        capture.write_bytes(b"".join(frames))
        out = subprocess.run([str(exe), "bench", str(capture), "20000"], check=True,
                             capture_output=True, text=True).stdout.split()
        figures = dict(zip(out[::2], map(float, out[1::2]), strict=True))
        return figures["frames_per_s"], figures["values_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=0.4)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    frames = bench_frames()
    print(f"frames {len(frames)} bytes {sum(map(len, frames))} python {sys.version.split()[0]}")
    best_i = best_s = (0.0, 0.0)
    have_smllib = True
    for _ in range(args.rounds):
        best_i = max(best_i, run_imsys(frames, args.seconds))
        try:
            best_s = max(best_s, run_smllib(frames, args.seconds))
        except ImportError:
            have_smllib = False
    print(f"imsys_frames_per_s {best_i[0]:.0f}")
    print(f"imsys_values_per_s {best_i[1]:.0f}")
    if have_smllib:
        print(f"smllib_frames_per_s {best_s[0]:.0f}")
        print(f"smllib_values_per_s {best_s[1]:.0f}")
    # libsml 0.1.1 cannot read the Holley frame (bare Unsigned32 as SML_Time): leave it out there
    holley = _load("sml_frames.txt")["smllib-frame2-hly"]
    lib = run_libsml([f for f in frames if f != holley])
    if lib is not None:
        print(f"libsml_frames_per_s {lib[0]:.0f} (C, {len(frames) - 1} of the frames)")
        print(f"libsml_values_per_s {lib[1]:.0f}")
    ratio = best_i[0] / best_s[0] if have_smllib and best_s[0] else float("nan")
    print(f"sml_vs_smllib {ratio:.1f}")


if __name__ == "__main__":
    main()
