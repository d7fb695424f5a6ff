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
import logging
import secrets
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from imsys.core.clock import Clock, SharedClock
from imsys.core.errors import UsageError
from imsys.gateway.delivery import DeliveryState
from imsys.gateway.device import DeviceSettings
from imsys.gateway.device_process import CRL_DIR, OPERATION_STARTED
from imsys.gateway.initial_config import GwaAddress
from imsys.gateway.logs import SystemEvent
from imsys.gateway.process import DB_FILE, TICK_DONE, delivery_counts
from imsys.gateway.store import Database, ReadingStore, StateTable
from imsys.gwa.cli import PASSPHRASE_ENV
from imsys.system.administration import (
    OperatorApi,
    configuration_commands,
    init_gwa,
    initial_configurations,
    produce_gateway,
)
from imsys.system.provision import (
    EMT_ID,
    Household,
    households,
    init_pki,
    provision_emt,
    provision_gateway,
    provision_meter,
    usage_point,
    window,
)
from imsys.system.roles import RoleFailed, RoleProcess, free_port, imsys_command, wait_for_port

__all__ = ["DemoOptions", "DemoRun", "run_demo"]

Q = timedelta(minutes=15)
COMMISSIONING_TASK = "commissioning (seed 003 §2.3)"
log = logging.getLogger(__name__)
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
    #: False: provision gateways directly (keys and profiles in gateway.json) instead of the
    #: production line and commissioning through the GWA
    commission: bool = True
    #: database URL for the EMT and the GWA (their tables do not overlap); default SQLite
    #: files in the output folder
    emt_db: str | None = None

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

    @property
    def gwa_dir(self) -> Path:
        return self.out / "gwa"


Progress = Callable[[str, int, int], None]  # (task, done, total)


def no_progress(task: str, done: int, total: int) -> None:
    pass


class _Gateways:
    """Read-only views of every gateway's database (WAL: reading while the gateway writes)."""

    def __init__(self, run: DemoRun) -> None:
        self.run = run
        self.dbs: dict[str, Database] = {}
        self.stores: dict[str, ReadingStore] = {}

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
        store = self.stores.get(household.gateway_id)
        if store is None:
            store = self.stores[household.gateway_id] = ReadingStore(db)
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
        self.stores.clear()


def crl_lifetime(run: DemoRun) -> timedelta:
    """CRLs dated before the window that stay valid well after the run (peers check them
    against the real clock as well as the simulated one); at least 90 days, which is how long
    an ``imsys up`` system runs before its gateways need fresh CRL files (docs/demo.md)."""
    return max((run.end - run.start) + timedelta(days=8), timedelta(days=90))


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
            clock_file = out / "clock"
            clock = SharedClock.create(clock_file, start - Q)
            if options.commission:
                commission(run, roles, ports[0], clock, clock_file, options, progress)
            else:
                progress("SM-PKI and key material", 0, 1 + len(homes))
                pki = init_pki(run.pki_dir, start - timedelta(days=1),
                               crl_lifetime=crl_lifetime(run))
                provision_emt(pki, run.emt_keys)
                for i, home in enumerate(homes):
                    provision_gateway(pki, home, run.gateway_dir(home), out / "meters",
                                      run.emt_keys, ports[0], start, options.delivery_interval)
                    progress("SM-PKI and key material", i + 1, 1 + len(homes))
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


@dataclass(frozen=True)
class GwaAccess:
    """Where the run's GWA listens and how its security module opens."""

    admin_port: int
    api_port: int
    passphrase: str


def start_gwa(run: DemoRun, roles: list[RoleProcess], gwa: GwaAccess,
              clock_file: Path | None) -> OperatorApi:
    role = RoleProcess("gwa", imsys_command("gwa", "serve", str(run.gwa_dir),
                                            *_clock_args(clock_file)),
                       run.out / "logs" / "gwa.log", env={PASSPHRASE_ENV: gwa.passphrase}).start()
    roles.append(role)
    api = OperatorApi(gwa.api_port)
    wait_for_port(gwa.admin_port, 60, role)
    api.wait_until_up(60)
    return api


