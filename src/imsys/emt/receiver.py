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

:meth:`Receiver.receive_batch` does the same for the deliveries of one ``POST
/deliveries/v1/batch``: each is checked on its own, those that pass are stored in one
transaction, and one signed batch receipt lists every delivery in order.

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
    Delivery,
    DeliveryReason,
    DeliveryRejected,
    digest,
    open_delivery,
    open_unsigned_delivery,
    peer_response,
)
from imsys.wire.receipt import (
    BatchItem,
    Receipt,
    ReceiptStatus,
    issue_batch_receipt,
    issue_receipt,
)

__all__ = [
    "Accepted",
    "BatchAccepted",
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

    def store_many(self, items: Sequence[tuple[DeliveryRow, Sequence[ReadingRow]]]
                   ) -> Sequence[tuple[StoreResult, KnownDelivery] | BaseException]: ...

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
    #: relays (TLS peer ids) whose forwarded deliveries are accepted (seed 003 step 3.3.4):
    #: from them the TLS peer need not be the signer, and a pseudonymised delivery whose
    #: signature the relay removed is accepted on the relay's word
    trusted_relays: frozenset[str] = frozenset()


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


@dataclass(frozen=True, slots=True)
class BatchAccepted:
    """The signed batch receipt of one batch request and its items, in request order."""

    receipt: bytes
    items: tuple[BatchItem, ...]


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A delivery that passed steps 1–4 and is ready to be stored."""

    row: DeliveryRow
    readings: list[ReadingRow]


def _storage_failure(exc: BaseException) -> DeliveryRejected:
    """A database adapter's error as the retryable refusal the peer sees."""
    log.error("storage failed: %s", exc)
    return DeliveryRejected(DeliveryReason.STORAGE_UNAVAILABLE,
                            f"storage failed: {type(exc).__name__}")


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
        prepared = self._prepare(sealed, received_digest, tls_peer, self.clock.now())
        if isinstance(prepared, KnownDelivery):
            return self._accept(ReceiptStatus.DUPLICATE, prepared)
        result, stored = self._guard_storage(
            lambda: self.store.store(prepared.row, prepared.readings))
        status = self._status(result, prepared)
        return self._accept(status, stored, len(prepared.readings))

    def receive_batch(self, sealed: Sequence[bytes], *,
                      tls_peer: str | None = None) -> BatchAccepted:
        """Process the deliveries of one batch request: each is checked exactly as by
        :meth:`receive`, all that pass are stored in one transaction, and one batch receipt
        (one signature) lists every delivery in order – acknowledged, or refused with its
        opaque peer code. Refusals are logged and recorded one by one."""
        now = self.clock.now()
        digests = [digest(body) for body in sealed]
        outcomes: list[_Prepared | KnownDelivery | DeliveryRejected] = []
        for body, received_digest in zip(sealed, digests, strict=True):
            try:
                outcomes.append(self._prepare(body, received_digest, tls_peer, now))
            except DeliveryRejected as exc:
                self._reject(exc, received_digest, tls_peer)
                outcomes.append(exc)
        to_store = [o for o in outcomes if isinstance(o, _Prepared)]
        try:
            results: list[tuple[StoreResult, KnownDelivery] | BaseException] = (
                list(self.store.store_many([(o.row, o.readings) for o in to_store]))
                if to_store else [])
        except Exception as exc:  # the database adapter's errors: the whole batch retries
            results = [exc] * len(to_store)
        stored = dict(zip(map(id, to_store), results, strict=True))
        items: list[BatchItem] = []
        counts = {ReceiptStatus.STORED: 0, ReceiptStatus.DUPLICATE: 0, "refused": 0}
        for outcome, received_digest in zip(outcomes, digests, strict=True):
            try:
                if isinstance(outcome, DeliveryRejected):
                    raise outcome
                if isinstance(outcome, KnownDelivery):
                    status, known = ReceiptStatus.DUPLICATE, outcome
                else:
                    result = stored[id(outcome)]
                    if isinstance(result, DeliveryRejected):
                        raise result
                    if isinstance(result, BaseException):
                        raise _storage_failure(result) from result
                    status = self._status(result[0], outcome)
                    known = result[1]
            except DeliveryRejected as exc:
                if outcome is not exc:  # found at store time: log and record it now
                    self._reject(exc, received_digest, tls_peer)
                items.append(BatchItem(received_digest, refused=peer_response(exc.reason)[1]))
                counts["refused"] += 1
                continue
            counts[status] += 1
            items.append(BatchItem(received_digest, self._receipt(status, known)))
        signed = issue_batch_receipt(self.identity.emt_id, items, self.identity.sig_key,
                                     self.identity.sig_certificate, signing_time=now)
        log.info("batch of %d from %s: %d stored, %d duplicate, %d refused", len(sealed),
                 tls_peer, counts[ReceiptStatus.STORED], counts[ReceiptStatus.DUPLICATE],
                 counts["refused"])
        return BatchAccepted(signed, tuple(items))

    def _prepare(self, sealed: bytes, received_digest: bytes, tls_peer: str | None,
                 now: datetime) -> _Prepared | KnownDelivery:
        """Steps 1–4: what to store, or the stored delivery these bytes repeat."""
        if len(sealed) > self.policy.max_size:
            raise DeliveryRejected(DeliveryReason.TOO_LARGE, "delivery too large",
                                   size=len(sealed))
        try:
            opened = open_delivery(sealed, self.identity.enc_key, self.identity.enc_certificate,
                                   self._validators(), max_size=self.policy.max_size)
        except DeliveryRejected as exc:
            if exc.context.get("cms") != "wrong-content-type":
                raise
            return self._prepare_unsigned(sealed, received_digest, tls_peer, now)
        duplicate = self._check_policy(opened.delivery, opened.signing_time, opened.digest,
                                       tls_peer, now)
        if duplicate is not None:
            return duplicate
        readings = self._readings(opened.delivery)
        delivery = opened.delivery
        row = DeliveryRow(str(delivery.delivery_id), received_digest, delivery.gateway_id,
                          delivery.meter, delivery.pseudonymised, delivery.billing_relevant,
                          delivery.profile_id, delivery.content_type, delivery.created,
                          opened.signing_time, now, delivery.document, sealed)
        return _Prepared(row, readings)

    def _prepare_unsigned(self, sealed: bytes, received_digest: bytes, tls_peer: str | None,
                          now: datetime) -> _Prepared | KnownDelivery:
        """A relayed delivery whose gateway signature the relay removed (encrypted, not signed):
        only from a trusted relay, only pseudonymised; the window applies to its ``created``."""
        if tls_peer is None or tls_peer not in self.policy.trusted_relays:
            raise DeliveryRejected(DeliveryReason.UNSIGNED,
                                   "unsigned delivery from a peer that is not a trusted relay",
                                   tls_peer=tls_peer)
        delivery = open_unsigned_delivery(sealed, self.identity.enc_key,
                                          self.identity.enc_certificate,
                                          max_size=self.policy.max_size)
        duplicate = self._check_policy(delivery, delivery.created, received_digest, tls_peer, now)
        if duplicate is not None:
            return duplicate
        row = DeliveryRow(str(delivery.delivery_id), received_digest, delivery.gateway_id,
                          delivery.meter, delivery.pseudonymised, delivery.billing_relevant,
                          delivery.profile_id, delivery.content_type, delivery.created,
                          delivery.created, now, delivery.document, sealed)
        return _Prepared(row, self._readings(delivery))

    @staticmethod
    def _status(result: StoreResult, prepared: _Prepared) -> ReceiptStatus:
        row = prepared.row
        if result is StoreResult.CONFLICT:
            raise DeliveryRejected(DeliveryReason.REPLAY, "delivery id known with other content",
                                   gateway=row.gateway_id, delivery=row.delivery_id)
        status = ReceiptStatus.STORED if result is StoreResult.STORED else ReceiptStatus.DUPLICATE
        log.info("delivery %s from %s: %s (%d readings)", row.delivery_id, row.gateway_id,
                 status.value, len(prepared.readings))
        return status

    def _receipt(self, status: ReceiptStatus, stored: KnownDelivery) -> Receipt:
        return Receipt(uuid.UUID(stored.delivery_id), stored.digest, stored.received_at, status,
                       self.identity.emt_id)

    def _accept(self, status: ReceiptStatus, stored: KnownDelivery, count: int = 0) -> Accepted:
        signed = issue_receipt(self._receipt(status, stored), self.identity.sig_key,
                               self.identity.sig_certificate)
        return Accepted(signed, status, stored.delivery_id, stored.gateway_id, count)

    def _check_policy(self, delivery: Delivery, signed_at: datetime, received_digest: bytes,
                      tls_peer: str | None, now: datetime) -> KnownDelivery | None:
        """Refuse what the policy forbids; a repetition of a delivery stored long ago (outside
        the signing-time window) is a duplicate, returned for a new receipt."""
        gateway = delivery.gateway_id
        served = self.policy.served_gateways
        if served is not None and gateway not in served:
            raise DeliveryRejected(DeliveryReason.UNKNOWN_GATEWAY, "gateway not served here",
                                   gateway=gateway)
        relayed = tls_peer is not None and tls_peer in self.policy.trusted_relays
        if (self.policy.require_tls_peer_match and tls_peer is not None and tls_peer != gateway
                and not relayed):
            raise DeliveryRejected(DeliveryReason.TLS_PEER_MISMATCH, "TLS peer is not the signer",
                                   gateway=gateway, tls_peer=tls_peer)
        if now - self.policy.max_age <= signed_at <= now + self.policy.max_future:
            return None
        known = self._guard_storage(lambda: self.store.find_by_digest(received_digest))
        if known is not None and known.gateway_id == gateway:
            return known
        raise DeliveryRejected(DeliveryReason.OUTSIDE_WINDOW, "signing time outside window",
                               gateway=gateway, signing_time=signed_at.isoformat())

    def _readings(self, delivery: Delivery) -> list[ReadingRow]:
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
            raise _storage_failure(exc) from exc

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
