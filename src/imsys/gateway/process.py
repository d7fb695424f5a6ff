"""One gateway as a process: the composition root of the SMGW role (docs/gateway-process.md).

:class:`GatewayConfig` is the validated ``DIR/gateway.json``; :class:`GatewayProcess` wires the
tested cores together on one injected clock:

* the evidence store ``DIR/gateway.db`` (:class:`~imsys.gateway.store.Database`);
* measurement (:class:`~imsys.gateway.measurement.Measurement`) behind the LMN adapters: the
  LMN-TLS push endpoint always, the pull client if a profile is ``sml-tls-pull``, the wM-Bus
  UDP receiver if ``lmn.wmbus_listen`` is set (required when a profile is wireless);
* at every multiple of ``delivery_interval`` (+ the TAF boundary tolerance) each evaluation
  profile is evaluated (:func:`~imsys.gateway.taf.evaluate`) over its meter's stored readings;
  result readings newer than what was delivered before become one AR 2418-6 document, sealed
  for the EMT (:func:`~imsys.wire.delivery.seal_delivery`) and queued
  (:class:`~imsys.gateway.delivery.DeliveryQueue`) together with the new delivery mark;
* the queue is worked whenever something is pending or a retry is due: the gateway opens
  mutually authenticated WAN-TLS to the EMT (outbound only), checks the server as ``emt-tls``
  with the EMT's id, POSTs each sealed delivery and feeds receipt or failure back to the queue.

Keys: for now the gateway's SIG and TLS keys are PEM files in ``DIR/keys`` (``sig.key`` /
``sig.pem``, ``tls.key`` / ``tls.pem``, the ``.pem`` files leaf first, optionally followed by the
issuing CA), loaded as :class:`~imsys.crypto.SoftwareKey`. The security-module path
(:mod:`imsys.secmod`) comes with commissioning.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sqlite3
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from cryptography import x509

from imsys.core.clock import Clock, next_boundary
from imsys.core.errors import ImsysError, Reason, Rejected, TlsRejected, UsageError
from imsys.core.localtime import day_start, local_day
from imsys.core.reading import Reading
from imsys.crypto import SoftwareKey
from imsys.crypto.tls import Interface, TlsIdentity, check_peer, client_context
from imsys.gateway.delivery import DELIVERY_EVENTS, DeliveryQueue, DeliveryState, Transmission
from imsys.gateway.errors import StoreRejected
from imsys.gateway.lmn_endpoints import (
    LmnPullClient,
    LmnTls,
    LmnTlsServer,
    WmbusUdpReceiver,
)
from imsys.gateway.logs import Level, Outcome, SystemEvent
from imsys.gateway.measurement import Measurement
from imsys.gateway.meter_profile import MeterProfile, MeterProtocol
from imsys.gateway.retention import Deletion, Retention, billing_keep_from
from imsys.gateway.store import Database, Durability, ReadingStore, StateKey, StateTable
from imsys.gateway.taf import TOLERANCE, EvaluationProfile, Taf, evaluate
from imsys.pki.validation import CrlSource, PathValidator, StaticCrlSource
from imsys.wire.ar2418 import document_from_readings, encode_document
from imsys.wire.delivery import HTTP_PATH, MEDIA_TYPE, Delivery, seal_delivery, seal_for_relay
from imsys.wire.receipt import ReceiptRejected

__all__ = [
    "CONFIG_FILE",
    "CONFIG_FORMAT",
    "DB_FILE",
    "ConfigReason",
    "ConfigRejected",
    "EmtEndpoint",
    "GatewayConfig",
    "GatewayProcess",
    "GatewayStatus",
    "MeterStatus",
    "ProcessStats",
    "status",
]

log = logging.getLogger(__name__)

CONFIG_FORMAT = "imsys-gateway-config/1"
CONFIG_FILE = "gateway.json"
DB_FILE = "gateway.db"
KEYS_DIR = "keys"
#: state key: the last successful exchange with the EMT (a receipt arrived)
LAST_EMT_CONTACT = "last-emt-contact"
#: with ``report_ticks``: the clock time of the last completed round (a stepped simulation
#: such as ``imsys demo`` waits for it before it moves the shared clock on)
TICK_DONE = "process.tick-done"
#: state key prefix: the newest reading time delivered per evaluation profile
_DELIVERED = "process.delivered."
_HTTP_LIMIT = 1024 * 1024
#: retention runs once a day at this local time (after the day's TAF evaluation)
RETENTION_AT = timedelta(hours=3)
#: TAF 6 keeps the billing-day values of the last 42 days
TAF6_WINDOW = timedelta(days=43)


def _delivered_key(profile_id: str) -> str:
    """State key of a profile's delivery mark (state keys are lower-case: hash the id)."""
    return _DELIVERED + hashlib.sha256(profile_id.encode()).hexdigest()[:32]


