"""The imsys delivery profile v1: a document for an EMT, signed and encrypted (docs/delivery.md).

The gateway wraps a document (AR 2418-6 XML, :mod:`imsys.wire.ar2418`) with its metadata in a
small DER structure, signs it with its SIG key and encrypts it for the EMT's ENC certificate::

    sealed = AuthEnvelopedData(                       -- RFC 5083, AES-GCM, ECDH for emt-enc
               SignedData(                            -- gateway-sig, signingTime = sealed at
                 ImsysDelivery))                      -- eContentType id-data

    ImsysDelivery ::= SEQUENCE {
        version          INTEGER (1),
        deliveryId       OCTET STRING (SIZE (16)),    -- a UUID, chosen by the gateway
        gatewayId        UTF8String,                  -- must equal the SIG certificate's CN
        meter            UTF8String,                  -- meter id, or the profile's pseudonym
        pseudonymised    BOOLEAN,
        profileId        UTF8String,                  -- the evaluation (tariff) profile
        created          GeneralizedTime,             -- UTC, whole seconds
        billingRelevant  BOOLEAN,
        contentType      UTF8String,                  -- application/vnd.imsys.ar2418-6+xml
        document         OCTET STRING }

It travels as ``POST /deliveries/v1`` with ``Content-Type: application/cms``; the body is the
sealed bytes, which the gateway keeps and re-sends unchanged until it holds a valid receipt
(:mod:`imsys.wire.receipt`), so a repeated delivery has the same SHA-256 digest.

:func:`open_delivery` is the EMT's side: decrypt with the ENC key, verify the signature,
validate the signer certificate as ``gateway-sig`` (CRL-aware, by the caller's
:class:`~imsys.pki.PathValidator`), check that the signer is the gateway named in the metadata.
Every failure is a :class:`DeliveryRejected` with a :class:`DeliveryReason`; towards the peer
only the coarse :class:`PeerCode` of :func:`peer_response` is shown.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, cast

from asn1crypto import core
from cryptography import x509

from imsys.core.errors import CertificateRejected, CmsRejected, KeyRejected, Rejected, UsageError
from imsys.crypto import cms
from imsys.crypto.primitives import KeyHandle
from imsys.pki.validation import PathValidator, ValidatedPath
from imsys.wire.ar2418 import CONTENT_TYPE as AR2418_CONTENT_TYPE
from imsys.wire.ar2418 import UsagePointDocument, parse_document

__all__ = [
    "BATCH_MEDIA_TYPE",
    "BATCH_PATH",
    "DEFAULT_MAX_DELIVERY",
    "HTTP_PATH",
    "MAX_BATCH_ITEMS",
    "MEDIA_TYPE",
    "PROFILE_VERSION",
    "RELAY_PATH",
    "CertificateValidator",
    "Delivery",
    "DeliveryReason",
    "DeliveryRejected",
    "OpenedDelivery",
    "PeerCode",
    "RelayedDelivery",
    "decode_batch",
    "encode_batch",
    "open_delivery",
    "open_relayed",
    "open_unsigned_delivery",
    "peer_response",
    "seal_delivery",
    "seal_for_relay",
]

PROFILE_VERSION = 1
HTTP_PATH = "/deliveries/v1"
MEDIA_TYPE = "application/cms"
#: Sealed deliveries longer than this are refused (HTTP 413) before any parsing.
DEFAULT_MAX_DELIVERY = 4 * 1024 * 1024

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}$")
_MEDIA = re.compile(r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$")


class DeliveryReason(StrEnum):
    """Why a delivery was refused (logged locally; the peer sees only a :class:`PeerCode`)."""

    TOO_LARGE = "too-large"
    MALFORMED = "malformed"  # not CMS, not the ImsysDelivery structure, unknown version
    TAMPERED = "tampered"  # GCM tag, digest or content changed
    WRONG_RECIPIENT = "wrong-recipient"  # not encrypted for this EMT's ENC certificate
    BAD_SIGNATURE = "bad-signature"
    UNTRUSTED_SIGNER = "untrusted-signer"  # signer path invalid, expired, wrong profile
    REVOKED = "revoked"  # signer certificate on the CRL
    SIGNER_MISMATCH = "signer-mismatch"  # signer is not the gateway named in the metadata
    TLS_PEER_MISMATCH = "tls-peer-mismatch"  # the TLS client is another gateway
    UNKNOWN_GATEWAY = "unknown-gateway"  # not among the gateways this EMT serves
    INCONSISTENT_DOCUMENT = "inconsistent-document"  # document disagrees with the metadata
    OUTSIDE_WINDOW = "outside-window"  # signing time too old or in the future
    REPLAY = "replay"  # a known delivery id with other content
    STORAGE_UNAVAILABLE = "storage-unavailable"  # the EMT could not store it; retry later
    UNSIGNED = "unsigned"  # no gateway signature: not from a trusted relay, or not pseudonymised
    UNKNOWN_RECIPIENT = "unknown-recipient"  # a relay does not forward to this final recipient


class DeliveryRejected(Rejected):
    """A delivery was refused. ``reason`` is a :class:`DeliveryReason`."""

    reason: DeliveryReason  # type: ignore[assignment]

    def __init__(self, reason: DeliveryReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


class PeerCode(StrEnum):
    """The short, opaque reason code in an error response body."""

    BAD_REQUEST = "bad-request"
    REFUSED = "refused"
    CONFLICT = "conflict"
    TOO_LARGE = "too-large"
    UNAVAILABLE = "unavailable"


_PEER: dict[DeliveryReason, tuple[int, PeerCode]] = {
    DeliveryReason.TOO_LARGE: (413, PeerCode.TOO_LARGE),
    DeliveryReason.MALFORMED: (400, PeerCode.BAD_REQUEST),
    DeliveryReason.REPLAY: (409, PeerCode.CONFLICT),
    DeliveryReason.STORAGE_UNAVAILABLE: (503, PeerCode.UNAVAILABLE),
}


def peer_response(reason: DeliveryReason) -> tuple[int, PeerCode]:
    """HTTP status and body code for a refusal: security failures all look alike (403)."""
    return _PEER.get(reason, (403, PeerCode.REFUSED))


def _check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not _ID.match(value):
        raise UsageError(f"{what} must match {_ID.pattern}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """A document for an EMT and what the EMT needs to know about it."""

    delivery_id: uuid.UUID
    gateway_id: str
    meter: str  # meter id, or the pseudonym when ``pseudonymised``
    profile_id: str
    created: datetime
    billing_relevant: bool
    document: bytes
    pseudonymised: bool = False
    content_type: str = AR2418_CONTENT_TYPE
    version: int = PROFILE_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.delivery_id, uuid.UUID):
            raise UsageError("delivery_id is a uuid.UUID")
        _check_id(self.gateway_id, "gateway id")
        _check_id(self.meter, "meter id or pseudonym")
        _check_id(self.profile_id, "profile id")
        if self.created.tzinfo is None:
            raise UsageError("created must be timezone-aware")
        object.__setattr__(self, "created",
                           self.created.astimezone(UTC).replace(microsecond=0))
        if self.billing_relevant and self.pseudonymised:
            raise UsageError("billing-relevant data is sent without pseudonymisation "
                             "(seed 003 step 3.2.1)")
        if not _MEDIA.match(self.content_type):
            raise UsageError(f"not a media type: {self.content_type!r}")
        if self.version != PROFILE_VERSION:
            raise UsageError(f"delivery profile version {self.version} is not supported")
        if not isinstance(self.document, bytes):
            raise UsageError("the document is bytes")

    @classmethod
    def new(cls, *, gateway_id: str, meter: str, profile_id: str, created: datetime,
            billing_relevant: bool, document: bytes, pseudonymised: bool = False,
            content_type: str = AR2418_CONTENT_TYPE) -> Delivery:
        """A delivery with a fresh random delivery id."""
        return cls(uuid.uuid4(), gateway_id, meter, profile_id, created, billing_relevant,
                   document, pseudonymised, content_type)

    def encode(self) -> bytes:
        """The DER ``ImsysDelivery`` (the content the gateway signs)."""
        return _ImsysDelivery({
            "version": self.version, "delivery_id": self.delivery_id.bytes,
            "gateway_id": self.gateway_id, "meter": self.meter,
            "pseudonymised": self.pseudonymised, "profile_id": self.profile_id,
            "created": self.created, "billing_relevant": self.billing_relevant,
            "content_type": self.content_type, "document": self.document,
        }).dump()

    @classmethod
    def decode(cls, data: bytes) -> Delivery:
        """Parse a DER ``ImsysDelivery``; anything else is ``MALFORMED``."""
        try:
            parsed = _ImsysDelivery.load(data, strict=True)
            native = parsed.native
            if parsed.dump(force=True) != data:
                raise ValueError("not DER")
            version = native["version"]
            if version != PROFILE_VERSION:
                raise DeliveryRejected(DeliveryReason.MALFORMED,
                                       f"delivery profile version {version} not supported",
                                       version=version)
            if len(native["delivery_id"]) != 16:
                raise ValueError("deliveryId is 16 octets")
            return cls(uuid.UUID(bytes=native["delivery_id"]), native["gateway_id"],
                       native["meter"], native["profile_id"], native["created"],
                       native["billing_relevant"], native["document"], native["pseudonymised"],
                       native["content_type"], version)
        except DeliveryRejected:
            raise
        except (ValueError, TypeError, KeyError, UsageError, OverflowError) as exc:
            raise DeliveryRejected(DeliveryReason.MALFORMED,
                                   f"not an ImsysDelivery: {exc}") from None

    def parse_document(self) -> UsagePointDocument:
        """The AR 2418-6 document (``DocumentRejected`` if it is not one)."""
        if self.content_type != AR2418_CONTENT_TYPE:
            raise UsageError(f"content type {self.content_type} is not AR 2418-6")
        return parse_document(self.document)


class _ImsysDelivery(core.Sequence):
    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("version", core.Integer),
        ("delivery_id", core.OctetString),
        ("gateway_id", core.UTF8String),
        ("meter", core.UTF8String),
        ("pseudonymised", core.Boolean),
        ("profile_id", core.UTF8String),
        ("created", core.GeneralizedTime),
        ("billing_relevant", core.Boolean),
        ("content_type", core.UTF8String),
        ("document", core.OctetString),
    ]


@dataclass(frozen=True, slots=True)
class OpenedDelivery:
    """A delivery whose envelope, signature and signer checked out."""

    delivery: Delivery
    signer: ValidatedPath
    signing_time: datetime
    digest: bytes  # SHA-256 of the sealed bytes as received
    size: int


def seal_delivery(delivery: Delivery, signer: KeyHandle, signer_certificate: x509.Certificate,
                  recipient: x509.Certificate, *, signing_time: datetime | None = None,
                  extra_certificates: tuple[x509.Certificate, ...] = ()) -> bytes:
    """AuthEnvelopedData(SignedData(ImsysDelivery)) for the EMT's ENC certificate.

    ``signer`` is the gateway's SIG key in its security module. The signing time defaults to
    ``delivery.created``.
    """
    return cms.seal(delivery.encode(), signer, signer_certificate, [recipient],
                    signing_time=signing_time or delivery.created,
                    extra_certificates=extra_certificates)


def digest(sealed: bytes) -> bytes:
    """SHA-256 of the sealed bytes: what identifies one transmission of one delivery."""
    return hashlib.sha256(sealed).digest()


_CMS_REASON = {
    "tampered": DeliveryReason.TAMPERED,
    "wrong-recipient": DeliveryReason.WRONG_RECIPIENT,
    "bad-signature": DeliveryReason.BAD_SIGNATURE,
    "signer-mismatch": DeliveryReason.SIGNER_MISMATCH,
}


class CertificateValidator(Protocol):
    """What :func:`open_delivery` needs of a validator (:class:`~imsys.pki.PathValidator`)."""

    def validate(self, cert: x509.Certificate, *, profile: str | None = None,
                 at: datetime | None = None, chain: Sequence[x509.Certificate] = ()
                 ) -> ValidatedPath: ...


def open_delivery(data: bytes, emt_enc_key: KeyHandle, emt_enc_cert: x509.Certificate,
                  validator: PathValidator | CertificateValidator, *,
                  max_size: int = DEFAULT_MAX_DELIVERY,
                  at: datetime | None = None) -> OpenedDelivery:
    """Decrypt, verify and validate a sealed delivery (the EMT's side).

    The signer certificate is validated as ``gateway-sig`` at ``at`` (default: the validator's
    clock), CRL included, with any certificates the message carries as chain; its identifier
    must equal the delivery's ``gatewayId``. A missing signing time is ``MALFORMED``.
    """
    if len(data) > max_size:
        raise DeliveryRejected(DeliveryReason.TOO_LARGE, f"delivery longer than {max_size}",
                               size=len(data))
    received_digest = digest(data)
    try:
        opened = cms.open_sealed(data, emt_enc_key, emt_enc_cert, max_size=max_size)
    except (CmsRejected, KeyRejected) as exc:
        reason = _CMS_REASON.get(exc.reason.value, DeliveryReason.MALFORMED)
        raise DeliveryRejected(reason, f"envelope refused: {exc.message}", cms=exc.reason.value,
                               digest=received_digest.hex()) from exc
    delivery = Delivery.decode(opened.content)
    try:
        path = validator.validate(opened.signer_certificate, profile="gateway-sig", at=at)
    except CertificateRejected as exc:
        reason = (DeliveryReason.REVOKED if exc.reason.value == "revoked"
                  else DeliveryReason.UNTRUSTED_SIGNER)
        raise DeliveryRejected(reason, f"signer certificate refused: {exc.message}",
                               gateway=delivery.gateway_id, cause=exc.reason.value,
                               serial=f"{opened.signer_certificate.serial_number:x}") from exc
    if path.identifier != delivery.gateway_id:
        raise DeliveryRejected(DeliveryReason.SIGNER_MISMATCH, "signed by another gateway",
                               gateway=delivery.gateway_id, signer=path.identifier)
    if opened.signing_time is None:
        raise DeliveryRejected(DeliveryReason.MALFORMED, "no signing time",
                               gateway=delivery.gateway_id)
    return OpenedDelivery(delivery, path, opened.signing_time, received_digest, len(data))


# --------------------------------------------------------------------------- batches

#: Several sealed deliveries in one request (relays, bulk senders); answered by one batch
#: receipt (:func:`imsys.wire.receipt.issue_batch_receipt`).
BATCH_PATH = "/deliveries/v1/batch"
BATCH_MEDIA_TYPE = "application/vnd.imsys.delivery-batch+der"
#: At most this many deliveries per batch request.
MAX_BATCH_ITEMS = 256


class _Batch(core.SequenceOf):
    _child_spec = core.OctetString


def encode_batch(sealed: Sequence[bytes]) -> bytes:
    """``DeliveryBatch ::= SEQUENCE SIZE (1..256) OF OCTET STRING`` (each a sealed delivery,
    unchanged), DER."""
    if not 1 <= len(sealed) <= MAX_BATCH_ITEMS:
        raise UsageError(f"a batch holds 1 to {MAX_BATCH_ITEMS} deliveries")
    return _Batch([core.OctetString(item) for item in sealed]).dump()


def decode_batch(data: bytes, *, max_items: int = MAX_BATCH_ITEMS,
                 max_size: int = DEFAULT_MAX_DELIVERY) -> list[bytes]:
    """The sealed deliveries of a ``DeliveryBatch``; not DER, empty, more than ``max_items``
    or longer than ``max_size`` in all is ``MALFORMED`` / ``TOO_LARGE``."""
    if len(data) > max_size:
        raise DeliveryRejected(DeliveryReason.TOO_LARGE, f"batch longer than {max_size}",
                               size=len(data))
    try:
        parsed = _Batch.load(data, strict=True)
        items = [bytes(item.native) for item in parsed]
        if parsed.dump(force=True) != data:
            raise ValueError("not DER")
    except (ValueError, TypeError) as exc:
        raise DeliveryRejected(DeliveryReason.MALFORMED, f"not a DeliveryBatch: {exc}"
                               ) from None
    if not 1 <= len(items) <= max_items:
        raise DeliveryRejected(DeliveryReason.MALFORMED,
                               f"a batch holds 1 to {max_items} deliveries", items=len(items))
    return items


# --------------------------------------------------------------------------- relay

#: Where a relay (a TLS endpoint operator that is not the final recipient, seed 003 step 3.3)
#: takes deliveries: ``POST /relay/v1``, ``Content-Type: application/cms``.
RELAY_PATH = "/relay/v1"


class _ImsysRelay(core.Sequence):
    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("version", core.Integer),
        ("delivery_id", core.OctetString),
        ("gateway_id", core.UTF8String),
        ("final_recipient", core.UTF8String),
        ("remove_signature", core.Boolean),
        ("content", core.OctetString),
    ]


@dataclass(frozen=True, slots=True)
class RelayedDelivery:
    """What a relay learns from a delivery for another recipient: enough to check the gateway's
    signature and forward ``content`` (still encrypted for the final recipient) unchanged."""

    delivery_id: uuid.UUID
    gateway_id: str
    final_recipient: str
    remove_signature: bool
    content: bytes  # forwarded as is: a sealed delivery, or (signature removed) encrypted only
    signer: ValidatedPath
    signing_time: datetime
    digest: bytes  # SHA-256 of the bytes the relay received


def seal_for_relay(delivery: Delivery, signer: KeyHandle, signer_certificate: x509.Certificate,
                   final_recipient: x509.Certificate, final_recipient_id: str, *,
                   remove_signature: bool = False) -> bytes:
    """A delivery for ``final_recipient`` sent through a relay (seed 003 steps 3.3.1–3.3.2)::

        SignedData_gateway(ImsysRelay {                 -- checked, then dropped, by the relay
            version 1, deliveryId, gatewayId, finalRecipient, removeSignature,
            content })                                  -- forwarded unchanged

    ``content`` is the sealed delivery for the final recipient; with ``remove_signature``
    (pseudonymised data, seed 003 step 3.3.3: "removal of the signature serves
    pseudonymisation") it is ``AuthEnvelopedData(ImsysDelivery)`` without the gateway's
    signature, so the final recipient cannot tell which gateway sent it – it relies on the
    relay's check instead.
    """
    _check_id(final_recipient_id, "final recipient id")
    if remove_signature:
        if not delivery.pseudonymised:
            raise UsageError("the signature is removed only for pseudonymised data")
        content = cms.encrypt(delivery.encode(), [final_recipient])
    else:
        content = seal_delivery(delivery, signer, signer_certificate, final_recipient)
    relay = _ImsysRelay({"version": PROFILE_VERSION, "delivery_id": delivery.delivery_id.bytes,
                         "gateway_id": delivery.gateway_id,
                         "final_recipient": final_recipient_id,
                         "remove_signature": remove_signature, "content": content}).dump()
    return cms.sign(relay, signer, signer_certificate, signing_time=delivery.created)


def open_relayed(data: bytes, validator: PathValidator | CertificateValidator, *,
                 max_size: int = DEFAULT_MAX_DELIVERY) -> RelayedDelivery:
    """The relay's check (seed 003 step 3.3.3): the gateway's signature, its SIG certificate as
    ``gateway-sig`` with the CRL, signer = ``gatewayId``; the content stays encrypted."""
    if len(data) > max_size:
        raise DeliveryRejected(DeliveryReason.TOO_LARGE, f"delivery longer than {max_size}",
                               size=len(data))
    received_digest = digest(data)
    try:
        verified = cms.verify(data, max_size=max_size)
    except (CmsRejected, KeyRejected) as exc:
        reason = _CMS_REASON.get(exc.reason.value, DeliveryReason.MALFORMED)
        raise DeliveryRejected(reason, f"relay envelope refused: {exc.message}",
                               cms=exc.reason.value, digest=received_digest.hex()) from exc
    try:
        parsed = _ImsysRelay.load(verified.content, strict=True)
        native = parsed.native
        if parsed.dump(force=True) != verified.content:
            raise ValueError("not DER")
        if native["version"] != PROFILE_VERSION or len(native["delivery_id"]) != 16:
            raise ValueError("unknown version or bad deliveryId")
        gateway_id, final_recipient = native["gateway_id"], native["final_recipient"]
        _check_id(gateway_id, "gateway id")
        _check_id(final_recipient, "final recipient id")
    except (ValueError, TypeError, KeyError, UsageError) as exc:
        raise DeliveryRejected(DeliveryReason.MALFORMED, f"not an ImsysRelay: {exc}") from None
    try:
        path = validator.validate(verified.signer_certificate, profile="gateway-sig")
    except CertificateRejected as exc:
        reason = (DeliveryReason.REVOKED if exc.reason.value == "revoked"
                  else DeliveryReason.UNTRUSTED_SIGNER)
        raise DeliveryRejected(reason, f"signer certificate refused: {exc.message}",
                               gateway=gateway_id, cause=exc.reason.value) from exc
    if path.identifier != gateway_id:
        raise DeliveryRejected(DeliveryReason.SIGNER_MISMATCH, "signed by another gateway",
                               gateway=gateway_id, signer=path.identifier)
    if verified.signing_time is None:
        raise DeliveryRejected(DeliveryReason.MALFORMED, "no signing time", gateway=gateway_id)
    return RelayedDelivery(uuid.UUID(bytes=native["delivery_id"]), gateway_id, final_recipient,
                           bool(native["remove_signature"]), native["content"], path,
                           verified.signing_time, received_digest)


def open_unsigned_delivery(data: bytes, emt_enc_key: KeyHandle, emt_enc_cert: x509.Certificate,
                           *, max_size: int = DEFAULT_MAX_DELIVERY) -> Delivery:
    """The final recipient's side of a relayed delivery whose signature the relay removed:
    decrypt, parse; it must be pseudonymised (``UNSIGNED`` otherwise). Whether to accept it at
    all is the caller's decision (only from a relay it trusts)."""
    if len(data) > max_size:
        raise DeliveryRejected(DeliveryReason.TOO_LARGE, f"delivery longer than {max_size}",
                               size=len(data))
    try:
        decrypted = cms.decrypt(data, emt_enc_key, emt_enc_cert, max_size=max_size)
    except (CmsRejected, KeyRejected) as exc:
        reason = _CMS_REASON.get(exc.reason.value, DeliveryReason.MALFORMED)
        raise DeliveryRejected(reason, f"envelope refused: {exc.message}",
                               cms=exc.reason.value) from exc
    if decrypted.content_type != _ID_DATA:
        raise DeliveryRejected(DeliveryReason.MALFORMED, "encrypted content is not id-data",
                               content_type=decrypted.content_type)
    delivery = Delivery.decode(decrypted.content)
    if not delivery.pseudonymised:
        raise DeliveryRejected(DeliveryReason.UNSIGNED,
                               "an unsigned delivery must be pseudonymised",
                               gateway=delivery.gateway_id)
    return delivery


_ID_DATA = "1.2.840.113549.1.7.1"
