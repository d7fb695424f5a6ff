"""The EMT's receiving process (seed 003, table 2, steps 2.4 and 3.2.7), without any I/O.

:meth:`Receiver.receive` takes the sealed bytes of one ``POST /deliveries/v1`` and the TLS
peer's identifier and either returns a signed receipt or raises :class:`DeliveryRejected`:

1. size bound (``TOO_LARGE``);
2. open: decrypt with the EMT ENC key, verify the gateway's signature, validate its SIG
   certificate as ``gateway-sig`` with the CRL (``TAMPERED``, ``WRONG_RECIPIENT``,
   ``BAD_SIGNATURE``, ``UNTRUSTED_SIGNER``, ``REVOKED``, ``SIGNER_MISMATCH``, ``MALFORMED``);
   a validated signer path is reused for a short while (``path_cache_seconds``) as long as
   the validator – its CRL snapshot – is the same;
3. policy: the gateway is one this EMT serves (``UNKNOWN_GATEWAY``), it is the TLS peer
   (``TLS_PEER_MISMATCH``), the signing time lies in the window (``OUTSIDE_WINDOW``) – unless
   exactly these bytes were stored before (a repetition long after a lost receipt), which is
   acknowledged again;
4. the document is AR 2418-6 and agrees with the metadata (gateway, meter or pseudonym)
   (``INCONSISTENT_DOCUMENT``);
5. store delivery and readings in one transaction, at most once: the same delivery id with the
   same digest is ``duplicate``; with another digest ``REPLAY``; a storage failure is
   ``STORAGE_UNAVAILABLE`` (the gateway retries);
6. sign the receipt with the EMT SIG key.

Every refusal is logged (logger ``imsys.emt.receiver``) with its precise reason and recorded in
the storage's rejection table; the HTTP edge shows the peer only
:func:`imsys.wire.delivery.peer_response`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from imsys.core.clock import Clock
from imsys.crypto.primitives import KeyHandle
from imsys.emt.storage import DeliveryRow, KnownDelivery, ReadingRow, StoreResult
from imsys.pki.validation import PathValidator, ValidatedPath
from imsys.wire.ar2418 import CONTENT_TYPE as AR2418_CONTENT_TYPE
from imsys.wire.ar2418 import DocumentRejected, parse_document
from imsys.wire.delivery import (
    DEFAULT_MAX_DELIVERY,
    CertificateValidator,
    DeliveryReason,
    DeliveryRejected,
    OpenedDelivery,
    digest,
    open_delivery,
)
from imsys.wire.receipt import Receipt, ReceiptStatus, issue_receipt

__all__ = [
    "Accepted",
    "DeliveryStore",
    "EmtIdentity",
    "Receiver",
    "ReceiverPolicy",
]

log = logging.getLogger("imsys.emt.receiver")
T = TypeVar("T")


class DeliveryStore(Protocol):
    """The storage port the receiver needs (:class:`imsys.emt.storage.EmtStorage`)."""

    def store(self, row: DeliveryRow, readings: Sequence[ReadingRow]
              ) -> tuple[StoreResult, KnownDelivery]: ...

    def find_by_digest(self, digest: bytes) -> KnownDelivery | None: ...

    def record_rejection(self, at: datetime, reason: str, digest: bytes,
                         gateway_id: str | None, detail: str) -> None: ...


@dataclass(frozen=True)
class EmtIdentity:
    """The EMT's identifier and its ENC and SIG keys (handles) with certificates."""

    emt_id: str
    enc_key: KeyHandle
    enc_certificate: x509.Certificate
    sig_key: KeyHandle
    sig_certificate: x509.Certificate


@dataclass(frozen=True)
class ReceiverPolicy:
    """What the EMT accepts beyond a valid signature."""

    #: gateways this EMT serves (from its contracts); None: any valid gateway
    served_gateways: frozenset[str] | None = None
    #: oldest signing time accepted; delivery ids are kept at least this long
    max_age: timedelta = timedelta(days=45)
    #: how far a signing time may lie ahead of the EMT's clock
    max_future: timedelta = timedelta(minutes=5)
    max_size: int = DEFAULT_MAX_DELIVERY
    #: the TLS client must be the gateway that signed (False for relays, seed 003 §3.3)
    require_tls_peer_match: bool = True
    #: refuse deliveries whose document is not AR 2418-6
    require_ar2418: bool = True
    #: how long a validated signer path is reused (per validator, i.e. per CRL snapshot);
    #: 0 validates every delivery from scratch
    path_cache_seconds: float = 30.0