def commission(run: DemoRun, roles: list[RoleProcess], emt_port: int, clock: Clock,
               clock_file: Path | None, options: DemoOptions, progress: Progress) -> GwaAccess:
    """The gateways through every commissioning phase (seed 003 §2.3), then configured by
    the GWA's operator: production line in this process, personalisation and set-up in the
    admin sessions the gateway processes open, the operator's commands after a wake-up.
    Every role is running when it returns (``clock_file`` None: on the real clock)."""
    homes, out = run.households, run.out
    steps = 3 + 2 * len(homes)
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        log.info("commissioning: %s", what)
        progress(COMMISSIONING_TASK, done, steps)

    progress(COMMISSIONING_TASK, 0, steps)
    not_before = run.start - timedelta(days=1)
    pki = init_pki(run.pki_dir, not_before, crl_lifetime=crl_lifetime(run))
    provision_emt(pki, run.emt_keys)
    admin_port, api_port = free_port(), free_port()
    passphrase = secrets.token_hex(16)
    init_gwa(run.gwa_dir, run.pki_dir, not_before, passphrase.encode(), admin_port=admin_port,
             api_port=api_port, db=options.emt_db)  # --db: EMT and GWA (gwa_* tables)
    step("GWA keys certified")
    address = GwaAddress("127.0.0.1", admin_port)
    documents = initial_configurations(run.gwa_dir, passphrase.encode(),
                                       [h.gateway_id for h in homes], address)
    wakeups = {}
    for home in homes:  # the production line: §2.3.1 and §2.3.2
        for meter in home.meters:
            provision_meter(pki, meter, out / "meters" / meter.meter_id)
        wakeups[home.gateway_id] = free_port()
        settings = DeviceSettings(
            home.gateway_id, lmn_listen=f"127.0.0.1:{home.lmn_port}",
            wmbus_listen=f"127.0.0.1:{home.wmbus_port}",
            wakeup_listen=f"127.0.0.1:{wakeups[home.gateway_id]}",
            delivery_interval=int(options.delivery_interval.total_seconds()),
            admin_interval=86400, usage_point_id=usage_point(home))
        state = run.gateway_dir(home)
        produce_gateway(state, settings, pki, clock, documents[home.gateway_id], address)
        copy_crls(run.pki_dir, state / CRL_DIR)
        step(f"{home.gateway_id} manufactured and installed")
    start_emt(run, roles, emt_port)
    access = GwaAccess(admin_port, api_port, passphrase)
    api = start_gwa(run, roles, access, clock_file)
    step("EMT and GWA running")
    batches = []
    chain = tuple(pki.chain("emt-ca")[:-1])
    for home in homes:  # the operator's configuration, delivered once the gateway is set up
        api.set_wakeup(home.gateway_id, "127.0.0.1", wakeups[home.gateway_id])
        for command_type, parameters in configuration_commands(
                home, out / "meters", run.emt_keys, emt_port, chain, run.start):
            batches.append(api.command([home.gateway_id], command_type, parameters))
    start_gateways(run, roles, clock_file, no_progress, 0, 0)

    def operational() -> bool:
        rows = {r["gateway_id"]: r for r in api.gateways()}
        return all(rows.get(h.gateway_id, {}).get("commissioning") == "operational"
                   for h in homes)

    _wait("personalisation and set-up over the admin session", operational, 120, roles)
    step("personalised, time synchronised, self-tested")
    for home in homes:
        api.wakeup(home.gateway_id)  # table 3 step 3.1: the gateway connects out to its GWA

    def configured() -> bool:
        states = [api.batch(b) for b in batches]
        return all(b["done"] == b["total"] for b in states)

    _wait("the operator's commands", configured, 120, roles)
    failed = [b for b in (api.batch(b) for b in batches)
              if set(b["by_status"]) != {"ok"}]
    if failed:
        raise RoleFailed(f"configuration commands not all ok: {failed[0]['by_status']}")
    _wait("operation", lambda: all(operation_started(run.gateway_dir(h)) for h in homes), 60,
          roles)
    for home in homes:
        step(f"{home.gateway_id} configured")
    start_meters(run, roles, clock_file, no_progress, 0, 0)
    return access


