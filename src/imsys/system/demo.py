"""``imsys demo``: the whole iMSys on this machine, on a stepped simulated clock.

Sequence (each a separate ``imsys`` process on 127.0.0.1, orchestrated from here):

1. a fresh SM-PKI (Root-CA, Sub-CAs ``sub-ca`` and ``emt-ca``), valid before the window;
2. the EMT (``imsys emt serve``), its keys issued by ``emt-ca``;
3. per household a gateway (``imsys gateway run --clock``) with TAF 1/2/6/7 profiles;
4. its meters (``imsys meter run --clock``): H0 household and PV (SML over LMN-TLS, push),
   gas (wM-Bus mode 5 over UDP);
5. the window of simulated days is stepped through in quarter hours on one **shared clock**
   file: at each boundary the meters send, the gateways store; ten seconds later the gateways
   evaluate their TAFs and deliver to the EMT. The next step starts only when every gateway
   has stored every due value and finished its round, so the result does not depend on the
   machine's speed;
6. the MSB distribution of the received values (MSCONS, CSV, JSON per recipient), plots and a
   summary (:mod:`imsys.system.report`).

The window lies in the recent past (it ends at the last local midnight), because the EMT
judges signing times against the real clock.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from imsys.core.clock import SharedClock
from imsys.core.errors import UsageError
from imsys.gateway.delivery import DeliveryState
from imsys.gateway.logs import SystemEvent
from imsys.gateway.process import DB_FILE, TICK_DONE, delivery_counts
from imsys.gateway.store import Database, ReadingStore, StateTable
from imsys.system.provision import (
    EMT_ID,
    Household,
    households,
    init_pki,
    provision_emt,
    provision_gateway,
    window,
)
from imsys.system.roles import RoleFailed, RoleProcess, free_port, imsys_command, wait_for_port

__all__ = ["DemoOptions", "DemoRun", "run_demo"]

Q = timedelta(minutes=15)
EVALUATE_AFTER = timedelta(seconds=10)  # past the 9 s TAF tolerance


@dataclass(frozen=True)
class DemoOptions:
    households: int = 2
    days: int = 1
    hours: int | None = None  # a shorter window (tests); overrides days
    out: Path | None = None
    seed: int = 0
    delivery_interval: timedelta = timedelta(hours=1)
    step_timeout: float = 30.0
    emt_db: str | None = None  # database URL; default SQLite in the output folder

    def __post_init__(self) -> None:
        if not 1 <= self.households <= 50:
            raise UsageError("households must be 1..50")
        if not 1 <= self.days <= 31:
            raise UsageError("days must be 1..31")
        if self.hours is not None and not 1 <= self.hours <= 24 * 31:
            raise UsageError("hours must be 1..744")


@dataclass
class DemoRun:
    """Where everything of one run is, and what the orchestrator saw."""

    out: Path
    start: datetime
    end: datetime
    households: list[Household]
    emt_db: str
    steps: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def gateway_dir(self, household: Household) -> Path:
        return self.out / "gateways" / household.gateway_id

    @property
    def pki_dir(self) -> Path:
        return self.out / "pki"

    @property
    def emt_keys(self) -> Path:
        return self.out / "emt" / "keys"


Progress = Callable[[str, int, int], None]  # (task, done, total)


def no_progress(task: str, done: int, total: int) -> None:
    pass


class _Gateways:
    """Read-only views of every gateway's database (WAL: reading while the gateway writes)."""

    def __init__(self, run: DemoRun) -> None:
        self.run = run
        self.dbs: dict[str, Database] = {}

    def db(self, household: Household) -> Database | None:
        gid = household.gateway_id
        if gid not in self.dbs:
            path = self.run.gateway_dir(household) / DB_FILE
            if not path.exists():
                return None
            self.dbs[gid] = Database(path)
        return self.dbs[gid]

    def has_values_at(self, household: Household, when: datetime) -> bool:
        db = self.db(household)
        if db is None:
            return False
        store = ReadingStore(db)
        for meter in household.meters:
            if (when - datetime(1970, 1, 1, tzinfo=UTC)) % meter.interval:
                continue
            latest = store.latest(meter.meter_id, meter.channels[0])
            if latest is None or latest.reading.timestamp < when:
                return False
        return True

    def round_done(self, household: Household, when: datetime) -> bool:
        db = self.db(household)
        if db is None:
            return False
        done = StateTable(db).get_time(TICK_DONE)
        return done is not None and done >= when

    def outstanding(self, household: Household) -> int:
        db = self.db(household)
        if db is None:
            return 0
        counts = delivery_counts(db)
        return sum(n for state, n in counts.items()
                   if state != DeliveryState.ACKNOWLEDGED.value)

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()
        self.dbs.clear()