class _PathCache:
    """Validated signer paths, reused for ``ttl`` seconds while the validator (and so its CRL
    snapshot) is the same object. Validation costs about as much as the ECDH of a delivery;
    a gateway sends many deliveries with one certificate."""

    def __init__(self, ttl: float, clock: Clock) -> None:
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._validator: PathValidator | None = None
        self._paths: dict[tuple[bytes, str | None], tuple[float, ValidatedPath]] = {}

    def bound_to(self, validator: PathValidator) -> CertificateValidator:
        if self.ttl <= 0:
            return validator
        with self._lock:
            if validator is not self._validator:
                self._validator, self._paths = validator, {}
        return _CachingValidator(self, validator)

    def get(self, key: tuple[bytes, str | None]) -> ValidatedPath | None:
        with self._lock:
            found = self._paths.get(key)
        if found is None or time.monotonic() > found[0]:
            return None
        return found[1]

    def put(self, key: tuple[bytes, str | None], path: ValidatedPath) -> None:
        with self._lock:
            if len(self._paths) > 100_000:
                self._paths.clear()
            self._paths[key] = (time.monotonic() + self.ttl, path)


@dataclass(frozen=True, slots=True)
class _CachingValidator:
    cache: _PathCache
    validator: PathValidator

    def validate(self, cert: x509.Certificate, *, profile: str | None = None,
                 at: datetime | None = None, chain: Sequence[x509.Certificate] = ()
                 ) -> ValidatedPath:
        if at is not None or chain:
            return self.validator.validate(cert, profile=profile, at=at, chain=chain)
        key = (cert.fingerprint(hashes.SHA256()), profile)
        path = self.cache.get(key)
        now = self.cache.clock.now()
        if path is None or not (path.leaf.not_valid_before_utc <= now
                                <= path.leaf.not_valid_after_utc):
            path = self.validator.validate(cert, profile=profile)
            self.cache.put(key, path)
        return path


@dataclass(frozen=True, slots=True)
class Accepted:
    """A delivery that is stored (now or before) and its signed receipt."""

    receipt: bytes
    status: ReceiptStatus
    delivery_id: str
    gateway_id: str
    readings: int = 0