def operation_started(state: Path) -> bool:
    """Whether the commissioned gateway in ``state`` has logged that it operates."""
    path = state / DB_FILE
    if not path.exists():
        return False
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        try:
            row = conn.execute("SELECT count(*) FROM log_entries WHERE log = 'system' AND "
                               "text LIKE ?", (f"{OPERATION_STARTED}%",)).fetchone()
        except sqlite3.OperationalError:
            return False
    return bool(row[0])


def copy_crls(pki_dir: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for ca in sorted((pki_dir / "ca").iterdir()):
        if (ca / "crl.der").exists():
            shutil.copyfile(ca / "crl.der", folder / f"{ca.name}.crl")


def start_roles(run: DemoRun, roles: list[RoleProcess], emt_port: int,
                clock_file: Path | None, progress: Progress) -> None:
    """Start the EMT, then each gateway and its meters; ``clock_file`` None = real clock."""
    total = 1 + sum(1 + len(h.meters) for h in run.households)
    done = start_emt(run, roles, emt_port)
    progress("starting roles", done, total)
    done = start_gateways(run, roles, clock_file, progress, done, total)
    start_meters(run, roles, clock_file, progress, done, total)


def _clock_args(clock_file: Path | None) -> list[str]:
    return [] if clock_file is None else ["--clock", str(clock_file)]


def start_emt(run: DemoRun, roles: list[RoleProcess], emt_port: int) -> int:
    (run.out / "emt").mkdir(exist_ok=True)
    emt = RoleProcess("emt", imsys_command(
        "emt", "serve", "--pki", str(run.pki_dir), "--id", EMT_ID, "--db", run.emt_db,
        "--port", str(emt_port), "--keys", str(run.emt_keys), "--ca", "emt-ca"),
        run.out / "logs" / "emt.log").start()
    roles.append(emt)
    wait_for_port(emt_port, 60, emt)
    return 1


def start_gateways(run: DemoRun, roles: list[RoleProcess], clock_file: Path | None,
                   progress: Progress, done: int, total: int) -> int:
    """All gateways start at once; then each is waited for (its system log says it runs –
    no probe connection, which the gateway would log as a refused LMN peer)."""
    started = []
    for home in run.households:
        before = gateway_starts(run.gateway_dir(home))
        gateway = RoleProcess(f"gateway {home.gateway_id}", imsys_command(
            "gateway", "run", "--state", str(run.gateway_dir(home)), *_clock_args(clock_file),
            "--quiet"), run.out / "logs" / f"gateway-{home.gateway_id}.log").start()
        roles.append(gateway)
        started.append((home, gateway, before))
    for home, gateway, before in started:
        _wait(f"{gateway.name} to start", lambda h=home, n=before: gateway_starts(  # type: ignore[misc]
            run.gateway_dir(h)) > n, 60, [gateway])
        done += 1
        progress("starting roles", done, total)
    return done


def start_meters(run: DemoRun, roles: list[RoleProcess], clock_file: Path | None,
                 progress: Progress, done: int, total: int) -> int:
    for home in run.households:
        for meter in home.meters:
            args = ["meter", "run", "--kind", meter.kind, "--id", meter.meter_id,
                    "--interval", str(int(meter.interval.total_seconds())),
                    *_clock_args(clock_file), "--seed", str(home.index), "--quiet"]
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
                                     run.out / "logs" / f"meter-{meter.meter_id}.log").start())
            done += 1
            progress("starting roles", done, total)
    return done


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