class ConfigReason(StrEnum):
    """Why a gateway configuration or its key material was refused."""

    MISSING = "missing"
    MALFORMED = "malformed"
    UNSUPPORTED_FORMAT = "unsupported-format"
    BAD_VALUE = "bad-value"
    KEY_MATERIAL = "key-material"


class ConfigRejected(Rejected):
    """``DIR/gateway.json`` or a file it names is unusable. ``reason`` is a
    :class:`ConfigReason`."""

    reason: ConfigReason  # type: ignore[assignment]

    def __init__(self, reason: ConfigReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


def _bad(message: str, **context: Any) -> ConfigRejected:
    return ConfigRejected(ConfigReason.BAD_VALUE, message, **context)


def _address(text: object, what: str) -> tuple[str, int]:
    if not isinstance(text, str) or ":" not in text:
        raise _bad(f"{what} is 'host:port'", value=repr(text))
    host, _, port_text = text.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise _bad(f"{what}: port is not a number", value=text) from None
    if not host or not 0 <= port <= 65535:
        raise _bad(f"{what}: bad host or port", value=text)
    return host, port


def _crl(path: Path) -> x509.CertificateRevocationList:
    try:
        data = path.read_bytes()
        if data.lstrip().startswith(b"-----"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except OSError as exc:
        raise ConfigRejected(ConfigReason.MISSING, f"cannot read CRL {path}: {exc.strerror}",
                             path=str(path)) from exc
    except ValueError as exc:
        raise ConfigRejected(ConfigReason.KEY_MATERIAL, f"{path} is no CRL: {exc}",
                             path=str(path)) from exc


def _certificates(path: Path, what: str) -> tuple[x509.Certificate, ...]:
    try:
        certs = tuple(x509.load_pem_x509_certificates(path.read_bytes()))
    except OSError as exc:
        raise ConfigRejected(ConfigReason.MISSING, f"{what}: cannot read {path}: {exc.strerror}",
                             path=str(path)) from exc
    except ValueError as exc:
        raise ConfigRejected(ConfigReason.KEY_MATERIAL, f"{what}: no PEM certificate in {path}",
                             path=str(path)) from exc
    return certs


@dataclass(frozen=True)
class EmtEndpoint:
    """The one EMT this gateway delivers to: its id, URL and certificates."""

    emt_id: str
    host: str
    port: int
    path: str
    enc_certificate: x509.Certificate
    sig_certificate: x509.Certificate
    #: sending through a relay (Durchleitung, seed 003 step 3.3): ``emt_id``/URL/SIG are the
    #: relay's (the TLS endpoint, which signs the receipts); the content is encrypted for
    #: this final recipient, whose id the evaluation profiles name
    final_recipient_id: str | None = None
    final_enc_certificate: x509.Certificate | None = None

    @property
    def recipient_id(self) -> str:
        """Who the evaluation profiles name: the final recipient behind a relay, else the EMT."""
        return self.final_recipient_id or self.emt_id

    @classmethod
    def from_dict(cls, doc: object, base: Path) -> EmtEndpoint:
        if not isinstance(doc, Mapping):
            raise ConfigRejected(ConfigReason.MALFORMED, "emt is an object")
        emt_id = doc.get("id")
        if not isinstance(emt_id, str) or not emt_id:
            raise _bad("emt.id is a non-empty string")
        url = urlsplit(str(doc.get("url", "")))
        if url.scheme != "https" or url.hostname is None or url.port is None:
            raise _bad("emt.url is https://host:port[/path]", value=doc.get("url"))
        certs = {}
        for name in ("enc_certificate", "sig_certificate"):
            rel = doc.get(name)
            if not isinstance(rel, str):
                raise ConfigRejected(ConfigReason.MISSING, f"emt.{name} is a file path")
            certs[name] = _certificates(base / rel, f"emt.{name}")[0]
        final = doc.get("final_recipient")
        final_id, final_enc = None, None
        if final is not None:
            if not isinstance(final, Mapping) or not isinstance(final.get("id"), str) \
                    or not isinstance(final.get("enc_certificate"), str):
                raise _bad("emt.final_recipient is {id, enc_certificate}")
            final_id = final["id"]
            final_enc = _certificates(base / final["enc_certificate"],
                                      "emt.final_recipient.enc_certificate")[0]
        return cls(emt_id, url.hostname, url.port, url.path or HTTP_PATH,
                   certs["enc_certificate"], certs["sig_certificate"], final_id, final_enc)


@dataclass(frozen=True)
class GatewayConfig:
    """The validated ``DIR/gateway.json`` (format :data:`CONFIG_FORMAT`)."""

    gateway_id: str
    lmn_listen: tuple[str, int]
    wmbus_listen: tuple[str, int] | None
    emt: EmtEndpoint
    trust_anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    meter_profiles: tuple[MeterProfile, ...]
    evaluation_profiles: tuple[EvaluationProfile, ...]
    delivery_interval: timedelta
    usage_point_id: str
    #: ``trust.crls``: with CRLs the LMN and WAN peers are checked for revocation
    crls: tuple[x509.CertificateRevocationList, ...] = ()

    @classmethod
    def load(cls, state_dir: Path) -> GatewayConfig:
        path = Path(state_dir) / CONFIG_FILE
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigRejected(ConfigReason.MISSING, f"cannot read {path}: {exc.strerror}",
                                 path=str(path)) from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigRejected(ConfigReason.MALFORMED, f"{path} is not JSON: {exc}") from exc
        return cls.from_dict(doc, Path(state_dir))

    @classmethod
    def from_dict(cls, doc: object, base: Path) -> GatewayConfig:
        """Validate a configuration document; relative file paths are relative to ``base``."""
        if not isinstance(doc, Mapping):
            raise ConfigRejected(ConfigReason.MALFORMED, "the configuration is a JSON object")
        if doc.get("format") != CONFIG_FORMAT:
            raise ConfigRejected(ConfigReason.UNSUPPORTED_FORMAT,
                                 f"format must be {CONFIG_FORMAT!r}", value=doc.get("format"))
        gateway_id = doc.get("gateway_id")
        if not isinstance(gateway_id, str) or not gateway_id:
            raise _bad("gateway_id is a non-empty string")
        lmn = doc.get("lmn", {})
        if not isinstance(lmn, Mapping):
            raise ConfigRejected(ConfigReason.MALFORMED, "lmn is an object")
        lmn_listen = _address(lmn.get("listen"), "lmn.listen")
        wmbus = lmn.get("wmbus_listen")
        wmbus_listen = None if wmbus is None else _address(wmbus, "lmn.wmbus_listen")
        emt = EmtEndpoint.from_dict(doc.get("emt"), base)
        trust = doc.get("trust")
        if not isinstance(trust, Mapping) or not isinstance(trust.get("anchors"), list) \
                or not trust["anchors"]:
            raise ConfigRejected(ConfigReason.MISSING, "trust.anchors lists PEM files")
        anchors = tuple(c for p in trust["anchors"]
                        for c in _certificates(base / str(p), "trust anchor"))
        intermediates = tuple(c for p in trust.get("intermediates", [])
                              for c in _certificates(base / str(p), "intermediate"))
        crls = tuple(_crl(base / str(p)) for p in trust.get("crls", []))
        try:
            meters = tuple(MeterProfile.from_dict(m) for m in doc.get("meter_profiles", []))
            evaluations = tuple(EvaluationProfile.from_dict(e)
                                for e in doc.get("evaluation_profiles", []))
        except (TypeError, AttributeError) as exc:
            raise ConfigRejected(ConfigReason.MALFORMED, f"profile lists: {exc}") from exc
        if not meters:
            raise ConfigRejected(ConfigReason.MISSING, "at least one meter profile")
        wireless = [m.meter_id for m in meters if m.protocol.value.startswith("wmbus")]
        if wireless and wmbus_listen is None:
            raise _bad("wireless meter profiles need lmn.wmbus_listen", meters=wireless)
        known = {m.meter_id for m in meters}
        if len(known) != len(meters):
            raise _bad("a meter profile is listed twice")
        ids = [e.profile_id for e in evaluations]
        if len(set(ids)) != len(ids):
            raise _bad("an evaluation profile id is listed twice")
        for e in evaluations:
            if e.meter_id not in known:
                raise _bad(f"evaluation profile {e.profile_id} names an unknown meter",
                           profile=e.profile_id)
            if e.recipients != (emt.recipient_id,):
                raise _bad(f"evaluation profile {e.profile_id}: only the configured EMT "
                           f"{emt.recipient_id} can be a recipient (one EMT endpoint is wired)",
                           profile=e.profile_id)
        interval = doc.get("delivery_interval", 900)
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 60:
            raise _bad("delivery_interval is whole seconds, at least 60", value=interval)
        usage_point = doc.get("usage_point_id", gateway_id)
        if not isinstance(usage_point, str) or not usage_point:
            raise _bad("usage_point_id is a non-empty string")
        return cls(gateway_id, lmn_listen, wmbus_listen, emt, anchors, intermediates, meters,
                   evaluations, timedelta(seconds=interval), usage_point, crls)

    def meter(self, meter_id: str) -> MeterProfile:
        for m in self.meter_profiles:
            if m.meter_id == meter_id:
                return m
        raise UsageError(f"no meter profile {meter_id}")


@dataclass(frozen=True)
class KeyPair:
    """A key (a SoftwareKey; for signing any KeyHandle) and its certificate chain."""

    key: Any
    chain: tuple[x509.Certificate, ...]  # leaf first


_KeyPair = KeyPair


def _load_pair(keys: Path, purpose: str) -> _KeyPair:
    key_path = keys / f"{purpose}.key"
    try:
        key = SoftwareKey.from_pem(key_path.read_bytes())
    except OSError as exc:
        raise ConfigRejected(ConfigReason.MISSING, f"gateway {purpose} key: cannot read "
                             f"{key_path}: {exc.strerror}", path=str(key_path)) from exc
    except (ValueError, ImsysError) as exc:
        raise ConfigRejected(ConfigReason.KEY_MATERIAL, f"gateway {purpose} key: {exc}",
                             path=str(key_path)) from exc
    chain = _certificates(keys / f"{purpose}.pem", f"gateway {purpose} certificate")
    return _KeyPair(key, chain)


@dataclass
class ProcessStats:
    """Counters of a running process (for the status line)."""

    evaluations: int = 0
    enqueued: int = 0
    acknowledged: int = 0
    failed: int = 0
    last_error: str | None = None


class _HttpConnection:
    """A minimal HTTP/1.1 keep-alive client (POST with Content-Length only)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    async def post(self, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: {MEDIA_TYPE}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        self.writer.write(head.encode("ascii") + body)
        await self.writer.drain()
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) < 2 or not parts[1].isdigit():
            raise ConnectionError(f"not an HTTP response: {lines[0][:60]!r}")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        length = int(headers.get("content-length", "0"))
        if not 0 <= length <= _HTTP_LIMIT:
            raise ConnectionError("response body too large")
        data = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        return int(parts[1]), data

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
            await self.writer.wait_closed()


class GatewayProcess:
    """One gateway: LMN in, evidence store, TAF evaluation, deliveries out (see module doc)."""

    def __init__(self, state_dir: Path, clock: Clock, *, poll: float = 0.1,
                 timeout: float = 10.0, durability: Durability = Durability.FULL,
                 reconnect: timedelta = timedelta(seconds=30),
                 report_ticks: bool = False) -> None:
        if not poll > 0:
            raise UsageError("poll must be positive")
        self.state_dir = Path(state_dir)
        self.clock = clock
        self.poll = poll
        self.timeout = timeout
        self.durability = durability
        self.reconnect = reconnect
        self.report_ticks = report_ticks
        self._tick_reported: datetime | None = None
        self.stats = ProcessStats()
        self.ready = asyncio.Event()
        self.lmn_server: LmnTlsServer | None = None
        self.wmbus: WmbusUdpReceiver | None = None
        self.core: Measurement | None = None
        self.queue: DeliveryQueue | None = None
        self._pull: LmnPullClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: wM-Bus AES keys by label (``aes_key_label`` of a meter profile): the security module
        self.key_resolver: Callable[[str], bytes] | None = None
        #: whether the gateway's clock is valid now (the time service says; step 3.4 marks
        #: every value invalid while it is not)
        self.measurement_clock_valid: Callable[[], bool] | None = None
        self._next_evaluation: datetime | None = None
        self._next_connect: datetime | None = None
        self._next_retention: datetime | None = None
        self.config: GatewayConfig | None = None
        self.load()

    def load(self) -> None:
        """``gateway.json`` and the PEM keys in ``keys/`` (a device overrides this)."""
        config = GatewayConfig.load(self.state_dir)
        keys = self.state_dir / KEYS_DIR
        self.use(config, _load_pair(keys, "tls"), _load_pair(keys, "sig"),
                 crls=StaticCrlSource(config.crls) if config.crls else None)

    def use(self, config: GatewayConfig, tls_pair: _KeyPair, sig_pair: _KeyPair,
            crls: CrlSource | None = None) -> None:
        """Adopt a configuration and key pairs: validator (with ``crls``, revocation of LMN
        and WAN peers is checked), LMN-TLS and WAN-TLS contexts."""
        self.config, self.tls_pair, self.sig_pair = config, tls_pair, sig_pair
        self.validator = PathValidator(config.trust_anchors, config.intermediates, crls,
                                       require_crl=crls is not None)
        identity = TlsIdentity(self._chain(tls_pair), tls_pair.key)
        self.lmn_tls = LmnTls(identity, config.trust_anchors, config.intermediates,
                              self.validator)
        self.wan_context = client_context(Interface.WAN, identity, config.trust_anchors,
                                          intermediates=config.intermediates)

    def _chain(self, pair: _KeyPair) -> tuple[x509.Certificate, ...]:
        """Leaf, then the CA certificates that issued it (from the file or the intermediates)."""
        if len(pair.chain) > 1:
            return pair.chain
        issuers = tuple(c for c in self.config.intermediates if c.subject == pair.chain[0].issuer)
        return (pair.chain[0], *issuers)

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; everything opened here is closed again."""
        db = Database(self.state_dir / DB_FILE, durability=self.durability)
        try:
            await self.start_operation(db)
            assert self.core is not None
            self.core.logs.system.append(Level.INFO, Outcome.SUCCESS, "gateway process started",
                                         event=SystemEvent.GATEWAY_START)
            self.ready.set()
            while not stop.is_set():
                await self.tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll)
        finally:
            if self.core is not None:
                with contextlib.suppress(ImsysError, sqlite3.Error):
                    self.core.logs.system.append(Level.INFO, Outcome.SUCCESS,
                                                 "gateway process stopped",
                                                 event=SystemEvent.GATEWAY_STOP)
            await self.stop_operation()
            db.close()
            self.ready.clear()

    async def start_operation(self, db: Database) -> None:
        """Measurement, the delivery queue and the LMN endpoints of :attr:`config`."""
        config = self.config
        assert config is not None
        extra: dict[str, Any] = {}
        if self.key_resolver is not None:
            extra["key_resolver"] = self.key_resolver
        if self.measurement_clock_valid is not None:
            extra["gateway_clock_valid"] = self.measurement_clock_valid
        core = self.core = Measurement(db, self.clock, config.meter_profiles, **extra)
        self.queue = DeliveryQueue(db, self.clock, config.gateway_id)
        try:
            self.lmn_server = LmnTlsServer(core, self.lmn_tls, config.lmn_listen)
            await self.lmn_server.start()
            protocols = {m.protocol for m in config.meter_profiles}
            if MeterProtocol.SML_TLS_PULL in protocols:
                self._pull = LmnPullClient(core, self.lmn_tls, poll=self.poll,
                                           timeout=self.timeout)
                self._tasks.append(asyncio.create_task(self._pull.run()))
            if config.wmbus_listen is not None:
                self.wmbus = WmbusUdpReceiver(core, config.wmbus_listen)
                await self.wmbus.start()
        except BaseException:
            await self.stop_operation()
            raise
        self._next_evaluation = self._evaluation_after(self.clock.now())
        log.info("gateway %s: LMN-TLS on port %d", config.gateway_id, self.lmn_server.port)

    async def stop_operation(self) -> None:
        """Close what :meth:`start_operation` opened (idempotent)."""
        if self._pull is not None:
            self._pull.stop()
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, self.timeout)
        self._pull, self._tasks = None, []
        if self.wmbus is not None:
            self.wmbus.close()
            self.wmbus = None
        if self.lmn_server is not None:
            await self.lmn_server.close()
            self.lmn_server = None
        self.core = None
        self.queue = None

    def _evaluation_after(self, now: datetime) -> datetime:
        """The next evaluation instant: a delivery boundary plus the TAF tolerance."""
        return next_boundary(now - TOLERANCE, self.config.delivery_interval) + TOLERANCE

    async def tick(self) -> None:
        """One round: evaluate if due, work the delivery queue if anything is due, apply
        retention once a day."""
        now = self.clock.now()
        if self._next_evaluation is not None and now >= self._next_evaluation:
            self.evaluate_and_enqueue(now)
            self._next_evaluation = self._evaluation_after(now)
        if self._next_retention is None or now >= self._next_retention:
            self.apply_retention(now)
            self._next_retention = day_start(local_day(now) + timedelta(days=1)) + RETENTION_AT
        queue = self.queue
        if queue is None:
            return
        due = queue.items(DeliveryState.PENDING) or (
            queue.next_wakeup() is not None and cast(datetime, queue.next_wakeup()) <= now)
        if due and (self._next_connect is None or now >= self._next_connect):
            await self.deliver()
        if self.report_ticks and now != self._tick_reported and self.core is not None:
            self.core.state.set_time(TICK_DONE, now)
            self._tick_reported = now

    # ------------------------------------------------------------------ evaluation

    def retention_keep_from(self, now: datetime) -> datetime:
        """The oldest reading time any profile still needs (docs/gateway-process.md):
        billing periods plus six weeks, TAF 6's 42 days of billing-day values, and every
        reading not yet delivered. Retention itself never goes below 13 months."""
        assert self.config is not None and self.core is not None
        keep = now - TAF6_WINDOW
        for profile in self.config.evaluation_profiles:
            mark = self.core.state.get_time(_delivered_key(profile.profile_id))
            keep = min(keep, profile.valid_from if mark is None else mark)
            if profile.billing_period is not None:
                periods = profile.billing_period.periods(profile.valid_from, now)
                starts = [p.start for p in periods] or [profile.valid_from]
                keep = min(keep, billing_keep_from(starts, now))
        return keep

    def apply_retention(self, now: datetime) -> Deletion | None:
        """Delete what no profile needs any more, from the oldest record (system-logged)."""
        if self.core is None or self.config is None:
            return None
        retention = Retention(self.core.store, self.core.logs.system, self.clock)
        try:
            return retention.purge(self.retention_keep_from(now))
        except (Rejected, UsageError) as exc:
            self.stats.last_error = f"retention: {exc}"
            log.warning("%s", self.stats.last_error)
            return None

    def evaluate_and_enqueue(self, now: datetime) -> int:
        """Evaluate every evaluation profile and queue one delivery per profile with new
        result readings. Returns the number queued."""
        assert self.core is not None and self.queue is not None
        queued = 0
        for profile in self.config.evaluation_profiles:
            if now < profile.valid_from:
                continue
            readings = [s.reading for obis in profile.registers
                        for s in self.core.store.iter_readings(profile.meter_id, obis)]
            try:
                evaluation = evaluate(profile, readings, now=now)
            except (Rejected, UsageError) as exc:  # one profile's problem stops no other
                self.stats.last_error = f"evaluation {profile.profile_id}: {exc}"
                log.warning("%s", self.stats.last_error)
                continue
            self.stats.evaluations += 1
            key = _delivered_key(profile.profile_id)
            mark = self.core.state.get_time(key)
            new = [r for r in evaluation.readings() if mark is None or r.timestamp > mark]
            if not new:
                continue
            self._enqueue(profile, new, now, key)
            queued += 1
        return queued

    def _enqueue(self, profile: EvaluationProfile, readings: list[Reading], now: datetime,
                 key: str) -> None:
        assert self.core is not None and self.queue is not None
        config = self.config
        meter = config.meter(profile.meter_id)
        pseudonymised = profile.pseudonym is not None
        period = (int(profile.registration_period.total_seconds())
                  if profile.taf is Taf.TAF7 and profile.registration_period is not None
                  else None)
        document = encode_document(document_from_readings(
            readings, usage_point_id=config.usage_point_id, smgw_id=config.gateway_id,
            tariff_name=profile.profile_id, measurement_period=period,
            customer_id=None if pseudonymised else meter.consumer_id))
        delivery = Delivery.new(gateway_id=config.gateway_id,
                                meter=profile.pseudonym or profile.meter_id,
                                profile_id=profile.profile_id, created=now,
                                billing_relevant=not pseudonymised, document=document,
                                pseudonymised=pseudonymised)
        sig_chain = self._chain(self.sig_pair)
        emt = config.emt
        if emt.final_enc_certificate is not None and emt.final_recipient_id is not None:
            # seed 003 steps 3.3.1/3.3.2: encrypted for the final recipient, sent to the relay;
            # pseudonymised data lose the gateway's signature there (step 3.3.3)
            sealed = seal_for_relay(delivery, self.sig_pair.key, sig_chain[0],
                                    emt.final_enc_certificate, emt.final_recipient_id,
                                    remove_signature=pseudonymised)
        else:
            sealed = seal_delivery(delivery, self.sig_pair.key, sig_chain[0],
                                   emt.enc_certificate, extra_certificates=sig_chain[1:])
        newest = max(r.timestamp for r in readings)
        with self.core.db.transaction():  # the delivery and its mark, all or nothing
            self.queue.enqueue(delivery, sealed, emt_id=config.emt.emt_id,
                               consumer_id=meter.consumer_id)
            self.core.state.set_time(key, newest)
        self.stats.enqueued += 1
        log.info("queued delivery %s (%s, %d readings)", delivery.delivery_id,
                 profile.profile_id, len(readings))

    # ------------------------------------------------------------------ delivery

    async def _connect(self) -> _HttpConnection:
        emt = self.config.emt
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(emt.host, emt.port, ssl=self.wan_context,
                                    server_hostname=emt.host), self.timeout)
        try:
            ssl_obj = writer.get_extra_info("ssl_object")
            path = check_peer(ssl_obj, self.validator, "emt-tls")
            if path.identifier != emt.emt_id:
                raise TlsRejected(Reason.SIGNER_MISMATCH, "the TLS server is not the EMT",
                                  peer=path.identifier)
        except BaseException:
            writer.close()
            raise
        return _HttpConnection(reader, writer, emt.host)

    async def deliver(self) -> dict[str, DeliveryState]:
        """Open a connection to the EMT and send everything due (outbound only)."""
        assert self.queue is not None and self.core is not None
        emt = self.config.emt
        try:
            connection = await self._connect()
        except (OSError, TimeoutError, ssl.SSLError, Rejected) as exc:
            self.stats.last_error = f"connect to EMT: {type(exc).__name__}: {exc}"
            log.warning("%s", self.stats.last_error)
            if isinstance(exc, Rejected | ssl.SSLError):  # a refused peer, not just no route
                self.core.logs.system.append(
                    Level.WARNING, Outcome.FAILURE, "wan: EMT connection refused",
                    event=SystemEvent.TLS_FAILURE,
                    reason=exc.reason if isinstance(exc, Rejected) else None)
            self._next_connect = self.clock.now() + self.reconnect
            return {}
        self._next_connect = None
        results: dict[str, DeliveryState] = {}
        try:
            transmissions = self.queue.work(connected=[emt.emt_id])
            for index, transmission in enumerate(transmissions):
                try:
                    state = await self._send(connection, transmission)
                except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError,
                        ConnectionError) as exc:
                    self.stats.last_error = f"delivery: {type(exc).__name__}: {exc}"
                    self.queue.transmission_failed(transmission.delivery_id,
                                                   self.stats.last_error)
                    self.stats.failed += 1
                    # the rest was marked SENT but never went out: back to PENDING
                    if transmissions[index + 1:]:
                        self.queue.connection_lost(emt.emt_id)
                    break
                results[str(transmission.delivery_id)] = state
        finally:
            await connection.close()
        return results

    async def _send(self, connection: _HttpConnection,
                    transmission: Transmission) -> DeliveryState:
        assert self.queue is not None and self.core is not None
        emt = self.config.emt
        status_code, body = await connection.post(emt.path, transmission.sealed, self.timeout)
        if status_code != 200:
            code = body[:40].decode("ascii", "replace").strip()
            self.stats.failed += 1
            self.stats.last_error = f"EMT answered {status_code} {code}"
            return self.queue.transmission_failed(transmission.delivery_id,
                                                  self.stats.last_error).state
        try:
            self.queue.receipt_received(transmission.delivery_id, body, emt.sig_certificate,
                                        validator=self.validator)
        except ReceiptRejected as exc:
            self.stats.failed += 1
            self.stats.last_error = f"receipt refused: {exc.reason.value}"
            return self.queue.get(transmission.delivery_id).state
        self.stats.acknowledged += 1
        self.core.state.set_time(LAST_EMT_CONTACT, self.clock.now())
        return DeliveryState.ACKNOWLEDGED


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class MeterStatus:
    meter_id: str
    protocol: str
    latest_obis: str | None = None
    latest_value: int | None = None
    latest_scaler: int | None = None
    latest_at: datetime | None = None
    latest_valid: bool | None = None