@dataclass
class Receiver:
    """The receiving core; thread-safe if the store and validator source are."""

    identity: EmtIdentity
    validator: PathValidator | Callable[[], PathValidator]
    store: DeliveryStore
    clock: Clock
    policy: ReceiverPolicy = field(default_factory=ReceiverPolicy)

    def __post_init__(self) -> None:
        self._cache = _PathCache(self.policy.path_cache_seconds, self.clock)

    def _validators(self) -> CertificateValidator:
        current = (self.validator if isinstance(self.validator, PathValidator)
                   else self.validator())
        return self._cache.bound_to(current)

    def receive(self, sealed: bytes, *, tls_peer: str | None = None) -> Accepted:
        """Process one delivery; raise :class:`DeliveryRejected` (logged and recorded)."""
        received_digest = digest(sealed)
        try:
            return self._receive(sealed, received_digest, tls_peer)
        except DeliveryRejected as exc:
            self._reject(exc, received_digest, tls_peer)
            raise

    def _receive(self, sealed: bytes, received_digest: bytes, tls_peer: str | None) -> Accepted:
        now = self.clock.now()
        if len(sealed) > self.policy.max_size:
            raise DeliveryRejected(DeliveryReason.TOO_LARGE, "delivery too large",
                                   size=len(sealed))
        opened = open_delivery(sealed, self.identity.enc_key, self.identity.enc_certificate,
                               self._validators(), max_size=self.policy.max_size)
        duplicate = self._check_policy(opened, tls_peer, now)
        if duplicate is not None:
            return self._accept(ReceiptStatus.DUPLICATE, duplicate)
        readings = self._readings(opened)
        delivery = opened.delivery
        row = DeliveryRow(str(delivery.delivery_id), received_digest, delivery.gateway_id,
                          delivery.meter, delivery.pseudonymised, delivery.billing_relevant,
                          delivery.profile_id, delivery.content_type, delivery.created,
                          opened.signing_time, now, delivery.document, sealed)
        result, stored = self._guard_storage(lambda: self.store.store(row, readings))
        if result is StoreResult.CONFLICT:
            raise DeliveryRejected(DeliveryReason.REPLAY, "delivery id known with other content",
                                   gateway=delivery.gateway_id,
                                   delivery=str(delivery.delivery_id))
        status = ReceiptStatus.STORED if result is StoreResult.STORED else ReceiptStatus.DUPLICATE
        log.info("delivery %s from %s: %s (%d readings)", delivery.delivery_id,
                 delivery.gateway_id, status.value, len(readings))
        return self._accept(status, stored, len(readings))

    def _accept(self, status: ReceiptStatus, stored: KnownDelivery, count: int = 0) -> Accepted:
        receipt = Receipt(uuid.UUID(stored.delivery_id), stored.digest, stored.received_at, status,
                          self.identity.emt_id)
        signed = issue_receipt(receipt, self.identity.sig_key, self.identity.sig_certificate)
        return Accepted(signed, status, stored.delivery_id, stored.gateway_id, count)

    def _check_policy(self, opened: OpenedDelivery, tls_peer: str | None,
                      now: datetime) -> KnownDelivery | None:
        """Refuse what the policy forbids; a repetition of a delivery stored long ago (outside
        the signing-time window) is a duplicate, returned for a new receipt."""
        gateway = opened.delivery.gateway_id
        served = self.policy.served_gateways
        if served is not None and gateway not in served:
            raise DeliveryRejected(DeliveryReason.UNKNOWN_GATEWAY, "gateway not served here",
                                   gateway=gateway)
        if self.policy.require_tls_peer_match and tls_peer is not None and tls_peer != gateway:
            raise DeliveryRejected(DeliveryReason.TLS_PEER_MISMATCH, "TLS peer is not the signer",
                                   gateway=gateway, tls_peer=tls_peer)
        signed_at = opened.signing_time
        if now - self.policy.max_age <= signed_at <= now + self.policy.max_future:
            return None
        known = self._guard_storage(lambda: self.store.find_by_digest(opened.digest))
        if known is not None and known.gateway_id == gateway:
            return known
        raise DeliveryRejected(DeliveryReason.OUTSIDE_WINDOW, "signing time outside window",
                               gateway=gateway, signing_time=signed_at.isoformat())

    def _readings(self, opened: OpenedDelivery) -> list[ReadingRow]:
        delivery = opened.delivery
        if delivery.content_type != AR2418_CONTENT_TYPE:
            if self.policy.require_ar2418:
                raise DeliveryRejected(DeliveryReason.INCONSISTENT_DOCUMENT,
                                       "content type not accepted", gateway=delivery.gateway_id)
            return []
        try:
            document = parse_document(delivery.document)
        except DocumentRejected as exc:
            raise DeliveryRejected(DeliveryReason.INCONSISTENT_DOCUMENT,
                                   f"document refused: {exc.message}",
                                   gateway=delivery.gateway_id, cause=exc.reason.value) from exc
        if document.smgw_id != delivery.gateway_id or document.meter_ids - {delivery.meter}:
            raise DeliveryRejected(DeliveryReason.INCONSISTENT_DOCUMENT,
                                   "document names another gateway or meter",
                                   gateway=delivery.gateway_id)
        return [ReadingRow(series.meter_id, series.obis, value.start, value.value, series.scaler,
                           series.uom, value.status_fnn,
                           None if value.status_ptb is None else int(value.status_ptb))
                for series in document.meter_readings for value in series.readings]

    @staticmethod
    def _guard_storage(call: Callable[[], T]) -> T:
        try:
            return call()
        except DeliveryRejected:
            raise
        except Exception as exc:  # the database adapter's errors: retry later
            log.error("storage failed: %s", exc)
            raise DeliveryRejected(DeliveryReason.STORAGE_UNAVAILABLE,
                                   f"storage failed: {type(exc).__name__}") from exc

    def _reject(self, exc: DeliveryRejected, received_digest: bytes,
                tls_peer: str | None) -> None:
        gateway = exc.context.get("gateway") or tls_peer
        log.warning("delivery refused (%s): %s; gateway=%s tls_peer=%s digest=%s",
                    exc.reason.value, exc.message, gateway, tls_peer, received_digest.hex())
        if exc.reason is DeliveryReason.STORAGE_UNAVAILABLE:
            return
        try:
            self.store.record_rejection(self.clock.now(), exc.reason.value, received_digest,
                                        gateway, exc.message)
        except Exception as failure:  # recording must not hide the rejection itself
            log.error("could not record rejection: %s", failure)
