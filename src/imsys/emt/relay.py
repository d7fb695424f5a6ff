"""Relay (Durchleitung, seed 003 table 2 step 3.3): a TLS endpoint that is not the final recipient.

The gateway encrypts for the final recipient and signs outside the encryption
(:func:`imsys.wire.delivery.seal_for_relay`). The relay

1. checks the gateway's signature, its SIG certificate as ``gateway-sig`` with the CRL, that
   the signer is the TLS peer and a gateway it serves, the signing-time window, and that it
   forwards to the named final recipient (step 3.3.3) – it cannot and does not decrypt;
2. keeps the still-encrypted content durably and at most once (outbox table
   ``emt_relay_outbox``) and answers the gateway with a signed receipt (:mod:`imsys.wire.receipt`,
   status ``stored``/``duplicate``, signed with the relay's SIG key) – the gateway's queue
   needs no change for it;
3. forwards the content unchanged to the final recipient (step 3.3.4), several at a time over
   ``POST /deliveries/v1/batch`` (:func:`forward`), and deletes what the final recipient's
   batch receipt acknowledges (seed 003 l. 738). The gateway's signature does not travel on:
   it was only on the relay envelope. Where the gateway asked for it to be removed
   (pseudonymised data) the content carries no gateway signature at all, and the final
   recipient accepts it only from a relay it trusts (``ReceiverPolicy.trusted_relays``).

Every refusal is a :class:`~imsys.wire.delivery.DeliveryRejected`, logged (logger
``imsys.emt.relay``) and recorded in ``emt_rejections``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from cryptography import x509

from imsys.core.clock import Clock
from imsys.emt.receiver import Accepted, EmtIdentity
from imsys.emt.storage import EmtStorage, StoreResult
from imsys.pki.validation import PathValidator
from imsys.wire.delivery import (
    DEFAULT_MAX_DELIVERY,
    MAX_BATCH_ITEMS,
    DeliveryReason,
    DeliveryRejected,
    digest,
    encode_batch,
    open_relayed,
)
from imsys.wire.receipt import (
    Receipt,
    ReceiptRejected,
    ReceiptStatus,
    issue_receipt,
    verify_batch_receipt,
)

__all__ = ["ForwardResult", "Relay", "RelayPolicy", "forward"]

log = logging.getLogger("imsys.emt.relay")


@dataclass(frozen=True)
class RelayPolicy:
    """What the relay accepts."""

    #: final recipients it forwards to (from its contracts)
    final_recipients: frozenset[str]
    #: gateways it serves; None: any valid gateway
    served_gateways: frozenset[str] | None = None
    max_age: timedelta = timedelta(days=45)
    max_future: timedelta = timedelta(minutes=5)
    max_size: int = DEFAULT_MAX_DELIVERY


@dataclass
class Relay:
    """The relay's receiving side (pure logic over its storage)."""

    identity: EmtIdentity  # the relay's own identifier and SIG key sign its receipts
    validator: PathValidator | Callable[[], PathValidator]
    outbox: EmtStorage
    clock: Clock
    policy: RelayPolicy = field(default_factory=lambda: RelayPolicy(frozenset()))

    def accept(self, data: bytes, *, tls_peer: str | None = None) -> Accepted:
        """Check a relay envelope, keep its content for forwarding, return the signed receipt
        for the gateway; raise :class:`DeliveryRejected` (logged and recorded)."""
        received = digest(data)
        try:
            return self._accept(data, tls_peer)
        except DeliveryRejected as exc:
            gateway = exc.context.get("gateway") or tls_peer
            log.warning("relay refused (%s): %s; gateway=%s tls_peer=%s digest=%s",
                        exc.reason.value, exc.message, gateway, tls_peer, received.hex())
            if exc.reason is not DeliveryReason.STORAGE_UNAVAILABLE:
                self.outbox.record_rejection(self.clock.now(), exc.reason.value, received,
                                             gateway, exc.message)
            raise

    def _accept(self, data: bytes, tls_peer: str | None) -> Accepted:
        now = self.clock.now()
        validator = (self.validator if isinstance(self.validator, PathValidator)
                     else self.validator())
        relayed = open_relayed(data, validator, max_size=self.policy.max_size)
        gateway = relayed.gateway_id
        served = self.policy.served_gateways
        if served is not None and gateway not in served:
            raise DeliveryRejected(DeliveryReason.UNKNOWN_GATEWAY, "gateway not served here",
                                   gateway=gateway)
        if tls_peer is not None and tls_peer != gateway:
            raise DeliveryRejected(DeliveryReason.TLS_PEER_MISMATCH, "TLS peer is not the signer",
                                   gateway=gateway, tls_peer=tls_peer)
        if relayed.final_recipient not in self.policy.final_recipients:
            raise DeliveryRejected(DeliveryReason.UNKNOWN_RECIPIENT,
                                   "no forwarding to this final recipient", gateway=gateway,
                                   final_recipient=relayed.final_recipient)
        if not now - self.policy.max_age <= relayed.signing_time <= now + self.policy.max_future:
            raise DeliveryRejected(DeliveryReason.OUTSIDE_WINDOW, "signing time outside window",
                                   gateway=gateway)
        try:
            result, known = self.outbox.relay_put(
                str(relayed.delivery_id), relayed.digest, gateway, relayed.final_recipient,
                now, relayed.content)
        except Exception as exc:  # the database adapter's errors: the gateway retries
            log.error("relay outbox failed: %s", exc)
            raise DeliveryRejected(DeliveryReason.STORAGE_UNAVAILABLE,
                                   f"storage failed: {type(exc).__name__}") from exc
        if result is StoreResult.CONFLICT:
            raise DeliveryRejected(DeliveryReason.REPLAY, "delivery id known with other content",
                                   gateway=gateway, delivery=str(relayed.delivery_id))
        status = ReceiptStatus.STORED if result is StoreResult.STORED else ReceiptStatus.DUPLICATE
        log.info("relay: delivery %s from %s for %s: %s (signature %s)", relayed.delivery_id,
                 gateway, relayed.final_recipient, status.value,
                 "removed" if relayed.remove_signature else "kept inside")
        receipt = Receipt(relayed.delivery_id, known.digest, known.received_at, status,
                          self.identity.emt_id)
        signed = issue_receipt(receipt, self.identity.sig_key, self.identity.sig_certificate)
        return Accepted(signed, status, str(relayed.delivery_id), gateway)