@dataclass(frozen=True)
class GatewayStatus:
    """What ``imsys gateway status`` shows; read from the store without writing to it."""

    gateway_id: str
    phase: str | None
    meters: tuple[MeterStatus, ...]
    readings: int
    deliveries: dict[str, int] = field(default_factory=dict)
    chain_verified: bool = False
    chain_problem: str | None = None
    last_emt_contact: datetime | None = None
    last_admin_contact: datetime | None = None


def delivery_counts(db: Database) -> dict[str, int]:
    counts = {s.value: 0 for s in DeliveryState}
    if not db.table_exists(DELIVERY_EVENTS.name):
        return counts
    seq = DELIVERY_EVENTS.seq_column
    rows = db.connection.execute(
        f"SELECT e.state, COUNT(*) FROM {DELIVERY_EVENTS.name} e JOIN "
        f"(SELECT delivery_id, MAX({seq}) AS last FROM {DELIVERY_EVENTS.name} "
        f"GROUP BY delivery_id) m ON e.delivery_id = m.delivery_id AND e.{seq} = m.last "
        f"GROUP BY e.state").fetchall()
    for state, n in rows:
        counts[str(state)] = int(n)
    return counts


def _device_view(state_dir: Path) -> tuple[str, str, tuple[MeterProfile, ...]]:
    """Gateway id, phase and meter profiles of a commissioned gateway, read without its
    security module (``device.json``, ``commissioning.json``, the configuration store)."""
    device = json.loads((state_dir / "device.json").read_text())
    try:
        phase = str(json.loads((state_dir / "commissioning.json").read_text())["phase"])
    except (OSError, ValueError, KeyError):
        phase = "pre_personalisation_1"
    meters: list[MeterProfile] = []
    if (state_dir / DB_FILE).exists():
        with Database(state_dir / DB_FILE) as db:
            if db.table_exists("gateway_config"):
                rows = db.connection.execute(
                    "SELECT document FROM gateway_config WHERE kind = 'meter' ORDER BY item_id")
                for (text,) in rows:
                    doc = json.loads(text)
                    if doc.pop("aes_key_sealed", None) is not None:  # shown, never unsealed
                        doc["aes_key_label"] = doc.pop("aes_key_sealed_with", "sealed")
                    meters.append(MeterProfile.from_dict(doc))
    return str(device["gateway_id"]), phase, tuple(meters)