def gateway_starts(state: Path) -> int:
    """How often the gateway in ``state`` has logged its start (0 before its first run)."""
    path = state / DB_FILE
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        try:
            row = conn.execute("SELECT count(*) FROM log_entries WHERE log = 'system' "
                               "AND event = ?", (int(SystemEvent.GATEWAY_START),)).fetchone()
        except sqlite3.OperationalError:  # the gateway is still creating its schema
            return 0
    return int(row[0])


def _wait(what: str, predicate: Callable[[], bool], timeout: float,
          roles: list[RoleProcess]) -> None:
    deadline = time.monotonic() + timeout
    pause = 0.002
    while not predicate():
        for role in roles:
            role.check()
        if time.monotonic() > deadline:
            raise RoleFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.02)


@contextlib.contextmanager
def _timed(run: DemoRun, name: str) -> Iterator[None]:
    t0 = time.monotonic()
    try:
        yield
    finally:
        run.seconds[name] = time.monotonic() - t0


def run_demo(options: DemoOptions, progress: Progress = no_progress,
             now: datetime | None = None) -> DemoRun:
    """Run the demo; returns where its files are. Role processes are stopped on return."""
    real_now = now or datetime.now(UTC)
    out = options.out or Path.cwd() / f"imsys-demo-{real_now:%Y%m%d-%H%M%S}"
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    if options.hours is not None:
        end = datetime.fromtimestamp(real_now.timestamp() // 3600 * 3600, UTC) - timedelta(hours=1)
        start = end - timedelta(hours=options.hours)
    else:
        start, end = window(options.days, real_now)
    ports = [free_port() for _ in range(2 * options.households + 1)]
    homes = households(options.households, ports[1:])
    emt_db = options.emt_db or f"sqlite:///{out / 'emt' / 'emt.db'}"
    run = DemoRun(out, start, end, homes, emt_db)
    roles: list[RoleProcess] = []
    views = _Gateways(run)
    try:
        with _timed(run, "setup"):
            progress("SM-PKI and key material", 0, 1 + len(homes))
            pki = init_pki(run.pki_dir, start - timedelta(days=1))
            provision_emt(pki, run.emt_keys)
            for i, home in enumerate(homes):
                provision_gateway(pki, home, run.gateway_dir(home), out / "meters", run.emt_keys,
                                  ports[0], start, options.delivery_interval)
                progress("SM-PKI and key material", i + 1, 1 + len(homes))
            clock_file = out / "clock"
            clock = SharedClock.create(clock_file, start - Q)
            progress("SM-PKI and key material", 1 + len(homes), 1 + len(homes))
            start_roles(run, roles, ports[0], clock_file, progress)
        with _timed(run, "simulation"):
            _step_through(run, clock, views, roles, options, progress)
        with _timed(run, "shutdown"):
            for role in reversed(roles):
                role.stop()
        return run
    finally:
        views.close()
        for role in reversed(roles):
            role.stop(5)


def start_roles(run: DemoRun, roles: list[RoleProcess], emt_port: int,
                 clock_file: Path | None, progress: Progress) -> None:
    """Start the EMT, then each gateway and its meters; ``clock_file`` None = real clock."""
    clock_args = [] if clock_file is None else ["--clock", str(clock_file)]
    logs = run.out / "logs"
    total = 1 + sum(1 + len(h.meters) for h in run.households)
    done = 0
    progress("starting roles", done, total)
    (run.out / "emt").mkdir(exist_ok=True)
    emt = RoleProcess("emt", imsys_command(
        "emt", "serve", "--pki", str(run.pki_dir), "--id", EMT_ID, "--db", run.emt_db,
        "--port", str(emt_port), "--keys", str(run.emt_keys), "--ca", "emt-ca"),
        logs / "emt.log").start()
    roles.append(emt)
    wait_for_port(emt_port, 60, emt)
    done += 1
    progress("starting roles", done, total)
    gateways = []
    for home in run.households:  # all gateways start at once, then each is waited for
        before = gateway_starts(run.gateway_dir(home))
        gateway = RoleProcess(f"gateway {home.gateway_id}", imsys_command(
            "gateway", "run", "--state", str(run.gateway_dir(home)), *clock_args,
            "--quiet"), logs / f"gateway-{home.gateway_id}.log").start()
        roles.append(gateway)
        gateways.append((home, gateway, before))
    for home, gateway, before in gateways:
        # not a probe connection (the gateway would log it as a refused LMN peer): its
        # system log says when the LMN endpoints are up
        _wait(f"{gateway.name} to start", lambda h=home, n=before: gateway_starts(  # type: ignore[misc]
            run.gateway_dir(h)) > n, 60, [gateway])
        done += 1
        progress("starting roles", done, total)
    for home in run.households:
        for meter in home.meters:
            args = ["meter", "run", "--kind", meter.kind, "--id", meter.meter_id,
                    "--interval", str(int(meter.interval.total_seconds())),
                    *clock_args, "--seed", str(home.index), "--quiet"]
            if meter.kind == "electricity":
                folder = run.out / "meters" / meter.meter_id
                args += ["--profile", meter.profile, "--gateway", f"127.0.0.1:{home.lmn_port}",
                         "--cert", str(folder / "cert.pem"), "--key", str(folder / "key.pem"),
                         "--ca", str(folder / "ca.pem"),
                         "--crl", str(run.pki_dir / "ca" / "root" / "crl.der"),
                         "--crl", str(run.pki_dir / "ca" / "sub-ca" / "crl.der")]
            else:
                assert meter.aes_key is not None
                args += ["--udp", f"127.0.0.1:{home.wmbus_port}", "--key-hex",
                         meter.aes_key.hex(), "--mode5"]
            roles.append(RoleProcess(f"meter {meter.meter_id}", imsys_command(*args),
                                     logs / f"meter-{meter.meter_id}.log").start())
            done += 1
            progress("starting roles", done, total)


def _step_through(run: DemoRun, clock: SharedClock, views: _Gateways,
                  roles: list[RoleProcess], options: DemoOptions, progress: Progress) -> None:
    boundaries = int((run.end - run.start) / Q) + 1
    timeout = options.step_timeout
    # the wired meters connect and send their first value at `start`
    for i in range(boundaries):
        when = run.start + i * Q
        clock.set(when)
        _wait(f"the values of {when:%Y-%m-%d %H:%M}Z", lambda w=when: all(  # type: ignore[misc]
            views.has_values_at(h, w) for h in run.households), timeout, roles)
        clock.set(when + EVALUATE_AFTER)
        _wait(f"the gateways' round at {when:%H:%M}Z", lambda w=when: all(  # type: ignore[misc]
            views.round_done(h, w + EVALUATE_AFTER) for h in run.households), timeout, roles)
        run.steps += 1
        progress("simulated quarter hours", i + 1, boundaries)
    # the last evaluation and delivery: move on until every delivery is acknowledged
    final = run.end + EVALUATE_AFTER
    for _ in range(60):
        if not any(views.outstanding(h) for h in run.households):
            break
        final += timedelta(minutes=1)
        clock.set(final)
        _wait("the gateways' delivery round", lambda f=final: all(  # type: ignore[misc]
            views.round_done(h, f) for h in run.households), timeout, roles)
    else:
        raise RoleFailed("deliveries still outstanding after an hour of retries")
