"""A commissioned gateway as a process: the security module holds its keys, the administrator
configures it (docs/gateway-process.md, "Commissioned gateways").

:class:`DeviceGatewayProcess` runs a state directory made by the production line
(:mod:`imsys.system.factory`, ``device.json``) instead of one with ``gateway.json`` and PEM
keys. It opens :class:`~imsys.gateway.device.GatewayDevice` and then:

* **admin sessions** (seed 003 §2.3.3–§2.3.4, §5): once the gateway is installed it connects to
  its administrator (:class:`~imsys.gateway.admin.session.AdminSessionClient`) at start, on
  every accepted wake-up (its only inbound WAN endpoint, ``wakeup_listen``), and every
  ``admin_interval`` seconds; personalisation happens in these sessions;
* **operation** once the phase is ``operation`` and the administrator has installed a meter
  profile and an active communication profile: the same measurement, TAF evaluation and
  delivery as :class:`~imsys.gateway.process.GatewayProcess`, with the operational keys of the
  security module (GW_WAN_TLS for LMN-TLS and WAN-TLS, GW_WAN_SIG for deliveries) and the
  profiles from the configuration store. After every session that changed the phase or the
  configuration the operational part is rebuilt from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

import imsys
from imsys.core.clock import Clock
from imsys.core.errors import ImsysError, Rejected, UsageError
from imsys.crypto.tls import TlsIdentity
from imsys.gateway.admin.admin_change_handlers import (
    CHANGE_ITEM,
    ChangeState,
    pending_administrator,
    report_connection_failure,
    take_over,
)
from imsys.gateway.admin.communication_profile import CommunicationProfile
from imsys.gateway.admin.config_store import ConfigKind, ConfigStore
from imsys.gateway.admin.context import AdminContext
from imsys.gateway.admin.firmware import FirmwareUpdater, active_version
from imsys.gateway.admin.monitoring_handlers import clock_valid
from imsys.gateway.admin.profile_handlers import stored_meter_profile
from imsys.gateway.admin.session import (
    AdminSessionClient,
    DbReplayCache,
    gateway_credentials,
    wakeup_receiver,
)
from imsys.gateway.commissioning import Phase
from imsys.gateway.device import GatewayDevice
from imsys.gateway.diagnostics import DiagnosticsSources
from imsys.gateway.han_diagnostics import HanDiagnosticsServer
from imsys.gateway.logs import GatewayLogs, Level, Outcome, SystemEvent
from imsys.gateway.process import (
    TICK_DONE,
    EmtEndpoint,
    GatewayConfig,
    GatewayProcess,
    KeyPair,
)
from imsys.gateway.store import Database, Durability, StateTable
from imsys.gateway.taf import EvaluationProfile
from imsys.gateway.wakeup_listener import WakeupEvent, WakeupListener
from imsys.pki.validation import HttpCrlSource, PathValidator, StaticCrlSource
from imsys.wire.delivery import HTTP_PATH
from imsys.wire.wakeup import WakeupDecision, WakeupReason, WakeupReceiver, WakeupRejected

__all__ = ["OPERATION_STARTED", "DeviceGatewayProcess"]

log = logging.getLogger(__name__)

ROOT_LABEL = "ROOT_WAN_SIG_CRT"
CRL_DIR = "crls"
#: the system-log text that says measurement and delivery run (orchestrators wait for it)
OPERATION_STARTED = "operation started"
ADMIN_PHASES = frozenset({Phase.PERSONALISATION, Phase.OPERATION})
ADMIN_RETRY = timedelta(minutes=5)


def _load_crl(data: bytes) -> x509.CertificateRevocationList:
    if data.lstrip().startswith(b"-----"):
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"not HOST:PORT: {text!r}")
    return host.strip("[]"), int(port)


class _Receivers:
    """The wake-up core of the current administrator and, while an administrator change is
    checked (seed 003 table 5 step 2.12), of the new one: its wake-up means take-over."""

    def __init__(self, process: DeviceGatewayProcess) -> None:
        self.process = process

    def accept(self, data: bytes) -> WakeupDecision:
        context = self.process.context
        assert context is not None
        try:
            return wakeup_receiver(context).accept(data)
        except WakeupRejected as exc:
            pending = pending_administrator(context)
            if pending is None or _change_state(context) != ChangeState.CHECKED.value or \
                    exc.reason not in (WakeupReason.UNKNOWN_ADMINISTRATOR,
                                       WakeupReason.BAD_SIGNATURE):
                raise
            address = pending.address
            decision = WakeupReceiver(
                context.gateway_id, pending.sig, f"{address.host}:{address.port}",
                context.clock, administrator_id=pending.administrator_id,
                replay_cache=DbReplayCache(context.db)).accept(data)
            self.process.take_over_requested = True
            return decision


def _change_state(context: AdminContext) -> str | None:
    item = context.config.get(ConfigKind.SETTING, CHANGE_ITEM)
    return None if item is None else str(item.document.get("state"))


class DeviceGatewayProcess(GatewayProcess):
    """A commissioned gateway (see the module docstring)."""

    def __init__(self, state_dir: Path, clock: Clock, *, poll: float = 0.1,
                 timeout: float = 10.0, durability: Durability = Durability.FULL,
                 reconnect: timedelta = timedelta(seconds=30),
                 report_ticks: bool = False) -> None:
        self.device: GatewayDevice | None = None
        self.context: AdminContext | None = None
        self.admin: AdminSessionClient | None = None
        self.wakeup: WakeupListener | None = None
        self._admin_due: datetime | None = None
        self._woken = asyncio.Event()
        self.han: HanDiagnosticsServer | None = None
        #: the new administrator's wake-up arrived while its change was checked (step 2.12)
        self.take_over_requested = False
        self.firmware: FirmwareUpdater | None = None
        super().__init__(state_dir, clock, poll=poll, timeout=timeout, durability=durability,
                         reconnect=reconnect, report_ticks=report_ticks)

    def load(self) -> None:
        """Nothing to load before :meth:`run` opens the device."""
        from imsys.gateway.device import DeviceSettings

        self.settings = DeviceSettings.load(self.state_dir)

    @property
    def phase(self) -> Phase | None:
        return None if self.device is None else self.device.commissioning.phase

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event) -> None:
        device = self.device = GatewayDevice(self.state_dir, self.clock,
                                             durability=self.durability)
        try:
            self.context = context = device.context()
            self.firmware = FirmwareUpdater(context)
            recovery = self.firmware.boot()  # first: roll back a trial a kill interrupted
            log.info("firmware boot: %s", recovery)
            context.extras.update(
                firmware_version=active_version(context) or f"imsys-{imsys.__version__}",
                firmware_status=self.firmware.status,
                pki_validator=self._pki_validator(device), crl_source=self._crl_files())
            self.admin = AdminSessionClient(context, timeout=self.timeout)
            device.logs.system.append(Level.INFO, Outcome.SUCCESS,
                                      f"gateway started in phase {device.commissioning.phase}",
                                      event=SystemEvent.GATEWAY_START)
            await self._start_wakeup()
            await self.configure()
            self._admin_due = self.clock.now()
            self.ready.set()
            while not stop.is_set():
                now = self.clock.now()
                if self._woken.is_set() or (self._admin_due is not None
                                            and now >= self._admin_due):
                    self._woken.clear()
                    await self.administer()
                if self.core is not None:
                    await self.tick()
                elif self.report_ticks and now != self._tick_reported:
                    StateTable(device.db).set_time(TICK_DONE, now)
                    self._tick_reported = now
                waiters = [asyncio.ensure_future(stop.wait()),
                           asyncio.ensure_future(self._woken.wait())]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait(waiters, timeout=self.poll,
                                       return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
        finally:
            if self.han is not None:
                self.han.stop()
                self.han = None
            if self.wakeup is not None:
                await self.wakeup.close()
                self.wakeup = None
            await self.stop_operation()
            with contextlib.suppress(ImsysError):
                device.logs.system.append(Level.INFO, Outcome.SUCCESS, "gateway stopped",
                                          event=SystemEvent.GATEWAY_STOP)
            device.close()
            self.device = self.context = self.admin = None
            self.ready.clear()

    async def _start_wakeup(self) -> None:
        device, listen = self.device, self.settings.wakeup_listen
        if device is None or listen is None or device.commissioning.phase not in ADMIN_PHASES:
            return
        host, port = _address(listen)
        assert self.context is not None
        logs = device.logs

        def record(event: WakeupEvent) -> None:
            rejected = event.reason is not None
            logs.system.append(Level.WARNING if rejected else Level.INFO,
                               Outcome.FAILURE if rejected else Outcome.SUCCESS,
                               f"wake-up {event.outcome.value}"
                               + (f": {event.reason.value}" if event.reason else ""),
                               event=SystemEvent.WAKEUP)

        async def woken(decision: WakeupDecision) -> None:
            self._woken.set()  # the loop connects to the configured GWA, nothing else

        self.wakeup = WakeupListener(_Receivers(self), woken,  # type: ignore[arg-type]
                                     host=host, port=port, system_log=record,
                                     connect_rate=1 / self.settings.wakeup_interval,
                                     connect_burst=self.settings.wakeup_burst)
        await self.wakeup.start()

    # ------------------------------------------------------------------ administration

    async def administer(self) -> None:
        """Admin sessions with the current administrator; rebuild what they changed."""
        device, admin = self.device, self.admin
        assert device is not None and admin is not None
        now = self.clock.now()
        if device.commissioning.phase not in ADMIN_PHASES:
            self._admin_due = None  # before installation nobody may administer the gateway
            return
        before = (device.commissioning.phase, device.config.revision())
        if self.take_over_requested:  # table 5 step 2.13: the new administrator takes over
            self.take_over_requested = False
            assert self.context is not None
            with contextlib.suppress(Rejected):
                take_over(self.context)
        try:
            await admin.run()
            await self._pending_session()
        except (Rejected, OSError, TimeoutError, UsageError) as exc:
            self.stats.last_error = f"admin session: {type(exc).__name__}: {exc}"
            log.warning("%s", self.stats.last_error)
            self._admin_due = now + ADMIN_RETRY
            return
        self._admin_due = self.clock.now() + timedelta(seconds=self.settings.admin_interval)
        assert self.firmware is not None
        finished = self.firmware.run_pending()  # a firmware.update of this session, if any
        if finished is not None:
            log.info("firmware job finished: %s", finished.get("state"))
        if (device.commissioning.phase, device.config.revision()) != before:
            if self.wakeup is None:
                await self._start_wakeup()
            await self.stop_operation()
            await self.configure()

    async def _pending_session(self) -> None:
        """Table 5 step 2.9: after the old administrator prepared a change, connect to the
        new one (only steps 2.10–2.13 in that session); a failure is reported for the old
        administrator to see (the failure path)."""
        context = self.context
        assert context is not None
        if pending_administrator(context) is None or \
                _change_state(context) != ChangeState.PREPARED.value:
            return
        client = AdminSessionClient(context, timeout=self.timeout, pending=True)
        try:
            await client.run_once()
        except (Rejected, OSError, TimeoutError) as exc:
            log.warning("the new administrator is unreachable: %s", exc)
            report_connection_failure(context)

    # ------------------------------------------------------------------ operation

    async def configure(self) -> bool:
        """Start operation from the configuration store if the gateway is ready for it."""
        device, context = self.device, self.context
        assert device is not None and context is not None
        if device.commissioning.phase is not Phase.OPERATION:
            return False
        store = device.config
        try:
            meters = tuple(stored_meter_profile(context, item)
                           for item in store.items(ConfigKind.METER))
            profiles = [CommunicationProfile.from_dict(item.document)
                        for item in store.items(ConfigKind.COMMUNICATION_PROFILE,
                                                active_only=True)]
            evaluations = tuple(EvaluationProfile.from_dict(item.document) for item in
                                store.items(ConfigKind.EVALUATION_PROFILE, active_only=True))
        except Rejected as exc:
            self._not_ready(f"stored configuration refused: {exc}")
            return False
        if not meters or len(profiles) != 1:
            self._not_ready(f"{len(meters)} meter profiles, {len(profiles)} active "
                            "communication profiles (operation needs meters and one)")
            return False
        communication = profiles[0]
        url = urlsplit(communication.url)
        assert url.hostname is not None and url.port is not None
        emt = EmtEndpoint(communication.emt_id, url.hostname, url.port, url.path or HTTP_PATH,
                          communication.enc_certificate, communication.sig_certificate)
        usable = tuple(e for e in evaluations if e.recipients == (emt.recipient_id,)
                       and e.meter_id in {m.meter_id for m in meters})
        for skipped in set(evaluations) - set(usable):
            device.logs.system.append(Level.WARNING, Outcome.FAILURE,
                                      f"evaluation profile {skipped.profile_id} not used: its "
                                      "recipient or meter is not configured",
                                      event=SystemEvent.CONFIGURATION_CHANGE)
        credentials = gateway_credentials(context)
        chain = device.commissioning.state.operational_chain
        root = device.secmod.certificate(ROOT_LABEL)
        wmbus = self.settings.wmbus_listen
        config = GatewayConfig(
            gateway_id=device.gateway_id, lmn_listen=_address(self.settings.lmn_listen),
            wmbus_listen=None if wmbus is None else _address(wmbus), emt=emt,
            trust_anchors=(root,), intermediates=(*chain, *communication.chain),
            meter_profiles=meters, evaluation_profiles=usable,
            delivery_interval=timedelta(seconds=self.settings.delivery_interval),
            usage_point_id=self.settings.usage_point_id or device.gateway_id)
        tls_key = device.secmod.tls_private_key(credentials.tls_label)
        self.use(config, KeyPair(tls_key, credentials.tls_chain),
                 KeyPair(credentials.sig_key, (credentials.sig_certificate, *chain)),
                 crls=self._crl_files())
        context.extras["wan_tls_identity"] = TlsIdentity(credentials.tls_chain, tls_key)
        self.measurement_clock_valid = lambda: clock_valid(device.config)
        await self.start_operation(device.db)
        device.logs.system.append(Level.INFO, Outcome.SUCCESS,
                                  f"{OPERATION_STARTED}: {len(meters)} meters, {len(usable)} "
                                  "evaluation profiles", event=SystemEvent.CONFIGURATION_CHANGE)
        if self.settings.han_listen is not None and self.han is None:
            self._start_han(context, TlsIdentity(credentials.tls_chain, tls_key))
        return True

    def _crl_files(self) -> StaticCrlSource | None:
        """The CRLs in ``DIR/crls`` (DER or PEM), None without that folder."""
        folder = self.state_dir / CRL_DIR
        if not folder.is_dir():
            return None
        return StaticCrlSource(_load_crl(path.read_bytes()) for path in sorted(folder.iterdir())
                               if path.is_file())

    def _pki_validator(self, device: GatewayDevice) -> PathValidator:
        """SM-PKI paths to the module's root, with the CRLs in ``DIR/crls`` or, without that
        folder, from the certificates' distribution points over HTTP."""
        root = device.secmod.certificate(ROOT_LABEL)
        crls = self._crl_files()
        return PathValidator([root], crls=crls or HttpCrlSource(self.clock), clock=self.clock)

    def _start_han(self, context: AdminContext, identity: TlsIdentity) -> None:
        host, port = _address(str(self.settings.han_listen))
        validator = context.extras["pki_validator"]
        state_dir, clock, gateway_id = self.state_dir, self.clock, context.gateway_id

        def sources() -> DiagnosticsSources:  # runs in the server's thread: its own database
            db = Database(state_dir / "gateway.db")
            config = ConfigStore(db)
            return DiagnosticsSources(gateway_id, config, GatewayLogs(db, clock), clock,
                                      validator=validator,
                                      certificates=lambda: list(self._certificates()))

        self.han = HanDiagnosticsServer(identity, validator, sources, host=host,
                                        port=port).start()

    def _certificates(self) -> list[tuple[str, x509.Certificate]]:
        device = self.device
        if device is None:
            return []
        state = device.commissioning.state
        return sorted(state.operational_certificates.items())

    def _not_ready(self, why: str) -> None:
        assert self.device is not None
        self.stats.last_error = f"not operating yet: {why}"
        log.info("%s", self.stats.last_error)
        self.device.logs.system.append(Level.INFO, Outcome.FAILURE,
                                       f"operation not started: {why}",
                                       event=SystemEvent.CONFIGURATION_CHANGE)
