"""The firmware package: a manifest signed by the gateway manufacturer, and the image.

Layout of a package file (``imsys-firmware/1``, docs/firmware.md)::

    b"IMFW" | u32 big-endian n | ContentInfo(SignedData(manifest)) (n bytes) | image bytes

The manifest is canonical JSON (keys sorted, no whitespace)::

    {"format":"imsys-firmware/1","product":"imsys-smgw","version":"1.4.0",
     "size":123456,"digest":"sha256:<64 hex>","created":"2026-11-01T12:00:00Z"}

It is signed (CMS SignedData, signer certificate embedded) with a **manufacturer SIG**
certificate of the SM-PKI (profile ``manufacturer-sig``, extended key usage codeSigning).
:func:`verify_package` checks, in this order: framing → CMS signature → signer path against
the SM-PKI (CRLs, profile) → manifest shape → image size and SHA-256 against the manifest.
Each failure is a :class:`FirmwareRejected` with a :class:`FirmwareReason`.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from cryptography import x509

from imsys.core.errors import CertificateRejected, CmsRejected, Rejected, UsageError
from imsys.crypto import cms
from imsys.crypto.primitives import KeyHandle
from imsys.pki.validation import PathValidator

__all__ = ["FORMAT", "MAGIC", "MAX_IMAGE_SIZE", "FirmwareReason", "FirmwareRejected",
           "Manifest", "VerifiedPackage", "build_package", "package_digest", "split_package",
           "verify_package"]

FORMAT = "imsys-firmware/1"
MAGIC = b"IMFW"
MAX_IMAGE_SIZE = 256 * 1024 * 1024
MAX_MANIFEST = 64 * 1024
SIGNER_PROFILE = "manufacturer-sig"
_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+([-+][A-Za-z0-9.]{1,32})?$")
_PRODUCT = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")


class FirmwareReason(StrEnum):
    MALFORMED = "malformed"  # framing, manifest JSON, sizes
    BAD_SIGNATURE = "bad-signature"  # CMS signature does not verify
    UNTRUSTED_SIGNER = "untrusted-signer"  # signer not a valid manufacturer-sig certificate
    DIGEST_MISMATCH = "digest-mismatch"  # image or package digest differs
    VERSION_MISMATCH = "version-mismatch"  # manifest version is not the ordered one
    WRONG_PRODUCT = "wrong-product"
    DOWNLOAD_FAILED = "download-failed"  # connection, HTTP status or size limit


class FirmwareRejected(Rejected):
    """A firmware package was refused; ``reason`` is a :class:`FirmwareReason`."""

    reason: FirmwareReason  # type: ignore[assignment]

    def __init__(self, reason: FirmwareReason, message: str = "", **context: Any) -> None:
        super().__init__(cast(Any, reason), message, **context)


@dataclass(frozen=True)
class Manifest:
    product: str
    version: str
    size: int
    digest: str  # "sha256:<hex>"
    created: datetime

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "product": self.product, "version": self.version,
                "size": self.size, "digest": self.digest,
                "created": self.created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        def bad(why: str) -> FirmwareRejected:
            return FirmwareRejected(FirmwareReason.MALFORMED, f"manifest: {why}")

        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise bad("not JSON") from None
        keys = {"format", "product", "version", "size", "digest", "created"}
        if not isinstance(obj, dict) or set(obj) != keys or obj["format"] != FORMAT:
            raise bad(f"not an {FORMAT} manifest")
        if not isinstance(obj["product"], str) or not _PRODUCT.match(obj["product"]):
            raise bad("bad product")
        if not isinstance(obj["version"], str) or not _VERSION.match(obj["version"]):
            raise bad("bad version")
        if type(obj["size"]) is not int or not 0 < obj["size"] <= MAX_IMAGE_SIZE:
            raise bad("bad size")
        if not isinstance(obj["digest"], str) or not _DIGEST.match(obj["digest"]):
            raise bad("bad digest")
        if not isinstance(obj["created"], str) or not _TIME.match(obj["created"]):
            raise bad("bad creation time")
        manifest = cls(obj["product"], obj["version"], obj["size"], obj["digest"],
                       datetime.fromisoformat(obj["created"][:-1]).replace(tzinfo=UTC))
        if manifest.encode() != data:
            raise bad("not canonical JSON")
        return manifest


@dataclass(frozen=True)
class VerifiedPackage:
    manifest: Manifest
    image: bytes
    signer: x509.Certificate


def sha256_text(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def package_digest(package: bytes) -> str:
    """What a ``firmware.update`` command names: the SHA-256 of the whole package file."""
    return sha256_text(package)


def build_package(image: bytes, version: str, signer: KeyHandle,
                  signer_certificate: x509.Certificate, *, product: str = "imsys-smgw",
                  created: datetime | None = None,
                  chain: tuple[x509.Certificate, ...] = ()) -> bytes:
    """Manufacturer side: the signed package for ``image``."""
    if not image or len(image) > MAX_IMAGE_SIZE:
        raise UsageError(f"an image has 1..{MAX_IMAGE_SIZE} bytes")
    if not _VERSION.match(version) or not _PRODUCT.match(product):
        raise UsageError("bad version or product name")
    when = (created or datetime.now(UTC)).replace(microsecond=0)
    manifest = Manifest(product, version, len(image), sha256_text(image), when)
    signed = cms.sign(manifest.encode(), signer, signer_certificate,
                      extra_certificates=chain, signing_time=when)
    return MAGIC + struct.pack(">I", len(signed)) + signed + image


def split_package(package: bytes) -> tuple[bytes, bytes]:
    """``(signed manifest, image)``; ``MALFORMED`` when the framing is wrong."""
    if len(package) < 8 or package[:4] != MAGIC:
        raise FirmwareRejected(FirmwareReason.MALFORMED, "not an imsys firmware package")
    (length,) = struct.unpack(">I", package[4:8])
    if not 0 < length <= MAX_MANIFEST or len(package) < 8 + length:
        raise FirmwareRejected(FirmwareReason.MALFORMED, "bad manifest length")
    return package[8:8 + length], package[8 + length:]


def verify_package(package: bytes, validator: PathValidator, *, product: str = "imsys-smgw",
                   at: datetime | None = None) -> VerifiedPackage:
    """Check a package completely (see the module docstring); no side effects."""
    signed, image = split_package(package)
    try:
        verified = cms.verify(signed, max_size=MAX_MANIFEST + 16384)
    except CmsRejected as exc:
        raise FirmwareRejected(FirmwareReason.BAD_SIGNATURE,
                               f"manifest signature: {exc.message}",
                               cause=exc.reason.value) from None
    try:
        validator.validate(verified.signer_certificate, profile=SIGNER_PROFILE, at=at)
    except CertificateRejected as exc:
        raise FirmwareRejected(FirmwareReason.UNTRUSTED_SIGNER,
                               f"signer is no valid manufacturer SIG certificate: {exc.message}",
                               cause=exc.reason.value) from None
    manifest = Manifest.decode(verified.content)
    if manifest.product != product:
        raise FirmwareRejected(FirmwareReason.WRONG_PRODUCT,
                               f"package for {manifest.product}, not {product}")
    if len(image) != manifest.size or sha256_text(image) != manifest.digest:
        raise FirmwareRejected(FirmwareReason.DIGEST_MISMATCH,
                               "image does not match the signed manifest")
    return VerifiedPackage(manifest, image, verified.signer_certificate)
