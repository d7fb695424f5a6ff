"""CMS for the intelligent metering system: sign, encrypt for a recipient, and both (seal).

RFC 5652 (SignedData, EnvelopedData), RFC 5083/5084 (AuthEnvelopedData with AES-GCM) and
RFC 5753 (ECC key agreement), restricted to the TR-03116-3 curves brainpoolP256r1/P384r1/P512r1.
Signing and key agreement go through a :class:`~imsys.crypto.primitives.KeyHandle`, so the
gateway's private keys never leave its security module. The functions take and return bytes
and never read the clock: the signing time is an argument. Messages are read with the
object-free DER reader of :mod:`imsys.crypto._cms_der` (opening a sealed message must cost
little more than its ECDH and ECDSA verification); asn1crypto supplies OID names.

Emitted
    * ``ContentInfo`` → ``SignedData``: version 1 (3 if the content type is not id-data), one
      ``SignerInfo`` (version 1, ``IssuerAndSerialNumber``), digest SHA-256/384/512 matched to
      the signer's curve with absent parameters (RFC 5754), ``ecdsa-with-SHA256/384/512``;
      signed attributes contentType, messageDigest and, when a time is given, signingTime
      (UTCTime for 1950–2049, GeneralizedTime otherwise, whole seconds); the signer
      certificate and any extra certificates in ``certificates``.
    * ``AuthEnvelopedData`` (version 0, no authAttrs) with id-aes128-GCM / id-aes256-GCM
      (GCMParameters: 12-octet nonce, ICV 16), or ``EnvelopedData`` (version 2) with
      id-aes128-CBC / id-aes256-CBC.
    * one ``KeyAgreeRecipientInfo`` (version 3) per recipient: a fresh ephemeral key on the
      recipient's curve as ``OriginatorPublicKey`` (id-ecPublicKey, parameters absent), no ukm,
      key encryption dhSinglePass-stdDH-sha256/384/512kdf-scheme (1.3.132.1.11.1/.2/.3, hash
      matched to the curve) whose parameter is id-aes128-wrap / id-aes256-wrap (matched to the
      content key), X9.63 KDF over ECC-CMS-SharedInfo (keyInfo = the wrap AlgorithmIdentifier,
      suppPubInfo = KEK bits), ``rid`` = ``IssuerAndSerialNumber``.
    * sealed: ``AuthEnvelopedData`` (or, on request, ``EnvelopedData``) whose encrypted
      content type is id-signedData and whose plaintext is the DER ``SignedData`` (content
      attached).

Accepted
    * everything emitted; BER with indefinite lengths and constructed OCTET STRINGs as
      streaming encoders write them (``openssl cms -stream``);
    * ``SignerIdentifier`` and recipient ``rid`` by ``IssuerAndSerialNumber`` (compared
      octet for octet with the certificate's issuer and serial, as senders copy them) or by
      subject key identifier (``rKeyId``);
    * AlgorithmIdentifiers without parameters in DER, parameters absent or NULL;
    * no signed attributes (``openssl cms -noattr``) for id-data content;
    * KDF schemes dhSinglePass-stdDH-sha1kdf (1.3.133.16.840.63.0.2, OpenSSL's default) and
      -sha224/256/384/512kdf (1.3.132.1.11.0–3); key wrap id-aes128/192/256-wrap; ukm; the
      originator key's curve absent, NULL or named; GCM ICV lengths 12–16;
    * sealed messages whose inner content type is id-signedData, or id-data holding a DER
      ``ContentInfo(SignedData)`` (what ``openssl cms -sign | openssl cms -encrypt`` makes).

Refused, each with a :class:`~imsys.core.errors.Reason`
    * as :class:`~imsys.core.errors.CmsRejected`: ``TRUNCATED`` input, ``MALFORMED``
      encodings (also several SignerInfos unless the expected signer is named, and messages
      above ``max_size``), ``WRONG_CONTENT_TYPE``, ``TAMPERED`` (content or messageDigest,
      contentType attribute, GCM tag, CBC padding), ``WRONG_RECIPIENT`` (no entry for the
      certificate, or key unwrap fails), ``SIGNER_MISMATCH``, ``UNSUPPORTED_ALGORITHM`` (a
      digest or signature hash other than the one matched to the signer's curve, AES-192
      content, static-static or cofactor ECDH, unknown KDF or key wrap);
    * as :class:`~imsys.core.errors.KeyRejected` from the primitives: keys off the permitted
      curves (``WRONG_CURVE``), invalid points (``MALFORMED``), signatures that do not verify
      (``BAD_SIGNATURE``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import NamedTuple, TypeAlias

from asn1crypto.cms import ContentType
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imsys.core.errors import CmsRejected, KeyRejected, Reason, UsageError
from imsys.crypto import _cms_der as der
from imsys.crypto._cms_der import (
    BIT_STRING,
    CTX_0,
    CTX_0_PRIMITIVE,
    CTX_1,
    CTX_2,
    GENERALIZED_TIME,
    INTEGER,
    OCTET_STRING,
    OID,
    SEQUENCE,
    SET,
    UTC_TIME,
)
from imsys.crypto.primitives import (
    CURVES,
    CurveProfile,
    KeyHandle,
    SoftwareKey,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    aes_gcm_decrypt,
    aes_gcm_encrypt,
    aes_key_wrap,
    check_public_key,
    curve_profile,
    ecdsa_verifier,
    public_key_bytes,
    public_key_from_point,
    random_bytes,
    x963_kdf,
)

__all__ = [
    "DATA",
    "DEFAULT_MAX_SIZE",
    "SIGNED_DATA",
    "Decrypted",
    "Opened",
    "Verified",
    "decrypt",
    "encrypt",
    "open_sealed",
    "seal",
    "sign",
    "verify",
]

#: Content types, dotted (as results report them).
DATA = "1.2.840.113549.1.7.1"
SIGNED_DATA = "1.2.840.113549.1.7.2"

#: Messages longer than this are refused before parsing.
DEFAULT_MAX_SIZE = 16 * 1024 * 1024

_DATA = der.oid(DATA)
_SIGNED_DATA = der.oid(SIGNED_DATA)
_ENVELOPED_DATA = der.oid("1.2.840.113549.1.7.3")
_AUTH_ENVELOPED_DATA = der.oid("1.2.840.113549.1.9.16.1.23")

_ATTR_CONTENT_TYPE = der.oid("1.2.840.113549.1.9.3")
_ATTR_MESSAGE_DIGEST = der.oid("1.2.840.113549.1.9.4")
_ATTR_SIGNING_TIME = der.oid("1.2.840.113549.1.9.5")

_EC_PUBLIC_KEY = der.oid("1.2.840.10045.2.1")

# hash name → (digest OID, ecdsa-with-SHA* OID, dhSinglePass-stdDH-sha*kdf-scheme OID)
_HASH_OIDS = {
    "sha256": ("2.16.840.1.101.3.4.2.1", "1.2.840.10045.4.3.2", "1.3.132.1.11.1"),
    "sha384": ("2.16.840.1.101.3.4.2.2", "1.2.840.10045.4.3.3", "1.3.132.1.11.2"),
    "sha512": ("2.16.840.1.101.3.4.2.3", "1.2.840.10045.4.3.4", "1.3.132.1.11.3"),
}
# Algorithms without parameters are emitted as DER AlgorithmIdentifiers with the parameters
# absent and recognised by their whole encoding, parameters absent or NULL.
_DIGEST = {name: der.algorithm_id(der.oid(oids[0])) for name, oids in _HASH_OIDS.items()}
_ECDSA = {name: der.algorithm_id(der.oid(oids[1])) for name, oids in _HASH_OIDS.items()}
_KDF_OID = {name: der.oid(oids[2]) for name, oids in _HASH_OIDS.items()}
_DIGEST_NAME = der.parameterless({der.oid(oids[0]): name for name, oids in _HASH_OIDS.items()})
_ECDSA_NAME = der.parameterless({der.oid(oids[1]): name for name, oids in _HASH_OIDS.items()})
#: KDF schemes accepted on decryption, with their hash.
_KDF_HASH: dict[bytes, type[hashes.HashAlgorithm]] = {
    der.oid("1.3.133.16.840.63.0.2"): hashes.SHA1,
    der.oid("1.3.132.1.11.0"): hashes.SHA224,
    der.oid("1.3.132.1.11.1"): hashes.SHA256,
    der.oid("1.3.132.1.11.2"): hashes.SHA384,
    der.oid("1.3.132.1.11.3"): hashes.SHA512,
}
#: AES key wrap by KEK length in octets (accepted: all three; emitted: 16 and 32).
_WRAP_OID = {16: der.oid("2.16.840.1.101.3.4.1.5"), 24: der.oid("2.16.840.1.101.3.4.1.25"),
             32: der.oid("2.16.840.1.101.3.4.1.45")}
_WRAP = {length: der.algorithm_id(oid) for length, oid in _WRAP_OID.items()}
_WRAP_LENGTH = der.parameterless({oid: length for length, oid in _WRAP_OID.items()})
#: AlgorithmIdentifiers of an originator key → the curve it names (None: the recipient's).
_ORIGINATOR_KEY: dict[bytes, str | None] = {
    **der.parameterless({_EC_PUBLIC_KEY: None}),
    **{der.algorithm_id(_EC_PUBLIC_KEY, der.tlv(OID, der.oid(curve.oid))): curve.name
       for curve in CURVES.values()},
}
#: Content-encryption OIDs and their key lengths in octets.
_GCM_OID = {16: der.oid("2.16.840.1.101.3.4.1.6"), 32: der.oid("2.16.840.1.101.3.4.1.46")}
_CBC_OID = {16: der.oid("2.16.840.1.101.3.4.1.2"), 32: der.oid("2.16.840.1.101.3.4.1.42")}
_GCM_LENGTH = {oid: length for length, oid in _GCM_OID.items()}
_CBC_LENGTH = {oid: length for length, oid in _CBC_OID.items()}
_GCM_NONCE_LENGTH = 12
_GCM_ICV_LENGTH = 16

_SIGNED_ATTRS = CTX_0  # SignerInfo.signedAttrs [0] IMPLICIT SET OF Attribute


@dataclass(frozen=True, slots=True)
class Verified:
    """A SignedData whose signature, messageDigest and contentType attribute checked out.

    ``signer_certificate`` is the certificate the signature verified against; validating its
    certification path is the PKI layer's task. ``signing_time`` is None if the signer sent none.
    """

    content: bytes
    content_type: str
    signer_certificate: x509.Certificate
    signing_time: datetime | None


#: What :func:`open_sealed` returns: the verified content of the inner SignedData.
Opened: TypeAlias = Verified


@dataclass(frozen=True, slots=True)
class Decrypted:
    """The plaintext of an (Auth)EnvelopedData and its content type (dotted OID)."""

    content: bytes
    content_type: str


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True, slots=True)
class _Party:
    """What CMS needs from a certificate, computed once per certificate."""

    certificate: x509.Certificate
    issuer_and_serial: bytes  # contents of IssuerAndSerialNumber, octets as in the certificate
    key_id: bytes | None  # SubjectKeyIdentifier
    public_key: ec.EllipticCurvePublicKey | None  # None unless on a permitted curve
    profile: CurveProfile | None
    key_problem: str  # why public_key is None
    verify: Callable[[bytes, bytes], None] | None  # ecdsa_verifier(public_key)

    def named_by(self, tag: int, value: bytes) -> bool:
        """Whether a SignerIdentifier / KeyAgreementRecipientIdentifier names this party."""
        if tag == SEQUENCE:
            return value == self.issuer_and_serial
        return self.key_id is not None and value == self.key_id

    def key(self) -> tuple[ec.EllipticCurvePublicKey, CurveProfile]:
        """The certified key and its curve profile; ``KeyRejected(WRONG_CURVE)`` if refused."""
        if self.public_key is None or self.profile is None:
            raise KeyRejected(Reason.WRONG_CURVE, self.key_problem,
                              serial=self.certificate.serial_number)
        return self.public_key, self.profile


@lru_cache(maxsize=256)
def _party(certificate_der: bytes) -> _Party:
    """The :class:`_Party` of a DER certificate (cached: signers and recipients recur)."""
    try:
        certificate = x509.load_der_x509_certificate(certificate_der)
    except (ValueError, x509.InvalidVersion) as exc:
        raise CmsRejected(Reason.MALFORMED, "unreadable certificate") from exc
    start, stop, _ = der.take(certificate_der, 0, len(certificate_der), SEQUENCE)
    start, stop, _ = der.take(certificate_der, start, stop, SEQUENCE)  # tbsCertificate
    pos = der.skip(certificate_der, start, stop, CTX_0)  # version
    serial, pos = der.raw(certificate_der, pos, stop, INTEGER)
    pos = der.take(certificate_der, pos, stop, SEQUENCE)[2]  # signature algorithm
    issuer = der.raw(certificate_der, pos, stop, SEQUENCE)[0]
    try:
        key_id: bytes | None = certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        key_id = None
    except (ValueError, x509.DuplicateExtension) as exc:
        raise CmsRejected(Reason.MALFORMED, "unreadable certificate extensions",
                          serial=certificate.serial_number) from exc
    public_key: ec.EllipticCurvePublicKey | None = None
    problem = ""
    try:
        public_key = check_public_key(certificate.public_key())
    except (ValueError, UnsupportedAlgorithm):
        problem = "unsupported public key algorithm"
    except KeyRejected as exc:
        problem = exc.message
    profile = verify = None
    if public_key is not None:
        profile = curve_profile(public_key)
        verify = ecdsa_verifier(public_key)
    return _Party(certificate, issuer + serial, key_id, public_key, profile, problem, verify)


_PARTY_BY_OBJECT: dict[int, tuple[x509.Certificate, _Party]] = {}


def _party_of(certificate: x509.Certificate) -> _Party:
    """:func:`_party` for a certificate object.

    Callers pass the same certificate object message after message (their own, or the
    expected signer's); remembering it by identity saves re-encoding it every time. The entry
    keeps the object alive, so its id cannot be reused while it is cached.
    """
    entry = _PARTY_BY_OBJECT.get(id(certificate))
    if entry is not None and entry[0] is certificate:
        return entry[1]
    party = _party(certificate.public_bytes(serialization.Encoding.DER))
    if len(_PARTY_BY_OBJECT) >= 256:
        _PARTY_BY_OBJECT.clear()
    _PARTY_BY_OBJECT[id(certificate)] = (certificate, party)
    return party


# --------------------------------------------------------------------------- helpers


@lru_cache(maxsize=32)
def _content_type_oid(content_type: str) -> bytes:
    try:
        return der.oid(ContentType(content_type).dotted)
    except ValueError as exc:
        raise UsageError(f"unknown content type {content_type!r}") from exc


def _content_info(content_type: bytes, content: bytes) -> bytes:
    return der.sequence(der.tlv(OID, content_type), der.tlv(CTX_0, content))


def _read_content_info(data: bytes, max_size: int) -> tuple[bytes, int, int]:
    """The content type of a ContentInfo and the bounds of its (explicitly tagged) content."""
    end = len(data)
    if end > max_size:
        raise CmsRejected(Reason.MALFORMED, "message exceeds the size limit", size=end,
                          max_size=max_size)
    start, stop, pos = der.take(data, 0, end, SEQUENCE)
    if pos != end:
        raise der.trailing(pos)
    content_type, pos = der.value(data, start, stop, OID)
    start, end, pos = der.take(data, pos, stop, CTX_0)
    if pos != stop:
        raise der.trailing(pos)
    return content_type, start, end


def _encode_time(when: datetime) -> bytes:
    if when.tzinfo is None:
        raise UsageError("signing_time must be timezone-aware")
    when = when.astimezone(UTC)
    if 1950 <= when.year < 2050:
        return der.tlv(UTC_TIME, when.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return der.tlv(GENERALIZED_TIME, when.strftime("%Y%m%d%H%M%SZ").encode("ascii"))


def _decode_time(buf: bytes, pos: int, end: int) -> datetime:
    """The value of a signingTime attribute (the contents of its SET at ``pos:end``): UTCTime
    or GeneralizedTime in the DER form RFC 5652 prescribes."""
    tag = buf[pos] if pos < end else -1
    text = b""
    if tag in (UTC_TIME, GENERALIZED_TIME):
        text, pos = der.value(buf, pos, end, tag)
    if pos != end:
        raise der.trailing(pos)
    if tag == UTC_TIME and len(text) == 13:
        text = (b"20" if text[:2] < b"50" else b"19") + text
    elif tag == UTC_TIME:
        text = b""
    if len(text) != 15 or not text[:14].isdigit() or text[14:] != b"Z":
        raise CmsRejected(Reason.MALFORMED, "signingTime is not a DER UTCTime/GeneralizedTime")
    try:
        return datetime.fromisoformat((text[:8] + b"T" + text[8:]).decode("ascii"))
    except ValueError as exc:
        raise CmsRejected(Reason.MALFORMED, "signingTime out of range") from exc


def _attribute(attr_type: bytes, value: bytes) -> bytes:
    return der.sequence(der.tlv(OID, attr_type), der.set_of(value))


# --------------------------------------------------------------------------- SignedData


def _signed_data(content: bytes, signer: KeyHandle, certificate: x509.Certificate, *,
                 detached: bool, content_type: str,
                 extra_certificates: Sequence[x509.Certificate],
                 signing_time: datetime | None) -> bytes:
    """The DER SignedData (without ContentInfo) of ``content`` signed by ``signer``."""
    party = _party_of(certificate)
    key, profile = party.key()
    if signer.public_key() != key:
        raise UsageError("the certificate does not carry the signer key's public key")
    hash_name = profile.hash.name
    econtent_type = _content_type_oid(content_type)
    digest = _HASHLIB[hash_name](content).digest()
    attributes = [
        _attribute(_ATTR_CONTENT_TYPE, der.tlv(OID, econtent_type)),
        _attribute(_ATTR_MESSAGE_DIGEST, der.octet_string(digest)),
    ]
    if signing_time is not None:
        attributes.append(_attribute(_ATTR_SIGNING_TIME, _encode_time(signing_time)))
    signed_attrs = der.set_of(*attributes)
    signer_info = der.sequence(
        der.integer(1),
        der.tlv(SEQUENCE, party.issuer_and_serial),
        _DIGEST[hash_name],
        bytes((_SIGNED_ATTRS,)) + signed_attrs[1:],
        _ECDSA[hash_name],
        der.octet_string(signer.sign(signed_attrs)),
    )
    encap = [der.tlv(OID, econtent_type)]
    if not detached:
        encap.append(der.tlv(CTX_0, der.octet_string(content)))
    certificates = [c.public_bytes(serialization.Encoding.DER)
                    for c in (certificate, *extra_certificates)]
    return der.sequence(
        der.integer(1 if econtent_type == _DATA else 3),
        der.set_of(_DIGEST[hash_name]),
        der.sequence(*encap),
        der.set_of(*certificates, tag=CTX_0),
        der.set_of(signer_info),
    )


def sign(content: bytes, signer: KeyHandle, certificate: x509.Certificate, *,
         detached: bool = False, content_type: str = "data",
         extra_certificates: Sequence[x509.Certificate] = (),
         signing_time: datetime | None = None) -> bytes:
    """DER ``ContentInfo(SignedData)`` over ``content``, signed by ``signer``.

    ``certificate`` must carry the signer's public key (``UsageError`` otherwise); it is
    embedded with ``extra_certificates``. ``content_type`` is an OID or an asn1crypto name
    ("data", "signed_data", …). ``signing_time`` (timezone-aware, whole seconds are kept)
    becomes the signingTime attribute; without it none is sent.
    """
    return _content_info(_SIGNED_DATA, _signed_data(
        content, signer, certificate, detached=detached, content_type=content_type,
        extra_certificates=extra_certificates, signing_time=signing_time))


#: A SignerInfo as read: (sid tag, sid contents, digestAlgorithm encoded, the signedAttrs [0]
#: element as received or None, signatureAlgorithm encoded, signature). A plain tuple: a
#: NamedTuple costs a Python-level constructor call per message.
_SignerInfo: TypeAlias = tuple[int, bytes, bytes, bytes | None, bytes, bytes]


def _read_signer_info(buf: bytes, pos: int, end: int) -> _SignerInfo:
    """The SignerInfo whose contents are ``buf[pos:end]``."""
    pos = der.take(buf, pos, end, INTEGER)[2]  # version: 1 for IssuerAndSerialNumber, 3 for SKI
    sid_tag, start, stop, pos = der.element(buf, pos, end)
    if sid_tag not in (SEQUENCE, CTX_0_PRIMITIVE):
        raise CmsRejected(Reason.MALFORMED, "unknown SignerIdentifier")
    digest, pos = der.raw(buf, pos, end, SEQUENCE)
    signed_attrs = None
    if pos < end and buf[pos] == _SIGNED_ATTRS:
        signed_attrs, pos = der.raw(buf, pos, end, _SIGNED_ATTRS)
    signature_algorithm, pos = der.raw(buf, pos, end, SEQUENCE)
    signature, pos = der.value(buf, pos, end, OCTET_STRING)
    pos = der.skip(buf, pos, end, CTX_1)  # unsignedAttrs
    if pos != end:
        raise der.trailing(pos)
    return sid_tag, buf[start:stop], digest, signed_attrs, signature_algorithm, signature


def _select_signer(buf: bytes, pos: int, end: int, expected: _Party | None) -> _SignerInfo:
    """The SignerInfo of ``expected`` or, if none is named, the one and only SignerInfo (in
    the SET OF SignerInfo whose contents are ``buf[pos:end]``)."""
    found = []
    while pos < end:
        start, stop, pos = der.take(buf, pos, end, SEQUENCE)
        info = _read_signer_info(buf, start, stop)
        if expected is None:
            found.append(info)
        elif expected.named_by(info[0], info[1]):
            return info
    if expected is not None:
        raise CmsRejected(Reason.SIGNER_MISMATCH, "the message is not signed by the expected "
                          "certificate", serial=expected.certificate.serial_number)
    if len(found) != 1:
        raise CmsRejected(Reason.MALFORMED, f"{len(found)} SignerInfos; name the expected "
                          "signer certificate")
    return found[0]


def _read_signed_attributes(raw: bytes) -> tuple[bytes, bytes, datetime | None]:
    """contentType, messageDigest and signingTime (if any) from the signed attributes."""
    pos, end = der.take(raw, 0, len(raw), _SIGNED_ATTRS)[:2]
    seen: dict[bytes, tuple[int, int]] = {}  # attribute type → bounds of its SET's contents
    while pos < end:
        attr_type, start, stop, pos = der.typed(raw, pos, end)
        values_start, values_stop, start = der.take(raw, start, stop, SET)
        if start != stop:
            raise der.trailing(start)
        if attr_type in seen:
            raise CmsRejected(Reason.MALFORMED, "duplicate signed attribute",
                              attribute=der.dotted(attr_type))
        seen[attr_type] = values_start, values_stop
    content_type = seen.get(_ATTR_CONTENT_TYPE)
    digest = seen.get(_ATTR_MESSAGE_DIGEST)
    if content_type is None or digest is None:
        raise CmsRejected(Reason.MALFORMED, "signed attributes lack contentType or messageDigest")
    start, stop = content_type
    econtent_type, start = der.value(raw, start, stop, OID)
    if start != stop:
        raise der.trailing(start)
    start, stop = digest
    message_digest, start = der.value(raw, start, stop, OCTET_STRING)
    if start != stop:
        raise der.trailing(start)
    time = seen.get(_ATTR_SIGNING_TIME)
    return econtent_type, message_digest, None if time is None else _decode_time(raw, *time)


_HASHLIB = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


def _verify_signed_data(buf: bytes, pos: int, end: int,
                        signer_certificate: x509.Certificate | None,
                        detached_content: bytes | None) -> Verified:
    """Verify the SignedData that is the only element in ``buf[pos:end]``."""
    start, stop, pos = der.take(buf, pos, end, SEQUENCE)
    if pos != end:
        raise der.trailing(pos)
    end = stop
    pos = der.take(buf, start, end, INTEGER)[2]  # version
    pos = der.take(buf, pos, end, SET)[2]  # digestAlgorithms: the SignerInfo names the one
    econtent_type, start, stop, pos = der.typed(buf, pos, end)  # encapContentInfo
    econtent = None
    if start < stop and buf[start] == CTX_0:
        inner, inner_stop, start = der.take(buf, start, stop, CTX_0)
        econtent, inner = der.octets(buf, inner, inner_stop)
        if inner != inner_stop:
            raise der.trailing(inner)
    if start != stop:
        raise der.trailing(start)
    certificates: list[tuple[int, int]] = []
    if pos < end and buf[pos] == CTX_0:
        start, stop, pos = der.take(buf, pos, end, CTX_0)
        while start < stop:
            tag, _, _, after = der.element(buf, start, stop)
            if tag == SEQUENCE:  # other CertificateChoices are not X.509
                certificates.append((start, after))
            start = after
    pos = der.skip(buf, pos, end, CTX_1)  # crls
    start, stop, pos = der.take(buf, pos, end, SET)  # signerInfos
    if pos != end:
        raise der.trailing(pos)

    expected = None if signer_certificate is None else _party_of(signer_certificate)
    sid_tag, sid, digest_algorithm, signed_attrs, signature_algorithm, signature = (
        _select_signer(buf, start, stop, expected))
    if expected is None:
        for begin, after in certificates:
            candidate = _party(buf[begin:after])
            if candidate.named_by(sid_tag, sid):
                expected = candidate
                break
        else:
            raise CmsRejected(Reason.SIGNER_MISMATCH, "the signer's certificate is neither "
                              "in the message nor given")

    profile = expected.key()[1]
    hash_name = profile.hash.name
    if _DIGEST_NAME.get(digest_algorithm) != hash_name:
        raise CmsRejected(Reason.UNSUPPORTED_ALGORITHM, f"digest must be {hash_name} for the "
                          "signer's curve", algorithm=der.algorithm_name(digest_algorithm))
    if _ECDSA_NAME.get(signature_algorithm) != hash_name:
        raise CmsRejected(Reason.UNSUPPORTED_ALGORITHM, f"signature must be ECDSA with "
                          f"{hash_name}", algorithm=der.algorithm_name(signature_algorithm))

    if econtent is None:
        if detached_content is None:
            raise CmsRejected(Reason.MALFORMED, "detached signature but no content given")
        content = detached_content
    elif detached_content is not None:
        raise CmsRejected(Reason.MALFORMED, "the message carries its content; it is not "
                          "detached")
    else:
        content = econtent
    digest = _HASHLIB[hash_name](content).digest()

    signing_time = None
    if signed_attrs is None:
        if econtent_type != _DATA:
            raise CmsRejected(Reason.MALFORMED, "signed attributes are required for content "
                              "other than id-data")
        signed_bytes = content
    else:
        attr_content_type, message_digest, signing_time = _read_signed_attributes(signed_attrs)
        if attr_content_type != econtent_type:
            raise CmsRejected(Reason.TAMPERED, "contentType attribute differs from the "
                              "encapsulated content type")
        if not hmac.compare_digest(message_digest, digest):
            raise CmsRejected(Reason.TAMPERED, "messageDigest does not match the content")
        signed_bytes = bytes((SET,)) + signed_attrs[1:]
    certificate = expected.certificate if signer_certificate is None else signer_certificate
    # built before the verification, which leaves the caches cold for whatever follows it
    verified = Verified(content, der.dotted(econtent_type), certificate, signing_time)
    expected.verify(signature, signed_bytes)  # type: ignore[misc]  # not None: key() passed
    return verified


def verify(data: bytes, *, signer_certificate: x509.Certificate | None = None,
           detached_content: bytes | None = None,
           max_size: int = DEFAULT_MAX_SIZE) -> Verified:
    """Verify a DER/BER ``ContentInfo(SignedData)``.

    With ``signer_certificate`` the message must be signed by it (else ``SIGNER_MISMATCH``);
    without, the signer's certificate must be in the message. ``detached_content`` is required
    exactly when the message does not carry its content.
    """
    content_type, start, end = _read_content_info(data, max_size)
    if content_type != _SIGNED_DATA:
        raise CmsRejected(Reason.WRONG_CONTENT_TYPE, "not a SignedData",
                          content_type=der.dotted(content_type))
    return _verify_signed_data(data, start, end, signer_certificate, detached_content)


# --------------------------------------------------------------------------- enveloping


def _shared_info(wrap_algorithm: bytes, ukm: bytes | None, kek_length: int) -> bytes:
    """DER ECC-CMS-SharedInfo (RFC 5753 §7.2), the X9.63 KDF's SharedInfo."""
    parts = [wrap_algorithm]
    if ukm is not None:
        parts.append(der.tlv(CTX_0, der.octet_string(ukm)))
    parts.append(der.tlv(CTX_2, der.octet_string((kek_length * 8).to_bytes(4, "big"))))
    return der.sequence(*parts)


class _Scheme(NamedTuple):
    """A key encryption algorithm: KDF scheme and key wrap."""

    kdf_hash: hashes.HashAlgorithm  # shared: hash algorithm objects hold no state
    wrap_algorithm: bytes  # the key wrap's AlgorithmIdentifier, keyInfo of the SharedInfo
    kek_length: int
    shared_info: bytes  # the SharedInfo when there is no ukm


#: Key encryption AlgorithmIdentifiers (a KDF scheme with its key wrap as parameter) accepted.
_KEY_ENCRYPTION = {
    der.algorithm_id(kdf, wrap): _Scheme(kdf_hash(), wrap, length,
                                         _shared_info(wrap, None, length))
    for kdf, kdf_hash in _KDF_HASH.items() for wrap, length in _WRAP_LENGTH.items()
}


def _recipient_info(party: _Party, cek: bytes) -> bytes:
    """A KeyAgreeRecipientInfo transporting ``cek`` to ``party`` (ephemeral-static ECDH)."""
    peer, profile = party.key()
    ephemeral = SoftwareKey.generate(profile.name)
    wrap_algorithm = _WRAP[len(cek)]
    kek = x963_kdf(ephemeral.exchange(peer), len(cek),
                   _shared_info(wrap_algorithm, None, len(cek)), profile.hash())
    originator_key = der.tlv(
        CTX_1,
        der.algorithm_id(_EC_PUBLIC_KEY),
        der.tlv(BIT_STRING, b"\x00", public_key_bytes(ephemeral.public_key())),
    )
    recipient_key = der.sequence(der.tlv(SEQUENCE, party.issuer_and_serial),
                                 der.octet_string(aes_key_wrap(kek, cek)))
    return der.tlv(
        CTX_1,  # RecipientInfo.kari
        der.integer(3),
        der.tlv(CTX_0, originator_key),
        der.algorithm_id(_KDF_OID[profile.hash.name], wrap_algorithm),
        der.sequence(recipient_key),
    )


def _envelope(content_type: bytes, content: bytes, recipients: Sequence[x509.Certificate],
              *, authenticated: bool, key_bits: int) -> bytes:
    if key_bits not in (128, 256):
        raise UsageError(f"key_bits must be 128 or 256, not {key_bits}")
    if not recipients:
        raise UsageError("at least one recipient certificate is needed")
    cek = random_bytes(key_bits // 8)
    recipient_infos = der.set_of(*(_recipient_info(_party_of(r), cek) for r in recipients))
    if authenticated:
        nonce = random_bytes(_GCM_NONCE_LENGTH)
        ciphertext, tag = aes_gcm_encrypt(cek, nonce, content, tag_length=_GCM_ICV_LENGTH)
        algorithm = der.algorithm_id(
            _GCM_OID[len(cek)],
            der.sequence(der.octet_string(nonce), der.integer(_GCM_ICV_LENGTH)))
        encrypted = der.sequence(der.tlv(OID, content_type), algorithm,
                                 der.tlv(CTX_0_PRIMITIVE, ciphertext))
        return _content_info(_AUTH_ENVELOPED_DATA, der.sequence(
            der.integer(0), recipient_infos, encrypted, der.octet_string(tag)))
    iv = random_bytes(16)
    algorithm = der.algorithm_id(_CBC_OID[len(cek)], der.octet_string(iv))
    encrypted = der.sequence(der.tlv(OID, content_type), algorithm,
                             der.tlv(CTX_0_PRIMITIVE,
                                     aes_cbc_encrypt(cek, iv, content)))
    return _content_info(_ENVELOPED_DATA, der.sequence(der.integer(2), recipient_infos, encrypted))


def encrypt(content: bytes, recipients: Sequence[x509.Certificate], *,
            authenticated: bool = True, key_bits: int = 128,
            content_type: str = "data") -> bytes:
    """DER ``ContentInfo`` encrypting ``content`` for each recipient certificate.

    ``authenticated`` selects AuthEnvelopedData with AES-GCM (default) or EnvelopedData with
    AES-CBC; ``key_bits`` is 128 or 256. Recipient keys must be EC keys on a permitted curve
    (``KeyRejected(WRONG_CURVE)`` otherwise).
    """
    return _envelope(_content_type_oid(content_type), content, recipients,
                     authenticated=authenticated, key_bits=key_bits)


class _KeyAgreement(NamedTuple):
    """The parts of the KeyAgreeRecipientInfo addressed to us, algorithms checked."""

    point: bytes  # the originator's ephemeral public key
    curve: str | None  # the curve it names, if any
    kdf_hash: hashes.HashAlgorithm
    shared_info: bytes
    kek_length: int
    encrypted_key: bytes


def _read_key_agreement(buf: bytes, pos: int, end: int,
                        recipient: _Party) -> _KeyAgreement | None:
    """The key agreement for ``recipient`` in the KeyAgreeRecipientInfo whose contents are
    ``buf[pos:end]``, or None."""
    pos = der.take(buf, pos, end, INTEGER)[2]  # version 3
    start, stop, pos = der.take(buf, pos, end, CTX_0)  # originator
    tag, key_start, key_stop, start = der.element(buf, start, stop)
    if start != stop:
        raise der.trailing(start)
    ukm = None
    if pos < end and buf[pos] == CTX_1:
        start, stop, pos = der.take(buf, pos, end, CTX_1)
        ukm, start = der.octets(buf, start, stop)
        if start != stop:
            raise der.trailing(start)
    key_encryption, pos = der.raw(buf, pos, end, SEQUENCE)
    start, stop, pos = der.take(buf, pos, end, SEQUENCE)  # recipientEncryptedKeys
    if pos != end:
        raise der.trailing(pos)
    while start < stop:
        entry, entry_stop, start = der.take(buf, start, stop, SEQUENCE)
        rid_tag, rid_start, rid_stop, entry = der.element(buf, entry, entry_stop)
        encrypted_key, entry = der.value(buf, entry, entry_stop, OCTET_STRING)
        if entry != entry_stop:
            raise der.trailing(entry)
        if rid_tag == CTX_0:  # rKeyId: RecipientKeyIdentifier
            rid = der.value(buf, rid_start, rid_stop, OCTET_STRING)[0]
        elif rid_tag == SEQUENCE:
            rid = buf[rid_start:rid_stop]
        else:
            raise CmsRejected(Reason.MALFORMED, "unknown KeyAgreementRecipientIdentifier")
        if recipient.named_by(rid_tag, rid):
            break
    else:
        return None

    if tag != CTX_1:
        raise CmsRejected(Reason.UNSUPPORTED_ALGORITHM, "static originator key (only "
                          "ephemeral-static ECDH is supported)")
    algorithm, key_start = der.raw(buf, key_start, key_stop, SEQUENCE)
    bits, key_start = der.value(buf, key_start, key_stop, BIT_STRING)
    if key_start != key_stop:
        raise der.trailing(key_start)
    if bits[:1] != b"\x00":
        raise CmsRejected(Reason.MALFORMED, "originator key is not a whole-octet bit string")
    if algorithm not in _ORIGINATOR_KEY:
        if der.typed(algorithm, 0, len(algorithm))[0] == _EC_PUBLIC_KEY:
            raise CmsRejected(Reason.WRONG_CURVE, "originator key is not on a permitted curve")
        raise CmsRejected(Reason.UNSUPPORTED_ALGORITHM, "originator key is not an EC key",
                          algorithm=der.algorithm_name(algorithm))
    scheme = _KEY_ENCRYPTION.get(key_encryption)
    if scheme is None:
        kdf, start, stop, _ = der.typed(key_encryption, 0, len(key_encryption))
        if kdf not in _KDF_HASH:
            raise CmsRejected(Reason.UNSUPPORTED_ALGORITHM, "unsupported key agreement scheme",
                              algorithm=der.dotted(kdf))
        raise CmsRejected(Reason.UNSUPPORTED_ALGORITHM, "unsupported key wrap",
                          algorithm=der.algorithm_name(
                              der.raw(key_encryption, start, stop, SEQUENCE)[0]))
    shared_info = (scheme.shared_info if ukm is None
                   else _shared_info(scheme.wrap_algorithm, ukm, scheme.kek_length))
    return _KeyAgreement(bits[1:], _ORIGINATOR_KEY[algorithm], scheme.kdf_hash, shared_info,
                         scheme.kek_length, encrypted_key)


def _unwrap(agreement: _KeyAgreement, key: KeyHandle, profile: CurveProfile) -> bytes:
    """The content-encryption key: ECDH of ``key`` (on ``profile``'s curve), X9.63 KDF, AES
    key unwrap."""
    if agreement.curve not in (None, profile.name):
        raise CmsRejected(Reason.WRONG_CURVE, "originator key is not on the recipient's curve",
                          curve=agreement.curve)
    shared = key.exchange(public_key_from_point(profile.name, agreement.point))
    kek = x963_kdf(shared, agreement.kek_length, agreement.shared_info, agreement.kdf_hash)
    try:
        return keywrap.aes_key_unwrap(kek, agreement.encrypted_key)
    except (keywrap.InvalidUnwrap, ValueError) as exc:
        raise CmsRejected(Reason.WRONG_RECIPIENT, "key unwrap failed (wrong key or tampered "
                          "encrypted key)") from exc


def _content_decryption(algorithm: bytes, buf: bytes, pos: int, end: int,
                        tag: bytes | None) -> tuple[int, bytes]:
    """Key length and nonce (AES-GCM, with a ``tag``) or IV (AES-CBC, without) of the content
    encryption ``algorithm`` whose parameters are ``buf[pos:end]``."""
    if tag is not None:
        key_length = _GCM_LENGTH.get(algorithm)
        if key_length is None:
            raise CmsRejected(Reason.UNSUPPORTED_ALGORITHM, "unsupported authenticated content "
                              "encryption", algorithm=der.dotted(algorithm))
        start, stop, pos = der.take(buf, pos, end, SEQUENCE)  # GCMParameters
        if pos != end:
            raise der.trailing(pos)
        nonce, start = der.value(buf, start, stop, OCTET_STRING)
        icv_length = 12
        if start < stop and buf[start] == INTEGER:
            icv_length, start = der.small_int(buf, start, stop)
        if start != stop:
            raise der.trailing(start)
        if not 12 <= icv_length <= 16 or len(tag) != icv_length:
            raise CmsRejected(Reason.MALFORMED, "GCM tag length does not match its parameter")
        return key_length, nonce
    key_length = _CBC_LENGTH.get(algorithm)
    if key_length is None:
        raise CmsRejected(Reason.UNSUPPORTED_ALGORITHM, "unsupported content encryption",
                          algorithm=der.dotted(algorithm))
    iv, pos = der.value(buf, pos, end, OCTET_STRING)
    if pos != end:
        raise der.trailing(pos)
    return key_length, iv


def _open_envelope(data: bytes, key: KeyHandle, certificate: x509.Certificate,
                   max_size: int) -> tuple[bytes, bytes]:
    """Decrypt an AuthEnvelopedData or EnvelopedData: (content type OID, plaintext).

    The whole structure is read and its algorithms checked before the ECDH.
    """
    content_type, pos, end = _read_content_info(data, max_size)
    if content_type not in (_AUTH_ENVELOPED_DATA, _ENVELOPED_DATA):
        raise CmsRejected(Reason.WRONG_CONTENT_TYPE, "not an (Auth)EnvelopedData",
                          content_type=der.dotted(content_type))
    pos, stop, after = der.take(data, pos, end, SEQUENCE)
    if after != end:
        raise der.trailing(after)
    end = stop
    pos = der.take(data, pos, end, INTEGER)[2]  # version
    pos = der.skip(data, pos, end, CTX_0)  # originatorInfo
    recipient = _party_of(certificate)
    start, stop, pos = der.take(data, pos, end, SET)  # recipientInfos
    agreement = None
    while agreement is None and start < stop:
        tag, info_start, info_stop, start = der.element(data, start, stop)
        if tag == CTX_1:  # kari; ktri, kekri, pwri and ori cannot address an EC key
            agreement = _read_key_agreement(data, info_start, info_stop, recipient)
    inner_type, start, stop, pos = der.typed(data, pos, end)  # encryptedContentInfo
    algorithm, params_start, params_stop, start = der.typed(data, start, stop)
    if start >= stop:
        raise CmsRejected(Reason.MALFORMED, "encrypted content is absent")
    ciphertext, start = der.octets(data, start, stop, CTX_0_PRIMITIVE)
    if start != stop:
        raise der.trailing(start)
    if content_type == _AUTH_ENVELOPED_DATA:
        auth_attrs = None
        if pos < end and data[pos] == CTX_1:
            auth_attrs, pos = der.raw(data, pos, end, CTX_1)
        mac: bytes | None
        mac, pos = der.value(data, pos, end, OCTET_STRING)
        pos = der.skip(data, pos, end, CTX_2)  # unauthAttrs
    else:
        auth_attrs = mac = None
        pos = der.skip(data, pos, end, CTX_1)  # unprotectedAttrs
    if pos != end:
        raise der.trailing(pos)
    aad = b"" if auth_attrs is None else bytes((SET,)) + auth_attrs[1:]  # RFC 5083 §2.2
    key_length, nonce = _content_decryption(algorithm, data, params_start, params_stop, mac)
    if agreement is None:
        raise CmsRejected(Reason.WRONG_RECIPIENT, "no recipient entry for this certificate",
                          serial=certificate.serial_number)

    cek = _unwrap(agreement, key, recipient.key()[1])
    if len(cek) != key_length:
        raise CmsRejected(Reason.MALFORMED, "content-encryption key has the wrong length")
    if mac is None:
        return inner_type, aes_cbc_decrypt(cek, nonce, ciphertext)
    return inner_type, aes_gcm_decrypt(cek, nonce, ciphertext, mac, aad)


def decrypt(data: bytes, key: KeyHandle, certificate: x509.Certificate, *,
            max_size: int = DEFAULT_MAX_SIZE) -> Decrypted:
    """Decrypt an AuthEnvelopedData (AES-GCM) or EnvelopedData (AES-CBC) with ``key``.

    ``certificate`` is the certificate of ``key``; the message must hold a recipient entry for
    it (``WRONG_RECIPIENT`` otherwise, also when ``key`` does not belong to it).
    """
    content_type, content = _open_envelope(data, key, certificate, max_size)
    return Decrypted(content, der.dotted(content_type))


# --------------------------------------------------------------------------- sealing


def seal(content: bytes, signer: KeyHandle, signer_certificate: x509.Certificate,
         recipients: Sequence[x509.Certificate], *, content_type: str = "data",
         extra_certificates: Sequence[x509.Certificate] = (),
         signing_time: datetime | None = None, authenticated: bool = True,
         key_bits: int = 128) -> bytes:
    """Sign ``content`` (attached), then encrypt the SignedData for ``recipients``.

    The result is an AuthEnvelopedData (AES-GCM; EnvelopedData with AES-CBC if not
    ``authenticated``) whose encrypted content type is id-signedData. Options as for
    :func:`sign` and :func:`encrypt`.
    """
    signed = _signed_data(content, signer, signer_certificate, detached=False,
                          content_type=content_type, extra_certificates=extra_certificates,
                          signing_time=signing_time)
    return _envelope(_SIGNED_DATA, signed, recipients, authenticated=authenticated,
                     key_bits=key_bits)


def open_sealed(data: bytes, key: KeyHandle, certificate: x509.Certificate, *,
                signer_certificate: x509.Certificate | None = None,
                max_size: int = DEFAULT_MAX_SIZE) -> Opened:
    """Decrypt a sealed message with ``key`` and verify the SignedData inside.

    Accepts an inner content type of id-signedData, or id-data whose plaintext is a DER
    ``ContentInfo(SignedData)``. Signer rules as for :func:`verify`.
    """
    inner_type, plaintext = _open_envelope(data, key, certificate, max_size)
    if inner_type == _SIGNED_DATA:
        start, end = 0, len(plaintext)
    elif inner_type == _DATA:
        try:
            wrapped_type, start, end = _read_content_info(plaintext, max_size)
        except CmsRejected as exc:
            raise CmsRejected(Reason.WRONG_CONTENT_TYPE, "encrypted data is not a "
                              "ContentInfo(SignedData)") from exc
        if wrapped_type != _SIGNED_DATA:
            raise CmsRejected(Reason.WRONG_CONTENT_TYPE, "encrypted ContentInfo is not a "
                              "SignedData", content_type=der.dotted(wrapped_type))
    else:
        raise CmsRejected(Reason.WRONG_CONTENT_TYPE, "encrypted content is not signed",
                          content_type=der.dotted(inner_type))
    return _verify_signed_data(plaintext, start, end, signer_certificate, None)