@dataclass(frozen=True, slots=True)
class ForwardResult:
    """What one :func:`forward` call did."""

    sent: int
    acknowledged: int
    refused: int  # refused for good by the final recipient (kept, marked, not resent)
    retry: int  # the final recipient asks to retry (``unavailable``)


def forward(outbox: EmtStorage, final_recipient: str, post: Callable[[bytes], bytes],
            final_sig_certificate: x509.Certificate, *, limit: int = MAX_BATCH_ITEMS,
            validator: PathValidator | None = None) -> ForwardResult:
    """Send what waits for ``final_recipient`` as one batch (``post`` takes the
    ``DeliveryBatch`` body and returns the final recipient's batch receipt, or raises), verify
    the batch receipt against the final recipient's SIG certificate, and delete what it
    acknowledges. A receipt that does not verify changes nothing (everything is sent again)."""
    pending = outbox.relay_pending(final_recipient, limit)
    if not pending:
        return ForwardResult(0, 0, 0, 0)
    contents = [content for _, content in pending]
    answer = post(encode_batch(contents))
    try:
        items = verify_batch_receipt(answer, final_sig_certificate,
                                     digests=[hashlib.sha256(c).digest() for c in contents],
                                     validator=validator)
    except ReceiptRejected as exc:
        log.warning("batch receipt from %s refused (%s): %s; %d items kept", final_recipient,
                    exc.reason.value, exc.message, len(pending))
        raise
    done, refused, retry = [], [], 0
    for (outbox_id, _), item in zip(pending, items, strict=True):
        if item.receipt is not None:
            done.append(outbox_id)
        elif item.refused == "unavailable":
            retry += 1
        else:
            refused.append((outbox_id, item.refused or "refused"))
            log.warning("final recipient %s refused outbox item %d (%s)", final_recipient,
                        outbox_id, item.refused)
    outbox.relay_done(done, refused)
    log.info("forwarded %d to %s: %d acknowledged, %d refused, %d to retry", len(pending),
             final_recipient, len(done), len(refused), retry)
    return ForwardResult(len(pending), len(done), len(refused), retry)
