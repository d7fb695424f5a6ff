"""``imsys up`` / ``imsys down``: the demo's roles on the real clock, until stopped.

``up`` builds a system folder on first use exactly as the demo does – SM-PKI, EMT, GWA, the
gateways made on the production line and commissioned through the GWA, their meters, TAF
1/2/6/7 profiles valid from the current quarter hour – leaves every role running as a
detached ``imsys …`` process and records them in ``FOLDER/system.json``; ``down`` stops what
that file lists (SIGTERM to each process group, SIGKILL after a grace period) and removes it.
Running ``up`` again on a stopped folder restarts the same system with its data.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from imsys.core.clock import SystemClock
from imsys.core.errors import UsageError
from imsys.system.demo import (
    DemoOptions,
    DemoRun,
    GwaAccess,
    Progress,
    commission,
    no_progress,
    start_emt,
    start_gateways,
    start_gwa,
    start_meters,
)
from imsys.system.provision import Household, MeterPlan, households
from imsys.system.roles import RoleProcess, free_port

__all__ = ["SYSTEM_FILE", "RoleRecord", "down", "running", "up"]

SYSTEM_FILE = "system.json"
PLAN_FILE = "plan.json"
FORMAT = "imsys-system/1"


@dataclass(frozen=True)
class RoleRecord:
    name: str
    pid: int
    log: str


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie of ours counts as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def running(folder: Path) -> list[RoleRecord]:
    """The roles ``system.json`` lists that are still alive."""
    path = Path(folder) / SYSTEM_FILE
    if not path.exists():
        return []
    doc = json.loads(path.read_text())
    return [RoleRecord(**r) for r in doc["roles"] if alive(int(r["pid"]))]


def _save_plan(folder: Path, homes: list[Household], emt_port: int, gwa: GwaAccess) -> None:
    doc = {"format": FORMAT, "emt_port": emt_port,
           "gwa": {"admin_port": gwa.admin_port, "api_port": gwa.api_port,
                   "passphrase": gwa.passphrase},
           "households": [
        {"index": h.index, "gateway_id": h.gateway_id, "consumer_id": h.consumer_id,
         "lmn_port": h.lmn_port, "wmbus_port": h.wmbus_port,
         "meters": [{"meter_id": m.meter_id, "role": m.role, "kind": m.kind,
                     "profile": m.profile, "interval": int(m.interval.total_seconds()),
                     "channels": list(m.channels),
                     "aes_key": None if m.aes_key is None else m.aes_key.hex()}
                    for m in h.meters]} for h in homes]}
    path = folder / PLAN_FILE
    path.touch(mode=0o600)  # holds the wireless meters' keys and the GWA's passphrase
    path.write_text(json.dumps(doc, indent=2))


def _load_plan(folder: Path) -> tuple[list[Household], int, GwaAccess]:
    doc = json.loads((folder / PLAN_FILE).read_text())
    if doc.get("format") != FORMAT:
        raise UsageError(f"{folder / PLAN_FILE} is not an {FORMAT} plan")
    homes = [Household(h["index"], h["gateway_id"], h["consumer_id"], tuple(
        MeterPlan(m["meter_id"], m["role"], m["kind"], m["profile"],
                  timedelta(seconds=m["interval"]), tuple(m["channels"]),
                  None if m["aes_key"] is None else bytes.fromhex(m["aes_key"]))
        for m in h["meters"]), h["lmn_port"], h["wmbus_port"]) for h in doc["households"]]
    gwa = GwaAccess(int(doc["gwa"]["admin_port"]), int(doc["gwa"]["api_port"]),
                    str(doc["gwa"]["passphrase"]))
    return homes, int(doc["emt_port"]), gwa


def up(folder: Path, households_count: int = 2, progress: Progress = no_progress,
       now: datetime | None = None) -> list[RoleRecord]:
    folder = Path(folder).resolve()
    if running(folder):
        raise UsageError(f"{folder} is already up; run `imsys down --dir {folder}` first")
    now = now or datetime.now(UTC)
    roles: list[RoleProcess] = []
    try:
        if (folder / PLAN_FILE).exists():  # the same system again, with its data
            homes, emt_port, gwa = _load_plan(folder)
            run = DemoRun(folder, now, now, homes, f"sqlite:///{folder / 'emt' / 'emt.db'}")
            total = 2 + sum(1 + len(h.meters) for h in homes)
            done = start_emt(run, roles, emt_port)
            start_gwa(run, roles, gwa, None)
            done = start_gateways(run, roles, None, progress, done + 1, total)
            start_meters(run, roles, None, progress, done, total)
        else:
            if folder.exists() and any(folder.iterdir()):
                raise UsageError(f"{folder} is not empty and holds no imsys system")
            folder.mkdir(parents=True, exist_ok=True)
            ports = [free_port() for _ in range(2 * households_count + 1)]
            homes, emt_port = households(households_count, ports[1:]), ports[0]
            valid_from = datetime.fromtimestamp(now.timestamp() // 900 * 900, UTC)
            run = DemoRun(folder, valid_from, valid_from, homes,
                          f"sqlite:///{folder / 'emt' / 'emt.db'}")
            gwa = commission(run, roles, emt_port, SystemClock(), None,
                             DemoOptions(households=households_count), progress)
            _save_plan(folder, homes, emt_port, gwa)
    except BaseException:
        for role in reversed(roles):
            role.stop(5)
        raise
    records = [RoleRecord(r.name, int(r.pid or 0), str(r.log_path)) for r in roles]
    (folder / SYSTEM_FILE).write_text(json.dumps(
        {"format": FORMAT, "started": now.isoformat(),
         "emt": f"https://127.0.0.1:{emt_port}/deliveries/v1",
         "gwa_api": f"http://127.0.0.1:{gwa.api_port}/docs",
         "roles": [r.__dict__ for r in records]}, indent=2))
    for role in roles:
        role.detach()
    return records


def down(folder: Path, grace: float = 15.0) -> list[tuple[RoleRecord, str]]:
    """Stop every role of ``folder``; returns each with how it ended."""
    folder = Path(folder).resolve()
    path = folder / SYSTEM_FILE
    if not path.exists():
        raise UsageError(f"{folder} is not up (no {SYSTEM_FILE})")
    records = [RoleRecord(**r) for r in json.loads(path.read_text())["roles"]]
    outcome: dict[int, str] = {}
    for record in reversed(records):  # meters first, the EMT last
        if not alive(record.pid):
            outcome[record.pid] = "was not running"
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for record in records:
        if record.pid in outcome:
            continue
        while alive(record.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(record.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGKILL)
            outcome[record.pid] = "killed after the grace period"
        else:
            outcome[record.pid] = "stopped"
    path.unlink()
    return [(r, outcome[r.pid]) for r in records]