def status(state_dir: Path) -> GatewayStatus:
    """The gateway's status from ``DIR/gateway.json`` (or a commissioned gateway's
    ``device.json``) and ``DIR/gateway.db``."""
    state_dir = Path(state_dir)
    if (state_dir / "device.json").exists():
        gateway_id, device_phase, profiles = _device_view(state_dir)
    else:
        config = GatewayConfig.load(state_dir)
        gateway_id, device_phase, profiles = config.gateway_id, None, config.meter_profiles
    path = state_dir / DB_FILE
    if not path.exists():
        raise ConfigRejected(ConfigReason.MISSING, f"no gateway database {path} (never run?)",
                             path=str(path))
    with Database(path) as db:
        store = ReadingStore(db)
        state = StateTable(db)
        meters = []
        for profile in profiles:
            latest = [s for s in (store.latest(profile.meter_id, obis)
                                  for obis in profile.channels) if s is not None]
            if not latest:
                meters.append(MeterStatus(profile.meter_id, profile.protocol.value))
                continue
            newest = max(latest, key=lambda s: (s.reading.timestamp, s.seq)).reading
            meters.append(MeterStatus(profile.meter_id, profile.protocol.value, newest.obis,
                                      newest.value, newest.scaler, newest.timestamp,
                                      newest.valid))
        problem = None
        try:
            store.verify_chain()
        except StoreRejected as exc:
            problem = f"{exc.reason.value}: {exc.message}"
        phase = device_phase or state.get(StateKey.PHASE)
        return GatewayStatus(
            gateway_id=gateway_id,
            phase=None if phase is None else str(phase),
            meters=tuple(meters),
            readings=store.count(),
            deliveries=delivery_counts(db),
            chain_verified=problem is None,
            chain_problem=problem,
            last_emt_contact=state.get_time(LAST_EMT_CONTACT),
            last_admin_contact=state.get_time(StateKey.LAST_ADMIN_CONTACT),
        )
