"""Command line: ``imsys sml decode`` and ``imsys wmbus decode`` (the lead mounts both apps).

Both print JSON Lines: one object per SML message / per telegram, and one object with an
``"error"`` key per rejected frame; the exit code is 1 if anything was rejected.
"""

from __future__ import annotations

import dataclasses
import json
import math
import string
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from imsys.lmn.errors import FrameRejected, SmlRejected, WmbusRejected
from imsys.lmn.sml import ListEntry, SmlFile, SmlMessage, SmlStreamDecoder
from imsys.lmn.sml.model import LocalTimestamp, SecIndex, Timestamp, scaled
from imsys.lmn.sml.obis import OBIS_NAMES
from imsys.lmn.sml.units import unit_symbol
from imsys.lmn.wmbus import (
    DataRecord,
    FrameFormat,
    MemoryCounterTracker,
    Telegram,
    decode_telegram,
)
from imsys.lmn.wmbus.records import DateG, DateTimeF
from imsys.lmn.wmbus.stream import read_capture

# --------------------------------------------------------------------------- JSON views

def plain(obj: Any) -> Any:
    """A JSON-ready copy of a model object (bytes as hex, enums by name, times as objects)."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, Enum):
        return obj.name
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, bytes | bytearray):
        return bytes(obj).hex()
    if isinstance(obj, SecIndex):
        return {"sec_index": obj.value}
    if isinstance(obj, Timestamp):
        return {"timestamp": obj.value, "utc": obj.datetime.isoformat()}
    if isinstance(obj, LocalTimestamp):
        return {"timestamp": obj.timestamp, "local_offset": obj.local_offset,
                "season_offset": obj.season_offset, "local": obj.datetime.isoformat()}
    if isinstance(obj, DateG | DateTimeF):
        return str(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return {k: plain(v) for k, v in zip(obj._fields, obj, strict=True)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return str(obj)


def sml_value_json(entry: ListEntry, raw: bool = False) -> dict[str, Any]:
    """One list entry: OBIS, name, unit symbol and the value with the scaler applied."""
    obis = entry.obis
    out: dict[str, Any] = {
        "obis": str(obis) if obis else entry.obj_name.hex(),
        "name": OBIS_NAMES.get(obis) if obis else None,
        "unit": unit_symbol(None if entry.unit is None else int(entry.unit)),
        "value": plain(scaled(entry.value, entry.scaler)),
    }
    if isinstance(entry.value, bytes):
        text = entry.value.decode("ascii", errors="replace")
        if text.isprintable() and text.isascii():
            out["text"] = text
    if entry.status is not None:
        out["status"] = entry.status
    if entry.val_time is not None:
        out["val_time"] = plain(entry.val_time)
    if entry.value_signature is not None:
        out["value_signature"] = entry.value_signature.hex()
    if raw:
        out["raw"] = {"value": plain(entry.value), "scaler": entry.scaler,
                      "unit_code": None if entry.unit is None else int(entry.unit)}
    return out


def sml_message_json(frame_no: int, index: int, m: SmlMessage,
                     raw: bool = False) -> dict[str, Any]:
    body = plain(m.body)
    out: dict[str, Any] = {"frame": frame_no, "message": index, "type": type(m.body).__name__,
                           "tag": f"0x{m.tag:04x}", "transaction_id": m.transaction_id.hex(),
                           "group_no": m.group_no, "abort_on_error": m.abort_on_error}
    val_list = getattr(m.body, "val_list", None)
    if val_list is not None:
        body.pop("val_list")
        out["values"] = [sml_value_json(e, raw) for e in val_list]
    out["body"] = body
    return out


def sml_file_json(frame_no: int, f: SmlFile, raw: bool = False) -> list[dict[str, Any]]:
    return [sml_message_json(frame_no, k, m, raw) for k, m in enumerate(f.messages)]


def wmbus_record_json(r: DataRecord, raw: bool = False) -> dict[str, Any]:
    info = r.info
    out: dict[str, Any] = {"quantity": info.quantity, "unit": info.unit or None,
                           "value": plain(r.scaled_value), "function": r.function.name.lower(),
                           "storage": r.storage, "tariff": r.tariff, "subunit": r.subunit}
    if raw:
        out["raw"] = {"coding": r.coding.name, "vib": r.vib.hex(), "value": plain(r.value),
                      "exponent": info.exponent}
    return out


def wmbus_telegram_json(index: int, t: Telegram, raw: bool = False) -> dict[str, Any]:
    meter = t.meter
    out: dict[str, Any] = {
        "telegram": index,
        "meter": {"id": meter.id_text, "manufacturer": meter.manufacturer_id,
                  "version": meter.version, "device_type": meter.device_type},
        "c_field": f"0x{t.link.c_field:02x}",
        "ci": f"0x{t.tpl.ci:02x}",
        "security_mode": int(t.tpl.mode),
        "access_number": t.tpl.access_number,
        "status": t.tpl.status,
    }
    if t.afl is not None:
        out["message_counter"] = t.afl.message_counter
    out["records"] = [wmbus_record_json(r, raw) for r in t.records]
    if t.manufacturer_data is not None:
        out["manufacturer_data"] = t.manufacturer_data.hex()
    return out


# --------------------------------------------------------------------------- commands

sml_app = typer.Typer(help="SML 1.04 (wired LMN): decode captures.", no_args_is_help=True)
wmbus_app = typer.Typer(help="Wireless M-Bus / OMS: decode telegrams.", no_args_is_help=True)


@sml_app.callback()
def _sml() -> None:
    """SML 1.04 (wired LMN)."""


@wmbus_app.callback()
def _wmbus() -> None:
    """Wireless M-Bus / OMS."""


def _emit(obj: object) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False))


def _error(where: dict[str, object], exc: FrameRejected) -> dict[str, object]:
    return {**where, "error": exc.reason.value, "detail": exc.message,
            **{k: v for k, v in exc.context.items() if isinstance(v, int | str)}}


def _maybe_hex(data: bytes) -> bytes:
    """A capture saved as hex text (whitespace allowed) is converted to bytes."""
    printable = set(string.printable.encode())
    if data and all(b in printable for b in data):
        text = "".join(data.decode("ascii").split())
        try:
            return bytes.fromhex(text)
        except ValueError:
            return data
    return data


@sml_app.command("decode")
def sml_decode(
    file: Annotated[Path, typer.Argument(help="capture: raw bytes of the serial line or hex text",
                                         exists=True, dir_okay=False)],
    raw: Annotated[bool, typer.Option("--raw", help="also print unscaled values and codes")]
    = False,
    no_message_crc: Annotated[bool, typer.Option(
        "--no-message-crc", help="do not check SML message CRCs (edited captures only)")] = False,
    max_frame_size: Annotated[int, typer.Option(help="largest frame accepted, bytes")]
    = 64 * 1024,
) -> None:
    """Print every SML message of a capture as one JSON object (values scaled, with units)."""
    dec = SmlStreamDecoder(max_frame_size=max_frame_size, verify_message_crc=not no_message_crc)
    dec.feed(_maybe_hex(file.read_bytes()))
    dec.feed(b"")
    failed = False
    for n, item in enumerate(dec.frames()):
        if isinstance(item, SmlFile):
            for obj in sml_file_json(n, item, raw):
                _emit(obj)
        else:
            assert isinstance(item, SmlRejected)
            failed = True
            _emit(_error({"frame": n}, item))
    if dec.garbage_bytes and raw:
        _emit({"skipped_bytes": dec.garbage_bytes})
    raise typer.Exit(1 if failed else 0)


def _parse_keys(keys: list[str]) -> dict[object, bytes]:
    out: dict[object, bytes] = {}
    for k in keys:
        ident, _, hexkey = k.rpartition("=")
        try:
            key = bytes.fromhex(hexkey)
        except ValueError:
            raise typer.BadParameter(f"not a hex key: {hexkey!r}") from None
        if len(key) != 16:
            raise typer.BadParameter("keys are 16 bytes (32 hex digits)")
        out[ident.lower() if ident else "*"] = key
    return out


@wmbus_app.command("decode")
def wmbus_decode(
    file: Annotated[Path, typer.Argument(
        help="telegrams: hex text, one per line, or binary records (u16 big-endian length + "
             "telegram)", exists=True, dir_okay=False)],
    key: Annotated[list[str] | None, typer.Option(
        "--key", help="AES key as 32 hex digits for every meter, or METERID=HEX; repeatable")]
    = None,
    frame_format: Annotated[FrameFormat, typer.Option(
        "--format", help="block CRCs: a, b, none (already removed) or auto")] = FrameFormat.AUTO,
    raw: Annotated[bool, typer.Option("--raw", help="also print DIF/VIF details")] = False,
) -> None:
    """Decode (and decrypt: modes 5 and 7) wM-Bus telegrams; print each as a JSON object."""
    keys = _parse_keys(key or [])
    counters = MemoryCounterTracker()
    failed = False
    for n, item in enumerate(read_capture(file.read_bytes())):
        if isinstance(item, WmbusRejected):
            failed = True
            _emit(_error({"telegram": n}, item))
            continue
        try:
            t = decode_telegram(item, keys or None, counters=counters, fmt=frame_format)
        except WmbusRejected as exc:
            failed = True
            _emit(_error({"telegram": n}, exc))
            continue
        _emit(wmbus_telegram_json(n, t, raw))
    raise typer.Exit(1 if failed else 0)


__all__ = ["plain", "sml_app", "sml_file_json", "wmbus_app", "wmbus_telegram_json"]
